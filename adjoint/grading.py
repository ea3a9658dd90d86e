"""Grading hand-derived adjoints, for course assignments.

A student writes, for each node ``z_j``, a formula for ``lambda_j`` in the graph's
own symbols, the z's and the lambda's, as the lecture's Step 2 does. Each formula
is checked against the stationarity condition ``dL/dz_j = 0`` *with the correct
multipliers of the children substituted*, so a node is marked wrong only for its
own mistake, not for one made further down the reverse order. Formulas are
compared symbolically, and else numerically at random points of the forward
solution (so ``1 - A**2`` for ``tanh'(H)`` counts as right: Step 1 makes
``A = tanh(H)``).

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
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from .checks import random_point
from .errors import AdjointError
from .lagrangian import stationarity
from .numeric import NoNumericRule, numeric_function
from .solve import solve
from .values import read_values

__all__ = ["AdjointGrade", "Grading", "check_adjoints"]

CORRECT, WRONG, MISSING = "correct", "wrong", "missing"


@dataclass(frozen=True)
class AdjointGrade:
    """The verdict on one submitted multiplier."""

    node: sp.Basic
    status: str  # "correct", "wrong" or "missing"
    message: str
    expected: sp.Expr  # the right-hand side of dL/dz_j = 0, solved for lambda_j
    submitted: sp.Expr | None
    point: dict = field(default_factory=dict)  # input values where the two differ

    def to_dict(self) -> dict:
        return {
            "node": str(self.node),
            "status": self.status,
            "message": self.message,
            "expected": str(self.expected),
            "submitted": None if self.submitted is None else str(self.submitted),
            "point": {str(k): _jsonable(v) for k, v in self.point.items()},
        }


@dataclass(frozen=True)
class Grading:
    """All verdicts, in reverse topological order (the order of Step 2)."""

    grades: tuple[AdjointGrade, ...]

    @property
    def ok(self) -> bool:
        """Every submitted multiplier is right."""
        return not self.wrong

    @property
    def wrong(self) -> tuple[AdjointGrade, ...]:
        return tuple(g for g in self.grades if g.status == WRONG)

    @property
    def missing(self) -> tuple[AdjointGrade, ...]:
        return tuple(g for g in self.grades if g.status == MISSING)

    @property
    def score(self) -> float:
        """The fraction of multipliers that are right (missing ones count as not)."""
        return sum(g.status == CORRECT for g in self.grades) / max(1, len(self.grades))

    def to_json(self) -> str:
        """The verdicts as JSON, for autograders."""
        return json.dumps(
            {"ok": self.ok, "score": self.score, "nodes": [g.to_dict() for g in self.grades]},
            indent=2,
        )

    def __repr__(self) -> str:
        marks = {CORRECT: "ok  ", WRONG: "WRONG", MISSING: "--  "}
        lines = [
            f"{sum(g.status == CORRECT for g in self.grades)} of {len(self.grades)} "
            "multipliers right"
        ]
        lines += [f"  {marks[g.status]} {g.node}: {g.message}" for g in self.grades]
        return "\n".join(lines)


def check_adjoints(
    graph,
    submissions: Mapping,
    *,
    points: int = 3,
    rtol: float = 1e-8,
    seed: int = 0,
) -> Grading:
    """Grade hand-derived multipliers ``lambda_j`` against ``dL/dz_j = 0``.

    Parameters
    ----------
    graph : Graph
    submissions : mapping
        ``{node: formula}``: the node as its symbol, name or multiplier; the
        formula as a sympy expression or text in the graph's symbols (``lambda_z2``
        for a multiplier, ``A.T`` and ``@`` for matrices).
    points : int
        How many random points to compare at, where symbols do not decide.

    Returns
    -------
    Grading
        ``.ok``, ``.wrong`` (each with ``.node``, ``.expected``, ``.submitted``,
        ``.point`` and a message naming the likely mistake), ``.to_json()``.
    """
    if not isinstance(submissions, Mapping):
        raise AdjointError(
            "submissions must be a dict from nodes to formulas, such as {z1: 'lambda_z2*x'}, "
            f"got {type(submissions).__name__}"
        )
    conditions = stationarity(graph).backward_conditions
    extra = [*graph.dims, *(graph.multiplier(z) for z in graph.nodes)]
    given = {}
    for key, formula in submissions.items():
        node = graph.lookup(key)
        if node not in graph.nodes:
            raise AdjointError(f"{node} is a constant: it has no multiplier to submit", node=node)
        what = f"the formula submitted for {graph.multiplier(node)}"
        given[node] = graph.read_expr(formula, node, extra, what)

    rng = np.random.default_rng(seed)
    envs = []
    for _ in range(points):
        point = random_point(graph, rng)
        sol = solve(graph, point)
        env = {**read_values(graph, point), **sol.values}
        env.update({graph.multiplier(z): v for z, v in sol.adjoints.items()})
        envs.append((point, env))

    grades = []
    for c in conditions:
        node = c.wrt
        if node not in given:
            grades.append(AdjointGrade(node, MISSING, "no formula submitted", c.rhs, None))
            continue
        grades.append(_grade(graph, c, given[node], envs, rtol))
    return Grading(tuple(grades))


def _grade(graph, c, submitted, envs, rtol) -> AdjointGrade:
    node, expected = c.wrt, c.rhs
    lam = c.unknown
    shape = getattr(node, "shape", None)
    got_shape = getattr(submitted, "shape", None)
    if shape is not None and got_shape is not None and tuple(got_shape) != tuple(shape):
        return AdjointGrade(
            node,
            WRONG,
            f"{lam} must have the shape of {node}, {shape[0]} x {shape[1]}, but the formula is "
            f"{got_shape[0]} x {got_shape[1]}: check the transposes (Claim 16.2: the adjoints "
            "of C = A B are Lambda_C B^T and A^T Lambda_C)",
            expected,
            submitted,
        )
    if shape is None and not isinstance(submitted, sp.MatrixExpr):
        try:
            if sp.simplify(submitted - expected) == 0:
                return AdjointGrade(node, CORRECT, "right", expected, submitted)
        except Exception:
            pass
    try:
        for point, env in envs:
            want, have = _value(expected, env), _value(submitted, env)
            if not _close(want, have, rtol):
                message = _diagnose(graph, c, submitted, env, want, have, rtol)
                return AdjointGrade(node, WRONG, message, expected, submitted, dict(point))
    except (NoNumericRule, ValueError, TypeError) as exc:
        return AdjointGrade(
            node, WRONG, f"the formula cannot be evaluated ({exc})", expected, submitted
        )
    return AdjointGrade(node, CORRECT, "right", expected, submitted)


def _value(expr, env):
    expr = sp.sympify(expr)
    symbols = sorted((s for s in expr.free_symbols if s in env), key=lambda s: s.name)
    unknown = [s for s in expr.free_symbols if s not in env]
    if unknown:
        raise ValueError(f"it reads {', '.join(map(str, unknown))}, not a symbol of the graph")
    with np.errstate(all="ignore"):
        return np.asarray(numeric_function(symbols, expr)(*[env[s] for s in symbols]), float)


def _close(a, b, rtol) -> bool:
    if np.shape(a) != np.shape(b) and np.size(a) != 1 and np.size(b) != 1:
        return False
    scale = max(1.0, float(np.max(np.abs(a))) if np.size(a) else 1.0)
    return bool(np.all(np.abs(a - b) <= rtol * scale))


def _diagnose(graph, c, submitted, env, want, have, rtol) -> str:
    """Name the likely mistake: lambda_n not 1, a sign, a missing reader, a transpose."""
    lam, node = c.unknown, c.wrt
    if c.seed:
        return (
            f"{lam} must be 1: {node} is the output, and dL/d{node} = 1 - {lam} "
            "(the Lagrangian's z_n term)"
        )
    if _close(want, -have, rtol):
        return f"{lam} has the wrong sign: it is lambda_j = + sum_i lambda_i df_i/dz_j"
    terms = c.contributions
    if 1 < len(terms) <= 8:
        values = [_value(t.expr, env) for t in terms]
        for size in range(len(terms) - 1, 0, -1):
            for subset in itertools.combinations(range(len(terms)), size):
                if _close(sum(values[k] for k in subset), have, rtol):
                    missed = [str(terms[k].reader) for k in range(len(terms)) if k not in subset]
                    readers = ", ".join(str(t.reader) for t in terms)
                    return (
                        f"{lam} misses the contribution of {', '.join(missed)}: {node} is read "
                        f"by {readers}, and every reader i adds lambda_i df_i/d{node} (fan-out)"
                    )
    if isinstance(submitted, sp.MatrixExpr):
        square = [m for m in submitted.atoms(sp.MatrixSymbol) if m.rows == m.cols]
        for m in square:
            try:
                if _close(want, _value(submitted.xreplace({m: m.T}), env), rtol):
                    return f"{lam} has {m} where it needs {m}.T (or the reverse): a transpose"
            except (ValueError, TypeError, NoNumericRule):
                continue
        if np.shape(want) == np.shape(have) and np.ndim(want) == 2 and _close(want, have.T, rtol):
            return f"{lam} is the transpose of the right matrix"
    return (
        f"{lam} differs from the stationarity condition dL/d{node} = 0 "
        f"(at the point given, {_short(have)} instead of {_short(want)})"
    )


def _short(value) -> str:
    value = np.asarray(value)
    return (
        f"{float(value):.6g}"
        if value.size == 1
        else f"an array with |.| = {np.linalg.norm(value):.4g}"
    )


def _jsonable(value):
    value = np.asarray(value)
    if value.size == 1:
        v = float(value)
        return v if math.isfinite(v) else str(v)
    return value.tolist()
