"""The Lagrangian of the constraint system and its stationarity conditions.

For ``min z_n  s.t.  z_i = f_i(z_alpha(i))`` (problem 5) the Lagrangian is

    L = z_n - sum_i lambda_i (z_i - f_i(z_alpha(i)))          (equation 6)

and ``grad L = 0`` splits by the variable differentiated:

* ``dL/dlambda_i = f_i - z_i = 0``, so ``z_i = f_i``: Step 1, the forward pass;
* ``dL/dz_j = [j = n] - lambda_j + sum_{i in beta(j)} lambda_i df_i/dz_j = 0``, so
  ``lambda_j = [j = n] + sum_{i in beta(j)} lambda_i df_i/dz_j``: Step 2, backward;
* for an input x, which has no constraint, ``dL/dx = sum_{i in beta(x)} lambda_i df_i/dx``:
  the gradient (Theorem 16.1), to be set to 0 for a stationary point of f.

Each condition is linear in its own unknown with coefficient -1 (z_i appears in L
only in its own constraint, since f_i cannot read z_i in a DAG), so solving it is
evaluating the rest. Each is assembled from the local partials of the ``f_i`` that
read ``z_j``: O(|V| + |E|) in all, never a derivative of L itself.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import sympy as sp

from .display import aligned, latex, text
from .errors import ShapeError
from .matrices import MatrixOperation
from .partials import Operation, operation

__all__ = ["Condition", "Stationarity", "Term", "lagrangian", "stationarity"]

FORWARD, ADJOINT, GRADIENT = "forward", "adjoint", "gradient"


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


@dataclass(frozen=True, eq=False)
class Term:
    """One summand of a condition's right-hand side.

    In a forward condition it is ``f_i`` itself; in an adjoint or gradient condition
    it is ``lambda_i * df_i/dz_j``, the contribution of one child ``i`` of ``z_j``.
    """

    node: sp.Symbol  # i: the node whose constraint gives this term
    op: Operation  # f_i as an operation of its arguments
    reads: tuple[sp.Symbol, ...]  # f_i's arguments
    k: int | None  # df_i/d(reads[k]); None for f_i itself
    multiplier: sp.Symbol | None  # lambda_i; None in a forward condition
    f: sp.Expr | None = None  # f_i as the user wrote it, in a forward term

    @cached_property
    def partial(self) -> sp.Expr:
        """``df_i/dz_j`` in the node's own symbols (``f_i`` for a forward term).

        Scalar nodes only: a matrix node's contribution is a pullback of its
        multiplier (``expr``), not a product with a partial.
        """
        if self.k is None:
            return self.f
        return self.op.instantiate(self.op.partial(self.k), self.reads)

    @cached_property
    def expr(self) -> sp.Expr:
        """The term as a sympy expression (built on first use: the solver needs none)."""
        if self.k is None:
            return self.f
        return self.op.term(self.k, self.reads, self.multiplier)

    def evaluate(self, env):
        """The term's value, given values for ``f_i``'s arguments and ``lambda_i``."""
        args = [env[r] for r in self.reads]
        if self.k is None:
            return self.op.value(args, env)
        return self.op.term_value(self.k, args, env[self.multiplier], env)


@dataclass(frozen=True, eq=False)
class Condition:
    """One condition ``dL/d(wrt) = 0`` of ``grad L = 0``, solved for its unknown.

    The solved form is ``unknown = seed + sum(terms)``.
    """

    role: str  # "forward", "adjoint" or "gradient"
    wrt: sp.Symbol  # the variable L is differentiated by: lambda_i, or z_j
    unknown: sp.Symbol  # what the condition determines: z_i, or lambda_j
    terms: tuple[Term, ...]
    seed: int = 0  # dz_n/dz_j: 1 for the output, else 0

    @cached_property
    def rhs(self) -> sp.Expr:
        """The right-hand side once the condition is solved for its unknown."""
        if isinstance(self.unknown, sp.MatrixSymbol):
            if not self.terms:
                return sp.ZeroMatrix(*self.unknown.shape)
            return sp.MatAdd(*(t.expr for t in self.terms)).doit()
        return sp.Add(sp.Integer(self.seed), *(t.expr for t in self.terms))

    @property
    def residual(self) -> sp.Expr:
        """``dL/d(wrt)`` itself: what the condition sets to zero.

        For an input this is the gradient of f, not yet set to zero; ``lambda_x``
        names it.
        """
        if self.role == GRADIENT:
            return self.rhs
        if isinstance(self.unknown, sp.MatrixSymbol):
            return sp.MatAdd(self.rhs, -self.unknown)
        return self.rhs - self.unknown

    @cached_property
    def eq(self) -> sp.Eq:
        """The condition as ``Eq(unknown, rhs)``."""
        return sp.Eq(self.unknown, self.rhs, evaluate=False)

    def solve(self, env, symbolic: bool = False):
        """The unknown's value, given the values of everything else it reads.

        ``env`` maps symbols (z's and lambda's) to numbers, or, when ``symbolic``,
        to sympy expressions.
        """
        if symbolic:
            try:
                return self.rhs.xreplace(env)
            except ValueError:  # Derivative(f(z), z) with z replaced by an expression
                return self.rhs.subs(
                    {s: env[s] for s in self.rhs.free_symbols if s in env}, simultaneous=True
                )
        total = self.seed
        for term in self.terms:
            total = total + term.evaluate(env)
        if isinstance(self.unknown, sp.MatrixSymbol) and not self.terms:
            return np.zeros(tuple(int(sp.sympify(d).xreplace(env)) for d in self.unknown.shape))
        return total


class Stationarity:
    """``grad L = 0`` for a graph, grouped by role.

    ``forward``, ``adjoint`` and ``gradient`` are lists of sympy ``Eq``;
    ``conditions(role)`` gives the :class:`Condition` objects the solver consumes.
    """

    def __init__(self, output, forward, adjoint, gradient):
        self.output = output
        self._conditions = {FORWARD: forward, ADJOINT: adjoint, GRADIENT: gradient}

    def conditions(self, role: str | None = None) -> tuple[Condition, ...]:
        """The conditions of one role (in solving order), or all of them."""
        if role is None:
            return sum(self._conditions.values(), ())
        return self._conditions[role]

    @property
    def forward(self) -> list[sp.Eq]:
        """``dL/dlambda_i = 0``, i.e. ``z_i = f_i(z_alpha(i))``, in topological order."""
        return [c.eq for c in self._conditions[FORWARD]]

    @property
    def adjoint(self) -> list[sp.Eq]:
        """``dL/dz_j = 0``, i.e. ``lambda_j = sum lambda_i df_i/dz_j``, output first."""
        return [c.eq for c in self._conditions[ADJOINT]]

    @property
    def gradient(self) -> list[sp.Eq]:
        """For each input x: ``lambda_x = dL/dx``, the gradient of f (Theorem 16.1)."""
        return [c.eq for c in self._conditions[GRADIENT]]

    @property
    def equations(self) -> list[sp.Eq]:
        """All the conditions, forward, adjoint, then gradient."""
        return self.forward + self.adjoint + self.gradient

    def __len__(self) -> int:
        return sum(len(c) for c in self._conditions.values())

    def __repr__(self) -> str:
        titles = {
            FORWARD: "Step 1, forward (dL/dlambda_i = 0)",
            ADJOINT: "Step 2, backward (dL/dz_j = 0)",
            GRADIENT: "gradient (lambda_x = dL/dx)",
        }
        lines = []
        for role, title in titles.items():
            lines.append(f"{title}:")
            lines += [f"  {c.unknown} = {text(c.rhs)}" for c in self._conditions[role]]
        return "\n".join(lines)

    def _repr_latex_(self) -> str:
        titles = {
            FORWARD: r"\text{Step 1 (forward): } \nabla_{\lambda}\mathcal{L} = 0",
            ADJOINT: r"\text{Step 2 (backward): } \nabla_{z}\mathcal{L} = 0",
            GRADIENT: r"\text{gradient: } \lambda_x = \nabla_{x}\mathcal{L}",
        }
        rows = []
        for role, title in titles.items():
            rows.append((None, title))
            rows += [(latex(c.unknown), latex(c.rhs)) for c in self._conditions[role]]
        return aligned(rows)


def stationarity(graph) -> Stationarity:
    """Derive ``grad L = 0`` for ``graph`` from the local partials of each ``f_i``."""
    # The cyclic garbage collector rescans every live object as these objects are
    # made, which makes a linear construction quadratic on large graphs; nothing
    # made here is cyclic garbage.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _stationarity(graph)
    finally:
        if enabled:
            gc.enable()


def _stationarity(graph) -> Stationarity:
    output = scalar_output(graph)
    incoming: dict[sp.Symbol, list[Term]] = {z: [] for z in graph.nodes}
    forward = []
    for z in graph.defined:
        node = graph.node(z)
        if node.shape is None and all(graph.node(r).shape is None for r in node.reads):
            op = operation(node.expr, node.reads)
        else:
            op = MatrixOperation(node.expr, node.reads, graph.multiplier(z))
        lam = graph.multiplier(z)
        forward.append(
            Condition(FORWARD, lam, z, (Term(z, op, node.reads, None, None, node.expr),))
        )
        # Each edge j -> i contributes lambda_i df_i/dz_j to the condition of z_j.
        for k, j in enumerate(node.reads):
            if j in incoming:  # constants are data: no condition of their own
                op.derive(k)  # derived here (once per kind of operation); built on use
                incoming[j].append(Term(z, op, node.reads, k, lam))
    adjoint = tuple(
        Condition(ADJOINT, z, graph.multiplier(z), tuple(incoming[z]), int(z == output))
        for z in reversed(graph.defined)
    )
    gradient = tuple(
        Condition(GRADIENT, x, graph.multiplier(x), tuple(incoming[x])) for x in graph.inputs
    )
    return Stationarity(output, tuple(forward), adjoint, gradient)
