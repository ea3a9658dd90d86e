"""Course work: checkers of gradients and Hessian-vector products, and the
grading of hand-derived adjoints."""
