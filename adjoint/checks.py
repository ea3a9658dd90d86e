"""Checks of the solution against independent routes, for users and graders.

* :func:`verify` checks Theorem 16.1, ``lambda_j = d z_n / d z_j``, node by node:
  the right-hand side comes from the chain-rule route, differentiating the
  composed expression of ``z_n`` as a function of ``z_j`` (symbolically where it
  is small, by central differences where it is not), never from the adjoint
  conditions.
* :func:`check_gradient` compares the reverse sweep with central differences of
  the function along random directions.
* :func:`taylor_test` watches the remainder ``|f(x + h v) - f(x) - h <g, v>|``
  shrink like ``h**2`` (rate 2) when the gradient is right, like ``h`` when not.
* :func:`check_hvp` compares the Hessian-vector product of the second-order sweeps
  with central differences of the gradient along random directions; ``taylor_test(...,
  order=2)`` watches the second-order remainder shrink like ``h**3``.
* :func:`dot_product_test` checks each matrix node's pullback against its Jacobian:
  ``<V, J U>`` by differences against ``<J^T V, U>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import sympy as sp

from .codegen import compile_graph
from .errors import AdjointError
from .lagrangian import stationarity
from .numeric import NoNumericRule, numeric_function, to_real
from .second_order import hvp
from .solve import forward_sweep, solve
from .values import read_values

__all__ = [
    "GradientCheck",
    "HvpCheck",
    "NodeCheck",
    "TaylorTest",
    "VerifyReport",
    "check_gradient",
    "check_hvp",
    "dot_product_test",
    "random_point",
    "relative_error",
    "taylor_test",
    "verify",
]

#: Composed expressions larger than this (in tree nodes), or deeper than this (in
#: constraints), are checked numerically.
SYMBOLIC_LIMIT = 400
DEPTH_LIMIT = 12


@dataclass(frozen=True)
class NodeCheck:
    """Theorem 16.1 at one node: ``lambda_j`` against ``d z_n / d z_j``."""

    node: sp.Symbol
    multiplier: object  # lambda_j from solving grad L = 0
    expected: object  # d z_n / d z_j by the chain-rule route
    method: str  # "symbolic", "derivative" (sympy's diff at points), "differences", or
    # "undefined": not checked, the node or the output is not a number at a point
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
        n, failed = len(self.checks), self.failed
        undefined = [c for c in failed if c.method == "undefined"]
        if self.ok:
            status = f"holds at all {n} nodes"
        elif len(undefined) == len(failed):
            status = (
                f"cannot be checked at {len(failed)} of {n} nodes: the function is undefined "
                "there (outside a constraint's domain; see the solution's undefined)"
            )
        else:
            status = f"FAILS at {len(failed) - len(undefined)} of {n} nodes"
        lines = [f"Theorem 16.1 (lambda_j = d z_n / d z_j) {status}"]
        for c in self.checks:
            mark = "ok  " if c.ok else ("n/a " if c.method == "undefined" else "FAIL")
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
        at_points = [random_point(graph, rng) for _ in range(points)]
    solutions = [solve(graph, p) for p in at_points]
    # sympy's matrix calculus is not trusted as a reference: matrix graphs are
    # checked by differences along random directions.
    # A user's operation is checked against its numeric implementation, by differences:
    # differentiating with its own hand-written partials would check them with themselves.
    custom = _has_custom_operation(graph)
    symbolic = None
    if at is None and not matrices and not custom and _composed_size(graph) <= SYMBOLIC_LIMIT:
        symbolic = solve(graph)

    checks = []
    for z in graph.nodes:
        if matrices or custom:
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
        worst, lam, expected = 0.0, math.nan, math.nan
        for point, sol in zip(at_points, solutions):
            if not (np.all(np.isfinite(sol.values[z])) and np.all(np.isfinite(sol.output))):
                worst, method = math.inf, "undefined"  # nothing checked over a nan: no pass
                break
            lam = sol.adjoints[z]
            if method == "derivative":
                expected = _at_point(sp.diff(composed, zr), graph, sol, real)
            else:
                direction = rng.standard_normal(np.shape(sol.values[z]))
                lam = float(np.sum(lam * direction))  # <lambda_j, v>
                expected = _central_difference(graph, z, point, sol, direction)
            worst = max(worst, relative_error(lam, expected))
        tolerance = rtol if method == "derivative" else max(rtol, 1e-5)
        checks.append(NodeCheck(z, lam, expected, method, worst, worst <= tolerance))
    return VerifyReport(tuple(checks), tuple(at_points))


def random_point(graph, rng) -> dict:
    """Values in [0.5, 1.5] (inside the domain of log, sqrt, ...) with a finite solution.

    Symbolic matrix dimensions get small distinct sizes: 2, 3, 4, ...
    """
    sizes = {d: 2 + k for k, d in enumerate(graph.dims)}

    def draw(s):
        shape = graph.node(s).shape
        if shape is None:
            return float(rng.uniform(0.5, 1.5))
        return rng.uniform(0.5, 1.5, size=[int(sp.sympify(d).xreplace(sizes)) for d in shape])

    for _ in range(20):
        point = {s: draw(s) for s in graph.inputs + graph.constants}
        sol = solve(graph, point)
        if all(np.all(np.isfinite(v)) for v in [*sol.values.values(), *sol.adjoints.values()]):
            return point
    return point


def _has_custom_operation(graph) -> bool:
    return any(
        getattr(type(f), "numeric_implementation", None) is not None
        for z in graph.defined
        for f in graph.expr(z).atoms(sp.Function)
    )


def _composed_size(graph) -> float:
    """The size of ``z_n`` composed into the inputs, as a tree, counted on the DAG;
    infinite when it is deeper than :data:`DEPTH_LIMIT` constraints."""
    size, depth = {}, {}
    for i in graph.defined:
        parents = graph.parents(i)
        size[i] = sp.count_ops(graph.expr(i)) + 1 + sum(size.get(p, 1) for p in parents)
        depth[i] = 1 + max((depth.get(p, 0) for p in parents), default=0)
    out = graph.output
    return size[out] if depth[out] <= DEPTH_LIMIT else math.inf


def _composed_output(graph, z, real):
    """``z_n`` as an expression of ``z`` and of the nodes that do not depend on ``z``,
    and its size as a tree; ``None`` for the expression when the size is over
    :data:`SYMBOLIC_LIMIT` (such a node is checked by differences).

    The size is counted on the DAG first, so the count stays linear and nothing
    too large (or too deep for sympy's recursive algorithms) is ever built.
    """
    size, depth = {z: 1}, {z: 0}
    for i in graph.defined:  # topological order
        parents = [p for p in graph.parents(i) if p in size]
        if parents:
            size[i] = sp.count_ops(graph.expr(i)) + 1 + sum(size[p] for p in parents)
            depth[i] = 1 + max(depth[p] for p in parents)
    out = graph.output
    if out not in size:
        return sp.Integer(0), 1  # z_n does not depend on z
    if size[out] > SYMBOLIC_LIMIT or depth[out] > DEPTH_LIMIT:
        # sympy's diff recurses a dozen frames per level: deep ones go by differences
        return None, math.inf
    composed = {z: real.get(z, z)}
    for i in graph.defined:
        if i in size and i != z:
            f = graph.expr(i).xreplace(real)
            composed[i] = f.xreplace(
                {real.get(p, p): composed[p] for p in graph.parents(i) if p in composed}
            )
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
    base = {**read_values(graph, point), **sol.values}
    ahead = {
        step: float(forward_sweep(graph, base, {z: step * direction})[graph.output])
        for step in (h, -h)
    }
    return (ahead[h] - ahead[-h]) / (2 * h)


def relative_error(a, b, floor: float = 1.0) -> float:
    """The worst ``|a - b| / max(floor, |a|, |b|)`` over the entries of ``a`` and ``b``.

    ``inf`` when the shapes differ or a value is not finite: a checker never
    broadcasts a mismatch into a pass, nor compares through a nan.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.inf
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(floor, np.maximum(np.abs(a), np.abs(b)))))


# -- checks of the gradient against the function itself ------------------------


@dataclass(frozen=True)
class GradientCheck:
    """Central differences along random directions against ``<gradient, v>``."""

    errors: tuple[float, ...]  # relative error along each direction
    rtol: float

    @property
    def max_rel_error(self) -> float:
        return max(self.errors, default=0.0)

    @property
    def ok(self) -> bool:
        return self.max_rel_error <= self.rtol

    def __repr__(self) -> str:
        verdict = "agrees with" if self.ok else "DISAGREES with"
        return (
            f"the gradient {verdict} central differences along {len(self.errors)} random "
            f"directions: worst relative error {self.max_rel_error:.2g} (tolerance {self.rtol:g})"
        )


def _function_and_gradient(graph, at):
    """``f`` as a function of the inputs (the compiled forward pass), the point, and the
    gradient there from solving ``grad L = 0``."""
    env = read_values(graph, at)
    x0 = {x: env[x] for x in graph.inputs}
    data = {c: env[c] for c in graph.constants}
    value = compile_graph(graph, gradient=False)

    def f(x):
        return float(value(**{s.name: v for s, v in {**x, **data}.items()}))

    return f, x0, solve(graph, at).gradient


def _step(x0, rng):
    return {x: rng.standard_normal(np.shape(v)) for x, v in x0.items()}


def _moved(x0, v, h):
    return {x: x0[x] + h * v[x] for x in x0}


def _inner(gradient, v) -> float:
    """``<gradient, v>``; nan when a gradient does not have its input's shape, so that
    a mismatch fails the check instead of being broadcast into a number."""
    total = 0.0
    for x, direction in v.items():
        g = np.asarray(gradient[x], dtype=float)
        if g.shape != np.shape(direction):
            return math.nan
        total += float(np.sum(g * direction))
    return total


def check_gradient(
    graph, at: Mapping, *, directions: int = 5, rtol: float = 1e-6, seed: int = 0
) -> GradientCheck:
    """The reverse sweep against central differences, in random directions.

    Along each random direction ``v`` (drawn for every input at once), compares
    ``<gradient, v>`` with ``(f(x + h v) - f(x - h v)) / 2h``, by relative error.

    Examples
    --------
    >>> import sympy as sp
    >>> from adjoint import Graph, check_gradient
    >>> g = Graph.from_expr("sin(x*y) + x^2")
    >>> check_gradient(g, at={"x": 1.5, "y": -2.0}).ok
    True
    """
    rng = np.random.default_rng(seed)
    f, x0, gradient = _function_and_gradient(graph, at)
    scale = max([1.0] + [float(np.max(np.abs(v))) for v in x0.values()])
    h = 1e-6 * scale
    errors = []
    for _ in range(directions):
        v = _step(x0, rng)
        # Along v, and along v restricted to each input in turn (up to 20 of them): a
        # wrong gradient of a small input must not hide behind a large one.
        parts = [v] if len(v) == 1 or len(v) > 20 else [v, *({x: v[x]} for x in v)]
        for u in parts:
            u = {x: u.get(x, np.zeros(np.shape(v[x]))) for x in v}
            differences = (f(_moved(x0, u, h)) - f(_moved(x0, u, -h))) / (2 * h)
            errors.append(relative_error(_inner(gradient, u), differences, floor=1e-8))
    return GradientCheck(tuple(errors), rtol)


@dataclass(frozen=True)
class TaylorTest:
    """Remainders ``|f(x + h v) - f(x) - h <g, v>|`` for shrinking ``h``."""

    steps: tuple[float, ...]
    remainders: tuple[float, ...]
    order: int = 1

    @property
    def rates(self) -> tuple[float, ...]:
        """log(r_k / r_{k+1}) / log(h_k / h_{k+1}): ``order + 1`` when the derivatives
        are right (2 for the gradient, 3 with the Hessian-vector product too)."""
        out = []
        for (h0, r0), (h1, r1) in zip(
            zip(self.steps, self.remainders), zip(self.steps[1:], self.remainders[1:])
        ):
            out.append(math.log(r0 / r1) / math.log(h0 / h1) if r0 > 0 and r1 > 0 else math.nan)
        return tuple(out)

    @property
    def ok(self) -> bool:
        if max(self.remainders) <= 1e-12:  # f is linear along v: exact to rounding
            return True
        rates = [r for r in self.rates if math.isfinite(r)]
        return bool(rates) and float(np.median(rates)) > self.order + 0.8

    def __repr__(self) -> str:
        rows = [f"  h = {h:.3g}: remainder {r:.3g}" for h, r in zip(self.steps, self.remainders)]
        rates = ", ".join(f"{r:.2f}" for r in self.rates)
        what = "the gradient is" if self.order == 1 else "the gradient and Hessian are"
        return "\n".join(
            [
                f"Taylor test: rates {rates} ({self.order + 1} when {what} right, "
                f"{self.order} when not)",
                *rows,
            ]
        )


def taylor_test(
    graph, at: Mapping, *, steps: int = 6, h0: float = 0.1, seed: int = 0, order: int = 1
) -> TaylorTest:
    """Remainders of the first-order Taylor expansion along a random direction.

    With the right gradient, ``|f(x + h v) - f(x) - h <g, v>|`` is O(h**2): halving h
    divides it by 4 and the rates approach 2. A wrong gradient leaves an O(h) term:
    rates near 1. With ``order=2`` the remainder is ``|f(x + h v) - f(x) - h <g, v> -
    h**2/2 <v, H v>|`` with ``H v`` from the second-order sweeps: rates near 3 when it
    is right, 2 when not.

    Examples
    --------
    >>> from adjoint import Graph, taylor_test
    >>> report = taylor_test(Graph.from_expr("exp(x) * y"), at={"x": 0.3, "y": 2.0})
    >>> report.ok, round(report.rates[-1])
    (True, 2)
    """
    rng = np.random.default_rng(seed)
    f, x0, gradient = _function_and_gradient(graph, at)
    v = _step(x0, rng)
    if order not in (1, 2):
        raise AdjointError(f"order must be 1 or 2, got {order!r}")
    f0, slope = f(x0), _inner(gradient, v)
    curvature = _inner(hvp(graph, at, v), v) if order == 2 else 0.0
    hs = tuple(h0 / 2**k for k in range(steps))
    remainders = tuple(
        abs(f(_moved(x0, v, h)) - f0 - h * slope - h * h / 2 * curvature) for h in hs
    )
    return TaylorTest(hs, remainders, order)


@dataclass(frozen=True)
class HvpCheck:
    """The Hessian-vector product against central differences of the gradient."""

    errors: tuple[float, ...]
    rtol: float

    @property
    def max_rel_error(self) -> float:
        return max(self.errors)

    @property
    def ok(self) -> bool:
        return all(e <= self.rtol for e in self.errors)

    def __repr__(self) -> str:
        status = "ok" if self.ok else "FAILS"
        return (
            f"Hessian-vector product {status} against differences of the gradient in "
            f"{len(self.errors)} directions: worst relative error {self.max_rel_error:.2g} "
            f"(tolerance {self.rtol:g})"
        )


def check_hvp(
    graph, at: Mapping, *, directions: int = 3, rtol: float = 1e-5, seed: int = 0
) -> HvpCheck:
    """``H v`` from the second-order sweeps against differences of the gradient from
    Step 2 (Richardson's five-point stencil along ``v``), along random directions; the
    worst entry's relative error per direction.

    Examples
    --------
    >>> from adjoint import Graph, check_hvp
    >>> check_hvp(Graph.from_expr("sin(x*y) + x^3"), at={"x": 1.5, "y": -2.0}).ok
    True
    """
    if isinstance(directions, bool) or not isinstance(directions, int) or directions < 1:
        raise AdjointError(f"directions must be a positive integer, got {directions!r}")
    rng = np.random.default_rng(seed)
    env = read_values(graph, at)
    x0 = {x: env[x] for x in graph.inputs}
    data = {c: env[c] for c in graph.constants}
    scale = max([1.0] + [float(np.max(np.abs(v))) for v in x0.values()])
    h = 1e-4 * scale
    errors = []
    for _ in range(directions):
        v = _step(x0, rng)
        hv = hvp(graph, at, v)
        g = {s: solve(graph, {**data, **_moved(x0, v, s * h)}).gradient for s in (-2, -1, 1, 2)}
        worst = 0.0
        for x in graph.inputs:
            # Richardson's five-point stencil: truncation O(h**4), not O(h**2)
            near = np.asarray(g[1][x]) - np.asarray(g[-1][x])
            far = np.asarray(g[2][x]) - np.asarray(g[-2][x])
            differences = (8 * near - far) / (12 * h)
            got = np.asarray(hv[x], dtype=float)
            if got.shape != differences.shape:
                worst = math.inf
                break
            # the differences carry ~1e-11 of truncation and rounding error
            floor = max(1e-3, float(np.max(np.abs(differences), initial=0.0)))
            error = float(np.max(np.abs(got - differences), initial=0.0)) / floor
            worst = max(worst, error if math.isfinite(error) else math.inf)
        errors.append(worst)
    return HvpCheck(tuple(errors), rtol)


def dot_product_test(graph, at: Mapping, *, rtol: float = 1e-6, seed: int = 0) -> dict:
    """For each matrix node ``Z_i = F_i(..)`` and each node ``W`` it reads: the pullback
    ``J^T V`` (from the rule table) against ``J U`` (by differences of ``F_i``), as
    ``<V, J U>`` versus ``<J^T V, U>`` for random ``U`` and ``V``.

    Returns ``{(Z_i, W): relative error}``; raises nothing, so a grader can print it.
    """
    rng = np.random.default_rng(seed)
    # Step 1 only: the pullbacks under test play no part in it
    env = forward_sweep(graph, read_values(graph, at))
    errors = {}
    for c in stationarity(graph).forward_conditions:
        op = c.op
        if not op.pullback:
            continue
        args = [env[r] for r in c.reads]
        V = rng.standard_normal(np.shape(env[c.unknown]))
        for k, w in enumerate(c.reads):
            if graph.node(w).kind == "constant":
                continue  # data: no pullback
            U = rng.standard_normal(np.shape(env[w]))
            h = 1e-6 * max(1.0, float(np.max(np.abs(env[w]))))
            plus, minus = list(args), list(args)
            plus[k], minus[k] = args[k] + h * U, args[k] - h * U
            with np.errstate(all="ignore"):
                JU = (np.asarray(op.value(plus, env)) - np.asarray(op.value(minus, env))) / (2 * h)
                try:
                    JtV = np.asarray(op.contribution_value(k, c.reads, V, env[c.unknown], env))
                except ValueError:  # the pullback does not even have the right shape
                    errors[(c.unknown, w)] = math.inf
                    continue
            if JtV.shape != np.shape(U):
                errors[(c.unknown, w)] = math.inf
                continue
            lhs, rhs = float(np.sum(V * JU)), float(np.sum(JtV * U))
            errors[(c.unknown, w)] = relative_error(rhs, lhs, floor=1e-8)
    return errors
