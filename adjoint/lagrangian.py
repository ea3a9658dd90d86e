"""The Lagrangian of the constraint system and the conditions ``grad L = 0``.

For ``min z_n  s.t.  z_i = f_i(z_alpha(i))`` (problem 5) the Lagrangian is

    L = z_n - sum_i lambda_i (z_i - f_i(z_alpha(i)))          (equation 6)

and its variables are the multipliers and the nodes. How each condition comes from L:

* ``dL/dlambda_i = f_i - z_i``: only the i-th term holds ``lambda_i``. Setting it to
  zero gives back the constraint ``z_i = f_i``: a :class:`ForwardCondition` (Step 1).
* ``dL/dz_j``: ``z_j`` stands in L in three places only: the objective ``z_n`` (when
  j = n), its own term ``-lambda_j z_j``, and inside ``f_i`` for each reader i of
  ``z_j``. The term ``lambda_i (z_i - f_i)`` depends on ``z_j`` only when ``f_i`` reads
  it, that is for ``i`` in beta(j), and ``f_j`` cannot read ``z_j`` in a DAG. So

      dL/dz_j = [j = n] - lambda_j + sum_{i in beta(j)} lambda_i df_i/dz_j,

  linear in ``lambda_j`` with coefficient -1: written as ``lambda_j = [j = n] + sum``
  it is already solved for its unknown (an :class:`AdjointCondition`, Step 2). Each
  summand is a :class:`Contribution`, made from the local partial of ``f_i``, derived
  once per kind of operation (:mod:`adjoint.partials`), or for a matrix node from the
  pullback of ``Lambda_i`` (:mod:`adjoint.matrices`). That is O(|V| + |E|) work; L is
  never differentiated as a whole. ``tests/test_lagrangian.py`` compares every
  condition with ``sympy.diff(L, z_j)``: that test is the proof that this assembly is
  ``grad L``.
* For an input ``x`` there is no own term: ``dL/dx = sum_{i in beta(x)} lambda_i
  df_i/dx`` is the gradient (Theorem 16.1). The package names it ``lambda_x``;
  setting it to zero is the optimality condition (equation 4a).

These condition objects are the one representation that solving, generated code,
explanations, drawings and grading all read.
"""

from __future__ import annotations

import enum
import gc

import numpy as np
import sympy as sp

from .display import aligned, equation, latex, text
from .errors import ShapeError
from .matrices import MatrixOperation
from .partials import operation
from .values import finite

__all__ = [
    "AdjointCondition",
    "Contribution",
    "ForwardCondition",
    "Role",
    "Stationarity",
    "lagrangian",
    "stationarity",
]


class Role(str, enum.Enum):
    """What a condition of ``grad L = 0`` determines."""

    FORWARD = "forward"  # dL/dlambda_i = 0: the value z_i (Step 1)
    ADJOINT = "adjoint"  # dL/dz_j = 0: the multiplier lambda_j (Step 2)
    GRADIENT = "gradient"  # dL/dx for an input: the gradient (Theorem 16.1)


def lagrangian(graph) -> sp.Expr:
    """Equation 6 for ``graph``: ``z_n - sum_i lambda_i (z_i - f_i)``.

    A matrix node enters through the Frobenius product
    ``<Lambda_i, Z_i - F_i> = Trace(Lambda_i^T (Z_i - F_i))``.
    """
    terms = [scalar_output(graph)]
    for z in graph.defined:
        lam, residual = graph.multiplier(z), z - graph.expr(z)
        if isinstance(z, sp.MatrixSymbol):
            terms.append(-sp.Trace(lam.T * residual))
        else:
            terms.append(-lam * residual)
    return sp.Add(*terms)


def scalar_output(graph):
    """The output ``z_n``, which must be a scalar: problem 5 minimises it."""
    out = graph.output
    if isinstance(out, sp.MatrixSymbol):
        raise ShapeError(
            f"the output {out} is a {out.shape[0]} x {out.shape[1]} matrix, but it must be "
            f"a scalar (problem 5 minimises it): reduce it, for example "
            f"g.define('f', sp.Trace({out}.T * {out}))",
            node=out,
        )
    return out


class _Lazy:
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


class Contribution(_Lazy):
    """``lambda_i df_i/dz_j``: what the constraint of a reader ``i`` of ``z_j`` adds to
    the condition ``dL/dz_j = 0``.

    For a matrix constraint the contribution is the pullback of ``Lambda_i`` through
    ``F_i`` (a vector-Jacobian product), and :attr:`partial` is that pullback.
    """

    __slots__ = ("k", "multiplier", "node", "op", "reader", "reads")

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

    def partial_value(self, env):
        """The value of ``df_i/dz_j``; ``None`` for a pullback, which is a linear map."""
        if self.pullback:
            return None
        return self.op.local_value(self.k, self.reads, env[self.reader], env)


class ForwardCondition(_Lazy):
    """``dL/dlambda_i = f_i - z_i = 0``, solved for its unknown: ``z_i = f_i(z_alpha(i))``
    (equation 7)."""

    role = Role.FORWARD
    seed = 0
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

    def solve_symbolic(self, env):
        return _substitute(self.rhs, env)


class AdjointCondition(_Lazy):
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

    def __repr__(self) -> str:
        return f"AdjointCondition({self.unknown} = {self.rhs})"

    @property
    def rhs(self) -> sp.Expr:
        """``[j = n] + sum_i lambda_i df_i/dz_j``."""

        def build():
            if isinstance(self.unknown, sp.MatrixSymbol):
                if not self.contributions:
                    return sp.ZeroMatrix(*self.unknown.shape)
                return sp.MatAdd(*(t.expr for t in self.contributions)).doit()
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
        ``kinks`` (from :func:`adjoint.numeric.watch_kinks`) learns which contribution
        each kink met belongs to.
        """
        total = self.seed
        for t in self.contributions:
            if live is None or t.reader in live:
                if kinks is not None:
                    kinks.at = t
                total = total + t.value(env)
        if isinstance(total, int) and isinstance(self.unknown, sp.MatrixSymbol):
            return np.zeros(tuple(int(sp.sympify(d).xreplace(env)) for d in self.unknown.shape))
        return total

    def solve_symbolic(self, env):
        return _substitute(self.rhs, env)


def _substitute(expr, env):
    """``expr`` with the known values of its symbols put in (a symbolic solve)."""
    try:
        return expr.xreplace(env)
    except ValueError:  # Derivative(f(z), z) with z replaced by an expression
        return expr.subs({s: env[s] for s in expr.free_symbols if s in env}, simultaneous=True)


_TITLES = {
    Role.FORWARD: "Step 1, forward (dL/dlambda_i = 0)",
    Role.ADJOINT: "Step 2, backward (dL/dz_j = 0)",
    Role.GRADIENT: "gradient (lambda_x = dL/dx)",
}
_LATEX_TITLES = {
    Role.FORWARD: r"\text{Step 1 (forward): } \nabla_{\lambda}\mathcal{L} = 0",
    Role.ADJOINT: r"\text{Step 2 (backward): } \nabla_{z}\mathcal{L} = 0",
    Role.GRADIENT: r"\text{gradient: } \lambda_x = \nabla_{x}\mathcal{L}",
}


class Stationarity:
    """``grad L = 0`` for a graph.

    ``forward``, ``adjoint`` and ``gradient`` are lists of sympy ``Eq``;
    :attr:`forward_conditions` and :attr:`backward_conditions` (adjoint, then
    gradient) are the condition objects in solving order.
    """

    def __init__(self, output, forward, adjoint, gradient):
        self.output = output
        self.forward_conditions: tuple[ForwardCondition, ...] = forward
        self.backward_conditions: tuple[AdjointCondition, ...] = adjoint + gradient
        self._by_role = {Role.FORWARD: forward, Role.ADJOINT: adjoint, Role.GRADIENT: gradient}

    def conditions(self, role: Role | str | None = None) -> tuple:
        """The conditions of one role in solving order, or all of them."""
        if role is None:
            return self.forward_conditions + self.backward_conditions
        return self._by_role[Role(role)]

    @property
    def forward(self) -> list[sp.Eq]:
        """``dL/dlambda_i = 0``, i.e. ``z_i = f_i(z_alpha(i))``, in topological order."""
        return [c.eq for c in self._by_role[Role.FORWARD]]

    @property
    def adjoint(self) -> list[sp.Eq]:
        """``dL/dz_j = 0``, i.e. ``lambda_j = sum lambda_i df_i/dz_j``, output first."""
        return [c.eq for c in self._by_role[Role.ADJOINT]]

    @property
    def gradient(self) -> list[sp.Eq]:
        """For each input x: ``lambda_x = dL/dx``, the gradient of f (Theorem 16.1)."""
        return [c.eq for c in self._by_role[Role.GRADIENT]]

    @property
    def equations(self) -> list[sp.Eq]:
        """All the conditions, forward, adjoint, then gradient."""
        return self.forward + self.adjoint + self.gradient

    def __len__(self) -> int:
        return len(self.forward_conditions) + len(self.backward_conditions)

    def __repr__(self) -> str:
        lines = []
        for role, conditions in self._by_role.items():
            lines.append(f"{_TITLES[role]}:")
            lines += [f"  {c.unknown} = {text(c.rhs)}" for c in conditions]
        return "\n".join(lines)

    def _repr_latex_(self) -> str:
        rows = []
        for role, conditions in self._by_role.items():
            rows.append((None, _LATEX_TITLES[role]))
            rows += [(latex(c.unknown), latex(c.rhs)) for c in conditions]
        return aligned(rows)


def stationarity(graph) -> Stationarity:
    """``grad L = 0`` for ``graph``, assembled from the local partials of each ``f_i``;
    kept with the graph until it changes."""
    return graph.derived("stationarity", _assemble)


def _assemble(graph) -> Stationarity:
    # Each full collection of the cyclic garbage collector rescans every object alive,
    # here the graph's sympy objects, none of them garbage: that doubled the time of
    # this linear assembly. They are set aside (gc.freeze) while it runs, unless
    # someone else keeps objects frozen; the collector itself keeps running.
    mine = gc.get_freeze_count() == 0
    if mine:
        gc.freeze()
    try:
        return _conditions(graph)
    finally:
        if mine:
            gc.unfreeze()


def _conditions(graph) -> Stationarity:
    output = scalar_output(graph)
    incoming: dict[sp.Symbol, list[Contribution]] = {z: [] for z in graph.nodes}
    forward = []
    for z in graph.defined:
        node = graph.node(z)
        lam = graph.multiplier(z)
        if node.shape is None and all(graph.node(r).shape is None for r in node.reads):
            op = operation(node.expr, node.reads)
        else:
            op = MatrixOperation(node.expr, node.reads, lam, z)
        forward.append(ForwardCondition(z, lam, node.expr, op, node.reads))
        # Each edge j -> i contributes lambda_i df_i/dz_j to the condition of z_j.
        for k, j in enumerate(node.reads):
            if j in incoming:  # constants are data: no condition of their own
                incoming[j].append(Contribution(z, j, op, node.reads, k, lam))
    adjoint = tuple(
        AdjointCondition(Role.ADJOINT, z, graph.multiplier(z), tuple(incoming[z]), int(z == output))
        for z in reversed(graph.defined)
    )
    gradient = tuple(
        AdjointCondition(Role.GRADIENT, x, graph.multiplier(x), tuple(incoming[x]))
        for x in graph.inputs
    )
    return Stationarity(output, tuple(forward), adjoint, gradient)
