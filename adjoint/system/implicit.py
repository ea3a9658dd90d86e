"""Implicit constraints: nodes defined by residuals ``r_i(z) = 0``, alone or in blocks.

Written as residuals the lecture's constraints are ``r_i = z_i - f_i = 0``, and the
same Lagrangian ``L = z_n - sum_i lambda_i r_i`` covers any residual. For a block ``B``
of unknowns (one node that reads itself, or nodes that read each other):

* ``dL/dlambda_i = -r_i = 0`` for ``i`` in B: the forward condition, solved for the
  block by Newton's method (:class:`ImplicitForward`).
* ``dL/dz_j = [j = n] - sum_i lambda_i dr_i/dz_j = 0``. Split into the block's own
  residuals and its readers outside it, with ``df_i/dz_j = -dr_i/dz_j`` for an
  implicit reader,

      sum_{i in B} (dr_i/dz_j) lambda_i = [j = n] + sum_{i in beta(j) - B} lambda_i df_i/dz_j

  one linear system with the transposed Jacobian ``(dr_B/dz_B)^T`` as the coefficient
  on the block's multipliers (:class:`ImplicitAdjoint`): the implicit function theorem,
  derived from ``grad L = 0``. For an explicit node ``dr_i/dz_i = 1`` and it is Step 2.

The block's partials come from the residual's operation, derived once per kind, as for
explicit nodes; the Jacobian at the solution is factorised once and serves both the
last Newton step's check and the backward solve (``lu_solve`` with the transpose). A
residual linear in a matrix unknown, ``M S + C``, is solved directly: one factorisation
of ``M`` for the forward solve and the backward one with ``M^T``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import sympy as sp
from scipy.linalg import lu_solve

from ..core.display import equation, number, text
from ..core.errors import AdjointError
from ..core.records import plain
from ..operations import runtime
from ..operations.matrices import MatrixOperation, tangent
from ..operations.numeric import numeric_function
from ..operations.partials import operation
from .conditions import (
    AdjointCondition,
    Contribution,
    Lazy,
    NumericExpr,
    Role,
    SecondAdjointCondition,
    shaped,
    substitute,
)

__all__ = [
    "Block",
    "ConvergenceError",
    "ImplicitAdjoint",
    "ImplicitForward",
    "ImplicitSecondAdjoint",
    "ImplicitTangent",
    "ResidualContribution",
    "residual_operation",
]

#: A backward solve whose relative residual ||J^T lambda - rhs|| / ||rhs|| is above this
#: is refused: dr/dz is too ill-conditioned here for its multipliers to be trusted.
BACKWARD_TOLERANCE = 1e-8


class ConvergenceError(AdjointError):
    """Newton's method did not solve an implicit block, or its Jacobian is singular."""


@dataclass(frozen=True, repr=False)
class Block:
    """How an implicit block was solved: its nodes, the method (``"newton"`` or
    ``"linear solve"``), Newton's iterations, the final residual's largest entry, the
    backward solve's relative residual ``||J^T lambda - rhs|| / ||rhs||`` (``None``
    before it ran) and the number of LU factorisations used by both."""

    nodes: tuple
    method: str
    iterations: int
    residual: float
    backward_residual: float | None
    factorizations: int

    def to_dict(self) -> dict:
        """As plain data (:func:`adjoint.core.records.plain`)."""
        return plain({f.name: getattr(self, f.name) for f in fields(self)})

    def __repr__(self) -> str:
        back = "-" if self.backward_residual is None else f"{self.backward_residual:.2g}"
        return (
            f"block ({', '.join(map(str, self.nodes))}): {self.method}, {self.iterations} "
            f"step(s), largest residual entry {self.residual:.2g}, backward relative "
            f"residual {back}, {self.factorizations} LU factorisation(s)"
        )


def residual_operation(graph, z):
    """The operation of ``r_z`` in its reads (the block's unknowns among them): a shared
    scalar :class:`~adjoint.operations.partials.Operation`, or a matrix one with its pullbacks. Its
    "own value" is the residual's value, which is what solving passes for it."""
    node = graph.node(z)
    if node.shape is None and all(graph.node(r).shape is None for r in node.reads):
        return operation(node.residual, node.reads)
    # no node's name starts with an underscore: the residual's value is no user's node
    value = (
        sp.MatrixSymbol(f"_residual_{z.name}", *node.shape)
        if node.shape is not None
        else sp.Dummy(f"residual_{z.name}", real=True)
    )
    return MatrixOperation(node.residual, node.reads, graph.multiplier(z), value)


class ResidualContribution(Contribution):
    """``-lambda_i dr_i/dz_j``: what an implicit constraint ``i`` adds to the condition of
    a node ``z_j`` outside its block (``df_i/dz_j`` is ``-dr_i/dz_j``)."""

    __slots__ = ()
    residual = True

    def __repr__(self) -> str:
        return f"ResidualContribution(-lambda_{self.reader} dr_{self.reader}/d{self.node})"

    @property
    def partial(self) -> sp.Expr:
        return self._kept("partial", lambda: -self.op.local(self.k, self.reads, self.multiplier))

    @property
    def expr(self) -> sp.Expr:
        return self._kept(
            "expr", lambda: -self.op.contribution(self.k, self.reads, self.multiplier)
        )

    @property
    def numeric(self) -> sp.Expr:
        raise AdjointError("an implicit constraint has no compiled partial yet")

    @property
    def reuses_output(self) -> bool:
        return False

    def _own(self, env):
        """The residual's value, where the partial is written with it; else nothing: a
        residual read by thousands of nodes is not evaluated once per edge."""
        if not self.op.reuses_output(self.k):
            return None
        return self.op.value([env[s] for s in self.reads], env)

    def value(self, env):
        lam = env[self.multiplier]
        return -self.op.contribution_value(self.k, self.reads, lam, self._own(env), env)

    def partial_value(self, env):
        if self.pullback:
            return None
        return -self.op.local_value(self.k, self.reads, self._own(env), env)

    def second_local(self, m: int) -> sp.Expr:
        return -self.op.second_local(self.k, m, self.reads)

    def second_value(self, m: int, env):
        return -self.op.second_local_value(self.k, m, self.reads, self._own(env), env)


def linear_form(residual, unknown):
    """``(M, C)`` when ``residual`` is ``M S + C`` in the matrix unknown ``S``, with ``M``
    and ``C`` free of it; ``None`` otherwise."""
    terms = residual.args if isinstance(residual, sp.MatAdd) else (residual,)
    holding = [t for t in terms if t.has(unknown)]
    if len(holding) != 1:
        return None
    term = holding[0]
    rows = unknown.shape[0]
    if term == unknown:
        coefficient = sp.Identity(rows)
    elif (
        isinstance(term, sp.MatMul)
        and term.args[-1] == unknown
        and not any(a.has(unknown) for a in term.args[:-1])
    ):
        coefficient = sp.MatMul(*term.args[:-1]) if len(term.args) > 2 else term.args[0]
        if not isinstance(coefficient, sp.MatrixExpr):
            coefficient = sp.MatMul(coefficient, sp.Identity(rows))
    else:
        return None
    rest = [t for t in terms if t is not term]
    constant = sp.MatAdd(*rest) if rest else sp.ZeroMatrix(*unknown.shape)
    return coefficient, constant


class _Evaluator:
    """A matrix expression as a numeric function of the nodes it reads."""

    def __init__(self, expr, reads):
        self.reads = tuple(r for r in reads if expr.has(r))
        self.op = MatrixOperation(expr, self.reads, sp.Dummy(), sp.Dummy())

    def __call__(self, env):
        value = self.op.value([env[r] for r in self.reads], env)
        return np.asarray(value, dtype=float)


class Linearization:
    """``dr_B/dz_B`` of a block at a point, factorised once: it solves with the Jacobian
    (the tangent sweep) and with its transpose (the backward sweeps). For a matrix node
    the right sides have the node's shape; for a block of scalars they are vectors."""

    __slots__ = ("coefficient", "lu", "shape")

    def __init__(self, coefficient, lu, shape):
        self.coefficient = coefficient  # J (N x N), or M for a residual M S + C
        self.lu = lu
        self.shape = shape

    def _layout(self, b):
        b = np.asarray(b, dtype=float)
        if self.coefficient.shape[0] == int(np.prod(self.shape)):
            return b.reshape(-1)  # J acts on the entries, row-major
        return b.reshape(self.shape)  # M acts on the columns of S

    def solve(self, b, transpose: bool = False):
        x = lu_solve(self.lu, self._layout(b), trans=int(transpose), check_finite=False)
        return x.reshape(np.shape(b))

    def apply(self, x, transpose: bool = False):
        A = self.coefficient.T if transpose else self.coefficient
        return (A @ self._layout(x)).reshape(np.shape(x))


class ImplicitForward(Lazy):
    """``dL/dlambda_i = -r_i = 0`` for every residual of a block: ``r_B(z_B, ...) = 0``,
    solved for the block's unknowns by Newton's method (a matrix residual linear in its
    unknown, ``M S + C``, by one factorisation of ``M``)."""

    role = Role.FORWARD
    seed = 0
    implicit, recurrent = True, False
    __slots__ = (
        "block",
        "form",
        "guesses",
        "iterations",
        "linear",
        "ops",
        "reads",
        "reads_of",
        "residuals",
        "tolerance",
        "wrt",
    )

    def __init__(self, graph, block, ops):
        records = [graph.node(z) for z in block]
        self.block = tuple(block)
        self.residuals = tuple(r.residual for r in records)
        self.wrt = tuple(graph.multiplier(z) for z in block)
        self.ops = tuple(ops)
        self.reads_of = tuple(r.reads for r in records)
        self.reads = tuple(
            dict.fromkeys(s for reads in self.reads_of for s in reads if s not in self.block)
        )
        self.guesses = tuple(r.rule.guess for r in records)
        self.tolerance, self.iterations = records[0].rule.tolerance, records[0].rule.iterations
        self.linear = self.form = None
        if isinstance(self.block[0], sp.MatrixSymbol):
            self.form = linear_form(self.residuals[0], self.block[0])  # (M, C) in M S + C
            if self.form is not None:
                self.linear = tuple(_Evaluator(e, self.reads) for e in self.form)
        self._memo = None

    def __repr__(self) -> str:
        return f"ImplicitForward({', '.join(f'{text(r)} = 0' for r in self.residuals)})"

    @property
    def matrix(self) -> bool:
        return isinstance(self.block[0], sp.MatrixSymbol)

    @property
    def nodes(self) -> tuple:
        return self.block

    @property
    def unknown(self):
        """The unknown (a node), or a column of them for a block."""
        return self.block[0] if len(self.block) == 1 else sp.Matrix(self.block)

    @property
    def lhs(self):
        """The residual (a column of them for a block), which the condition sets to 0."""
        return self.residuals[0] if len(self.block) == 1 else sp.Matrix(self.residuals)

    @property
    def rhs(self):
        if self.matrix:
            return sp.ZeroMatrix(*self.block[0].shape)
        return sp.Integer(0) if len(self.block) == 1 else sp.zeros(len(self.block), 1)

    @property
    def equations(self) -> list:
        """One ``r_i = 0`` per residual."""
        zero = self.rhs if self.matrix else sp.Integer(0)
        return [equation(r, zero) for r in self.residuals]

    @property
    def eq(self):
        return self._kept("eq", lambda: equation(self.lhs, self.rhs))

    @property
    def residual(self):
        """``dL/dlambda``: minus the residual."""
        return -self.lhs

    @property
    def method(self) -> str:
        return "linear solve" if self.linear is not None else "newton"

    def name(self) -> str:
        return f"the implicit block ({', '.join(map(str, self.block))})"

    # -- numbers ------------------------------------------------------------

    def shape_at(self, env):
        if not self.matrix:
            return (len(self.block),)
        return tuple(int(sp.sympify(d).xreplace(env)) for d in self.block[0].shape)

    def _put(self, env, x, shape):
        if self.matrix:
            env[self.block[0]] = x.reshape(shape)
        else:
            for z, v in zip(self.block, x):
                env[z] = float(v)

    def residual_values(self, env, shift):
        if self.matrix:
            op, reads = self.ops[0], self.reads_of[0]
            r = np.asarray(op.value([env[s] for s in reads], env), dtype=float)
            if shift:
                r = r - shift[0]
            return r.ravel(), [r]
        values = [
            float(op.value([env[s] for s in reads], env))
            for op, reads in zip(self.ops, self.reads_of)
        ]
        own = list(values)
        if shift:
            values = [v - s for v, s in zip(values, shift)]
        return np.array(values), own

    def jacobian(self, env, own, shape) -> np.ndarray:
        """``dr/dz`` of the block at ``env`` (``own``: the residuals' values)."""
        if self.matrix:
            op, reads = self.ops[0], self.reads_of[0]
            k = reads.index(self.block[0])
            size = int(np.prod(shape))
            J = np.empty((size, size))
            unit = np.zeros(shape)
            for row in range(size):  # row k of J is the pullback of the k-th unit matrix
                unit.flat[row] = 1.0
                J[row] = np.asarray(op.contribution_value(k, reads, unit, own[0], env)).ravel()
                unit.flat[row] = 0.0
            return J
        m = len(self.block)
        J = np.zeros((m, m))
        for i, (op, reads) in enumerate(zip(self.ops, self.reads_of)):
            for k, s in enumerate(reads):
                if s in self.block:
                    J[i, self.block.index(s)] += float(
                        op.contribution_value(k, reads, 1.0, own[i], env)
                    )
        return J

    def factor(self, J, env, when: str):
        if not np.all(np.isfinite(J)):
            raise ConvergenceError(
                f"dr/dz of {self.name()} is not a number {when} ({self._at(env)}): the "
                "residual has no derivative there; choose another guess or point",
                node=self.block[0],
            )
        factors = runtime.factor(J)
        if factors is None:
            raise ConvergenceError(
                f"dr/dz of {self.name()} is singular {when} ({self._at(env)}): "
                + (
                    "the implicit function theorem does not apply, the block is not a "
                    "differentiable function of what it reads here"
                    if when == "at the solution"
                    else "Newton's method cannot step from here; give another guess="
                ),
                node=self.block[0],
            )
        return factors

    def _at(self, env) -> str:
        return ", ".join(f"{z} = {number(env[z])}" for z in self.block)

    def _guess(self, env, shape) -> np.ndarray:
        if self.matrix:
            g = self.guesses[0]
            if g is None:
                return np.zeros(int(np.prod(shape)))
            if isinstance(g, sp.Basic):
                g = _Evaluator(g, self.reads)(env)
            return np.broadcast_to(np.asarray(g, dtype=float), shape).ravel().copy()
        out = []
        for g in self.guesses:
            if isinstance(g, sp.Basic):
                reads = [s for s in self.reads if g.has(s)]
                g = numeric_function(reads, g)(*(env[s] for s in reads))
            out.append(0.0 if g is None else float(g))
        return np.array(out)

    def solve(self, env, work: dict | None = None, shift=None):
        """The block's values, put into ``env`` (also returned, one per node); ``work``
        keeps the factorisation at the solution for the backward solve and the report.
        ``shift`` loosens the residuals to ``r_i = shift_i``."""
        shape = self.shape_at(env)
        if self.linear is not None:
            return self._solve_linear(env, work, shift, shape)
        x = self._guess(env, shape)
        tolerance, norms, converged, steps = self.tolerance, [], False, 0
        self._put(env, x, shape)
        r, own = self.residual_values(env, shift)
        while True:
            norms.append(_norm(r))
            if not np.all(np.isfinite(r)):
                raise ConvergenceError(
                    f"the residual of {self.name()} is not a number at {self._at(env)} "
                    f"(after {steps} Newton step(s)): give a guess= where it is defined",
                    node=self.block[0],
                )
            if not r.any() or steps == self.iterations:
                converged = not r.any()
                break
            lu = self.factor(self.jacobian(env, own, shape), env, "at a Newton iterate")
            step = lu_solve(lu, r, check_finite=False)
            steps += 1
            if _norm(step) <= tolerance * (1.0 + _norm(x)):
                x = x - step
                self._put(env, x, shape)
                r, own = self.residual_values(env, shift)
                converged = True
                break
            x, r, own = self._line_search(env, x, step, r, shift, shape)
        if not converged:
            shown = ", ".join(f"{n:.3g}" for n in norms[-6:])
            raise ConvergenceError(
                f"Newton's method did not converge for {self.name()} in {self.iterations} "
                f"steps (largest residual entry, last steps: {shown}); give a better "
                "guess=, or more iterations=",
                node=self.block[0],
            )
        if not np.all(np.isfinite(r)):
            raise ConvergenceError(
                f"the residual of {self.name()} is not a number at its solution ({self._at(env)})",
                node=self.block[0],
            )
        # The Jacobian at the solution, factorised once: it certifies the solution (not
        # a singular point) and serves the backward solve.
        J = self.jacobian(env, own, shape)
        linearization = Linearization(J, self.factor(J, env, "at the solution"), shape)
        if work is not None:
            work[self.block] = {
                "linearization": linearization,
                "iterations": steps,
                "residual": _norm(r),
                "factorizations": steps + 1,
            }
        return tuple(env[z] for z in self.block)

    def _line_search(self, env, x, step, r, shift, shape):
        """A damped Newton step: halve it until the residual decreases (Armijo)."""
        t, size = 1.0, _norm(r)
        while True:
            trial = x - t * step
            self._put(env, trial, shape)
            r_new, own = self.residual_values(env, shift)
            if (np.all(np.isfinite(r_new)) and _norm(r_new) <= (1 - 1e-4 * t) * size) or t < 1e-4:
                return trial, r_new, own
            t /= 2

    def _solve_linear(self, env, work, shift, shape):
        linearization = self.linearize(env)
        rhs = -np.broadcast_to(self.linear[1](env), shape)
        if shift:
            rhs = rhs + shift[0]
        S = linearization.solve(rhs)
        env[self.block[0]] = S
        if work is not None:
            work[self.block] = {
                "linearization": linearization,
                "iterations": 1,
                "residual": _norm(linearization.apply(S) - rhs),
                "factorizations": 1,
            }
        return (S,)

    def linearize(self, env) -> Linearization:
        """``dr_B/dz_B`` at the values in ``env``, factorised (``M`` alone for a residual
        ``M S + C``)."""
        shape = self.shape_at(env)
        if self.linear is not None:
            M = self.linear[0](env)
            if M.shape != (shape[0], shape[0]):
                M = np.broadcast_to(M, (shape[0], shape[0])).copy()
            return Linearization(M, self.factor(M, env, "at the solution"), shape)
        _, own = self.residual_values(env, None)
        J = self.jacobian(env, own, shape)
        return Linearization(J, self.factor(J, env, "at the solution"), shape)

    def residual_tangent(self, z, direction):
        """``dR/dZ [E]`` of the block's (first) residual along ``direction`` (E) for its
        matrix unknown ``z``, by the tangent rules."""
        return tangent(self.residuals[0], {z: direction})

    def sweep(self, env, state) -> None:
        """Solve into ``env`` (Newton's method; symbolically, each unknown stays its
        symbol, tied to its residual)."""
        if state.symbolic:
            env.update(zip(self.nodes, self.solve_symbolic(env)))
        elif state.shift and any(z in state.shift for z in self.block):
            self.solve(env, state.work, [state.shift.get(z, 0.0) for z in self.block])
        else:
            self.solve(env, state.work)

    def solve_symbolic(self, env):
        """An implicit node stays its own symbol, tied to its residual."""
        return self.block

    def coefficient(self) -> sp.Matrix | None:
        """``dr_B/dz_B`` for a block of scalars, in the nodes' symbols."""
        if self.matrix:
            return None
        return self._kept(
            "coefficient",
            lambda: sp.Matrix([[sp.diff(r, z) for z in self.block] for r in self.residuals]),
        )


def _norm(v) -> float:
    v = np.asarray(v, dtype=float)
    return float(np.max(np.abs(v))) if v.size else 0.0


class ImplicitAdjoint(Lazy):
    """``dL/dz_j = 0`` for the nodes ``j`` of an implicit block:
    ``sum_{i in B} (dr_i/dz_j) lambda_i = [j = n] + sum_{i in beta(j) - B} lambda_i df_i/dz_j``,
    one solve with ``(dr_B/dz_B)^T`` for the block's multipliers."""

    role = Role.ADJOINT
    implicit, recurrent = True, False
    __slots__ = ("contributions", "forward", "seeds")

    def __init__(self, forward: ImplicitForward, contributions, seeds):
        self.forward = forward
        self.contributions = tuple(contributions)  # per node of the block
        self.seeds = tuple(seeds)  # dz_n/dz_j for the block's nodes
        self._memo = None

    def __repr__(self) -> str:
        return f"ImplicitAdjoint({'; '.join(text(e) for e in self.equations)})"

    @property
    def nodes(self) -> tuple:
        return self.forward.block

    @property
    def wrt(self):
        block = self.forward.block
        return block[0] if len(block) == 1 else block

    @property
    def multipliers(self) -> tuple:
        return self.forward.wrt

    @property
    def unknown(self):
        lams = self.forward.wrt
        return lams[0] if len(lams) == 1 else sp.Matrix(lams)

    @property
    def seed(self) -> int:
        return max(self.seeds)

    def _rows(self):
        """``(lhs_j, rhs_j)`` for each node ``j`` of the block."""

        def build():
            rows = []
            f = self.forward
            for j, z in enumerate(f.block):
                if f.matrix:
                    op, reads = f.ops[0], f.reads_of[0]
                    lhs = op.local(reads.index(z))
                    terms = [t.expr for t in self.contributions[j]]
                    rhs = sp.MatAdd(*terms).doit() if terms else sp.ZeroMatrix(*z.shape)
                else:
                    J = f.coefficient()
                    lhs = sp.Add(*(J[i, j] * lam for i, lam in enumerate(f.wrt)))
                    rhs = sp.Add(
                        sp.Integer(self.seeds[j]), *(t.expr for t in self.contributions[j])
                    )
                rows.append((lhs, rhs))
            return rows

        return self._kept("rows", build)

    @property
    def lhs(self):
        rows = self._rows()
        return rows[0][0] if len(rows) == 1 else sp.Matrix([r[0] for r in rows])

    @property
    def rhs(self):
        rows = self._rows()
        return rows[0][1] if len(rows) == 1 else sp.Matrix([r[1] for r in rows])

    @property
    def equations(self) -> list:
        return [equation(lhs, rhs) for lhs, rhs in self._rows()]

    @property
    def eq(self):
        return self._kept("eq", lambda: equation(self.lhs, self.rhs))

    @property
    def residual(self):
        return self.rhs - self.lhs

    def solved(self) -> tuple:
        """The multipliers solved in symbols: ``(dr/dz)^{-T} rhs`` (a matrix node only
        when its residual is linear, ``M S + C``)."""

        def build():
            f = self.forward
            rows = self._rows()
            if f.matrix:
                form = f.form
                if form is None:
                    raise AdjointError(
                        f"{f.name()} has a residual not linear in its matrix unknown: its "
                        "multiplier has no closed form; solve at a point, g.solve({...})",
                        node=f.block[0],
                    )
                return (sp.MatMul(sp.Inverse(form[0].T), rows[0][1]),)
            J = f.coefficient()
            rhs = sp.Matrix([r[1] for r in rows])
            if len(rows) == 1:
                return (rhs[0] / J[0, 0],)
            return tuple(J.T.LUsolve(rhs))

        return self._kept("solved", build)

    def sweep(self, env, state) -> None:
        """Solve into ``env``: one solve with the transposed Jacobian of the block."""
        found = (
            self.solve_symbolic(env)
            if state.symbolic
            else self.solve(env, state.live, state.kinks, state.work)
        )
        env.update(zip(self.multipliers, found))

    def solve_symbolic(self, env):
        return tuple(substitute(s, env) for s in self.solved())

    def right_sides(self, env, live=None, kinks=None) -> np.ndarray:
        """``[j = n] + sum_i lambda_i df_i/dz_j`` for the block's nodes, at ``env``."""
        f = self.forward
        shape = f.shape_at(env)
        parts = []
        for j in range(len(f.block)):
            total = float(self.seeds[j])
            for t in self.contributions[j]:
                if live is None or t.reader in live:
                    if kinks is not None:
                        kinks.at = t
                    total = total + t.value(env)
            parts.append(np.broadcast_to(np.asarray(total, dtype=float), shape if f.matrix else ()))
        return parts[0] if f.matrix else np.array([float(p) for p in parts])

    def solve_with(self, env, transpose: bool = True) -> tuple:
        """The block's multipliers at ``env`` (with ``dr/dz`` untransposed if asked: a
        mistake a grader names)."""
        lam, _ = solve_transposed(
            self.forward, self.forward.linearize(env), self.right_sides(env), transpose
        )
        return (lam,) if self.forward.matrix else tuple(float(v) for v in lam)

    def solve(self, env, live=None, kinks=None, work=None):
        """The block's multipliers from the values of its readers' multipliers."""
        f = self.forward
        if kinks is not None:
            kinks.at = None
        rhs = self.right_sides(env, live, kinks)
        memo = (work or {}).get(f.block)
        if memo is None:  # solved elsewhere: factorise here
            r, _ = f.residual_values(env, None)
            memo = {"linearization": f.linearize(env), "residual": _norm(r), "factorizations": 1}
            if work is not None:
                work[f.block] = memo
        lam, memo["backward"] = solve_transposed(f, memo["linearization"], rhs)
        if f.matrix:
            return (lam,)
        return tuple(float(v) for v in lam)


def solve_transposed(forward, linearization: Linearization, rhs, transpose: bool = True):
    """``(dr/dz)^T lambda = rhs`` (``dr/dz`` itself with ``transpose=False``: what a
    grader compares a mistake with), and the relative residual of the solution; refused
    when it is too large to trust."""
    if not np.any(rhs):
        return np.zeros_like(rhs), 0.0
    # Solved for rhs scaled by a power of two to entries near 1 (exactly: ldexp), so that
    # a subnormal right side is not judged by its own rounding
    exponent = int(np.frexp(_norm(rhs))[1])
    scaled = np.ldexp(np.asarray(rhs, dtype=float), -exponent)
    solution = linearization.solve(scaled, transpose=transpose)
    residual = linearization.apply(solution, transpose=transpose) - scaled
    relative = _norm(residual) / _norm(scaled)
    lam = np.ldexp(solution, exponent)
    if not relative <= BACKWARD_TOLERANCE:
        raise ConvergenceError(
            f"the backward solve of {forward.name()} left a relative residual "
            f"||J^T lambda - rhs|| / ||rhs|| = {relative:.2g}, above {BACKWARD_TOLERANCE:g}: "
            "dr/dz is too ill-conditioned here for its multipliers to be trusted",
            node=forward.block[0],
        )
    return lam, relative


def report(forward: ImplicitForward, memo: dict) -> Block:
    """The :class:`Block` report of a block from what solving kept."""
    return Block(
        forward.block,
        forward.method,
        memo.get("iterations", 0),
        memo.get("residual", float("nan")),
        memo.get("backward"),
        memo.get("factorizations", 0),
    )


# -- second order: the block's tangent and second-order adjoint conditions ----------


class ImplicitTangent:
    """An implicit block's residuals linearised along the tangent:
    ``sum_k dr_i/dz_k zdot_k = 0``, solved for the block's tangents with ``dr_B/dz_B``
    (the tangent form of the implicit function theorem)."""

    implicit, recurrent = True, False
    role = Role.TANGENT
    __slots__ = ("_numeric", "dots", "forward", "unknowns")

    def __init__(self, forward, dots):
        self.forward = forward  # the ImplicitForward r_B = 0
        self.dots = dots  # {node: zdot} for every node that moves
        self.unknowns = tuple(dots[z] for z in forward.block)
        self._numeric = None

    @property
    def nodes(self) -> tuple:
        return self.forward.block

    def _outside(self):
        """``{read: zdot}`` for the reads outside the block that move."""
        f = self.forward
        return {r: self.dots[r] for r in f.reads if r in self.dots}

    @property
    def equations(self) -> list:
        f = self.forward
        if f.matrix:
            dots = {**self._outside(), f.block[0]: self.dots[f.block[0]]}
            return [equation(tangent(f.residuals[0], dots), f.rhs)]
        moving = {**self._outside(), **{z: self.dots[z] for z in f.block}}
        return [
            equation(sp.Add(*(sp.diff(r, z) * dot for z, dot in moving.items())), sp.Integer(0))
            for r in f.residuals
        ]

    def sweep(self, env, state) -> None:
        """Solve into ``env``, with the block linearised once for both sweeps."""
        env.update(zip(self.unknowns, self.solve(env, linearized(self, env, state.work))))

    def solve(self, env, linearization=None):
        f = self.forward
        linearization = linearization or f.linearize(env)
        if f.matrix:
            if self._numeric is None:  # the residual's tangent with the block's held still
                self._numeric = NumericExpr(tangent(f.residuals[0], self._outside()))
            b = shaped(self._numeric(env), env[f.block[0]])
            return (-linearization.solve(b),)
        _, own = f.residual_values(env, None)
        b = np.zeros(len(f.block))
        for i, (op, reads) in enumerate(zip(f.ops, f.reads_of)):
            for k, r in enumerate(reads):
                if r not in f.block and r in self.dots:
                    b[i] += (
                        float(op.contribution_value(k, reads, 1.0, own[i], env)) * env[self.dots[r]]
                    )
        return tuple(float(v) for v in -linearization.solve(b))

    def __repr__(self) -> str:
        return f"ImplicitTangent({'; '.join(text(e) for e in self.equations)})"


class ImplicitSecondAdjoint:
    """An implicit block's adjoint condition differentiated along the tangent:
    ``sum_{i in B} (dr_i/dz_j) lambdadot_i = sum_{i outside} (lambdadot_i df_i/dz_j +
    lambda_i sum_k d2f_i/dz_j dz_k zdot_k) - sum_{i in B} lambda_i sum_k d2r_i/dz_j dz_k
    zdot_k``: one solve with ``(dr_B/dz_B)^T`` for the block's ``lambdadot``."""

    implicit, recurrent = True, False
    role = Role.SECOND_ADJOINT
    __slots__ = ("_numeric", "adjoint", "dots", "ldots", "outside", "unknowns")

    def __init__(self, adjoint, ldots, dots):
        self.adjoint = adjoint  # the ImplicitAdjoint
        self.ldots, self.dots = ldots, dots
        f = adjoint.forward
        self.unknowns = tuple(ldots[z] for z in f.block)
        # the readers outside the block, as for an explicit node
        self.outside = tuple(
            SecondAdjointCondition(
                AdjointCondition(Role.ADJOINT, z, lam, contributions, seed),
                ldots[z],
                ldots,
                dots,
            )
            for z, lam, contributions, seed in zip(
                f.block, f.wrt, adjoint.contributions, adjoint.seeds
            )
        )
        self._numeric = None

    @property
    def nodes(self) -> tuple:
        return self.adjoint.forward.block

    def _own_matrix_term(self):
        """For a matrix node: the pullback ``(dR/dS)^T Lambda_S`` differentiated along the
        tangents of the nodes, with ``Lambda_S`` held still."""
        f = self.adjoint.forward
        op, reads = f.ops[0], f.reads_of[0]
        dots = {r: self.dots[r] for r in reads if r in self.dots}
        return tangent(op.local(reads.index(f.block[0])), dots)

    @property
    def equations(self) -> list:
        f = self.adjoint.forward
        if f.matrix:
            op, reads = f.ops[0], f.reads_of[0]
            z, lam, ldot = f.block[0], f.wrt[0], self.unknowns[0]
            lhs = op.local(reads.index(z)).xreplace({lam: ldot})
            return [equation(lhs, sp.MatAdd(self.outside[0].rhs, -self._own_matrix_term()))]
        moving = {r: self.dots[r] for reads in f.reads_of for r in reads if r in self.dots}
        rows = []
        for j, z in enumerate(f.block):
            lhs = sp.Add(*(sp.diff(r, z) * ld for r, ld in zip(f.residuals, self.unknowns)))
            own = sp.Add(
                *(
                    lam * sp.diff(r, z, w) * dot
                    for r, lam in zip(f.residuals, f.wrt)
                    for w, dot in moving.items()
                )
            )
            rows.append(equation(lhs, self.outside[j].rhs - own))
        return rows

    def sweep(self, env, state) -> None:
        """Solve into ``env``, with the block linearised once for both sweeps."""
        env.update(zip(self.unknowns, self.solve(env, linearized(self, env, state.work))))

    def solve(self, env, linearization=None):
        f = self.adjoint.forward
        linearization = linearization or f.linearize(env)
        if f.matrix:
            if self._numeric is None:
                self._numeric = NumericExpr(self._own_matrix_term())
            z = f.block[0]
            b = self.outside[0].solve(env) - shaped(self._numeric(env), env[z])
            return (linearization.solve(b, transpose=True),)
        _, own = f.residual_values(env, None)
        b = np.array([float(c.solve(env)) for c in self.outside])
        for i, (op, reads) in enumerate(zip(f.ops, f.reads_of)):
            lam = env[f.wrt[i]]
            for j, z in enumerate(f.block):
                if z not in reads:
                    continue
                k = reads.index(z)
                for m in op.coupled(k):
                    if reads[m] in self.dots:
                        second = op.second_local_value(k, m, reads, own[i], env)
                        b[j] -= lam * float(second) * env[self.dots[reads[m]]]
        return tuple(float(v) for v in linearization.solve(b, transpose=True))

    def __repr__(self) -> str:
        return f"ImplicitSecondAdjoint({'; '.join(text(e) for e in self.equations)})"


def linearized(condition, env, work):
    """The linearisation of an implicit block at the solution, made once per sweep
    and kept in ``work`` for the block's other conditions."""
    block = condition.nodes
    if block not in work:
        forward = getattr(condition, "forward", None) or condition.adjoint.forward
        work[block] = forward.linearize(env)
    return work[block]
