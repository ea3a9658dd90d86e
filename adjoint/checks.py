"""Checks of the solution against independent routes.

:func:`verify` checks Theorem 16.1, ``lambda_j = d z_n / d z_j``, node by node: the
right-hand side comes from the chain-rule route, differentiating the composed
expression of ``z_n`` as a function of ``z_j`` (symbolically where it is small,
by central differences where it is not), never from the adjoint conditions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import sympy as sp

from .numeric import NoNumericRule, numeric_function, to_real
from .solve import read_values

__all__ = ["NodeCheck", "VerifyReport", "verify"]

#: Composed expressions larger than this (in tree nodes) are checked numerically.
SYMBOLIC_LIMIT = 400


@dataclass(frozen=True)
class NodeCheck:
    """Theorem 16.1 at one node: ``lambda_j`` against ``d z_n / d z_j``."""

    node: sp.Symbol
    multiplier: object  # lambda_j from solving grad L = 0
    expected: object  # d z_n / d z_j by the chain-rule route
    method: str  # "symbolic", "derivative" (sympy's diff, at points) or "differences"
    error: float  # worst relative error over the points checked (0 when symbolic)
    ok: bool


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify`: one :class:`NodeCheck` per node."""

    checks: tuple[NodeCheck, ...]
    points: tuple[dict, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> tuple[NodeCheck, ...]:
        return tuple(c for c in self.checks if not c.ok)

    def __repr__(self) -> str:
        status = "holds" if self.ok else "FAILS"
        lines = [f"Theorem 16.1 (lambda_j = d z_n / d z_j) {status} at {len(self.checks)} nodes"]
        for c in self.checks:
            mark = "ok  " if c.ok else "FAIL"
            lines.append(f"  {mark} {c.node}: {c.method}, relative error {c.error:.2g}")
        return "\n".join(lines)


def verify(
    graph,
    at: Mapping | None = None,
    *,
    points: int = 3,
    rtol: float = 1e-7,
    seed: int = 0,
) -> VerifyReport:
    """Check Theorem 16.1 for every node of ``graph``.

    For each node ``z_j``, the composed expression of ``z_n`` in ``z_j`` (and the
    nodes that do not depend on it) is differentiated with sympy and compared with
    ``lambda_j``: symbolically, then at ``points`` random points (or at ``at``) if
    simplification cannot decide. Where the composed expression is too large, central
    differences of the forward constraints take the place of sympy's derivative.

    Examples
    --------
    >>> import sympy as sp
    >>> from adjoint import Graph
    >>> g = Graph.from_expr(sp.sin(sp.Symbol("x") ** 2))
    >>> g.verify().ok
    True
    """
    rng = np.random.default_rng(seed)
    leaves = graph.inputs + graph.constants
    matrices = any(graph.node(s).shape is not None for s in leaves + graph.defined)
    real = {
        s: sp.Symbol(s.name, real=True)
        for s in leaves + graph.defined
        if not matrices and not s.is_real
    }
    if at is not None:
        at_points = [{s: v for s, v in read_values(graph, at).items() if s in leaves}]
    else:
        at_points = [_random_point(graph, rng) for _ in range(points)]
    solutions = [graph.solve(p) for p in at_points]
    # sympy's matrix calculus is not trusted as a reference: matrix graphs are
    # checked by differences along random directions.
    symbolic = graph.solve() if at is None and not matrices else None

    checks = []
    for z in graph.nodes:
        if matrices:
            composed, size = None, math.inf
        else:
            composed, size = _composed_output(graph, z, real)
        zr = real.get(z, z)
        if symbolic is not None and size <= SYMBOLIC_LIMIT:
            derivative = sp.diff(composed, zr)
            expected = derivative.xreplace(
                {real.get(k, k): v for k, v in symbolic.values.items()}
            ).xreplace({real[k]: k for k in real})
            lam = symbolic.adjoints[z]
            if _symbolically_equal(lam, expected):
                checks.append(NodeCheck(z, lam, expected, "symbolic", 0.0, True))
                continue
        method = "derivative" if size <= SYMBOLIC_LIMIT else "differences"
        worst = 0.0
        for point, sol in zip(at_points, solutions):
            lam = sol.adjoints[z]
            if method == "derivative":
                expected = _at_point(sp.diff(composed, zr), graph, sol, real)
            else:
                direction = rng.standard_normal(np.shape(sol.values[z]))
                lam = float(np.sum(lam * direction))  # <lambda_j, v>
                expected = _central_difference(graph, z, point, sol, direction)
            worst = max(worst, _relative_error(lam, expected))
        tolerance = rtol if method == "derivative" else max(rtol, 1e-5)
        checks.append(NodeCheck(z, lam, expected, method, worst, worst <= tolerance))
    return VerifyReport(tuple(checks), tuple(at_points))


def _random_point(graph, rng) -> dict:
    """Values in [0.5, 1.5] (inside the domain of log, sqrt, ...) with a finite solution.

    Symbolic matrix dimensions get small distinct sizes: 2, 3, 4, ...
    """
    sizes = {d: 2 + k for k, d in enumerate(graph._dims.values())}

    def draw(s):
        shape = graph.node(s).shape
        if shape is None:
            return float(rng.uniform(0.5, 1.5))
        return rng.uniform(0.5, 1.5, size=[int(sp.sympify(d).xreplace(sizes)) for d in shape])

    for _ in range(20):
        point = {s: draw(s) for s in graph.inputs + graph.constants}
        sol = graph.solve(point)
        if all(np.all(np.isfinite(v)) for v in [*sol.values.values(), *sol.adjoints.values()]):
            return point
    return point


def _composed_output(graph, z, real):
    """``z_n`` as an expression of ``z`` and of the nodes that do not depend on ``z``.

    Returns the expression (in real symbols) and its size as a tree, counted on
    the DAG so that the count itself stays linear.
    """
    composed = {z: real.get(z, z)}
    size = {z: 1}
    for i in graph.defined:  # topological order
        parents = graph.parents(i)
        if any(p in composed for p in parents):
            f = graph.expr(i).xreplace(real)
            composed[i] = f.xreplace(
                {real.get(p, p): composed[p] for p in parents if p in composed}
            )
            size[i] = sp.count_ops(f) + 1 + sum(size[p] for p in parents if p in composed)
    out = graph.output
    if out not in composed:
        return sp.Integer(0), 1  # z_n does not depend on z
    return composed[out], size[out]


def _symbolically_equal(a, b) -> bool:
    difference = a - b
    if difference == 0:
        return True
    try:
        return sp.simplify(difference) == 0
    except Exception:
        return False


def _at_point(expr, graph, sol, real):
    env = {real.get(k, k): v for k, v in sol.values.items()}
    symbols = sorted(expr.free_symbols, key=lambda s: s.name)
    try:
        fn = numeric_function(symbols, expr)
    except NoNumericRule:
        return to_real(expr.xreplace({k: sp.Float(v) for k, v in env.items()}).evalf())
    with np.errstate(all="ignore"):
        return to_real(fn(*[np.float64(env[s]) for s in symbols]))


def _central_difference(graph, z, point, sol, direction):
    """The derivative of ``z_n`` along ``direction`` at ``z``, by re-running the forward
    constraints (Step 1 only) downstream of z."""
    h = 1e-5 * max(1.0, float(np.max(np.abs(sol.values[z]))))
    forward = graph.stationarity().conditions("forward")
    base = {**read_values(graph, point), **sol.values}
    ahead = {}
    for step in (h, -h):
        env = dict(base)
        env[z] = sol.values[z] + step * direction
        affected = {z}
        with np.errstate(all="ignore"):
            for condition in forward:
                if any(p in affected for p in graph.parents(condition.unknown)):
                    affected.add(condition.unknown)
                    env[condition.unknown] = condition.solve(env)
        ahead[step] = float(env[graph.output])
    return (ahead[h] - ahead[-h]) / (2 * h)


def _relative_error(a, b) -> float:
    a, b = float(a), float(b)
    if math.isnan(a) and math.isnan(b):
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return 0.0 if a == b else math.inf
    return abs(a - b) / max(1.0, abs(b))
