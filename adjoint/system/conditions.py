"""The conditions of ``grad L = 0``, each solved for its own unknown.

A condition has an unknown, a coefficient on it and its terms: for an explicit node
the coefficient is the identity and the condition is already solved
(``z_i = f_i``, ``lambda_j = [j = n] + sum_i lambda_i df_i/dz_j``);
:mod:`adjoint.system.implicit` adds conditions whose coefficient is a Jacobian. The terms of
Step 2 are :class:`Contribution` s, one per edge, and the same contributions give the
terms of the second-order conditions (:class:`TangentCondition`,
:class:`SecondAdjointCondition`). A :class:`System` is an ordered list of conditions
with roles: :mod:`adjoint.system.lagrangian` assembles ``grad L = 0``,
:mod:`adjoint.system.second_order` the tangent and second-order adjoint systems; every
reader (solving, generated code, explanations, grading) reads these objects.
"""

from __future__ import annotations

import enum
from typing import ClassVar

import numpy as np
import sympy as sp

from ..core.display import aligned, equation, latex, text
from ..core.errors import AdjointError
from ..core.expressions import free_symbols
from ..core.values import finite
from ..operations.matrices import reuse_output
from ..operations.matrices import tangent as tangent_of
from ..operations.numeric import numeric_function

__all__ = [
    "AdjointCondition",
    "Condition",
    "Contribution",
    "ForwardCondition",
    "Lazy",
    "NumericExpr",
    "Role",
    "SecondAdjointCondition",
    "System",
    "TangentCondition",
    "shaped",
    "substitute",
]


class Role(str, enum.Enum):
    """What a condition of ``grad L = 0`` determines."""

    FORWARD = "forward"  # dL/dlambda_i = 0: the value z_i (Step 1)
    ADJOINT = "adjoint"  # dL/dz_j = 0: the multiplier lambda_j (Step 2)
    GRADIENT = "gradient"  # dL/dx for an input: the gradient (Theorem 16.1)
    # the second-order system: grad L = 0 differentiated along a direction v
    TANGENT = "tangent"  # the forward conditions linearised: zdot_i
    SECOND_ADJOINT = "second-order adjoint"  # the adjoint conditions' tangents: lambdadot_j
    HVP = "hvp"  # the gradient's tangent: lambdadot_x = (H v)_x


class Lazy:
    """Slots, and sympy forms built on first use and kept: during the assembly of
    grad L = 0 each object is one container (a dict per object doubled the garbage
    collector's work). The objects are not changed once made."""

    __slots__ = ("_memo",)

    def _kept(self, key: str, build):
        if self._memo is None:
            self._memo = {}
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]


class Condition(Lazy):
    """A condition solved for its own unknown: ``unknown = rhs``, its coefficient the
    identity. Every condition of an explicit node is one: Step 1's ``z_i = f_i``,
    Step 2's ``lambda_j = [j = n] + sum_i lambda_i df_i/dz_j``, and their tangents.
    (A block whose coefficient is a Jacobian, or a loop over steps, has ``equations``
    instead of one ``rhs``: :mod:`adjoint.system.implicit`,
    :mod:`adjoint.system.recurrences`.)

    A subclass gives ``unknown``, ``rhs`` (sympy) and ``solve(env)`` (numbers); the
    sweep, the equation and the symbolic solve follow from them.
    """

    __slots__ = ()
    implicit = recurrent = False  # asked of every condition by the sweeps and readers
    seed = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.unknown} = {text(self.rhs)})"

    @property
    def lhs(self):
        """The unknown times its coefficient (here the identity): the unknown."""
        return self.unknown

    @property
    def eq(self) -> sp.Eq:
        return self._kept("eq", lambda: equation(self.unknown, self.rhs))

    def solve_symbolic(self, env):
        return substitute(self.rhs, env)

    def sweep(self, env, state) -> None:
        """Solve into ``env`` (see :func:`adjoint.system.sweep.sweep`)."""
        env[self.unknown] = self.solve_symbolic(env) if state.symbolic else self.solve(env)


class Contribution(Lazy):
    """``lambda_i df_i/dz_j``: what the constraint of a reader ``i`` of ``z_j`` adds to
    the condition ``dL/dz_j = 0``.

    For a matrix constraint the contribution is the pullback of ``Lambda_i`` through
    ``F_i`` (a vector-Jacobian product), and :attr:`partial` is that pullback.
    """

    __slots__ = ("k", "multiplier", "node", "op", "reader", "reads")
    # what solving and printing ask of every contribution: an attribute lookup that
    # finds, not one that fails (getattr with a default raises and catches, per edge)
    residual = recurrent = False

    def __init__(self, reader, node, op, reads, k: int, multiplier):
        self.reader = reader  # i: the node whose constraint reads z_j
        self.node = node  # j
        self.op = op  # f_i as an operation of its arguments
        self.reads = reads  # f_i's arguments; z_j is reads[k]
        self.k = k
        self.multiplier = multiplier  # lambda_i
        self._memo = None

    def __repr__(self) -> str:
        return f"Contribution(lambda_{self.reader} d{self.reader}/d{self.node})"

    @property
    def pullback(self) -> bool:
        """True for a matrix constraint: the contribution is ``J^T Lambda_i``."""
        return self.op.pullback

    @property
    def partial(self) -> sp.Expr:
        """``df_i/dz_j`` in the nodes' symbols (the pullback, for a matrix constraint)."""
        return self._kept("partial", lambda: self.op.local(self.k, self.reads, self.multiplier))

    @property
    def expr(self) -> sp.Expr:
        """The contribution as a sympy expression (built on first use: solving needs none)."""
        return self._kept("expr", lambda: self.op.contribution(self.k, self.reads, self.multiplier))

    @property
    def numeric(self) -> sp.Expr:
        """:attr:`partial` as solving and generated code evaluate it: with the stored
        value ``z_i`` where the operation declares its derivative in terms of it
        (``tanh' = 1 - z_i**2``), and nan at kinks."""
        return self._kept(
            "numeric",
            lambda: self.op.numeric_local(self.k, self.reads, self.multiplier, self.reader),
        )

    @property
    def reuses_output(self) -> bool:
        """Whether :attr:`numeric` reads the stored ``z_i`` instead of computing ``f_i``."""
        return self.op.reuses_output(self.k)

    @property
    def label(self) -> str:
        """The partial (or pullback) as one line of text, for tables and drawings."""
        return text(self.partial)

    def value(self, env):
        """The contribution's value, given values of ``f_i``'s arguments, ``z_i`` and
        ``lambda_i`` in ``env``."""
        lam, out = env[self.multiplier], env[self.reader]
        value = self.op.contribution_value(self.k, self.reads, lam, out, env)
        if finite(out) or (lam == 0 if isinstance(lam, float) else not np.any(lam)):
            return value
        # The reader is outside its domain (z_i is nan or inf): f_i has no derivative
        # there, so neither has anything upstream of it.
        return np.full(np.shape(value), np.nan)

    def second_local(self, m: int) -> sp.Expr:
        """``d2f_i/dz_j dz_k`` for ``z_k = reads[m]``, in the nodes' symbols."""
        return self.op.second_local(self.k, m, self.reads)

    def second_value(self, m: int, env):
        """The value of :meth:`second_local` (as evaluated: nan at kinks)."""
        return self.op.second_local_value(self.k, m, self.reads, env[self.reader], env)

    def partial_value(self, env):
        """The value of ``df_i/dz_j``; ``None`` for a pullback, which is a linear map."""
        if self.pullback:
            return None
        return self.op.local_value(self.k, self.reads, env[self.reader], env)

    # -- the edge in the second-order adjoint condition of z_j ---------------------

    def coupled(self, dots):
        """``(m, z_k, zdot_k)`` for each argument of ``f_i`` that moves (has a tangent in
        ``dots``) and whose second partial with ``z_j`` is not zero."""
        for m in self.op.coupled(self.k):
            r = self.reads[m]
            if r in dots:
                yield m, r, dots[r]

    def pullback_tangent(self, dots, ldot=None) -> sp.Expr:
        """The pullback ``J^T Lambda_i`` differentiated along the tangents of the nodes
        (forward-over-reverse, by the tangent rules) and of ``Lambda_i`` (``ldot``;
        ``None`` holds it still, as the output's, which is 1)."""
        moving = {r: dots[r] for r in self.reads if r in dots}
        if ldot is not None:
            moving[self.multiplier] = ldot
        return tangent_of(self.expr, moving)

    def second(self, ldot, dots) -> sp.Expr:
        """The contribution differentiated along the tangent: ``lambdadot_i df_i/dz_j +
        lambda_i sum_k d2f_i/dz_j dz_k zdot_k``."""
        if self.pullback:
            return self.pullback_tangent(dots, ldot)
        return ldot * self.partial + self.multiplier * sp.Add(
            *(self.second_local(m) * dot for m, _, dot in self.coupled(dots))
        )

    def add_second(self, total, env, ldot, dots):
        """``total`` plus the value of :meth:`second` (nan where ``z_i`` is outside its
        domain and ``lambda_i`` is not 0: no second derivative there)."""
        if self.pullback:
            term = self._kept("second", lambda: NumericExpr(self.pullback_tangent(dots, ldot)))
            return total + term(env)
        lam = env[self.multiplier]
        if lam != 0 and not np.isfinite(env[self.reader]):
            return np.nan  # (the one nan object: the condition stops summing at it)
        total = total + env[ldot] * self.partial_value(env)
        for m, _, dot in self.coupled(dots):
            total = total + lam * self.second_value(m, env) * env[dot]
        return total


class ForwardCondition(Condition):
    """``dL/dlambda_i = f_i - z_i = 0``, solved for its unknown: ``z_i = f_i(z_alpha(i))``
    (equation 7)."""

    role = Role.FORWARD
    __slots__ = ("op", "reads", "rhs", "unknown", "wrt")

    def __init__(self, unknown, wrt, rhs, op, reads):
        self.unknown = unknown  # z_i
        self.wrt = wrt  # lambda_i
        self.rhs = rhs  # f_i, as the user wrote it
        self.op = op  # f_i as an operation of its arguments
        self.reads = reads  # every node f_i reads, constants too
        self._memo = None

    @property
    def nodes(self) -> tuple:
        """The nodes this condition gives values to."""
        return (self.unknown,)

    @property
    def residual(self) -> sp.Expr:
        """``dL/dlambda_i``, what the condition sets to zero."""
        if isinstance(self.unknown, sp.MatrixSymbol):
            return sp.MatAdd(self.rhs, -self.unknown)
        return self.rhs - self.unknown

    @property
    def shared(self) -> tuple[sp.Expr, ...]:
        """Parts of ``f_i`` that Step 2 reads too (``sin(a)`` in ``sin(a)*b``)."""
        if self.op.pullback:
            return ()
        return tuple(self.op.instantiate(p, self.reads) for p in self.op.shared())

    def solve(self, env):
        """``z_i`` from the values of what ``f_i`` reads."""
        return self.op.value([env[r] for r in self.reads], env)

    def sweep(self, env, state) -> None:
        """Solve into ``env``; loosened to ``z_i = f_i + shift`` by ``state.shift``."""
        if state.symbolic:
            env[self.unknown] = self.solve_symbolic(env)
        elif state.shift and self.unknown in state.shift:
            env[self.unknown] = self.solve(env) + state.shift[self.unknown]
        else:
            env[self.unknown] = self.solve(env)


class AdjointCondition(Condition):
    """``dL/dz_j = [j = n] - lambda_j + sum_{i in beta(j)} lambda_i df_i/dz_j = 0``,
    solved for its unknown: ``lambda_j = [j = n] + sum_i lambda_i df_i/dz_j``.

    For an input (``role`` GRADIENT) there is no ``-lambda_j``: the sum is ``dL/dx``,
    which ``lambda_x`` names.
    """

    __slots__ = ("contributions", "role", "seed", "unknown", "wrt")

    def __init__(self, role, wrt, unknown, contributions, seed: int = 0):
        self.role = role  # ADJOINT or GRADIENT
        self.wrt = wrt  # z_j
        self.unknown = unknown  # lambda_j
        self.contributions = contributions  # one per reader i of z_j
        self.seed = seed  # dz_n/dz_j: 1 for the output, else 0
        self._memo = None

    @property
    def nodes(self) -> tuple:
        """The nodes whose multipliers this condition gives."""
        return (self.wrt,)

    @property
    def rhs(self) -> sp.Expr:
        """``[j = n] + sum_i lambda_i df_i/dz_j``."""

        def build():
            if isinstance(self.unknown, sp.MatrixSymbol):
                terms = [t.expr for t in self.contributions]
                if self.seed:  # a 1 x 1 output: dz_n/dz_n = [[1]]
                    terms.insert(0, sp.OneMatrix(1, 1))
                if not terms:
                    return sp.ZeroMatrix(*self.unknown.shape)
                return sp.MatAdd(*terms).doit()
            return sp.Add(sp.Integer(self.seed), *(t.expr for t in self.contributions))

        return self._kept("rhs", build)

    @property
    def residual(self) -> sp.Expr:
        """``dL/dz_j`` itself. For an input this is the gradient of f, not yet set to
        zero; ``lambda_x`` names it."""
        if self.role is Role.GRADIENT:
            return self.rhs
        if isinstance(self.unknown, sp.MatrixSymbol):
            return sp.MatAdd(self.rhs, -self.unknown)
        return self.rhs - self.unknown

    def solve(self, env, live=None, kinks=None):
        """``lambda_j`` from the values of the readers' multipliers and the nodes.

        Readers outside ``live`` (when given: the nodes the output depends on) have
        ``lambda_i = 0`` and add nothing, even where their own partial does not exist.
        ``kinks`` (from :func:`adjoint.operations.numeric.watch_kinks`) learns which contribution
        each kink met belongs to.
        """
        total = self.seed
        if self.seed and isinstance(self.unknown, sp.MatrixSymbol):  # a 1 x 1 output
            total = np.ones((1, 1))
        for t in self.contributions:
            if live is None or t.reader in live:
                if kinks is not None:
                    kinks.at = t
                total = total + t.value(env)
        if isinstance(total, int) and isinstance(self.unknown, sp.MatrixSymbol):
            return np.zeros(tuple(int(sp.sympify(d).xreplace(env)) for d in self.unknown.shape))
        return total

    def sweep(self, env, state) -> None:
        """Solve into ``env``; a numeric multiplier is checked to have its node's shape."""
        if state.symbolic:
            env[self.unknown] = self.solve_symbolic(env)
            return
        env[self.unknown] = lam = self.solve(env, state.live, state.kinks)
        value = env[self.wrt]
        if isinstance(value, float) and isinstance(lam, float):  # scalars: the common case
            return
        if np.shape(lam) != np.shape(value):  # an invariant, checked as it is made
            raise AdjointError(
                f"internal error: lambda_{self.wrt} came out {np.shape(lam)}, but "
                f"{self.wrt} is {np.shape(value)}; please report this with the graph",
                node=self.wrt,
            )


class TangentCondition(Condition):
    """``zdot_i = sum_j df_i/dz_j zdot_j``: the forward condition of ``z_i`` linearised
    along the direction (forward mode). Its terms are the contributions of the edges
    into ``z_i``, the same objects Step 2 sums at the other end of each edge: the
    partial times ``zdot_j`` here, ``lambda_i`` times it there."""

    role = Role.TANGENT
    __slots__ = ("contributions", "forward", "node", "unknown", "wrt")

    def __init__(self, forward, unknown, contributions, dots):
        self.forward = forward  # the ForwardCondition z_i = f_i
        self.node = forward.unknown
        self.unknown = unknown  # zdot_i
        self.contributions = contributions  # one per argument of f_i that moves, in order
        self.wrt = {t.node: dots[t.node] for t in contributions}  # {read: zdot_read}
        self._memo = None

    @property
    def nodes(self) -> tuple:
        return (self.node,)

    def edges(self):
        """``(k, z_j, zdot_j)`` for each argument of ``f_i`` that moves with the inputs."""
        for t in self.contributions:
            yield t.k, t.node, self.wrt[t.node]

    @property
    def rhs(self) -> sp.Expr:
        def build():
            if self.forward.op.pullback:  # a matrix constraint: its tangent rules
                return tangent_of(self.forward.rhs, self.wrt)
            return sp.Add(*(t.partial * self.wrt[t.node] for t in self.contributions))

        return self._kept("rhs", build)

    @property
    def numeric_rhs(self) -> sp.Expr:
        """A matrix constraint's tangent as programs compute it: a derivative declared
        with the node's own value (sigmoid' = s (1 - s)) reads the stored node."""
        f = self.forward
        return reuse_output(self.rhs, f.rhs, f.unknown)

    def solve(self, env):
        op, reads, out = self.forward.op, self.forward.reads, env[self.node]
        if op.pullback:
            term = self._kept("numeric", lambda: NumericExpr(self.rhs))
            return shaped(term(env), out)
        total, wrt = 0.0, self.wrt
        for t in self.contributions:
            total = total + op.local_value(t.k, reads, out, env) * env[wrt[t.node]]
        if not np.isfinite(out):
            return np.nan  # z_i outside its domain: no derivative there
        return total


class SecondAdjointCondition(Condition):
    """``lambdadot_j = sum_i (lambdadot_i df_i/dz_j + lambda_i sum_k d2f_i/dz_j dz_k
    zdot_k)``: the adjoint condition of ``z_j`` differentiated along the tangent; its
    terms are the same contributions, each differentiated (:meth:`Contribution.second`)."""

    __slots__ = ("adjoint", "dots", "multiplier_dots", "role", "unknown", "wrt")

    def __init__(self, adjoint, unknown, multiplier_dots, dots):
        self.adjoint = adjoint  # the AdjointCondition lambda_j = ...
        self.role = Role.HVP if adjoint.role is Role.GRADIENT else Role.SECOND_ADJOINT
        self.wrt = adjoint.wrt
        self.unknown = unknown  # lambdadot_j
        self.multiplier_dots = multiplier_dots  # {reader i: lambdadot_i}
        self.dots = dots  # {node: zdot}
        self._memo = None

    @property
    def nodes(self) -> tuple:
        return (self.wrt,)

    def numeric_matrix_term(self, t, reader_rhs, moving: bool = True) -> sp.Expr:
        """A pullback's tangent as programs compute it, reading the stored value of the
        reader (whose right-hand side is ``reader_rhs``) where a derivative is declared
        with it; with ``moving=False``, ``Lambda_i`` held still (the output's)."""
        ldot = self.multiplier_dots[t.reader] if moving else None
        return reuse_output(t.pullback_tangent(self.dots, ldot), reader_rhs, t.reader)

    @property
    def rhs(self) -> sp.Expr:
        def build():
            ldots, dots = self.multiplier_dots, self.dots
            terms = [t.second(ldots[t.reader], dots) for t in self.adjoint.contributions]
            if any(t.recurrent for t in self.adjoint.contributions):
                if all(isinstance(t, sp.MatrixExpr) for t in terms):
                    return sp.MatAdd(*terms)
                return sp.Add(*terms)
            if isinstance(self.unknown, sp.MatrixSymbol):
                terms = [t for t in terms if not isinstance(t, sp.ZeroMatrix)]
                return sp.MatAdd(*terms) if terms else sp.ZeroMatrix(*self.unknown.shape)
            return sp.Add(*terms)

        return self._kept("rhs", build)

    def solve(self, env):
        total = 0.0
        if isinstance(self.unknown, sp.MatrixSymbol):
            total = np.zeros(np.shape(env[self.wrt]))
        ldots, dots = self.multiplier_dots, self.dots
        for t in self.adjoint.contributions:
            total = t.add_second(total, env, ldots[t.reader], dots)
            if total is np.nan:  # a reader outside its domain: no second derivative
                return total
        return shaped(total, env[self.wrt])


class System:
    """An ordered list of conditions with roles: what sweeps solve, group by group.

    ``conditions(role)`` gives one role's conditions in solving order (all of them
    without a role); ``equations`` their sympy ``Eq`` s. Printed as the lecture writes
    it, one titled group per role.
    """

    TITLES: ClassVar[dict] = {}  # {role: a title in text}
    LATEX_TITLES: ClassVar[dict] = {}

    def __init__(self, groups: dict):
        self._by_role = groups  # {Role: conditions in solving order}

    def conditions(self, role: Role | str | None = None) -> tuple:
        """The conditions of one role in solving order, or all of them."""
        if role is None:
            return tuple(c for group in self._by_role.values() for c in group)
        return self._by_role[self._role(role)]

    def _role(self, role) -> Role:
        found = role if isinstance(role, Role) else next((r for r in Role if r.value == role), None)
        if found not in self._by_role:
            roles = ", ".join(repr(r.value) for r in self._by_role)
            raise AdjointError(
                f"{type(self).__name__} has no conditions of role {role!r}; its roles are {roles}"
            )
        return found

    def equations_of(self, role) -> list[sp.Eq]:
        """The equations of one role's conditions (a block or a loop has several)."""
        found = []
        for c in self._by_role[self._role(role)]:
            if hasattr(c, "equations"):
                found += c.equations
            else:
                found.append(c.eq)
        return found

    @property
    def equations(self) -> list[sp.Eq]:
        """Every condition's equations, in solving order."""
        return [e for role in self._by_role for e in self.equations_of(role)]

    def __len__(self) -> int:
        return sum(len(group) for group in self._by_role.values())

    def title(self, role) -> str:
        return self.TITLES[role]

    def note(self, condition) -> str:
        """How a block or a loop is solved, printed beside its equations."""
        return getattr(condition, "note", "solve")

    def latex_note(self, condition) -> str:
        return r"\quad \text{(" + self.note(condition) + ")}"

    def _closing_lines(self) -> list:
        """Lines printed after the groups."""
        return []

    def _closing_rows(self) -> list:
        """LaTeX rows printed after the groups."""
        return []

    def __repr__(self) -> str:
        lines = []
        for role, conditions in self._by_role.items():
            lines.append(f"{self.title(role)}:")
            for c in conditions:
                if not hasattr(c, "equations"):
                    lines.append(f"  {c.unknown} = {text(c.rhs)}")
                    continue
                note = f"   [{self.note(c)}]"
                lines += [f"  {text(e.lhs)} = {text(e.rhs)}{note}" for e in c.equations]
        return "\n".join(lines + self._closing_lines())

    def _repr_latex_(self) -> str:
        rows = []
        for role, conditions in self._by_role.items():
            rows.append((None, self.LATEX_TITLES[role]))
            for c in conditions:
                if not hasattr(c, "equations"):
                    rows.append((latex(c.unknown), latex(c.rhs)))
                    continue
                note = self.latex_note(c)
                rows += [(latex(e.lhs), latex(e.rhs) + note) for e in c.equations]
        return aligned(rows + self._closing_rows())


class NumericExpr:
    """A sympy expression of nodes, multipliers and their tangents, evaluated from ``env``."""

    __slots__ = ("args", "expr", "fn")

    def __init__(self, expr):
        self.expr = expr
        self.args = tuple(free_symbols(expr))
        self.fn = numeric_function(self.args, expr)

    def __call__(self, env):
        return self.fn(*(env[a] for a in self.args))


def shaped(value, like):
    """A matrix result with its node's shape (a zero tangent prints as a scalar 0)."""
    if np.ndim(like) and np.shape(value) != np.shape(like):
        return np.broadcast_to(value, np.shape(like)).astype(float)
    return value


def substitute(expr, env):
    """``expr`` with the known values of its symbols put in (a symbolic solve)."""
    try:
        return expr.xreplace(env)
    except ValueError:  # Derivative(f(z), z) with z replaced by an expression
        return expr.subs({s: env[s] for s in expr.free_symbols if s in env}, simultaneous=True)
