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
  once per kind of operation (:mod:`adjoint.operations.partials`), or for a matrix node from the
  pullback of ``Lambda_i`` (:mod:`adjoint.operations.matrices`). That is O(|V| + |E|) work; L is
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

from typing import ClassVar

import sympy as sp

from ..core.display import latex, text
from ..core.errors import ShapeError
from ..operations.matrices import MatrixOperation
from ..operations.partials import operation
from .conditions import AdjointCondition, Contribution, ForwardCondition, Role, System
from .implicit import (
    ImplicitAdjoint,
    ImplicitForward,
    ResidualContribution,
    residual_operation,
)
from .recurrences import (
    RecurrenceAdjoint,
    RecurrenceContribution,
    RecurrenceForward,
    SequenceGradient,
    recurrence_terms,
)

__all__ = [
    "AdjointCondition",
    "Contribution",
    "ForwardCondition",
    "Role",
    "Stationarity",
    "lagrangian",
    "stationarity",
]


def lagrangian(graph) -> sp.Expr:
    """Equation 6 for ``graph``: ``z_n - sum_i lambda_i (z_i - f_i)``.

    A matrix node enters through the Frobenius product
    ``<Lambda_i, Z_i - F_i> = Trace(Lambda_i^T (Z_i - F_i))``.
    """
    out = scalar_output(graph)
    terms = [sp.Trace(out) if isinstance(out, sp.MatrixSymbol) else out]
    for z in graph.defined:
        if graph.node(z).recurrence is not None:
            if z == graph.node(z).recurrence.state:
                terms += recurrence_terms(graph, graph.node(z).recurrence)
            continue
        lam, residual = graph.multiplier(z), graph.residual(z)
        if isinstance(z, sp.MatrixSymbol):
            terms.append(-sp.Trace(lam.T * residual))
        else:
            terms.append(-lam * residual)
    return sp.Add(*terms)


def scalar_output(graph):
    """The output ``z_n``, which must be a scalar (or a 1 x 1 matrix, ``x.T*x``): problem
    5 minimises it."""
    out = graph.output
    if isinstance(out, sp.MatrixSymbol) and tuple(out.shape) != (1, 1):
        raise ShapeError(
            f"the output {out} is a {out.shape[0]} x {out.shape[1]} matrix, but it must be "
            f"a scalar (problem 5 minimises it): reduce it, for example "
            f"g.define('f', sp.Trace({out}.T * {out}))",
            node=out,
        )
    return out


class Stationarity(System):
    """``grad L = 0`` for a graph: a system of three roles, Step 1 (forward), Step 2
    (adjoint) and the gradient.

    ``forward``, ``adjoint`` and ``gradient`` are lists of sympy ``Eq``;
    :attr:`forward_conditions` and :attr:`backward_conditions` (adjoint, then
    gradient) are the condition objects in solving order.
    """

    TITLES: ClassVar[dict] = {
        Role.FORWARD: "Step 1, forward (dL/dlambda_i = 0)",
        Role.ADJOINT: "Step 2, backward (dL/dz_j = 0)",
        Role.GRADIENT: "gradient (lambda_x = dL/dx)",
    }
    LATEX_TITLES: ClassVar[dict] = {
        Role.FORWARD: r"\text{Step 1 (forward): } \nabla_{\lambda}\mathcal{L} = 0",
        Role.ADJOINT: r"\text{Step 2 (backward): } \nabla_{z}\mathcal{L} = 0",
        Role.GRADIENT: r"\text{gradient: } \lambda_x = \nabla_{x}\mathcal{L}",
    }

    def __init__(self, output, forward, adjoint, gradient):
        super().__init__({Role.FORWARD: forward, Role.ADJOINT: adjoint, Role.GRADIENT: gradient})
        self._edges = None  # {reader: its edges' contributions}, made when asked
        self.output = output
        self.forward_conditions: tuple = forward
        self.backward_conditions: tuple = adjoint + gradient

    @property
    def forward(self) -> list[sp.Eq]:
        """``dL/dlambda_i = 0``, i.e. ``z_i = f_i(z_alpha(i))``, in topological order (for
        an implicit node, ``r_i = 0``)."""
        return self.equations_of(Role.FORWARD)

    @property
    def adjoint(self) -> list[sp.Eq]:
        """``dL/dz_j = 0``, i.e. ``lambda_j = sum lambda_i df_i/dz_j``, output first (for
        an implicit block, ``sum_i (dr_i/dz_j) lambda_i = ...``, one per node)."""
        return self.equations_of(Role.ADJOINT)

    @property
    def gradient(self) -> list[sp.Eq]:
        """For each input x: ``lambda_x = dL/dx``, the gradient of f (Theorem 16.1)."""
        return self.equations_of(Role.GRADIENT)

    def edges_into(self, node) -> tuple:
        """The contributions of the edges into an explicit ``node`` (one per argument of
        its ``f_i`` that is not a constant, in order): Step 2 sums each at its other
        end, and the tangent of ``node`` sums them here."""
        if self._edges is None:  # second order asks: first order makes no index
            edges: dict = {}
            for c in self.backward_conditions:
                for group in c.contributions if c.implicit else (c.contributions,):
                    for t in group:
                        if type(t) is Contribution:  # an edge of an explicit node
                            edges.setdefault(t.reader, []).append(t)
            self._edges = {z: tuple(sorted(ts, key=_place)) for z, ts in edges.items()}
        return self._edges.get(node, ())

    @property
    def implicit(self) -> bool:
        """Whether some conditions are implicit (a residual, a transposed-Jacobian solve)."""
        return any(c.implicit for c in self.forward_conditions)

    def title(self, role) -> str:
        if self.implicit and role is not Role.GRADIENT:
            return self.TITLES[role] + _IMPLICIT_TITLES[role]
        return self.TITLES[role]

    def note(self, condition) -> str:
        """How an implicit or recurrent condition is solved, printed beside it."""
        if hasattr(condition, "note"):
            return condition.note
        if condition.role is Role.FORWARD:
            return "linear solve" if condition.method == "linear solve" else "Newton's method"
        return "solve with (dr/dz)^T"

    def latex_note(self, condition) -> str:
        return _LATEX_NOTES[self.note(condition)]

    def _recurrences(self) -> list:
        return [c for c in self.backward_conditions if hasattr(c, "hamiltonian")]

    def _closing_lines(self) -> list:
        """The Hamiltonian of each recurrence."""
        recurrences = self._recurrences()
        if not recurrences:
            return []
        return [_HAMILTONIAN_TITLE + ":"] + [
            f"  H_t({c.rec.state}) = {text(c.hamiltonian)}" for c in recurrences
        ]

    def _closing_rows(self) -> list:
        recurrences = self._recurrences()
        if not recurrences:
            return []
        return [(None, _HAMILTONIAN_LATEX)] + [
            (f"H_t({latex(c.rec.state)})", latex(c.hamiltonian)) for c in recurrences
        ]


_IMPLICIT_TITLES = {
    Role.FORWARD: ", with r_i = 0 for implicit nodes",
    Role.ADJOINT: ", back substitution except a solve with (dr/dz)^T per implicit block",
}

_HAMILTONIAN_TITLE = (
    "Hamiltonian of each recurrence (the lecture's sign: lambda_t = dH_t/dz_t, and "
    "dL/du_t = dH_t/du_t for a sequence input u)"
)
_HAMILTONIAN_LATEX = (
    r"\text{Hamiltonian: } \lambda_t = \partial H_t / \partial z_t,\ "
    r"\partial \mathcal{L} / \partial u_t = \partial H_t / \partial u_t"
)
_LATEX_NOTES = {
    "for t = 0 .. T-1": r"\quad \text{(for } t = 0, \dots, T-1\text{)}",
    "for t = 0 .. T-1, one loop": r"\quad \text{(for } t = 0, \dots, T-1\text{, one loop)}",
    "for t = T-1 .. 0, in reverse": r"\quad \text{(for } t = T-1, \dots, 0\text{, in reverse)}",
    "Newton's method": r"\quad \text{(Newton's method)}",
    "linear solve": r"\quad \text{(a linear solve)}",
    "solve with (dr/dz)^T": r"\quad \text{(a solve with }(\partial r/\partial z)^{T}\text{)}",
}


def _place(contribution) -> int:
    return contribution.k


def stationarity(graph) -> Stationarity:
    """``grad L = 0`` for ``graph``, assembled from the local partials of each ``f_i``;
    kept with the graph until it changes."""
    return graph.derived("stationarity", _conditions)


def _conditions(graph) -> Stationarity:
    output = scalar_output(graph)
    incoming: dict[sp.Symbol, list[Contribution]] = {z: [] for z in graph.nodes}
    forward = []
    implicit_forward, recurrent = {}, {}
    for z in graph.defined:
        node = graph.node(z)
        if node.recurrence is not None:
            rec = node.recurrence
            if z == rec.state:
                forward.append(RecurrenceForward(graph, rec))
                recurrent[rec] = RecurrenceAdjoint(graph, forward[-1])
                lam = graph.multiplier(z)
                for j in rec.reads:
                    if j in incoming:
                        incoming[j].append(RecurrenceContribution(z, j, recurrent[rec], (), 0, lam))
            continue
        if node.implicit:
            if z == node.block[0]:
                implicit_forward[node.block] = _implicit(graph, node.block, incoming)
                forward.append(implicit_forward[node.block])
            continue
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
    adjoint = []
    for z in reversed(graph.defined):
        node = graph.node(z)
        block, rec = node.block, node.recurrence
        if rec is not None and z == rec.state:  # the costates, one loop in reverse
            adjoint.append(recurrent[rec])
        elif not block:
            adjoint.append(
                AdjointCondition(
                    Role.ADJOINT, z, graph.multiplier(z), tuple(incoming[z]), int(z == output)
                )
            )
        elif z == block[-1]:  # the block's one system, where reverse order meets it
            adjoint.append(
                ImplicitAdjoint(
                    implicit_forward[block],
                    (tuple(incoming[b]) for b in block),
                    (int(b == output) for b in block),
                )
            )
    adjoint = tuple(adjoint)
    gradient = tuple(
        (SequenceGradient if graph.node(x).steps is not None else AdjointCondition)(
            Role.GRADIENT, x, graph.multiplier(x), tuple(incoming[x])
        )
        for x in graph.inputs
    )
    return Stationarity(output, tuple(forward), adjoint, gradient)


def _implicit(graph, block, incoming) -> ImplicitForward:
    """The forward condition of an implicit block; the edges from outside the block add
    ``-lambda_i dr_i/dz_j`` to the conditions of the nodes they read."""
    ops = tuple(residual_operation(graph, z) for z in block)
    for z, op in zip(block, ops):
        reads, lam = graph.node(z).reads, graph.multiplier(z)
        for k, j in enumerate(reads):
            if j in incoming and j not in block:
                incoming[j].append(ResidualContribution(z, j, op, reads, k, lam))
    return ImplicitForward(graph, block, ops)
