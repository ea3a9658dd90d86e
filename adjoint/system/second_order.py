"""Second order from the same Lagrangian: tangents and second-order adjoints.

Linearise the forward conditions ``z_i = f_i(z_alpha(i))`` along a direction ``v`` of
the inputs and they become the *tangent conditions*

    zdot_i = sum_{j in alpha(i)} df_i/dz_j zdot_j,        zdot_x = v_x for an input,

forward substitution on the triangular system whose back substitution is Step 2
(forward mode). Differentiate the adjoint conditions ``lambda_j = [j = n] + sum_i
lambda_i df_i/dz_j`` along that tangent and they become the *second-order adjoint
conditions*

    lambdadot_j = sum_{i in beta(j)} (lambdadot_i df_i/dz_j
                                      + lambda_i sum_{k in alpha(i)} d2f_i/dz_j dz_k zdot_k),

solved in reverse like Step 2; at the inputs ``lambdadot_x`` is the Hessian-vector
product (Pearlmutter's trick, forward-over-reverse).

Both are assembled from the condition objects of :mod:`adjoint.system.lagrangian`: the first
partials of its contributions and the second partials of each operation
(:meth:`adjoint.operations.partials.Operation.second_partial`, derived once per kind of
operation and instantiated per pair of edges into a node). Nothing composed is ever
differentiated: the work is linear in the nodes, the edges and the pairs of edges
that share a node.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import sympy as sp

from ..core.display import aligned, equation, latex, text
from ..core.errors import AdjointError, BadValueError, ShapeError
from ..core.expressions import free_symbols
from ..core.records import plain
from ..core.values import (
    as_array,
    as_number,
    as_numpy_numbers,
    as_sequence,
    by_node,
    finish,
    read_values,
)
from ..operations.checkpointing import check_checkpoints
from ..operations.matrices import reuse_output
from ..operations.matrices import tangent as tangent_of
from ..operations.numeric import check_kinks, numeric_function, watch_kinks
from .conditions import AdjointCondition
from .lagrangian import Role, stationarity
from .recurrences import RecurrenceSecondAdjoint, RecurrenceTangent, TangentPart
from .solve import NodeMap, forward_sweep, solve
from .sweep import Sweep, sweep

__all__ = [
    "HVP",
    "SecondAdjointCondition",
    "SecondOrder",
    "TangentCondition",
    "TangentSolution",
    "hessian",
    "hvp",
    "second_order",
    "sweeps",
    "tangent",
]


class Tangent(sp.Symbol):
    """``zdot_j``: the derivative of node ``z_j`` along the direction (forward mode)."""

    PREFIX = "zdot_"

    def _latex(self, printer) -> str:
        return r"\dot{" + printer._print(sp.Symbol(self.name[len(self.PREFIX) :])) + "}"


class MultiplierTangent(sp.Symbol):
    """``lambdadot_j``: the derivative of ``lambda_j`` along the direction."""

    PREFIX = "lambdadot_"

    def _latex(self, printer) -> str:
        node = printer._print(sp.Symbol(self.name[len(self.PREFIX) :]))
        return r"\dot{\lambda}_{" + node + "}"


class MatrixTangent(sp.MatrixSymbol):
    """``Zdot_j`` for a matrix node."""

    PREFIX = "zdot_"

    def _latex(self, printer) -> str:
        return r"\dot{" + printer._print(sp.Symbol(self.name[len(self.PREFIX) :])) + "}"


class MatrixMultiplierTangent(sp.MatrixSymbol):
    """``Lambdadot_j`` for a matrix node."""

    PREFIX = "lambdadot_"

    def _latex(self, printer) -> str:
        node = printer._print(sp.Symbol(self.name[len(self.PREFIX) :]))
        return r"\dot{\Lambda}_{" + node + "}"


def _dot_symbols(graph, scalar, matrix) -> dict:
    out = {}
    for z in graph.nodes:
        shape = graph.node(z).shape
        name = scalar.PREFIX + z.name
        out[z] = scalar(name, real=True) if shape is None else matrix(name, *z.shape)
    return out


class _Numeric:
    """An expression of nodes, multipliers and their tangents, evaluated from ``env``."""

    __slots__ = ("args", "expr", "fn")

    def __init__(self, expr):
        self.expr = expr
        self.args = tuple(free_symbols(expr))
        self.fn = numeric_function(self.args, expr)

    def __call__(self, env):
        return self.fn(*(env[a] for a in self.args))


class TangentCondition:
    """``zdot_i = sum_j df_i/dz_j zdot_j``: the forward condition of ``z_i`` linearised."""

    implicit = recurrent = False  # asked of every condition by the sweeps

    __slots__ = ("_numeric", "forward", "node", "unknown", "wrt")

    def __init__(self, forward, unknown, wrt):
        self.forward = forward  # the ForwardCondition z_i = f_i
        self.node = forward.unknown
        self.unknown = unknown  # zdot_i
        self.wrt = wrt  # {read: zdot_read} for the reads that are not constants
        self._numeric = None

    def edges(self):
        """``(k, z_j, zdot_j)`` for each argument of ``f_i`` that moves with the inputs."""
        for k, r in enumerate(self.forward.reads):
            if r in self.wrt:
                yield k, r, self.wrt[r]

    @property
    def rhs(self) -> sp.Expr:
        op, reads = self.forward.op, self.forward.reads
        if op.pullback:  # a matrix constraint: its tangent rules (adjoint.operations.matrices)
            return tangent_of(self.forward.rhs, self.wrt)
        return sp.Add(*(op.local(k, reads, None) * dot for k, _, dot in self.edges()))

    @property
    def numeric_rhs(self) -> sp.Expr:
        """A matrix constraint's tangent as programs compute it: a derivative declared
        with the node's own value (sigmoid' = s (1 - s)) reads the stored node."""
        f = self.forward
        return reuse_output(self.rhs, f.rhs, f.unknown)

    @property
    def eq(self) -> sp.Eq:
        return equation(self.unknown, self.rhs)

    def sweep(self, env, state) -> None:
        """Solve into ``env`` (see :func:`adjoint.system.sweep.sweep`)."""
        env[self.unknown] = self.solve(env)

    def solve(self, env):
        op, reads, out = self.forward.op, self.forward.reads, env[self.node]
        if op.pullback:
            if self._numeric is None:
                self._numeric = _Numeric(self.rhs)
            return _shaped(self._numeric(env), env[self.node])
        total = 0.0
        for k, _, dot in self.edges():
            total = total + op.local_value(k, reads, out, env) * env[dot]
        if not np.isfinite(out):
            return np.nan  # z_i outside its domain: no derivative there
        return total

    def __repr__(self) -> str:
        return f"TangentCondition({self.unknown} = {text(self.rhs)})"


class SecondAdjointCondition:
    """``lambdadot_j = sum_i (lambdadot_i df_i/dz_j + lambda_i sum_k d2f_i/dz_j dz_k
    zdot_k)``: the adjoint condition of ``z_j`` differentiated along the tangent."""

    implicit = recurrent = False  # asked of every condition by the sweeps
    __slots__ = ("_numeric", "adjoint", "dots", "multiplier_dots", "role", "unknown", "wrt")

    def __init__(self, adjoint, unknown, multiplier_dots, dots):
        self._numeric = {}
        self.adjoint = adjoint  # the AdjointCondition lambda_j = ...
        self.role = adjoint.role
        self.wrt = adjoint.wrt
        self.unknown = unknown  # lambdadot_j
        self.multiplier_dots = multiplier_dots  # {reader i: lambdadot_i}
        self.dots = dots  # {node: zdot}

    def pairs(self, t):
        """``(m, z_k, zdot_k)`` for each argument of ``f_i`` whose second partial with
        ``z_j`` is not zero (``t`` is the contribution of reader ``i``)."""
        for m in t.op.coupled(t.k):
            r = t.reads[m]
            if r in self.dots:
                yield m, r, self.dots[r]

    def matrix_term(self, t, moving: bool = True) -> sp.Expr:
        """A pullback ``J^T Lambda_i`` differentiated along the tangents of the nodes
        and of ``Lambda_i`` (forward-over-reverse, by the tangent rules); with
        ``moving=False``, ``Lambda_i`` held fixed (the output's, which is 1)."""
        dots = {r: self.dots[r] for r in t.reads if r in self.dots}
        if moving:
            dots[t.multiplier] = self.multiplier_dots[t.reader]
        return tangent_of(t.expr, dots)

    def numeric_matrix_term(self, t, reader_rhs, moving: bool = True) -> sp.Expr:
        """:meth:`matrix_term` as programs compute it, reading the stored value of the
        reader (whose right-hand side is ``reader_rhs``) where a derivative is declared
        with it."""
        return reuse_output(self.matrix_term(t, moving), reader_rhs, t.reader)

    @property
    def rhs(self) -> sp.Expr:
        terms = []
        if any(getattr(t, "recurrent", False) for t in self.adjoint.contributions):
            return self._with_recurrences()
        if isinstance(self.unknown, sp.MatrixSymbol):
            terms = [self.matrix_term(t) for t in self.adjoint.contributions]
            terms = [t for t in terms if not isinstance(t, sp.ZeroMatrix)]
            return sp.MatAdd(*terms) if terms else sp.ZeroMatrix(*self.unknown.shape)
        for t in self.adjoint.contributions:
            if t.pullback:
                terms.append(self.matrix_term(t))
                continue
            terms.append(self.multiplier_dots[t.reader] * t.partial)
            second = sp.Add(*(t.second_local(m) * dot for m, _, dot in self.pairs(t)))
            terms.append(t.multiplier * second)
        return sp.Add(*terms)

    def _with_recurrences(self):
        """The right side when a recurrence reads the node: its part is the tangent of
        what the costate loop gathered, written as ``d/ds`` of it."""
        terms = []
        for t in self.adjoint.contributions:
            if getattr(t, "recurrent", False):
                terms.append(sp.Derivative(t.expr, sp.Symbol("s")))
            elif isinstance(self.unknown, sp.MatrixSymbol) or t.pullback:
                terms.append(self.matrix_term(t))
            else:
                second = sp.Add(*(t.second_local(m) * dot for m, _, dot in self.pairs(t)))
                terms.append(self.multiplier_dots[t.reader] * t.partial + t.multiplier * second)
        if all(isinstance(t, sp.MatrixExpr) for t in terms):
            return sp.MatAdd(*terms)
        return sp.Add(*terms)

    @property
    def eq(self) -> sp.Eq:
        return equation(self.unknown, self.rhs)

    def sweep(self, env, state) -> None:
        """Solve into ``env`` (see :func:`adjoint.system.sweep.sweep`)."""
        env[self.unknown] = self.solve(env)

    def solve(self, env):
        total = 0.0
        if isinstance(self.unknown, sp.MatrixSymbol):
            total = np.zeros(np.shape(env[self.wrt]))
        for t in self.adjoint.contributions:
            if getattr(t, "recurrent", False):  # gathered by the recurrence's loop
                total = total + env[TangentPart(t.op.rec, t.node)]
                continue
            lam, out = env[t.multiplier], env[t.reader]
            if t.pullback:
                if t not in self._numeric:
                    self._numeric[t] = _Numeric(self.matrix_term(t))
                total = total + self._numeric[t](env)
                continue
            total = total + env[self.multiplier_dots[t.reader]] * t.partial_value(env)
            for m, _, dot in self.pairs(t):
                total = total + lam * t.second_value(m, env) * env[dot]
            if not np.isfinite(out) and lam != 0:
                return np.nan
        return _shaped(total, env[self.wrt])

    def __repr__(self) -> str:
        return f"SecondAdjointCondition({self.unknown} = {text(self.rhs)})"


class ImplicitTangent:
    """An implicit block's residuals linearised along the tangent:
    ``sum_k dr_i/dz_k zdot_k = 0``, solved for the block's tangents with ``dr_B/dz_B``
    (the tangent form of the implicit function theorem)."""

    implicit = True
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
            return [equation(tangent_of(f.residuals[0], dots), f.rhs)]
        moving = {**self._outside(), **{z: self.dots[z] for z in f.block}}
        return [
            equation(sp.Add(*(sp.diff(r, z) * dot for z, dot in moving.items())), sp.Integer(0))
            for r in f.residuals
        ]

    def sweep(self, env, state) -> None:
        """Solve into ``env``, with the block linearised once for both sweeps."""
        env.update(zip(self.unknowns, self.solve(env, _linearized(self, env, state.work))))

    def solve(self, env, linearization=None):
        f = self.forward
        linearization = linearization or f.linearize(env)
        if f.matrix:
            if self._numeric is None:  # the residual's tangent with the block's held still
                self._numeric = _Numeric(tangent_of(f.residuals[0], self._outside()))
            b = _shaped(self._numeric(env), env[f.block[0]])
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

    implicit = True
    role = Role.ADJOINT
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
        return tangent_of(op.local(reads.index(f.block[0])), dots)

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
        env.update(zip(self.unknowns, self.solve(env, _linearized(self, env, state.work))))

    def solve(self, env, linearization=None):
        f = self.adjoint.forward
        linearization = linearization or f.linearize(env)
        if f.matrix:
            if self._numeric is None:
                self._numeric = _Numeric(self._own_matrix_term())
            z = f.block[0]
            b = self.outside[0].solve(env) - _shaped(self._numeric(env), env[z])
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


def _shaped(value, like):
    """A matrix result with its node's shape (a zero tangent prints as a scalar 0)."""
    if np.ndim(like) and np.shape(value) != np.shape(like):
        return np.broadcast_to(value, np.shape(like)).astype(float)
    return value


_TITLES = {
    "tangent": "tangent, forward (zdot_i = sum_j df_i/dz_j zdot_j)",
    "adjoint": "second-order adjoint, backward (lambdadot_j = d lambda_j along zdot)",
    "hvp": "Hessian-vector product (lambdadot_x = (H v)_x)",
}
_LATEX_TITLES = {
    "tangent": r"\text{tangent (forward): } \dot{z}_i = \sum_j \frac{\partial f_i}"
    r"{\partial z_j} \dot{z}_j",
    "adjoint": r"\text{second-order adjoint (backward): } \dot{\lambda}_j = \sum_i "
    r"\Big(\dot{\lambda}_i \frac{\partial f_i}{\partial z_j} + \lambda_i \sum_k "
    r"\frac{\partial^2 f_i}{\partial z_j \partial z_k} \dot{z}_k\Big)",
    "hvp": r"\text{Hessian-vector product: } \dot{\lambda}_x = (\nabla^2 f\, v)_x",
}


class SecondOrder:
    """The tangent and second-order adjoint conditions of a graph.

    ``tangent``, ``adjoint`` and ``hvp`` are lists of sympy ``Eq``;
    ``tangent_conditions`` and ``backward_conditions`` (adjoint, then hvp) the
    condition objects in solving order.
    """

    def __init__(self, tangents, adjoint, gradient, dots, inputs):
        self.tangent_conditions: tuple[TangentCondition, ...] = tangents
        self.backward_conditions: tuple[SecondAdjointCondition, ...] = adjoint + gradient
        self.dots = dots  # {node: zdot_node}
        self.directions = {x: dots[x] for x in inputs}  # the direction's symbols
        self._groups = {"tangent": tangents, "adjoint": adjoint, "hvp": gradient}

    @property
    def tangent(self) -> list[sp.Eq]:
        """``zdot_i = sum_j df_i/dz_j zdot_j`` in topological order."""
        return [c.eq for c in self._groups["tangent"]]

    @property
    def adjoint(self) -> list[sp.Eq]:
        """The second-order adjoint conditions, output first."""
        return [c.eq for c in self._groups["adjoint"]]

    @property
    def hvp(self) -> list[sp.Eq]:
        """For each input x: ``lambdadot_x``, the entry x of (Hessian of f) v."""
        return [c.eq for c in self._groups["hvp"]]

    @property
    def equations(self) -> list[sp.Eq]:
        return self.tangent + self.adjoint + self.hvp

    def __len__(self) -> int:
        return len(self.tangent_conditions) + len(self.backward_conditions)

    def __repr__(self) -> str:
        lines = []
        for key, conditions in self._groups.items():
            lines.append(f"{_TITLES[key]}:")
            for c in conditions:
                if hasattr(c, "equations"):
                    note = getattr(c, "note", "solve")
                    lines += [f"  {text(e.lhs)} = {text(e.rhs)}   [{note}]" for e in c.equations]
                else:
                    lines.append(f"  {c.unknown} = {text(c.rhs)}")
        return "\n".join(lines)

    def _repr_latex_(self) -> str:
        rows = []
        for key, conditions in self._groups.items():
            rows.append((None, _LATEX_TITLES[key]))
            for c in conditions:
                if hasattr(c, "equations"):
                    note = r"\quad \text{(a solve)}"
                    if getattr(c, "recurrent", False):
                        note = r"\quad \text{(one loop over } t\text{)}"
                    rows += [(latex(e.lhs), latex(e.rhs) + note) for e in c.equations]
                else:
                    rows.append((latex(c.unknown), latex(c.rhs)))
        return aligned(rows)


def second_order(graph) -> SecondOrder:
    """The tangent and second-order adjoint conditions, assembled from the same
    condition objects as ``grad L = 0``; kept with the graph until it changes."""
    return graph.derived("second_order", _assemble)


def _assemble(graph) -> SecondOrder:
    kkt = stationarity(graph)
    dots = _dot_symbols(graph, Tangent, MatrixTangent)
    ldots = _dot_symbols(graph, MultiplierTangent, MatrixMultiplierTangent)
    tangents = tuple(
        RecurrenceTangent(c, dots)
        if getattr(c, "recurrent", False)
        else ImplicitTangent(c, dots)
        if getattr(c, "implicit", False)
        else TangentCondition(c, dots[c.unknown], {r: dots[r] for r in c.reads if r in dots})
        for c in kkt.forward_conditions
    )
    adjoint = tuple(
        RecurrenceSecondAdjoint(c, ldots, dots)
        if getattr(c, "recurrent", False)
        else ImplicitSecondAdjoint(c, ldots, dots)
        if getattr(c, "implicit", False)
        else SecondAdjointCondition(c, ldots[c.wrt], ldots, dots)
        for c in kkt.conditions(Role.ADJOINT)
    )
    gradient = tuple(
        SecondAdjointCondition(c, ldots[c.wrt], ldots, dots) for c in kkt.conditions(Role.GRADIENT)
    )
    return SecondOrder(tangents, adjoint, gradient, dots, graph.inputs)


def read_direction(graph, direction) -> dict:
    """A direction ``v``: one value for every input (arrays of the input's shape for
    matrix inputs), keyed by symbol or name; constants are data and do not move."""
    given = by_node(graph, direction, "the direction's values")
    for symbol in given:
        if symbol not in graph.inputs:
            raise BadValueError(
                f"the direction gives {symbol}, which is not an input: only inputs move "
                "along a direction (constants are data, nodes are computed)",
                node=symbol,
            )
    missing = [x for x in graph.inputs if x not in given]
    if missing:
        raise BadValueError(
            f"the direction gives no value for {', '.join(map(str, missing))}; give one for "
            "every input (0.0 to keep it fixed)",
            node=missing[0],
        )
    out = {}
    for x in graph.inputs:
        shape, steps = graph.node(x).shape, graph.node(x).steps
        if steps is not None:
            out[x] = as_sequence(x, given[x], steps, shape)
        else:
            out[x] = as_number(x, given[x]) if shape is None else as_array(x, given[x], shape)
    return out


def _check_direction_shapes(graph, env, v) -> None:
    """A matrix input's direction has the shape of the value given for it."""
    for x, value in v.items():
        if np.shape(value) != np.shape(env[x]):
            raise ShapeError(
                f"the direction of {x} has shape {np.shape(value)}, but the value of {x} has "
                f"shape {np.shape(env[x])}: a direction moves each input within its own shape",
                node=x,
            )


class TangentSolution:
    """The tangent conditions solved at a point along a direction: ``tangents[z]`` is
    ``zdot_z = d z / ds`` along ``x + s v``, ``derivative`` the output's, ``<grad f, v>``."""

    __slots__ = ("derivative", "tangents", "values")

    def __init__(self, values, tangents, output):
        self.values = NodeMap(values)
        self.tangents = NodeMap(tangents)
        self.derivative = tangents[output]

    def to_dict(self) -> dict:
        """As plain data (:func:`adjoint.core.records.plain`)."""
        return plain(
            {"derivative": self.derivative, "values": self.values, "tangents": self.tangents}
        )

    def __repr__(self) -> str:
        def show(v):
            return f"{v:.6g}" if np.ndim(v) == 0 else f"{np.shape(v)[0]}x{np.shape(v)[1]} array"

        rows = ", ".join(f"{z}: {show(v)}" for z, v in self.tangents.items())
        return f"TangentSolution(derivative={show(self.derivative)}; {rows})"


class HVP(NodeMap):
    """``{input: entry of (Hessian of f) v}``, in input order."""


def _sweeps(graph, so, env, v, checkpoints=None):
    """The tangent sweep (forward) and the second-order adjoint sweep (reverse) on
    ``env``, which holds the solution of grad L = 0; returns the new environment. A
    recurrence stores at most ``checkpoints`` states and tangents when given."""
    _check_direction_shapes(graph, env, v)
    env = dict(env)
    for x, value in v.items():
        env[so.directions[x]] = value
    # one linearisation per implicit block, a schedule per recurrence, for both sweeps
    state = Sweep(checkpoints=checkpoints)
    with np.errstate(all="ignore"):
        sweep(so.tangent_conditions, env, state)
        sweep(so.backward_conditions, env, state)
    return env


def _linearized(condition, env, work):
    """The linearisation of an implicit block at the solution, made once per sweep
    and kept in ``work`` for the block's other conditions."""
    block = condition.nodes
    if block not in work:
        forward = getattr(condition, "forward", None) or condition.adjoint.forward
        work[block] = forward.linearize(env)
    return work[block]


def _solved(graph, at, kinks="convention", solution=None):
    so = second_order(graph)
    sol = solve(graph, at, kinks=kinks) if solution is None else solution
    # numpy numbers, not Python floats: 1/0 is inf (and marked), never ZeroDivisionError
    return so, sol, as_numpy_numbers(sol.environment)


def tangent(
    graph, at: Mapping, direction: Mapping, *, kinks: str = "convention"
) -> TangentSolution:
    """Forward mode: the tangent conditions solved at ``at`` along ``direction``. At a
    kink a partial takes its conventional value, or ``nan`` with ``kinks="nan"`` (as
    in :func:`adjoint.system.solve.solve`)."""
    check_kinks(kinks)
    so = second_order(graph)
    env = forward_sweep(graph, read_values(graph, at))
    v = read_direction(graph, direction)
    _check_direction_shapes(graph, env, v)
    for x, value in v.items():
        env[so.directions[x]] = value
    with np.errstate(all="ignore"), watch_kinks(nan=kinks == "nan"):
        sweep(so.tangent_conditions, env, Sweep())
    nodes = (*graph.inputs, *graph.defined)
    tangents = {z: finish(env[so.dots[z]]) for z in nodes}
    return TangentSolution({z: finish(env[z]) for z in nodes}, tangents, graph.output)


def sweeps(
    graph, at: Mapping, direction: Mapping, *, kinks: str = "convention", solution=None
) -> dict:
    """Every value of both sweeps at ``at`` along ``direction``: ``{zdot_i: value,
    lambdadot_j: value}`` keyed by the unknowns of :func:`second_order`'s conditions,
    with the nodes' values and multipliers. ``solution``: grad L = 0 solved at ``at``
    already (it is not solved again)."""
    check_kinks(kinks)
    so, _, env = _solved(graph, at, kinks, solution)
    with watch_kinks(nan=kinks == "nan"):
        return _sweeps(graph, so, env, read_direction(graph, direction))


def hvp(
    graph,
    at: Mapping,
    direction: Mapping,
    *,
    kinks: str = "convention",
    solution=None,
    checkpoints: int | None = None,
) -> HVP:
    """(Hessian of f) v by the tangent sweep and the second-order adjoint sweep. At a
    kink the second partials take their conventional value (0 for ``|x|`` at 0, as in
    JAX), or ``nan`` with ``kinks="nan"``. ``solution``: grad L = 0 solved at ``at``
    already (many directions at one point need it solved once). ``checkpoints``: a
    recurrence stores at most that many states (with their tangents), forward over
    reverse on the binomial schedule."""
    check_kinks(kinks)
    check_checkpoints(checkpoints)
    if solution is None and checkpoints is not None:
        solution = solve(graph, at, kinks=kinks, checkpoints=checkpoints)
    so, _, env = _solved(graph, at, kinks, solution)
    with watch_kinks(nan=kinks == "nan"):
        env = _sweeps(graph, so, env, read_direction(graph, direction), checkpoints)
    gradient = so.backward_conditions[len(so.backward_conditions) - len(graph.inputs) :]
    return HVP({c.wrt: finish(env[c.unknown]) for c in gradient})


def hessian(graph, at: Mapping | None = None):
    """The Hessian of f, rows and columns in input order, by one Hessian-vector product
    per unit vector: a numpy array at ``at``, a sympy Matrix without it. The numeric
    Hessian is checked symmetric (the two sweeps do not make it so by construction).

    Matrix inputs count by their entries, each input's vectorised row by row (``vec``
    in C order: ``W[i, j]`` is entry ``i * cols + j`` of W's block), the inputs in
    order: a function of a 5 x 10 matrix has a 50 x 50 Hessian.
    """
    inputs = graph.inputs
    if at is None and graph.recurrences:
        graph.require_no_recurrence("the symbolic Hessian")
    if at is None and graph.blocks:
        raise AdjointError(
            "the symbolic Hessian through implicit nodes is not derived yet; give a point, "
            "g.hessian(at), for the numeric one",
            node=graph.blocks[0][0],
        )
    n = len(inputs)
    matrices = [x for x in inputs if graph.node(x).shape is not None]
    if matrices:
        if at is None:
            raise AdjointError(
                f"the symbolic Hessian is for scalar inputs, and {matrices[0]} is a matrix: "
                "give a point, g.hessian(at), for the Hessian over its entries",
                node=matrices[0],
            )
        return _entrywise_hessian(graph, at)
    if at is None:
        so, sol = second_order(graph), solve(graph)
        env = {**sol.values, **{graph.multiplier(z): lam for z, lam in sol.adjoints.items()}}
        columns = []
        for x in inputs:
            unit = {y: sp.Integer(int(y == x)) for y in inputs}
            env_x = _symbolic_sweeps(so, env, unit)
            columns.append([env_x[c.unknown] for c in so.backward_conditions[-n:]])
        return sp.Matrix(n, n, lambda i, j: columns[j][i])
    so, _, env = _solved(graph, at)
    H = np.empty((n, n))
    for j, x in enumerate(inputs):
        out = _sweeps(graph, so, env, {y: float(y == x) for y in inputs})
        H[:, j] = [out[c.unknown] for c in so.backward_conditions[-n:]]
    finite = np.isfinite(H) & np.isfinite(H.T)
    scale = max(1.0, float(np.max(np.abs(H[finite]), initial=0.0)))
    if not np.allclose(H[finite], H.T[finite], rtol=1e-9, atol=1e-12 * scale):
        raise AdjointError(
            "internal error: the Hessian from the second-order adjoint sweeps is not "
            f"symmetric (worst asymmetry {np.max(np.abs(H - H.T)[finite]):.3g}); please "
            "report this with the graph"
        )
    return H


def _entrywise_hessian(graph, at) -> np.ndarray:
    """The Hessian over the entries of every input, row-major within each input."""
    so, _, env = _solved(graph, at)
    shapes = [np.shape(env[x]) for x in graph.inputs]
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = np.cumsum([0, *sizes])
    H = np.empty((offsets[-1], offsets[-1]))
    gradient = so.backward_conditions[len(so.backward_conditions) - len(graph.inputs) :]
    for k, (x, shape) in enumerate(zip(graph.inputs, shapes)):
        for e in range(sizes[k]):
            unit = {y: np.zeros(s) if s else 0.0 for y, s in zip(graph.inputs, shapes)}
            if shape:
                unit[x] = np.zeros(shape)
                unit[x].flat[e] = 1.0
            else:
                unit[x] = 1.0
            out = _sweeps(graph, so, env, unit)
            H[:, offsets[k] + e] = np.concatenate(
                [np.ravel(np.asarray(out[c.unknown], dtype=float)) for c in gradient]
            )
    finite = np.isfinite(H) & np.isfinite(H.T)
    scale = max(1.0, float(np.max(np.abs(H[finite]), initial=0.0)))
    if not np.allclose(H[finite], H.T[finite], rtol=1e-9, atol=1e-12 * scale):
        raise AdjointError(
            "internal error: the Hessian from the second-order adjoint sweeps is not "
            f"symmetric (worst asymmetry {np.max(np.abs(H - H.T)[finite]):.3g}); please "
            "report this with the graph"
        )
    return H


def _symbolic_sweeps(so, env, v):
    env = dict(env)
    for x, value in v.items():
        env[so.directions[x]] = value
    for c in so.tangent_conditions:
        env[c.unknown] = c.rhs.xreplace(env)
    for c in so.backward_conditions:
        env[c.unknown] = c.rhs.xreplace(env)
    return env
