"""Grading hand-derived adjoints, for course assignments and autograders.

A student writes, for each node ``z_j``, a formula for ``lambda_j`` in the graph's
own symbols, the z's and the lambda's, as the lecture's Step 2 does. The formula is
graded as a *function of the readers' multipliers*: it must equal
``[j = n] + sum_i lambda_i df_i/dz_j`` for independent random values of every
``lambda_i`` and at random points of the forward solution, so ``lambda_f*2*z + 3``
is wrong where ``lambda_f*(2*z + 3)`` is right, and a node is marked wrong only for
its own mistake, never for one made further down the reverse order. A formula that
does not mention ``lambda_n`` is graded with ``lambda_n = 1`` (the student
substituted it); one that mentions it must be right as a function of it.

Points are drawn afresh for every grading (from the operating system's randomness
unless a seed is given), with both signs where the constraints allow and at several
scales. Equality is proved symbolically first where that is cheap (``expand`` and
``cancel`` on small expressions), else decided by numbers at the points, so
``1 - A**2`` for ``tanh'(H)`` counts as right: Step 1 makes ``A = tanh(H)``. A
formula that brings in a kink (``Abs``, ``sign``, ``Heaviside``, ...) at a place
where neither the graph nor the condition has one is wrong even where the points
miss it: a bump cannot hide between them.

Each node is graded within a time budget (:class:`adjoint.core.budget.TimeBudget`, the one
the parser keeps too): text is parsed by :func:`adjoint.parse` (never run), sympy work
is bounded by size, and whatever still runs at the budget is stopped, in any thread;
the node is then graded "could not be checked in time".

    >>> import sympy as sp
    >>> from adjoint import Graph, check_adjoints
    >>> g = Graph()
    >>> x = g.input("x")
    >>> a = g.define("a", sp.exp(x))
    >>> f = g.define("f", a * x)
    >>> la, lf = g.multiplier(a), g.multiplier(f)
    >>> grading = check_adjoints(g, {f: 1, a: lf * x, x: la * a})  # forgets lf * a
    >>> grading.ok
    False
    >>> print(grading.wrong[0].message)  # doctest: +ELLIPSIS
    lambda_x misses the contribution of f: x is read by a, f, and every reader i adds ...
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
from sympy.core.function import Application

from ..core.budget import OutOfTime, TimeBudget
from ..core.errors import AdjointError, write_text
from ..core.parsing import spelled_out
from ..core.records import plain
from ..core.values import read_values, relative_error
from ..operations.numeric import numeric_function
from ..operations.primitives import kinked
from ..system.lagrangian import stationarity
from ..system.recurrences import RecurrenceAdjoint, SequenceGradient
from ..system.solve import solve
from ..system.stepped import FreeStep, OutOfSteps, Stepped, step_objects

__all__ = ["AdjointGrade", "Grading", "StepKey", "check_adjoints"]

CORRECT, WRONG, MISSING = "correct", "wrong", "missing"
UNPARSEABLE, UNCHECKED = "unparseable", "unchecked"

#: Symbolic proofs are tried only on differences up to this many operations, with
#: integer powers up to this exponent: ``expand`` stays cheap below both.
SYMBOLIC_OPS, SYMBOLIC_POWER = 60, 8


@dataclass(frozen=True)
class AdjointGrade:
    """The verdict on one submitted multiplier.

    ``status`` is "correct", "wrong", "missing", "unparseable" or "unchecked" (it
    could not be checked in time); ``mistake`` names a wrong one's likely mistake:
    "seed" (lambda_n not 1), "sign", "dropped-multiplier", "missing-term", "transpose",
    "shape", "undefined", "kink", "not-a-function-of-multipliers", "foreign-multiplier"
    or "other".
    """

    node: sp.Basic
    status: str
    message: str
    expected: sp.Expr  # the right-hand side of dL/dz_j = 0, solved for lambda_j
    submitted: sp.Expr | None
    point: dict = field(default_factory=dict)  # values where the two differ
    weight: float = 1.0
    mistake: str | None = None
    seconds: float = 0.0

    @property
    def score(self) -> float:
        """The node's points: its weight when right, else 0."""
        return self.weight if self.status == CORRECT else 0.0

    def to_dict(self) -> dict:
        return {
            "node": str(self.node),
            "status": self.status,
            "mistake": self.mistake,
            "message": self.message,
            "expected": str(self.expected),
            "submitted": None if self.submitted is None else str(self.submitted),
            "point": {str(k): _jsonable(v) for k, v in self.point.items()},
            "score": self.score,
            "max_score": self.weight,
            "seconds": round(self.seconds, 4),
        }


@dataclass(frozen=True)
class Grading:
    """All verdicts, in reverse topological order (the order of Step 2).

    ``seed`` reproduces the points and multipliers drawn (pass it back to
    :func:`check_adjoints` to see a disputed verdict again).
    """

    grades: tuple[AdjointGrade, ...]
    seconds: float = 0.0
    seed: int | None = None

    @property
    def ok(self) -> bool:
        """Every submitted multiplier is right (missing ones are not counted)."""
        return not any(g.status in (WRONG, UNPARSEABLE, UNCHECKED) for g in self.grades)

    @property
    def wrong(self) -> tuple[AdjointGrade, ...]:
        return self._with(WRONG)

    @property
    def missing(self) -> tuple[AdjointGrade, ...]:
        return self._with(MISSING)

    @property
    def unparseable(self) -> tuple[AdjointGrade, ...]:
        return self._with(UNPARSEABLE)

    @property
    def unchecked(self) -> tuple[AdjointGrade, ...]:
        """Nodes that could not be checked within the time budget."""
        return self._with(UNCHECKED)

    def _with(self, status: str) -> tuple[AdjointGrade, ...]:
        return tuple(g for g in self.grades if g.status == status)

    @property
    def points(self) -> float:
        """The weights of the right multipliers, added up."""
        return float(sum(g.score for g in self.grades))

    @property
    def max_points(self) -> float:
        return float(sum(g.weight for g in self.grades))

    @property
    def score(self) -> float:
        """The weighted fraction of multipliers that are right (missing ones count as not)."""
        return self.points / self.max_points if self.max_points else 0.0

    def to_dict(self) -> dict:
        """The verdicts as plain data."""
        return {
            "ok": self.ok,
            "score": self.score,
            "points": self.points,
            "max_points": self.max_points,
            "seed": self.seed,
            "execution_time": round(self.seconds, 4),
            "nodes": [g.to_dict() for g in self.grades],
        }

    def to_json(self) -> str:
        """The verdicts as JSON, for autograders."""
        return json.dumps(
            self.to_dict(),
            indent=2,
            allow_nan=False,
        )

    def to_gradescope(self, path=None, *, visibility: str = "visible") -> dict:
        """Gradescope's ``results.json``: one test per node, scored by its weight.

        Returns the dict and, given ``path``, writes it there as JSON.
        """
        tests = []
        for g in self.grades:
            tests.append(
                {
                    "name": f"lambda for {g.node}",
                    "score": g.score,
                    "max_score": g.weight,
                    "status": "passed" if g.status == CORRECT else "failed",
                    "output": g.message if g.status == CORRECT else f"{g.status}: {g.message}",
                    "visibility": visibility,
                }
            )
        results = {
            "score": self.points,
            "execution_time": round(self.seconds, 3),
            "output": (
                f"{sum(g.status == CORRECT for g in self.grades)} of {len(self.grades)} "
                f"multipliers right: {self.points:g} of {self.max_points:g} points "
                f"(grading seed {self.seed})"
            ),
            "visibility": visibility,
            "tests": tests,
        }
        if path is not None:
            write_text(path, json.dumps(results, indent=2, allow_nan=False))
        return results

    def __repr__(self) -> str:
        marks = {CORRECT: "ok  ", WRONG: "WRONG", MISSING: "--  ", UNPARSEABLE: "PARSE"}
        lines = [
            f"{sum(g.status == CORRECT for g in self.grades)} of {len(self.grades)} "
            f"multipliers right ({self.points:g} of {self.max_points:g} points)"
        ]
        lines += [f"  {marks.get(g.status, 'TIME ')} {g.node}: {g.message}" for g in self.grades]
        return "\n".join(lines)


def check_adjoints(
    graph,
    submissions: Mapping,
    *,
    points: int = 8,
    rtol: float = 1e-7,
    seed: int | None = None,
    weights: Mapping | None = None,
    budget: float | None = 3.0,
    substitute_output: bool = True,
) -> Grading:
    """Grade hand-derived multipliers ``lambda_j`` against ``dL/dz_j = 0``.

    Parameters
    ----------
    graph : Graph
    submissions : mapping
        ``{node: formula}``: the node as its symbol, name or multiplier; the
        formula as a sympy expression or text in the graph's symbols (``lambda_z2``
        for a multiplier, ``A.T`` and ``@`` for matrices). A formula that does not
        parse is graded "unparseable" and the others are still graded. For a
        recurrence, ``"lambda_z[t]"`` (the costate recursion), ``"lambda_z[T]"`` (its
        terminal condition) and ``"lambda_u[t]"`` (a sequence's gradient) in the
        step notation the package prints (``z[t]``, ``lambda_z[t + 1]``, ``Sum(...,
        (t, 0, T - 1))``); for a linear quadratic control problem, ``"P[t]"``: the
        Riccati step, ``P[t]`` in terms of ``P[t + 1]``, with the optimal cost-to-go
        ``x[t].T*P[t]*x[t]`` (so ``lambda_x[t] = 2 P[t] x[t]``).
    points : int
        How many random points of the forward solution to compare at (each with
        its own random multipliers).
    rtol : float
        The relative tolerance of a numerical comparison.
    seed : int, optional
        Makes the points reproducible; by default they come from the operating
        system's randomness, and :attr:`Grading.seed` records the seed used.
    weights : mapping, optional
        ``{node: points}`` for partial credit; every node weighs 1 by default.
    budget : float or None
        Seconds per node; a node that takes longer is graded "unchecked".
    substitute_output : bool
        Accept a formula with ``lambda_n = 1`` substituted (default). With False,
        every multiplier must be written out.

    Returns
    -------
    Grading
        ``.ok``, ``.wrong`` (each with ``.node``, ``.expected``, ``.submitted``,
        ``.point``, ``.mistake`` and a message naming it), ``.score``,
        ``.to_json()``, ``.to_gradescope()``.

    Raises
    ------
    AdjointError
        When ``submissions`` or ``weights`` is not a mapping, or names a node the
        graph does not have.
    """
    started = time.monotonic()
    if not isinstance(submissions, Mapping):
        raise AdjointError(
            "submissions must be a dict from nodes to formulas, such as {z1: 'lambda_z2*x'}, "
            f"got {type(submissions).__name__}"
        )
    entries = list(_per_node(stationarity(graph).backward_conditions))
    if any(isinstance(k, str) and k.replace(" ", "") == "P[t]" for k in submissions):
        entries.append(_RiccatiEntry(graph, stationarity(graph)))
    keys = _Keys(graph, entries)
    given = {keys(key): formula for key, formula in submissions.items()}
    weight = _weights(graph, weights, keys)
    if not isinstance(points, int) or isinstance(points, bool) or points < 1:
        raise AdjointError(f"points must be a positive integer, got {points!r}")
    if budget is not None and (
        isinstance(budget, bool)
        or not isinstance(budget, (int, float))
        or not (math.isfinite(budget) and budget > 0)
    ):
        raise AdjointError(f"budget must be a positive number of seconds or None, got {budget!r}")
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not 0 < rtol < 1:
        # a grader stricter than the code it grades: never a tolerance that passes anything
        raise AdjointError(f"rtol must be a number between 0 and 1, such as 1e-7, got {rtol!r}")
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
    rng = np.random.default_rng(seed)
    samples = _samples(graph, rng, points)
    extra = [*graph.dims, *(graph.multiplier(z) for z in graph.nodes)]
    kinks = set()
    for z in graph.defined:
        rec = graph.node(z).recurrence
        if rec is not None:  # its step and stage cost, once
            if z == rec.state:
                kinks |= _kink_args(rec.step) | _kink_args(rec.stage or sp.S.Zero)
            continue
        kinks |= _kink_args(graph.residual(z) if graph.is_implicit(z) else graph.expr(z))

    grades = []
    for c in entries:
        node = c.wrt
        w = weight.get(node, 1.0)
        if node not in given:
            why = "no formula submitted"
            if isinstance(node, StepKey) and node.index == "T":
                why = (
                    f"no terminal condition submitted: the costate recursion starts from "
                    f"{node} = {c.rhs} (dL/d{node.state}[T] = 0)"
                )
            grades.append(AdjointGrade(node, MISSING, why, c.rhs, None, weight=w))
            continue
        grade_one = _grade_steps if getattr(c, "stepped", False) else _grade_node
        if isinstance(c, _RiccatiEntry):
            grade_one = _grade_riccati
        clock = time.monotonic()
        node_budget = TimeBudget(budget)
        try:
            with node_budget:
                grade = grade_one(
                    graph,
                    c,
                    given[node],
                    extra,
                    samples,
                    rtol,
                    kinks,
                    w,
                    substitute_output,
                    node_budget,
                )
        except node_budget.expired:
            grade = AdjointGrade(
                node,
                UNCHECKED,
                f"could not be checked in time (the budget is {budget:g} s a node)",
                c.rhs,
                None,
                weight=w,
            )
        grades.append(_timed(grade, time.monotonic() - clock))
    return Grading(tuple(grades), time.monotonic() - started, seed)


class _BlockEntry:
    """One node of an implicit block, graded as its own multiplier: the block's solve
    with ``(dr_B/dz_B)^T``, read at that node."""

    implicit = True

    def __init__(self, condition, k: int):
        self.block, self.k = condition, k
        self.wrt = condition.nodes[k]
        self.unknown = condition.multipliers[k]
        self.seed = condition.seeds[k]
        # the readers of any node of the block: the block's solve reads them all
        self.contributions = tuple(t for ts in condition.contributions for t in ts)

    @property
    def rhs(self):
        """The multiplier solved in symbols where it has a closed form, else the row of
        the block's condition it solves."""
        try:
            return self.block.solved()[self.k]
        except AdjointError:
            return self.block.equations[self.k]

    def solve(self, env, transpose: bool = True):
        return self.block.solve_with(env, transpose)[self.k]

    def unsolved(self, env):
        """The right side alone, as if the coefficient ``dr/dz`` were the identity."""
        return self.block.right_sides(env)[self.k]


def _per_node(conditions):
    """The conditions to grade, one per node: an implicit block by its nodes, a
    recurrence by its costate recursion and terminal condition."""
    for c in conditions:
        if c.implicit:
            yield from (_BlockEntry(c, k) for k in range(len(c.nodes)))
        elif isinstance(c, RecurrenceAdjoint):
            terminal, recursion = c.equations
            name = c.costate_name
            yield _StepEntry(StepKey(c.rec.state, name, "t"), recursion.rhs, True, c)
            yield _StepEntry(StepKey(c.rec.state, name, "T"), terminal.rhs, False, c)
        elif isinstance(c, SequenceGradient):
            yield _StepEntry(c.wrt, c.equations[0].rhs, True, c)
        elif any(t.recurrent for t in c.contributions):
            yield _StepEntry(c.wrt, c.rhs, False, c)
        else:
            yield c


class _Keys:
    """What a submission's keys name, looked up in constant time: a node (by symbol,
    name or multiplier), a recurrence's formulas with the index t (``lambda_z[t]``,
    ``lambda_z[T]``, ``lambda_u[t]``, spelled ``λ_z[t]`` too) or the Riccati step."""

    def __init__(self, graph, entries):
        self.graph, self.stepped, self.recursion = graph, {}, {}
        for e in entries:
            if isinstance(e.wrt, StepKey):
                self.stepped[str(e.wrt)] = e.wrt
                if e.wrt.index == "t":  # the state's name stands for its recursion
                    self.recursion[e.wrt.state] = e.wrt
            elif getattr(e, "per_step", False):  # a sequence's gradient, one per step
                for prefix in ("lambda_", "Lambda_"):
                    self.stepped[f"{prefix}{e.wrt}[t]"] = e.wrt

    def __call__(self, key):
        if isinstance(key, StepKey):
            return key
        if isinstance(key, str) and "[" in key:  # lambda_z[ t ], λ_z[t]: as the package writes
            key = spelled_out(key.strip()).replace(" ", "")
            if key == "P[t]":
                return RICCATI
            if key in self.stepped:
                return self.stepped[key]
            if key.endswith(("[t]", "[T]")):
                raise AdjointError(
                    f"{key} is no costate or per-step gradient of this graph's recurrences",
                    node=key,
                )
        node = self.graph.lookup(key)
        if self.graph.node(node).kind == "constant":
            raise AdjointError(f"{node} is a constant: it has no multiplier to submit", node=node)
        return self.recursion.get(node, node)


def _weights(graph, weights, keys) -> dict:
    if weights is None:
        return {}
    if not isinstance(weights, Mapping):
        raise AdjointError(f"weights must be a dict from nodes to points, got {weights!r}")
    out = {}
    for key, value in weights.items():
        node = keys(key)
        try:  # an int past a float's range (10**400) is no weight either
            number = None if isinstance(value, bool) else float(value)
        except (TypeError, ValueError, OverflowError):
            number = None
        if (
            not isinstance(value, (int, float))
            or number is None
            or not (math.isfinite(number) and number >= 0)
        ):
            raise AdjointError(
                f"the weight of {node} must be a number >= 0, got {value!r}", node=node
            )
        out[node] = number
    return out


def _timed(grade: AdjointGrade, seconds: float) -> AdjointGrade:
    return AdjointGrade(**{**grade.__dict__, "seconds": seconds})


# -- points ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sample:
    point: dict  # the inputs' and constants' values
    env: dict  # those, the nodes' values and the dimensions
    true: dict  # the solved multipliers, by multiplier symbol
    random: dict  # independent random multipliers, by multiplier symbol


def _samples(graph, rng, count: int) -> list[_Sample]:
    """``count`` points with a finite forward solution, spread over the domain: both
    signs and magnitudes from 0.1 to 3 first, positive ones only if those keep failing,
    then the safe [0.5, 1.5]."""
    sizes = {d: 2 + k for k, d in enumerate(graph.dims)}  # distinct: a transpose shows
    tries = 16 * count
    # Signs of scalar inputs balanced over runs of count attempts, so that no input is
    # positive at every point by chance (independent signs: 1 run in 2**count).
    signs = {s: rng.permutation(np.resize([-1.0, 1.0], count)) for s in graph.inputs}
    # The same for the multipliers, drawn independently of the point: half of the points
    # give each a negative value, so that a formula right for one sign only shows.
    lam_signs = {z: rng.permutation(np.resize([-1.0, 1.0], count)) for z in graph.nodes}
    out = []
    for attempt in range(tries):
        if len(out) == count:
            break
        phase = 3 * attempt // tries  # 0: both signs, 1: positive, 2: the safe box

        def draw(s, phase=phase, attempt=attempt):
            shape = graph.node(s).shape
            size = () if shape is None else [int(sp.sympify(d).xreplace(sizes)) for d in shape]
            if graph.node(s).steps is not None:  # a sequence: a value per step
                size = [graph.node(s).steps, *size]
            if phase == 2:
                return rng.uniform(0.5, 1.5, size=size)
            value = 10 ** rng.uniform(-1, 0.5, size=size)
            if phase == 0 and s in signs and not np.ndim(value):
                value = value * signs[s][attempt % count]
            elif phase == 0:
                value = value * rng.choice([-1.0, 1.0], size=size)
            return value

        point = {s: _number(draw(s)) for s in graph.inputs + graph.constants}
        try:
            sol = solve(graph, point)
        except AdjointError:
            continue
        if not all(_finite(v) for v in [*sol.values.values(), *sol.adjoints.values()]):
            continue
        env = {**read_values(graph, point), **sol.values}
        true = {graph.multiplier(z): v for z, v in sol.adjoints.items()}
        random = {}
        for z in graph.nodes:
            shape = np.shape(env[z])
            magnitude = 10 ** rng.uniform(-0.5, 0.5, size=shape)
            sign = lam_signs[z][len(out) % count] if not shape else rng.choice([-1.0, 1.0], shape)
            random[graph.multiplier(z)] = _number(magnitude * sign)
        out.append(_Sample(point, env, true, random))
    return out


def _number(value):
    return float(value) if np.ndim(value) == 0 else value


def _finite(value) -> bool:
    try:
        return bool(np.all(np.isfinite(np.asarray(value, dtype=float))))
    except (TypeError, ValueError):
        return False


# -- one node --------------------------------------------------------------------


def _by_name(expr, graph, extra):
    """``expr`` with a student's own symbols (``Symbol('lambda_z2')``, ``Symbol('x')``
    without assumptions) replaced by the graph's symbols of the same name and kind."""
    known = {s.name: s for s in (*graph.nodes, *graph.constants, *extra)}
    renames = {}
    for s in expr.free_symbols:
        mine = known.get(getattr(s, "name", None))
        same_kind = isinstance(s, sp.MatrixSymbol) == isinstance(mine, sp.MatrixSymbol)
        if mine is not None and mine != s and same_kind:
            renames[s] = mine
    return expr.xreplace(renames) if renames else expr


def _grade_node(graph, c, formula, extra, samples, rtol, kinks, weight, substitute, budget):
    node, lam = c.wrt, c.unknown

    def verdict(status, message, submitted=None, point=None, mistake=None):
        return AdjointGrade(
            node, status, message, c.rhs, submitted, dict(point or {}), weight, mistake
        )

    what = f"the formula submitted for {lam}"
    try:
        submitted = graph.read_expr(formula, node, extra, what)
    except AdjointError as exc:
        return verdict(UNPARSEABLE, str(exc))
    except OutOfTime:
        raise
    except Exception as exc:  # sympy refusing a construction (2**Lambda_C), a deep tower
        reason = str(exc) or "sympy cannot build it"
        return verdict(UNPARSEABLE, f"{what} cannot be read ({type(exc).__name__}: {reason})")
    budget.check()  # between steps, where the watching thread may not have run yet
    submitted = _by_name(submitted, graph, extra)
    if submitted.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        return verdict(
            WRONG,
            f"{lam} is undefined: {submitted} (zoo is sympy's complex infinity: a log of 0 "
            "or a division by zero gives an infinite or undefined value)",
            submitted,
            mistake="undefined",
        )
    shape = _shape(node)
    got = _shape(submitted)
    if got != shape and got is not None:
        flip = _transposed(submitted, shape)
        if flip is not None:
            return verdict(
                WRONG,
                f"{lam} has {flip} where it needs {flip}.T (or the reverse): a transpose "
                f"(its shape is {got[0]} x {got[1]}, not that of {node}; Claim 16.2: the "
                "adjoints of C = A B are Lambda_C B^T and A^T Lambda_C)",
                submitted,
                mistake="transpose",
            )
        return verdict(
            WRONG,
            _shape_message(lam, node, shape, got),
            submitted,
            mistake="transpose" if shape == got[::-1] else "shape",
        )
    output = graph.multiplier(graph.output)
    fixed = substitute and output not in submitted.free_symbols and not c.seed
    # lambda_n = 1, or [[1]] for a 1 x 1 output (x.T*x)
    matrix = isinstance(output, sp.MatrixSymbol)
    one, one_value = (sp.Identity(1), np.ones((1, 1))) if matrix else (sp.S.One, 1.0)
    expected = c.rhs.xreplace({output: one}) if fixed else c.rhs
    if _proved_equal(submitted, expected):
        return verdict(CORRECT, "right (proved symbolically)", submitted)
    foreign = _kink_args(submitted) - kinks - _kink_args(c.rhs)
    foreign = {a for a in foreign if -a not in kinks and sp.expand(-a) not in kinks}
    if foreign:
        where = ", ".join(sorted(map(str, foreign)))
        return verdict(
            WRONG,
            f"{lam} has a kink or jump (Abs, sign, Heaviside, ...) at {where} = 0, where "
            f"neither the graph nor dL/d{node} has one: it is not the derivative there",
            submitted,
            mistake="kink",
        )
    checked = 0
    for sample in samples:
        budget.check()
        env = {**sample.env, **sample.random}
        if fixed:
            env[output] = one_value
        want = c.solve(env)
        if not _finite(want):
            continue  # the condition is undefined here (a kink): no evidence either way
        try:
            have = _value(submitted, env)
        except _Unreadable as exc:
            return verdict(
                WRONG, f"{lam} cannot be evaluated: {exc}", submitted, mistake="undefined"
            )
        checked += 1
        if np.shape(have) != np.shape(want) and np.size(have) == 1 and shape in (None, (1, 1)):
            have = np.reshape(have, np.shape(want))  # 1 for [[1]]: the same number
        if relative_error(want, have) <= rtol:
            continue
        point = {
            **sample.point,
            **{
                k: v
                for k, v in sample.random.items()
                if k in submitted.free_symbols or k in c.rhs.free_symbols
            },
        }
        if fixed:
            point[output] = one_value
        where = _where(point)
        mistake, message = _diagnose(graph, c, submitted, env, sample, want, have, rtol, where)
        return verdict(WRONG, message, submitted, point, mistake)
    if not checked:
        return verdict(
            UNCHECKED,
            f"could not be checked: dL/d{node} is undefined at every point drawn",
            submitted,
        )
    return verdict(CORRECT, f"right (at {checked} random points and multipliers)", submitted)


# -- recurrences: formulas with the index t ----------------------------------------


@dataclass(frozen=True)
class StepKey:
    """A recurrence's costates as submitted: the recursion ``lambda_z[t]`` (index "t")
    or the terminal condition ``lambda_z[T]`` (index "T")."""

    state: sp.Basic
    name: str  # lambda_z, or Lambda_x for a matrix state
    index: str

    def __str__(self) -> str:
        return f"{self.name}[{self.index}]"


class _StepEntry:
    """A formula of a recurrence, in the step notation: graded on trajectories, at
    several steps when it reads t (``per_step``), with each sum over t evaluated."""

    implicit = recurrent = False
    stepped = True
    seed = 0

    def __init__(self, wrt, expected, per_step: bool, condition):
        self.wrt, self.rhs, self.per_step, self.condition = wrt, expected, per_step, condition
        if isinstance(wrt, StepKey):
            self.unknown = wrt
        elif isinstance(condition, SequenceGradient):
            self.unknown = condition.equations[0].lhs  # lambda_u[t]
        else:
            self.unknown = condition.unknown


class _World:
    """One point to grade at: every stepped name's values over the steps, the rest."""

    def __init__(self, graph, sample, steps):
        self.steps = steps
        self.env = {**sample.env, **sample.random}
        self.series = {}
        for rec in graph.recurrences:
            state = rec.state
            lam = graph.multiplier(state)
            self.series[state.name] = np.asarray(sample.env[state])
            self.series[lam.name] = np.asarray(sample.random[lam])
        for s in (*graph.inputs, *graph.constants):
            if graph.node(s).steps is not None:
                self.series[s.name] = np.asarray(sample.env[s])


def _step_names(graph) -> dict:
    """The names text may index by step: states, costates and sequences."""
    names = {}
    for rec in graph.recurrences:
        names[rec.state.name] = rec.state
        names[graph.multiplier(rec.state).name] = rec.state
    for s in (*graph.inputs, *graph.constants):
        if graph.node(s).steps is not None:
            names[s.name] = s
    return names


def _grade_steps(graph, c, formula, extra, samples, rtol, kinks, weight, substitute, budget):
    node = c.wrt

    def verdict(status, message, submitted=None, point=None, mistake=None):
        return AdjointGrade(
            node, status, message, c.rhs, submitted, dict(point or {}), weight, mistake
        )

    what = f"the formula submitted for {c.unknown}"
    steps = {r.steps for r in graph.recurrences}
    if len(steps) != 1:
        return verdict(UNCHECKED, "recurrences of different lengths are not graded yet", None)
    (T,) = steps
    names = _step_names(graph)
    plain = [s for s in extra if s.name not in names]
    try:
        submitted = graph.read_expr(formula, c.condition.wrt, plain, what, steps=names)
    except AdjointError as exc:
        left_out = _left_out(c.rhs, formula) if "cannot " in str(exc) else []
        if left_out:  # shapes that do not fit, and a factor of the condition not written
            return verdict(
                UNPARSEABLE,
                f"{exc}; {_factor_hint(c, left_out)}",
                mistake="missing-factor",
            )
        return verdict(UNPARSEABLE, str(exc))
    except OutOfTime:
        raise
    except Exception as exc:
        reason = str(exc) or "sympy cannot build it"
        return verdict(UNPARSEABLE, f"{what} cannot be read ({type(exc).__name__}: {reason})")
    submitted = _by_name(submitted, graph, extra)
    output = graph.multiplier(graph.output)
    fixed = substitute and output not in submitted.free_symbols
    try:
        student, expected = Stepped(submitted), Stepped(c.rhs)
    except Exception as exc:
        return verdict(UNPARSEABLE, f"{what} cannot be evaluated ({exc})", submitted)
    unknown = [s for s in student.plain if s not in samples[0].env and s not in samples[0].random]
    if unknown:
        return verdict(
            WRONG,
            f"{c.unknown} reads {', '.join(map(str, unknown))}, not a symbol of the graph",
            submitted,
            mistake="undefined",
        )
    at = sorted({0, T // 2, T - 1}) if c.per_step else [None]
    for sample in samples:
        budget.check()
        world = _World(graph, sample, T)
        if fixed:
            world.env[output] = np.ones((1, 1)) if isinstance(output, sp.MatrixSymbol) else 1.0
        for t in at:
            want = expected(world, t)
            if not _finite(want):
                continue
            try:
                have = student(world, t)
            except FreeStep:
                if isinstance(node, StepKey) and node.index == "T":
                    return verdict(
                        WRONG,
                        f"{c.unknown} is the terminal condition, one value at the last step: "
                        f"{c.unknown} = {c.rhs} (it reads no step t)",
                        submitted,
                        mistake="terminal",
                    )
                return _missing_sum_grade(verdict, c, submitted, world, rtol)
            except OutOfSteps as exc:
                return verdict(
                    WRONG,
                    f"{c.unknown} reads {exc} at t = {t}, a step that does not exist: the "
                    "costate of step t reads lambda[t + 1], the states z[t]",
                    submitted,
                    mistake="time-index",
                )
            except OutOfTime:
                raise
            except Exception as exc:  # whatever the text does: a reason, not a crash
                return verdict(
                    WRONG,
                    f"{c.unknown} cannot be evaluated: {type(exc).__name__}: {exc}",
                    submitted,
                    mistake="undefined",
                )
            if np.shape(have) != np.shape(want) and np.size(have) == np.size(want) == 1:
                have = np.reshape(have, np.shape(want))
            if np.shape(have) == np.shape(want) and relative_error(want, have) <= rtol:
                continue
            where = "" if t is None else f" at t = {t}"
            mistake, message = _step_mistake(c, submitted, world, t, want, have, rtol)
            return verdict(
                WRONG,
                f"{message} (here{where}: {_short(have)} instead of {_short(want)})",
                submitted,
                mistake=mistake,
            )
    steps_checked = "" if at == [None] else f", at steps {', '.join(map(str, at))}"
    return verdict(CORRECT, f"right (on {len(samples)} trajectories{steps_checked})", submitted)


def _missing_sum_grade(verdict, c, submitted, world, rtol):
    """A formula reading the step t where the multiplier is one value: the sum over t
    left out, if its terms match the expected sum's."""
    per_step = c.rhs.replace(lambda e: isinstance(e, sp.Sum), lambda e: e.function).replace(
        lambda e: type(e).__name__ == "StepSum", lambda e: e.args[0]
    )
    try:
        terms = Stepped(per_step)
        student = Stepped(submitted)
        same = all(
            relative_error(terms(world, t), student(world, t)) <= rtol
            for t in sorted({0, world.steps // 2, world.steps - 1})
        )
    except OutOfTime:
        raise
    except Exception:  # the terms cannot be compared: no guess at the mistake
        same = False
    if same:
        return verdict(
            WRONG,
            f"{c.unknown} misses the sum over t: every step reads {c.wrt}, so it adds a part "
            f"from each, {c.unknown} = {c.rhs}",
            submitted,
            mistake="missing-sum",
        )
    return verdict(
        WRONG,
        f"{c.unknown} reads the step t, but it is one value: sum the parts of the steps, "
        "Sum(..., (t, 0, T - 1))",
        submitted,
        mistake="missing-sum",
    )


def _step_mistake(c, submitted, world, t, want, have, rtol) -> tuple[str, str]:
    """The likely mistake of a formula with the index t, and a message naming it."""
    lam = c.unknown
    if isinstance(c.wrt, StepKey) and c.wrt.index == "T" and np.allclose(have, 0):
        return "terminal", (
            f"{lam} is the terminal condition {lam} = {c.rhs}: z_final = z[T] reads the last "
            "state, so dL/dz[T] = 0 gives it; the recursion does not start from 0"
        )
    if np.shape(have) == np.shape(want) and _close(want, -have, rtol):
        return "sign", (
            f"{lam} has the wrong sign: a sign convention. The lecture's costate is "
            "lambda_t = +dJ/dz_t, with L = J - sum_t lambda_{t+1}^T (z_{t+1} - f) and H_t = "
            "l + lambda_{t+1}^T f (CasADi's opti.dual of the dynamics is -lambda_{t+1})"
        )
    for m in _left_out(c.rhs, str(submitted)):  # a factor such as B^T left out
        if m.rows != m.cols:  # then the shapes do not fit, said when the text is read
            continue
        try:
            value = Stepped(c.rhs.xreplace({m: sp.Identity(m.rows)}))(world, t)
        except (FreeStep, OutOfSteps, ValueError, TypeError):
            continue
        if np.shape(value) == np.shape(have) and _close(have, value, rtol):
            return "missing-factor", _factor_hint(c, [m])
    groups: dict = {}
    for obj, (name, index) in step_objects(submitted).items():
        groups.setdefault((name, index), []).append(obj)
    for (name, index), objs in groups.items():
        for shift in (1, -1):
            moved = index + shift
            swap = {
                o: (
                    o.base[moved]
                    if isinstance(o, sp.Indexed)
                    else sp.MatrixSymbol(f"{name}[{moved}]", *o.shape)
                )
                for o in objs
            }
            try:
                value = Stepped(submitted.xreplace(swap))(world, t)
            except (FreeStep, OutOfSteps, ValueError, TypeError):
                continue
            if np.shape(value) == np.shape(want) and _close(want, value, rtol):
                return "time-index", (
                    f"{lam} reads {objs[0]} where {swap[objs[0]]} belongs: a time index off "
                    "by one (the costate of step t reads lambda[t + 1], the multiplier of "
                    "z[t + 1] = f(z[t]); H_t = l(z[t]) + lambda[t + 1]^T f(z[t]))"
                )
    if isinstance(submitted, sp.MatrixExpr):
        for m in [m for m in submitted.atoms(sp.MatrixSymbol) if m.rows == m.cols]:
            try:
                value = Stepped(submitted.xreplace({m: m.T}))(world, t)
            except (FreeStep, OutOfSteps, ValueError, TypeError):
                continue
            if np.shape(value) == np.shape(want) and _close(want, value, rtol):
                return "transpose", f"{lam} has {m} where it needs {m}.T (or the reverse)"
        flipped = np.ndim(want) == 2 and np.shape(want) == np.shape(have)[::-1]
        if flipped and _close(want, np.transpose(have), rtol):
            return "transpose", f"{lam} is the transpose of the right matrix"
    return "other", f"{lam} differs from the stationarity condition {lam} = {c.rhs}"


# -- the Riccati step of a linear quadratic problem ---------------------------------

#: The key of a submitted Riccati step.
RICCATI = StepKey(sp.Symbol("P"), "P", "t")


class _RiccatiEntry:
    """``P[t]`` from ``P[t + 1]``, for a linear quadratic problem. Its reference is
    derived from the conditions of grad L = 0, numerically: with ``lambda[t + 1] = 2
    P[t + 1] x[t + 1]``, ``dL/du[t] = 0`` gives the control (it is affine in it), and the
    costate recursion then gives ``lambda[t] = 2 P[t] x[t]``, column by column."""

    implicit = recurrent = stepped = False
    seed = 0
    wrt = unknown = RICCATI

    def __init__(self, graph, kkt):
        recs = graph.recurrences
        controls = [u for u in (recs[0].reads if len(recs) == 1 else ()) if _is_control(graph, u)]
        if len(recs) != 1 or len(controls) != 1:
            raise AdjointError(
                "P[t], the Riccati step, is graded for one recurrence with one control "
                "(a sequence input its step reads)"
            )
        self.rec, self.control = recs[0], controls[0]
        self.costate = next(c for c in kkt.backward_conditions if isinstance(c, RecurrenceAdjoint))
        self.gradient = next(
            c
            for c in kkt.backward_conditions
            if isinstance(c, SequenceGradient) and c.wrt == self.control
        )
        # x[t + 1], dL/du[t] and lambda[t] in the step notation, compiled once
        self.step = Stepped(self.costate.forward.equations[1].rhs)
        self.control_condition = Stepped(self.gradient.rhs)
        self.recursion = Stepped(self.costate.equations[1].rhs)
        state = self.rec.state
        n = state.shape[0] if isinstance(state, sp.MatrixSymbol) else 1
        self.n, self.matrix = n, isinstance(state, sp.MatrixSymbol)
        self.P = sp.MatrixSymbol("P", n, n) if self.matrix else sp.Symbol("P", real=True)
        self.rhs = sp.Symbol("(P[t] such that lambda[t] = 2 P[t] x[t])")

    def reference(self, world, P_next):
        """``P[t]`` from the package's conditions, at the world's matrices."""
        rec, u = self.rec, self.control
        state, lam = rec.state.name, self.costate.costate_name
        step, control, costate = self.step, self.control_condition, self.recursion
        m = int(np.prod(np.shape(world.series[u.name][0]))) or 1
        shape_u = np.shape(world.series[u.name][0])
        columns = []
        for i in range(self.n):
            x = np.zeros((self.n, 1)) if self.matrix else np.zeros(())
            x.flat[i] = 1.0

            def condition(v, x=x):
                world.series[state] = [x]
                world.series[u.name] = [np.reshape(v, shape_u)]
                after = step(world, 0)
                world.series[lam] = [None, 2 * (P_next @ after if self.matrix else P_next * after)]
                return np.ravel(control(world, 0)), after

            base, _ = condition(np.zeros(m))
            G = np.column_stack([condition(np.eye(m)[k])[0] - base for k in range(m)])
            best = np.linalg.solve(G, -base)
            condition(best)
            columns.append(np.ravel(costate(world, 0)) / 2)
        return np.column_stack(columns) if self.matrix else float(columns[0][0])


def _is_control(graph, u) -> bool:
    node = graph.node(u)
    return node.steps is not None and node.kind == "input"


def _grade_riccati(graph, c, formula, extra, samples, rtol, kinks, weight, substitute, budget):
    def verdict(status, message, submitted=None, mistake=None):
        return AdjointGrade(RICCATI, status, message, c.rhs, submitted, {}, weight, mistake)

    what = "the Riccati step submitted for P[t]"
    plain = [s for s in (*graph.inputs, *graph.constants) if graph.node(s).steps is None]
    try:
        submitted = graph.read_expr(formula, c.rec.state, plain, what, steps={"P": c.P})
    except AdjointError as exc:
        return verdict(UNPARSEABLE, str(exc))
    except OutOfTime:
        raise
    except Exception as exc:
        return verdict(UNPARSEABLE, f"{what} cannot be read ({type(exc).__name__}: {exc})")
    submitted = _by_name(submitted, graph, extra)
    try:
        student = Stepped(submitted)
    except Exception as exc:
        return verdict(UNPARSEABLE, f"{what} cannot be evaluated ({exc})", submitted)
    rng = np.random.default_rng(len(samples))
    for sample in samples:
        budget.check()
        world = _World(graph, sample, c.rec.steps)
        world.env.update(sample.true)  # lambda of the cost: its solved value
        root = rng.normal(size=(c.n, c.n))
        P_next = root @ root.T + np.eye(c.n) if c.matrix else float(1 + rng.uniform())
        world.series["P"] = [np.full_like(np.asarray(P_next), np.nan), P_next]
        try:
            want = c.reference(world, P_next)
        except (np.linalg.LinAlgError, FreeStep, OutOfSteps, ValueError, TypeError):
            continue
        try:
            have = student(world, 0)
        except (FreeStep, OutOfSteps):
            have = np.nan
        if np.any(np.isnan(have)):
            return verdict(
                WRONG,
                "P[t] reads P[t]: the Riccati step runs backward, P[t] from P[t + 1] (the "
                "costate lambda[t] reads lambda[t + 1])",
                submitted,
                "time-index",
            )
        have = np.reshape(have, np.shape(want)) if np.size(have) == np.size(want) else have
        if np.shape(have) == np.shape(want) and relative_error(want, have) <= rtol:
            continue
        mistake, message = (
            "other",
            (
                f"P[t] differs from the step derived from grad L = 0 (here: {_short(have)} "
                f"instead of {_short(want)})"
            ),
        )
        for m in [m for m in submitted.atoms(sp.MatrixSymbol) if m.rows == m.cols and m != c.P]:
            flipped = Stepped(submitted.xreplace({m: m.T}))(world, 0)
            if np.shape(flipped) == np.shape(want) and _close(want, flipped, rtol):
                mistake, message = (
                    "transpose",
                    f"P[t] has {m} where it needs {m}.T (or the reverse)",
                )
                break
        return verdict(WRONG, message, submitted, mistake)
    return verdict(
        CORRECT,
        f"right (against the step derived from grad L = 0, at {len(samples)} points)",
        submitted,
    )


def _left_out(expected, text: str) -> list:
    """The matrix symbols (no value at a step) of ``expected`` that ``text`` never names."""
    found = []
    for m in sorted(expected.atoms(sp.MatrixSymbol), key=lambda m: m.name):
        if "[" in m.name or re.search(rf"(?<![\w.]){re.escape(m.name)}(?!\w)", text):
            continue
        found.append(m)
    return found


def _factor_hint(c, left_out) -> str:
    names = ", ".join(f"{m}" for m in left_out)
    return (
        f"{c.unknown} leaves out {names}: the condition reads {c.unknown} = {c.rhs} (the "
        "partial of the step by what it reads, transposed, times lambda[t + 1])"
    )


def _shape(expr):
    shape = getattr(expr, "shape", None)
    return None if shape is None else tuple(shape)


def _shape_message(lam, node, shape, got) -> str:
    def name(s):
        return "a scalar" if s is None else f"{s[0]} x {s[1]}"

    message = f"{lam} must have the shape of {node}, {name(shape)}, but the formula is {name(got)}"
    if shape is not None and got == shape[::-1]:
        message += (
            ": a transpose (Claim 16.2: the adjoints of C = A B are Lambda_C B^T and A^T Lambda_C)"
        )
    return message


def _transposed(expr, shape):
    """A matrix symbol of ``expr`` whose transpose gives ``expr`` the shape ``shape``."""
    if shape is None:
        return None
    for m in sorted(expr.atoms(sp.MatrixSymbol), key=str):
        try:
            if _shape(expr.xreplace({m: m.T}).doit()) == shape:
                return m
        except Exception:  # sympy's ShapeError for a product that no longer fits
            continue
    return None


def _proved_equal(a, b) -> bool:
    """``a - b`` reduces to 0 by ``expand`` and ``cancel``, tried only on small scalar
    differences: a proof where it is cheap, no verdict otherwise."""
    if isinstance(a, sp.MatrixExpr) or isinstance(b, sp.MatrixExpr):
        return False
    difference = a - b
    if difference == 0:
        return True
    if sp.count_ops(difference) > SYMBOLIC_OPS or any(
        p.exp.is_Number and abs(p.exp) > SYMBOLIC_POWER for p in difference.atoms(sp.Pow)
    ):
        return False
    try:
        return sp.expand(difference) == 0 or sp.cancel(difference) == 0
    except Exception:  # sympy refuses some forms (polys of functions): no proof, no verdict
        return False


def _kink_args(expr) -> set:
    """The arguments of the kinks and jumps in ``expr``: where each one breaks."""
    args = set()
    for k in (a for a in expr.atoms(Application) if kinked(a)):
        if isinstance(k, sp.Piecewise):
            args.add(k)
        elif isinstance(k, (sp.Max, sp.Min)):  # breaks where two arguments tie
            args.update(sp.expand(a - b) for a, b in itertools.combinations(k.args, 2) if a != b)
        else:
            args.update(a for a in k.args if not a.is_number)
    return args


class _Unreadable(Exception):
    pass


def _value(expr, env):
    symbols = sorted(expr.free_symbols, key=lambda s: s.name)
    unknown = [s for s in symbols if s not in env]
    if unknown:
        raise _Unreadable(f"it reads {', '.join(map(str, unknown))}, not a symbol of the graph")
    try:
        fn = numeric_function(symbols, expr)
        with np.errstate(all="ignore"):
            value = fn(*[env[s] for s in symbols])
        value = np.asarray(value, dtype=float)
    except OutOfTime:
        raise
    except ZeroDivisionError:
        raise _Unreadable("it divides by zero at a point where the condition is finite") from None
    except Exception as exc:  # whatever the text does, the node gets a reason, not a crash
        raise _Unreadable(f"{type(exc).__name__}: {exc}") from None
    if not np.all(np.isfinite(value)):
        raise _Unreadable(
            "its value is infinite or undefined (a division by zero or a log of 0) at a point "
            "where the condition is finite"
        )
    return value


def _close(a, b, rtol) -> bool:
    return relative_error(a, b) <= rtol


def _diagnose(graph, c, submitted, env, sample, want, have, rtol, where) -> tuple[str, str]:
    """The likely mistake and a message naming it."""
    lam, node = c.unknown, c.wrt
    if c.seed:
        return "seed", (
            f"{lam} must be 1: {node} is the output, and dL/d{node} = 1 - {lam} "
            "(the Lagrangian's z_n term)"
        )
    if np.shape(have) != np.shape(want):
        return "shape", _shape_message(lam, node, _shape(node), np.shape(have) or None)
    readers = {t.multiplier for t in c.contributions}
    used = {s for s in submitted.free_symbols if s in sample.random}
    if lam in used:
        return "foreign-multiplier", (
            f"{lam} is written in terms of itself: write it with the multipliers of the "
            f"readers of {node} ({', '.join(map(str, readers)) or 'none'})"
        )
    foreign = used - readers
    if foreign:
        return "foreign-multiplier", (
            f"{lam} reads {', '.join(sorted(map(str, foreign)))}, which is not the multiplier "
            f"of a reader of {node}: lambda_{node} = sum over the nodes i that read {node} of "
            f"lambda_i df_i/d{node} ({', '.join(map(str, readers)) or 'none'})"
        )
    if _close(want, -have, rtol):
        return "sign", f"{lam} has the wrong sign: it is lambda_j = + sum_i lambda_i df_i/dz_j"
    if getattr(c, "implicit", False):
        found = _implicit_mistake(c, env, have, rtol)
        if found is not None:
            return found
    found = None if getattr(c, "implicit", False) else _terms_match(c, env, have, rtol)
    if found is not None:
        return found
    found = _swapped(c, submitted, env, want, rtol)
    if found is not None:
        return found
    true_env = {**env, **sample.true}
    try:
        if _close(c.solve(true_env), _value(submitted, true_env), rtol):
            return "not-a-function-of-multipliers", (
                f"{lam} is right at the multipliers' values at this point but not as a "
                f"function of them: each lambda_i must multiply all of df_i/d{node} (a "
                "parenthesis misplaced, or a value put in for a multiplier)"
            )
    except _Unreadable:
        pass
    if isinstance(submitted, sp.MatrixExpr):
        for m in [m for m in submitted.atoms(sp.MatrixSymbol) if m.rows == m.cols]:
            try:
                if _close(want, _value(submitted.xreplace({m: m.T}), env), rtol):
                    return "transpose", (
                        f"{lam} has {m} where it needs {m}.T (or the reverse): a transpose"
                    )
            except _Unreadable:
                continue
        if np.ndim(want) == 2 and _close(want, np.transpose(have), rtol):
            return "transpose", f"{lam} is the transpose of the right matrix"
    return "other", (
        f"{lam} differs from the stationarity condition dL/d{node} = 0 "
        f"(at {where}: {_short(have)} instead of {_short(want)})"
    )


def _implicit_mistake(c, env, have, rtol):
    """The mistakes of the implicit function theorem: ``dr/dz`` not transposed, or left
    out (the block's condition read as if it were explicit)."""
    lam, node = c.unknown, c.wrt
    block = ", ".join(map(str, c.block.nodes))
    try:
        if _close(c.solve(env, transpose=False), have, rtol):
            return "transpose", (
                f"{lam} solves with dr/dz where its transpose belongs: the block ({block}) "
                "gives sum_i (dr_i/dz_j) lambda_i, that is (dr/dz)^T lambda = the right side"
            )
    except AdjointError:
        pass
    if _close(c.unsolved(env), have, rtol):
        return "coefficient", (
            f"{lam} leaves out the coefficient dr/dz of the implicit block ({block}): "
            f"dL/d{node} = 0 reads sum_i (dr_i/d{node}) lambda_i = [j = n] + sum over the "
            "readers outside the block, a solve with (dr/dz)^T"
        )
    return None


def _swapped(c, submitted, env, want, rtol):
    """Two readers' multipliers exchanged (each with the other's partial): the formula
    with them swapped back is right here."""
    lam, node = c.unknown, c.wrt
    used = [t.multiplier for t in c.contributions if t.multiplier in submitted.free_symbols]
    used = list(dict.fromkeys(used))[:6]
    for k, first in enumerate(used):
        for second in used[k + 1 :]:
            if getattr(first, "shape", None) != getattr(second, "shape", None):
                continue
            back = submitted.xreplace({first: second, second: first})
            try:
                if _close(want, _value(back, env), rtol):
                    return "swapped-multipliers", (
                        f"{lam} has {first} and {second} swapped: each reader i of {node} "
                        f"adds its own lambda_i times its own partial df_i/d{node}"
                    )
            except _Unreadable:
                continue
    return None


def _terms_match(c, env, have, rtol):
    """A term of the sum left out, or a multiplier dropped from one, that explains ``have``."""
    lam, node, terms = c.unknown, c.wrt, c.contributions
    if not terms or len(terms) > 6:
        return None
    options = []
    for t in terms:
        full = t.value(env)
        choices = [("full", full), ("missing", 0.0 * full)]
        if np.ndim(env[t.multiplier]) == 0:
            choices.append(("dropped", t.value({**env, t.multiplier: 1.0})))
        options.append(choices)
    for combo in itertools.product(*options):
        if all(kind == "full" for kind, _ in combo):
            continue
        total = c.seed + sum(v for _, v in combo)
        if _close(total, have, rtol):
            missed = [str(t.reader) for t, (kind, _) in zip(terms, combo) if kind == "missing"]
            dropped = [str(t.multiplier) for t, (kind, _) in zip(terms, combo) if kind == "dropped"]
            readers = ", ".join(str(t.reader) for t in terms)
            parts = []
            if missed:
                parts.append(
                    f"{lam} misses the contribution of {', '.join(missed)}: {node} is read by "
                    f"{readers}, and every reader i adds lambda_i df_i/d{node} (fan-out)"
                )
            if dropped:
                parts.append(
                    f"{lam} drops the multiplier {', '.join(dropped)}: each reader's partial "
                    f"df_i/d{node} is multiplied by its lambda_i"
                )
            return ("missing-term" if missed else "dropped-multiplier"), "; ".join(parts)
    return None


def _where(point: dict, limit: int = 8) -> str:
    """A point in words, for a student who sees only the message (Gradescope)."""
    items = [f"{k} = {_short(v)}" for k, v in point.items()]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _short(value) -> str:
    value = np.asarray(value)
    return (
        f"{value.item():.6g}"
        if value.size == 1
        else f"an array with |.| = {np.linalg.norm(value):.4g}"
    )


def _jsonable(value):
    """A point's value for JSON: a number (a 1 x 1 array too), else plain nested lists
    (:func:`adjoint.core.records.plain`: a non-finite entry as "nan" or "inf")."""
    value = np.asarray(value)
    if value.size == 1:
        v = float(value.item())
        return v if math.isfinite(v) else str(v)
    return plain(value)
