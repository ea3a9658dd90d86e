"""Checks of the solution against independent routes, for users and graders.

* :func:`verify` checks Theorem 16.1, ``lambda_j = d z_n / d z_j``, node by node:
  where the graph is small, against the chain-rule route, differentiating the
  composed expression of ``z_n`` as a function of ``z_j`` with sympy; elsewhere by
  the induction of the theorem's proof, each ``lambda_j`` against its readers'
  multipliers and differences of their constraints alone (linear in the graph).
  Never from the partials the adjoint conditions use.
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

import dataclasses
import math
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..core.errors import AdjointError
from ..core.records import plain
from ..core.values import as_numpy_numbers, read_values, relative_error
from ..operations.numeric import NoNumericRule, numeric_function, to_real
from ..system.lagrangian import stationarity
from ..system.second_order import hvp
from ..system.solve import forward_sweep, solve

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
    method: str  # "symbolic", "derivative" (sympy's diff at points), "differences",
    # "price" (a graph with implicit nodes: lambda_j against d z_n / d eps for the
    # constraint loosened by eps, by differences), or
    # "undefined": not checked, the node or the output is not a number at a point, or
    # "kink": not confirmed, a partial on its way to the output was taken at a kink, or
    # "inconclusive": differences could not resolve the derivative (never a failure)
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

    def to_dict(self) -> dict:
        """As plain data (:func:`adjoint.core.records.plain`)."""
        return {"ok": self.ok, "checks": plain(self.checks), "points": plain(self.points)}

    def __repr__(self) -> str:
        n, failed = len(self.checks), self.failed
        undefined = [c for c in failed if c.method in ("undefined", "kink", "inconclusive")]
        if self.ok:
            status = f"holds at all {n} nodes"
        elif len(undefined) == len(failed):
            status = (
                f"cannot be checked at {len(failed)} of {n} nodes: the function is undefined "
                "there, has a kink between them and the output (see the solution's "
                "undefined and kinks), or varies faster than differences can resolve"
            )
        else:
            status = f"FAILS at {len(failed) - len(undefined)} of {n} nodes"
        claim = (
            "Each multiplier is the price of its constraint (lambda_j = d z_n / d eps_j)"
            if any(c.method == "price" for c in self.checks)
            else "Theorem 16.1 (lambda_j = d z_n / d z_j)"
        )
        lines = [f"{claim}: {status}" if claim.startswith("Each") else f"{claim} {status}"]
        for c in self.checks:
            mark = "ok  " if c.ok else ("n/a " if c in undefined else "FAIL")
            lines.append(f"  {mark} {c.node}: {c.method}, relative error {c.error:.2g}")
        return "\n".join(lines)


def verify(
    graph,
    at: Mapping | None = None,
    *,
    points: int = 3,
    rtol: float = 1e-7,
    seed: int = 0,
    solution=None,
) -> VerifyReport:
    """Check Theorem 16.1 for every node of ``graph``.

    Where ``z_n`` composed into the inputs is small, for each node ``z_j`` the
    composed expression of ``z_n`` in ``z_j`` is differentiated with sympy and
    compared with ``lambda_j``: symbolically, then at ``points`` random points (or at
    ``at``) if simplification cannot decide. Elsewhere (and for matrix graphs and
    user operations) each ``lambda_j`` is checked as the proof of Theorem 16.1 runs
    its induction: ``<lambda_j, v> = sum_i <lambda_i, d f_i/d z_j [v]>`` along a random
    direction ``v``, with the readers' multipliers (checked at their own nodes) and
    differences of their constraints alone, extrapolated with an error bound. A node
    that differences cannot resolve is "inconclusive", never a failure. The cost is
    linear in the graph.

    Examples
    --------
    >>> import sympy as sp
    >>> from adjoint import Graph
    >>> g = Graph.from_expr(sp.sin(sp.Symbol("x") ** 2))
    >>> g.verify().ok
    True
    """
    graph.require_no_recurrence("g.verify")
    rng = np.random.default_rng(seed)
    if graph.blocks:
        return _verify_prices(graph, at, points, rtol, rng, solution)
    leaves = graph.inputs + graph.constants
    matrices = any(graph.node(s).shape is not None for s in leaves + graph.defined)
    real = {
        s: sp.Symbol(s.name, real=True)
        for s in leaves + graph.defined
        if not matrices and not s.is_real
    }
    at_points, solutions = _solved_points(graph, at, points, rng, solution)
    kinked = _behind_kinks(graph, solutions)
    envs = [as_numpy_numbers(s.environment) for s in solutions]
    readers = {z: [] for z in graph.nodes}  # the constraints that read each node
    for c in stationarity(graph).forward_conditions:
        for r in set(c.reads):
            if r in readers:
                readers[r].append(c)
    # sympy's matrix calculus is not trusted as a reference: matrix graphs are
    # checked by differences along random directions.
    # A user's operation is checked against its numeric implementation, by differences:
    # differentiating with its own hand-written partials would check them with themselves.
    custom = _has_custom_operation(graph)
    # Composing z_n into each node's own variable costs a pass over the graph per node:
    # only where the whole composition is small. Elsewhere every node is checked by
    # local differences, linear in the graph.
    small = not matrices and not custom and _composed_size(graph) <= SYMBOLIC_LIMIT
    symbolic = solve(graph) if at is None and small else None

    checks = []
    for z in graph.nodes:
        if not small:
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
        tolerance = rtol if method == "derivative" else max(rtol, 1e-5)
        for k, sol in enumerate(solutions):
            if not (np.all(np.isfinite(sol.values[z])) and np.all(np.isfinite(sol.output))):
                worst, method = math.inf, "undefined"  # nothing checked over a nan: no pass
                break
            lam = sol.adjoints[z]
            if method == "derivative":
                expected = _at_point(sp.diff(composed, zr), graph, sol, real)
                worst = max(worst, relative_error(lam, expected))
                continue
            direction = _step({z: sol.values[z]}, rng, scaled=True)[z]
            lam = float(np.sum(lam * direction))  # <lambda_j, v>
            reference = _difference(graph, z, readers, envs[k], sol, direction)
            expected = float(reference.value)
            error, verdict, _ = judge(lam, reference, tolerance)
            if verdict == "inconclusive":
                worst, method = max(worst, error), "inconclusive"
            else:
                worst = max(worst, error if verdict == "agrees" else max(error, math.inf))
        if method == "inconclusive" and worst <= tolerance:
            method = "differences"
        if method == "inconclusive":
            checks.append(NodeCheck(z, lam, expected, method, worst, False))
            continue
        if z in kinked:
            method = "kink"  # no derivative to check against: a convention was taken
            checks.append(NodeCheck(z, lam, expected, method, worst, False))
            continue
        checks.append(NodeCheck(z, lam, expected, method, worst, worst <= tolerance))
    return VerifyReport(tuple(checks), tuple(at_points))


def _solved_points(graph, at, points, rng, solution):
    """The points to check at (``at``, or random ones) and grad L = 0 solved there
    (``solution``, when it was solved at ``at`` already)."""
    leaves = graph.inputs + graph.constants
    if at is not None:
        given = read_values(graph, at) if solution is None else solution.environment
        at_points = [{s: v for s, v in given.items() if s in leaves}]
    else:
        at_points = [random_point(graph, rng) for _ in range(points)]
    if solution is not None and at is not None:  # solved at ``at`` already
        return at_points, [solution]
    return at_points, [solve(graph, p) for p in at_points]


def _verify_prices(graph, at, points, rtol, rng, solution) -> VerifyReport:
    """For a graph with implicit nodes: each multiplier is the price of its constraint,
    ``<lambda_j, v> = d z_n / d s`` when the constraint of ``z_j`` is loosened by ``s v``
    (``r_j = s v`` for an implicit node, ``z_j = f_j + s v`` for an explicit one, ``x +
    s v`` for an input), by differences of the forward sweep with Newton's method."""
    at_points, solutions = _solved_points(graph, at, points, rng, solution)
    kinked = _behind_kinks(graph, solutions)
    output = graph.output
    tolerance = max(rtol, 1e-5)
    checks = []
    for z in graph.nodes:
        worst, method, lam, expected = 0.0, "price", math.nan, math.nan
        for sol in solutions:
            if not (np.all(np.isfinite(sol.values[z])) and np.all(np.isfinite(sol.output))):
                worst, method = math.inf, "undefined"
                break
            env = dict(sol.environment)
            v = _step({z: sol.values[z]}, rng, scaled=True)[z]
            lam = float(np.sum(sol.adjoints[z] * v))
            reference = differences(
                lambda h, env=env, z=z, v=v: forward_sweep(graph, env, {z: h * v})[output]
            )
            expected = float(reference.value)
            error, verdict, _ = judge(lam, reference, tolerance)
            if verdict == "inconclusive":
                method = "inconclusive"
            worst = max(worst, error if verdict != "wrong" else max(error, math.inf))
        if method == "inconclusive" and worst <= tolerance:
            method = "price"
        ok = method == "price" and worst <= tolerance and z not in kinked
        if method == "price" and z in kinked:
            method = "kink"
        checks.append(NodeCheck(z, lam, expected, method, worst, ok))
    return VerifyReport(tuple(checks), tuple(at_points))


def _behind_kinks(graph, solutions) -> set:
    """The nodes whose multiplier went through a partial taken at a kink: the argument
    of each kinked partial and everything it reads."""
    stack = [k.argument for sol in solutions for k in sol.kinks]
    seen = set(stack)
    while stack:
        for p in graph.parents(stack.pop()):
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return seen


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
        size[i] = _tree_size(graph.expr(i), parents, size)
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
            size[i] = _tree_size(graph.expr(i), graph.parents(i), size)
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


#: Differences larger than this (in operations) are not simplified: simplify's cost
#: grows much faster than the expression, and the check at points decides as well.
SIMPLIFY_LIMIT = 60


def _tree_size(f, parents, size) -> int:
    """The size of ``f`` with its parents composed in, as a tree: a parent read twice
    (``sin(z) z``) counts twice, so a chain of such nodes doubles at every step, as
    sympy's diff and printers, which walk trees, see it."""
    total = sp.count_ops(f) + 1
    for p in parents:
        total += size.get(p, 1) * max(f.count(p), 1)
    return total


def _symbolically_equal(a, b) -> bool:
    difference = a - b
    if difference == 0:
        return True
    if sp.count_ops(difference) > SIMPLIFY_LIMIT:
        return False  # checked at points instead ("derivative")
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


#: Steps for verify's differences: each re-runs the constraints downstream of a node.
VERIFY_STEPS = tuple(0.1 / 4**k for k in range(2, 7))


def _difference(graph, z, constraints, env, sol, direction) -> Differences:
    """``<d z_n / d z, direction>`` by the induction of Theorem 16.1's proof: the readers'
    multipliers (each checked at its own node) times differences of the readers'
    constraints alone, ``sum_i <lambda_i, d f_i / d z [direction]>`` (``<1, direction>``
    at the output). Each node costs its own edges: the whole check is linear in the
    graph, where re-running everything downstream of every node was quadratic."""
    if z == graph.output:
        total = np.asarray(float(np.sum(direction)))
        return Differences(total, np.zeros(()), VERIFY_STEPS[0], True)
    readers = [(c, sol.adjoints[c.unknown]) for c in constraints[z]]
    readers = [(c, lam) for c, lam in readers if np.any(lam)]

    def phi(h):
        moved = ChainMap({z: env[z] + h * direction}, env)  # no copy of env per step
        return sum(float(np.sum(lam * c.solve(moved))) for c, lam in readers)

    return differences(phi, VERIFY_STEPS)


# -- checks of the gradient against the function itself ------------------------
#
# Differences lose digits at a critical point, beside a pole, across inputs of
# different scales and on linear functions. A checker that calls a right answer wrong
# there teaches a class to ignore it, so each difference comes with a bound on its own
# truncation and rounding error, and an answer is judged only against that bound:
# "agrees" within it, "wrong" when the disagreement is well beyond it, and otherwise
# "inconclusive", with the reason.

#: The steps of the differences, relative to each entry's own scale (|x|, or 1 at 0).
STEPS = tuple(0.1 / 4**k for k in range(9))
_EPS = float(np.finfo(float).eps)


@dataclass(frozen=True)
class Differences:
    """A derivative along a direction by central differences, Richardson-extrapolated
    over several steps, with a bound on its error (per entry)."""

    value: np.ndarray
    bound: np.ndarray
    step: float  # the step whose estimate was kept; nan when none was finite
    resolved: bool  # whether the estimates settled as the step shrank


def differences(phi, steps: tuple[float, ...] = STEPS) -> Differences:
    """``phi'(0)`` for ``phi`` (numbers or arrays of ``t``), with an error bound.

    With steps in ratio 4, ``(16 D(h/4) - D(h)) / 15`` cancels the ``h**2`` term of the
    central difference ``D``; the change between neighbouring estimates bounds the
    truncation error left, and ``eps |phi| / h`` the rounding error. The step with the
    smallest bound is kept.
    """
    central = []
    for h in steps:
        with np.errstate(all="ignore"):
            plus, minus = np.asarray(phi(h), dtype=float), np.asarray(phi(-h), dtype=float)
            central.append(((plus - minus) / (2 * h), np.maximum(abs(plus), abs(minus)) / h))
    with np.errstate(all="ignore"):
        richardson = [
            ((16 * central[k + 1][0] - central[k][0]) / 15, central[k + 1][1])
            for k in range(len(central) - 1)
        ]
    # The derivative being checked carries rounding of its own, of the order of the
    # function's size over the region probed: a floor under every bound.
    sizes = [size * h for (_, size), h in zip(central, steps)]
    with np.errstate(all="ignore"):
        floor = 10 * _EPS * np.nanmax([np.where(np.isfinite(m), m, np.nan) for m in sizes], axis=0)
    floor = np.where(np.isfinite(floor), floor, 0.0) / steps[0]
    best = None
    changes = [
        float(np.max(abs(richardson[k + 1][0] - richardson[k][0])))
        for k in range(len(richardson) - 1)
    ]
    for k in range(2, len(richardson) - 1):
        (a, _), (b, size), (c, _) = richardson[k - 1], richardson[k], richardson[k + 1]
        with np.errstate(all="ignore"):
            rounding = 100 * _EPS * size + floor
            bound = np.maximum(abs(a - b), abs(b - c)) + rounding
            # Resolved: the estimates settle as the step shrinks (each of the last two
            # changes a quarter of the one before, where Richardson's h**4 gives 1/256),
            # or agree to rounding. Steps too coarse for the function (sin(1e8 x)) give
            # estimates that jump about, and can look steady for one step by chance.
            level = 10 * float(np.max(rounding))
            resolved = all(
                changes[m] <= changes[m - 1] / 4 or changes[m] <= level for m in (k - 1, k)
            )
        if not (np.all(np.isfinite(b)) and np.all(np.isfinite(bound))):
            continue
        key = (not resolved, float(np.max(bound)))
        if best is None or key < best[0]:
            best = key, Differences(b, bound, steps[k + 1], resolved)
    if best is None:
        shape = np.shape(central[0][0])
        return Differences(np.full(shape, np.nan), np.full(shape, np.inf), math.nan, False)
    return best[1]


def judge(got, reference: Differences, rtol: float) -> tuple[float, str, str]:
    """``(relative error beyond the bound, verdict, why)`` for a derivative ``got``
    against differences; the verdict is "agrees", "wrong" or "inconclusive".

    The error is what is left of ``|got - differences|`` once the differences' own
    error bound (twice over) is taken off, relative to the larger of the two. A shape
    mismatch or a value that is not a number is wrong, never broadcast into a pass.
    """
    got = np.asarray(got, dtype=float)
    ref, bound = reference.value, reference.bound
    if got.shape != ref.shape:
        return math.inf, "wrong", f"a derivative of shape {got.shape}, expected {ref.shape}"
    if not np.all(np.isfinite(got)):
        return math.inf, "wrong", "the derivative is not a number"
    if not math.isfinite(reference.step):
        return math.inf, "inconclusive", "the function is not finite at any step near the point"
    gap = np.abs(got - ref)
    scale = max(float(np.max(np.abs(got), initial=0.0)), float(np.max(np.abs(ref), initial=0.0)))
    # A bound is trusted only where the differences settled: elsewhere it says nothing,
    # and only a plain agreement counts.
    allowance = 2 * bound if reference.resolved else 0.0
    excess = float(np.max(np.maximum(gap - allowance, 0.0), initial=0.0))
    error = 0.0 if excess == 0 else (excess / scale if scale > 0 else math.inf)
    if error <= rtol:
        return error, "agrees", ""
    if reference.resolved and float(np.max(gap)) > 10 * float(np.max(bound)):
        return error, "wrong", ""
    if not reference.resolved:
        return (
            error,
            "inconclusive",
            (
                "the differences do not settle as the step shrinks: the function varies on a "
                "scale finer than the smallest step, or is not smooth here"
            ),
        )
    return (
        error,
        "inconclusive",
        (
            f"differences resolve the derivative only to {float(np.max(bound)):.2g}, no better "
            f"than the disagreement {float(np.max(gap)):.2g}"
        ),
    )


@dataclass(frozen=True)
class _Verdicts:
    """What :class:`GradientCheck` and :class:`HvpCheck` share: a verdict per
    direction ("agrees", "wrong" or "inconclusive"), and the reasons."""

    errors: tuple[float, ...]  # relative error along each direction, beyond the bound
    rtol: float
    verdicts: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def max_rel_error(self) -> float:
        return max(self.errors, default=0.0)

    def to_dict(self) -> dict:
        """As plain data (:func:`adjoint.core.records.plain`)."""
        fields = {f: getattr(self, f) for f in ("errors", "rtol", "verdicts", "reasons")}
        return {"ok": self.ok, "max_rel_error": plain(self.max_rel_error), **plain(fields)}

    @property
    def ok(self) -> bool:
        """Every direction agrees with its differences."""
        if self.verdicts:
            return all(v == "agrees" for v in self.verdicts)
        return self.max_rel_error <= self.rtol

    @property
    def wrong(self) -> bool:
        """Some direction disagrees by more than the differences' own error."""
        if self.verdicts:
            return "wrong" in self.verdicts
        return not self.ok

    @property
    def inconclusive(self) -> bool:
        """Not wrong, but some direction could not be decided by differences."""
        return not self.ok and not self.wrong

    def _status(self, what: str) -> str:
        n = len(self.errors)
        if self.ok:
            status = f"{what} agrees with differences along {n} directions"
        elif self.wrong:
            wrong = self.verdicts.count("wrong") if self.verdicts else n
            status = f"{what} DISAGREES with differences along {wrong} of {n} directions"
        else:
            why = next((r for r in self.reasons if r), "")
            status = f"{what}: INCONCLUSIVE along some of {n} directions ({why})"
        return f"{status}: worst relative error {self.max_rel_error:.2g} (tolerance {self.rtol:g})"


class GradientCheck(_Verdicts):
    """Central differences along random directions against ``<gradient, v>``."""

    def __repr__(self) -> str:
        return self._status("the gradient")


class HvpCheck(_Verdicts):
    """The Hessian-vector product against differences of the gradient."""

    def __repr__(self) -> str:
        return self._status("the Hessian-vector product")


def _function_and_gradient(graph, at):
    """``f`` as a function of the inputs (Step 1, the forward sweep: not the code
    generator, so that a program's mistake cannot agree with itself), the point, and
    the gradient there from solving ``grad L = 0``."""
    env = read_values(graph, at)
    x0 = {x: env[x] for x in graph.inputs}
    given = {**{c: env[c] for c in graph.constants}, **{d: env[d] for d in graph.dims}}
    output = graph.output

    def f(x):  # a scalar, or a 1 x 1 matrix (x.T*x)
        return float(np.asarray(forward_sweep(graph, {**given, **x})[output]).item())

    return f, x0, solve(graph, at).gradient


def _step(x0, rng, scaled: bool = False):
    """A random direction; ``scaled``: each entry times its own scale (``|x|``, or 1
    where x is 0 or so close to it, below 1e-100, that a step of |x| would not move x
    at all), so that inputs of different sizes move alike in relative terms."""
    v = {x: rng.standard_normal(np.shape(value)) for x, value in x0.items()}
    if scaled:
        for x, value in x0.items():
            size = np.abs(np.asarray(value, dtype=float))
            v[x] = v[x] * np.where(size > 1e-100, size, 1.0)
    return v


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

    Along each random direction ``v`` (every entry scaled by its own size), compares
    ``<gradient, v>`` with differences of ``f`` along ``v``, extrapolated over several
    steps with a bound on their own error (:func:`differences`). A direction agrees
    when the two differ by no more than ``rtol`` beyond that bound, is wrong when they
    differ by far more than it, and is inconclusive otherwise (``report.inconclusive``,
    with the reason): never called wrong where differences cannot tell.

    Examples
    --------
    >>> import sympy as sp
    >>> from adjoint import Graph, check_gradient
    >>> g = Graph.from_expr("sin(x*y) + x^2")
    >>> check_gradient(g, at={"x": 1.5, "y": -2.0}).ok
    True
    >>> check_gradient(Graph.from_expr("x^3 - 3*x"), at={"x": 1.0}).ok   # f'(1) = 0
    True
    """
    rng = np.random.default_rng(seed)
    f, x0, gradient = _function_and_gradient(graph, at)
    errors, verdicts, reasons = [], [], []
    for _ in range(directions):
        v = _step(x0, rng, scaled=True)
        # Along v, and along v restricted to each input in turn (up to 20 of them): a
        # wrong gradient of a small input must not hide behind a large one.
        parts = [v] if len(v) == 1 or len(v) > 20 else [v, *({x: v[x]} for x in v)]
        for u in parts:
            u = {x: u.get(x, np.zeros(np.shape(v[x]))) for x in v}
            reference = differences(lambda h, u=u: f(_moved(x0, u, h)))
            error, verdict, why = judge(_inner(gradient, u), reference, rtol)
            errors.append(error)
            verdicts.append(verdict)
            reasons.append(why)
    return GradientCheck(tuple(errors), rtol, tuple(verdicts), tuple(reasons))


@dataclass(frozen=True)
class TaylorTest:
    """Remainders ``|f(x + h v) - f(x) - h <g, v>|`` for shrinking ``h``.

    ``scales`` holds, per step, the size of the numbers whose difference the remainder
    is (``|f(x + h v)|``, ``|f(x)|``, ...): a remainder within rounding of them says
    nothing about a rate, and is left out of :attr:`resolved`.
    """

    steps: tuple[float, ...]
    remainders: tuple[float, ...]
    order: int = 1
    scales: tuple[float, ...] = ()

    def to_dict(self) -> dict:
        """As plain data (:func:`adjoint.core.records.plain`), with the rates."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return plain({**fields, "rates": self.rates})

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

    def _above_rounding(self) -> list[bool]:
        scales = self.scales or (0.0,) * len(self.remainders)
        return [r > 1e3 * _EPS * s for r, s in zip(self.remainders, scales)]

    @property
    def resolved(self) -> tuple[float, ...]:
        """The rates between remainders both above rounding level: the ones judged."""
        above = self._above_rounding()
        return tuple(
            r for k, r in enumerate(self.rates) if above[k] and above[k + 1] and math.isfinite(r)
        )

    @property
    def reason(self) -> str:
        """Why the test passed or failed, in words."""
        above, rates = self._above_rounding(), self.resolved
        if not all(math.isfinite(r) for r in self.remainders):
            return "a remainder is not a number: the derivative or f is nan or of the wrong shape"
        if not any(above):
            return "every remainder is at rounding level: the expansion is exact to rounding"
        if not rates:
            return (
                "inconclusive: too few remainders above rounding level to measure a rate "
                "(try a larger h0)"
            )
        median = float(np.median(rates))
        return f"median rate {median:.2f} over {len(rates)} resolved steps"

    @property
    def ok(self) -> bool:
        above, rates = self._above_rounding(), self.resolved
        if not all(math.isfinite(r) for r in self.remainders):
            return False  # never a pass computed through a nan
        if not any(above):
            return True
        return bool(rates) and float(np.median(rates)) > self.order + 0.8

    @property
    def inconclusive(self) -> bool:
        """Not judged: the remainders are numbers, but no two neighbours lie above
        rounding level, so no rate can be measured (a larger ``h0`` may give one)."""
        finite = all(math.isfinite(r) for r in self.remainders)
        return finite and any(self._above_rounding()) and not self.resolved

    @property
    def wrong(self) -> bool:
        """Judged and failed: a rate below ``order + 0.8``, or a remainder not a number."""
        return not self.ok and not self.inconclusive

    def __repr__(self) -> str:
        rows = [f"  h = {h:.3g}: remainder {r:.3g}" for h, r in zip(self.steps, self.remainders)]
        rates = ", ".join(f"{r:.2f}" for r in self.rates)
        what = "the gradient is" if self.order == 1 else "the gradient and Hessian are"
        return "\n".join(
            [
                f"Taylor test: rates {rates} ({self.order + 1} when {what} right, "
                f"{self.order} when not); {self.reason}",
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
    is right, 2 when not. Remainders at rounding level of the values involved are not
    used for rates (``report.reason`` says how many were).

    Examples
    --------
    >>> from adjoint import Graph, taylor_test
    >>> report = taylor_test(Graph.from_expr("exp(x) * y"), at={"x": 0.3, "y": 2.0})
    >>> report.ok, round(report.rates[-1])
    (True, 2)
    """
    if order not in (1, 2):
        raise AdjointError(f"order must be 1 or 2, got {order!r}")
    rng = np.random.default_rng(seed)
    f, x0, gradient = _function_and_gradient(graph, at)
    v = _step(x0, rng)
    f0, slope = f(x0), _inner(gradient, v)
    curvature = _inner(hvp(graph, at, v), v) if order == 2 else 0.0
    hs = tuple(h0 / 2**k for k in range(steps))
    remainders, scales = [], []
    for h in hs:
        terms = (f(_moved(x0, v, h)), -f0, -h * slope, -h * h / 2 * curvature)
        remainders.append(abs(math.fsum(terms)))
        scales.append(max(abs(t) for t in terms))
    return TaylorTest(hs, tuple(remainders), order, tuple(scales))


#: Steps for differences of the gradient: each needs a solve, so fewer of them.
HVP_STEPS = STEPS[:7]


def check_hvp(
    graph, at: Mapping, *, directions: int = 3, rtol: float = 1e-5, seed: int = 0
) -> HvpCheck:
    """``H v`` from the second-order sweeps against differences of the gradient from
    Step 2 along ``v`` (every entry scaled by its own size), extrapolated over several
    steps with a bound on their error, as :func:`check_gradient` does; a direction is
    judged on the whole vector ``H v``, relative to its largest entry.

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

    def flat(gradient) -> np.ndarray:
        return np.concatenate([np.ravel(np.asarray(gradient[x], dtype=float)) for x in x0])

    errors, verdicts, reasons = [], [], []
    for _ in range(directions):
        v = _step(x0, rng, scaled=True)
        hv = hvp(graph, at, v)
        if any(np.shape(hv[x]) != np.shape(x0[x]) for x in x0):
            errors.append(math.inf)
            verdicts.append("wrong")
            reasons.append("a Hessian-vector product of the wrong shape")
            continue
        reference = differences(
            lambda h, v=v: flat(solve(graph, {**data, **_moved(x0, v, h)}).gradient),
            HVP_STEPS,
        )
        error, verdict, why = judge(flat(hv), reference, rtol)
        errors.append(error)
        verdicts.append(verdict)
        reasons.append(why)
    return HvpCheck(tuple(errors), rtol, tuple(verdicts), tuple(reasons))


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
