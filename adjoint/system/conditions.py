"""The conditions of ``grad L = 0``, each solved for its own unknown.

A condition has an unknown, a coefficient on it and its terms: for an explicit node
the coefficient is the identity and the condition is already solved
(``z_i = f_i``, ``lambda_j = [j = n] + sum_i lambda_i df_i/dz_j``);
:mod:`adjoint.system.implicit` adds conditions whose coefficient is a Jacobian. The terms of
Step 2 are :class:`Contribution` s, one per edge. :mod:`adjoint.system.lagrangian` assembles
them into systems; every reader (solving, generated code, explanations, grading)
reads these objects.
"""

from __future__ import annotations

import enum

import numpy as np
import sympy as sp

from ..core.display import equation, text
from ..core.errors import AdjointError
from ..core.values import finite

__all__ = ["AdjointCondition", "Contribution", "ForwardCondition", "Lazy", "Role", "substitute"]


class Role(str, enum.Enum):
    """What a condition of ``grad L = 0`` determines."""

    FORWARD = "forward"  # dL/dlambda_i = 0: the value z_i (Step 1)
    ADJOINT = "adjoint"  # dL/dz_j = 0: the multiplier lambda_j (Step 2)
    GRADIENT = "gradient"  # dL/dx for an input: the gradient (Theorem 16.1)


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


class ForwardCondition(Lazy):
    """``dL/dlambda_i = f_i - z_i = 0``, solved for its unknown: ``z_i = f_i(z_alpha(i))``
    (equation 7)."""

    role = Role.FORWARD
    seed = 0
    implicit = recurrent = False  # asked of every condition by the solving loops
    __slots__ = ("op", "reads", "rhs", "unknown", "wrt")

    def __init__(self, unknown, wrt, rhs, op, reads):
        self.unknown = unknown  # z_i
        self.wrt = wrt  # lambda_i
        self.rhs = rhs  # f_i, as the user wrote it
        self.op = op  # f_i as an operation of its arguments
        self.reads = reads  # every node f_i reads, constants too
        self._memo = None

    def __repr__(self) -> str:
        return f"ForwardCondition({self.unknown} = {self.rhs})"

    @property
    def nodes(self) -> tuple:
        """The nodes this condition gives values to."""
        return (self.unknown,)

    @property
    def lhs(self):
        """The unknown times its coefficient (here the identity): the unknown."""
        return self.unknown

    @property
    def eq(self) -> sp.Eq:
        return self._kept("eq", lambda: equation(self.unknown, self.rhs))

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
        """Solve into ``env`` (see :func:`adjoint.system.sweep.sweep`)."""
        env[self.unknown] = self.solve_symbolic(env) if state.symbolic else self.solve(env)

    def solve_symbolic(self, env):
        return substitute(self.rhs, env)


class AdjointCondition(Lazy):
    """``dL/dz_j = [j = n] - lambda_j + sum_{i in beta(j)} lambda_i df_i/dz_j = 0``,
    solved for its unknown: ``lambda_j = [j = n] + sum_i lambda_i df_i/dz_j``.

    For an input (``role`` GRADIENT) there is no ``-lambda_j``: the sum is ``dL/dx``,
    which ``lambda_x`` names.
    """

    implicit = recurrent = False  # asked of every condition by the solving loops
    __slots__ = ("contributions", "role", "seed", "unknown", "wrt")

    def __init__(self, role, wrt, unknown, contributions, seed: int = 0):
        self.role = role  # ADJOINT or GRADIENT
        self.wrt = wrt  # z_j
        self.unknown = unknown  # lambda_j
        self.contributions = contributions  # one per reader i of z_j
        self.seed = seed  # dz_n/dz_j: 1 for the output, else 0
        self._memo = None

    def __repr__(self) -> str:
        return f"AdjointCondition({self.unknown} = {self.rhs})"

    @property
    def nodes(self) -> tuple:
        """The nodes whose multipliers this condition gives."""
        return (self.wrt,)

    @property
    def lhs(self):
        """The unknown times its coefficient (here the identity): the unknown."""
        return self.unknown

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
    def eq(self) -> sp.Eq:
        return self._kept("eq", lambda: equation(self.unknown, self.rhs))

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

    def solve_symbolic(self, env):
        return substitute(self.rhs, env)

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


def substitute(expr, env):
    """``expr`` with the known values of its symbols put in (a symbolic solve)."""
    try:
        return expr.xreplace(env)
    except ValueError:  # Derivative(f(z), z) with z replaced by an expression
        return expr.subs({s: env[s] for s in expr.free_symbols if s in env}, simultaneous=True)
