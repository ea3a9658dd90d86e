"""Independent routes to the derivatives, for checking the package against.

None of these uses the package's stationarity conditions or its solver: they
compose the constraints by substitution and differentiate with sympy, or take
central finite differences of the composed function.
"""

from __future__ import annotations

import numpy as np
import sympy as sp


def composed(g):
    """Each node as an expression of the inputs and constants."""
    env = {s: s for s in g.inputs + g.constants}
    for z in g.defined:
        env[z] = g.expr(z).xreplace(env)
    return env


def cut_at(g, node):
    """Each node as an expression of ``node`` and of the nodes that do not depend
    on it: the graph cut open at ``node``, whose own constraint is dropped."""
    env = {s: s for s in g.nodes + g.constants}
    downstream = {node}
    for z in g.defined:
        if z != node and any(p in downstream for p in g.parents(z)):
            env[z] = g.expr(z).xreplace(env)
            downstream.add(z)
    return env


def d_output_d(g, node):
    """d z_n / d z_node by differentiating the composed expression (Theorem 16.1's
    right-hand side), as an expression of the nodes."""
    return sp.diff(cut_at(g, node)[g.output], node)


def evaluate(expr, point):
    """A sympy expression at a point, as a float (high precision, then rounded)."""
    return float(sp.N(expr.xreplace({k: sp.Float(v, 30) for k, v in point.items()}), 20))


def central_difference(fn, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """The gradient of ``fn`` at ``x`` by central differences, one input at a time."""
    grad = np.empty_like(x)
    for k in range(len(x)):
        e = np.zeros_like(x)
        e[k] = h
        grad[k] = (fn(x + e) - fn(x - e)) / (2 * h)
    return grad


def relative_error(a, b) -> float:
    return abs(float(a) - float(b)) / max(1.0, abs(float(b)))
