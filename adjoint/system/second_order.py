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
from typing import ClassVar

import numpy as np
import sympy as sp

from ..core.errors import AdjointError, BadValueError, ShapeError
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
from ..operations.numeric import check_kinks, watch_kinks
from .conditions import Role, SecondAdjointCondition, System, TangentCondition
from .implicit import ImplicitSecondAdjoint, ImplicitTangent
from .lagrangian import stationarity
from .recurrences import RecurrenceSecondAdjoint, RecurrenceTangent
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


class SecondOrder(System):
    """The tangent and second-order adjoint conditions of a graph: a system of three
    roles, the tangents (forward), the second-order adjoints (backward) and the
    Hessian-vector product.

    ``tangent``, ``adjoint`` and ``hvp`` are lists of sympy ``Eq``;
    ``tangent_conditions`` and ``backward_conditions`` (adjoint, then hvp) the
    condition objects in solving order.
    """

    TITLES: ClassVar[dict] = {
        Role.TANGENT: "tangent, forward (zdot_i = sum_j df_i/dz_j zdot_j)",
        Role.SECOND_ADJOINT: "second-order adjoint, backward (lambdadot_j = d lambda_j along zdot)",
        Role.HVP: "Hessian-vector product (lambdadot_x = (H v)_x)",
    }
    LATEX_TITLES: ClassVar[dict] = {
        Role.TANGENT: r"\text{tangent (forward): } \dot{z}_i = \sum_j \frac{\partial f_i}"
        r"{\partial z_j} \dot{z}_j",
        Role.SECOND_ADJOINT: r"\text{second-order adjoint (backward): } \dot{\lambda}_j = "
        r"\sum_i \Big(\dot{\lambda}_i \frac{\partial f_i}{\partial z_j} + \lambda_i \sum_k "
        r"\frac{\partial^2 f_i}{\partial z_j \partial z_k} \dot{z}_k\Big)",
        Role.HVP: r"\text{Hessian-vector product: } \dot{\lambda}_x = (\nabla^2 f\, v)_x",
    }

    def __init__(self, tangents, adjoint, gradient, dots, inputs):
        super().__init__({Role.TANGENT: tangents, Role.SECOND_ADJOINT: adjoint, Role.HVP: gradient})
        self.tangent_conditions: tuple = tangents
        self.backward_conditions: tuple = adjoint + gradient
        self.dots = dots  # {node: zdot_node}
        self.directions = {x: dots[x] for x in inputs}  # the direction's symbols

    @property
    def tangent(self) -> list[sp.Eq]:
        """``zdot_i = sum_j df_i/dz_j zdot_j`` in topological order."""
        return self.equations_of(Role.TANGENT)

    @property
    def adjoint(self) -> list[sp.Eq]:
        """The second-order adjoint conditions, output first."""
        return self.equations_of(Role.SECOND_ADJOINT)

    @property
    def hvp(self) -> list[sp.Eq]:
        """For each input x: ``lambdadot_x``, the entry x of (Hessian of f) v."""
        return self.equations_of(Role.HVP)

    def latex_note(self, condition) -> str:
        if condition.recurrent:
            return r"\quad \text{(one loop over } t\text{)}"
        return r"\quad \text{(a solve)}"


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
        if c.recurrent
        else ImplicitTangent(c, dots)
        if c.implicit
        else TangentCondition(c, dots[c.unknown], kkt.edges_into(c.unknown), dots)
        for c in kkt.forward_conditions
    )
    adjoint = tuple(
        RecurrenceSecondAdjoint(c, ldots, dots)
        if c.recurrent
        else ImplicitSecondAdjoint(c, ldots, dots)
        if c.implicit
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
        # named as a direction, and free of x's assumptions: a positive x may move back
        label = f"the direction of {x}"
        try:
            if steps is not None:
                out[x] = as_sequence(label, given[x], steps, shape)
            elif shape is None:
                out[x] = as_number(label, given[x])
            else:
                out[x] = as_array(label, given[x], shape)
        except (BadValueError, ShapeError) as exc:
            raise type(exc)(str(exc), node=x) from None
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
    return HVP({c.wrt: finish(env[c.unknown]) for c in so.conditions(Role.HVP)})


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
    if at is not None:
        return _entrywise_hessian(graph, at)
    matrices = [x for x in inputs if graph.node(x).shape is not None]
    if matrices:
        raise AdjointError(
            f"the symbolic Hessian is for scalar inputs, and {matrices[0]} is a matrix: "
            "give a point, g.hessian(at), for the Hessian over its entries",
            node=matrices[0],
        )
    so, sol = second_order(graph), solve(graph)
    env = {**sol.values, **{graph.multiplier(z): lam for z, lam in sol.adjoints.items()}}
    columns = []
    for x in inputs:
        env_x = {**env, **{so.directions[y]: sp.Integer(int(y == x)) for y in inputs}}
        sweep(so.conditions(), env_x, Sweep(symbolic=True))
        columns.append([env_x[c.unknown] for c in so.conditions(Role.HVP)])
    n = len(inputs)
    return sp.Matrix(n, n, lambda i, j: columns[j][i])


def _entrywise_hessian(graph, at) -> np.ndarray:
    """The Hessian over the entries of every input, row-major within each input."""
    so, _, env = _solved(graph, at)
    shapes = [np.shape(env[x]) for x in graph.inputs]
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = np.cumsum([0, *sizes])
    H = np.empty((offsets[-1], offsets[-1]))
    gradient = so.conditions(Role.HVP)
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
    return _symmetric(H)


def _symmetric(H: np.ndarray) -> np.ndarray:
    """``H``, checked symmetric where finite (the two sweeps do not make it so by
    construction: an asymmetry is a bug)."""
    finite = np.isfinite(H) & np.isfinite(H.T)
    scale = max(1.0, float(np.max(np.abs(H[finite]), initial=0.0)))
    if not np.allclose(H[finite], H.T[finite], rtol=1e-9, atol=1e-12 * scale):
        raise AdjointError(
            "internal error: the Hessian from the second-order adjoint sweeps is not "
            f"symmetric (worst asymmetry {np.max(np.abs(H - H.T)[finite]):.3g}); please "
            "report this with the graph"
        )
    return H
