"""The operations: each declared once (adjoint.operations.functions), with
its rules, its kinks and its numeric forms; the matrix rules, local partials, and
the runtime helpers (Newton, transposed solves, checkpointed loops) programs call."""
