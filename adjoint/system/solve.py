"""Solving ``grad L = 0``: the two sweeps of the backpropagation algorithm.

The solver takes the stationarity conditions (:mod:`adjoint.system.lagrangian`) and solves
each for its own unknown, in an order in which everything it reads is known: the
system is triangular. Step 1 and Step 2 below are the lecture's two steps.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import sympy as sp

from ..core.display import equation, number, solution_latex, table, text
from ..core.errors import AdjointError, as_list
from ..core.expressions import free_symbols
from ..core.parsing import parse
from ..core.records import plain
from ..core.values import finish, finite, read_values
from ..operations.checkpointing import check_checkpoints
from ..operations.numeric import NoNumericRule, check_kinks, watch_kinks
from .graph import ConstraintGraph
from .implicit import report
from .lagrangian import ForwardCondition, stationarity
from .recurrences import recurrence_formula
from .split import split
from .sweep import Sweep, sweep

__all__ = ["Kink", "NodeMap", "Solution", "forward_sweep", "grad", "solve"]


def solve(
    graph,
    values: Mapping | None = None,
    *,
    expand: bool = True,
    kinks: str = "convention",
    checkpoints: int | None = None,
) -> Solution:
    """Solve ``grad L = 0`` for ``graph``: numerically at ``values`` (a number for every
    input and constant), or symbolically without them.

    At a kink (``relu`` or ``|x|`` at 0, ``max`` at a tie), where a partial does not
    exist, ``kinks="convention"`` takes the conventional one-sided value
    (``relu'(0) = 0``, ``sign(0) = 0``, ``Heaviside(0) = 1/2``, as JAX and PyTorch do)
    and ``kinks="nan"`` gives ``nan`` at the kinked entries only (unless the one-sided
    derivatives agree there). Either way every kink met is listed, per node and
    entry, in ``solution.kinks``.

    ``expand=False`` gives the symbolic solution in the lecture's own terms: each
    ``z_i`` as ``f_i`` of its parents and each ``lambda_j`` as Step 2 writes it,
    ``[j = n] + sum_i lambda_i df_i/dz_j``, in the named nodes and the readers'
    multipliers, with nothing composed into the inputs (which, for a deep graph, is
    exponentially longer).

    A recurrence stores every state for its reverse sweep, or with ``checkpoints=s`` at
    most ``s`` of them, recomputing the others by the binomial (revolve) schedule: the
    gradient is the same, ``solution.schedule`` counts the work, and the solution then
    keeps ``z_T`` for the states and ``lambda_0`` for the costates.
    """
    check_checkpoints(checkpoints)
    kkt = stationarity(graph)
    if not expand:
        if values is not None:
            raise AdjointError(
                "expand=False keeps the solution symbolic, in the lecture's terms; solve "
                "without values (g.solve(expand=False)), or with values and expand=True"
            )
        node_values = {z: z for z in (*graph.inputs, *graph.constants)}
        adjoints = {}
        for c in kkt.forward_conditions:
            if getattr(c, "implicit", False):
                node_values.update({z: z for z in c.nodes})  # tied to its residual
            else:
                node_values[c.unknown] = c.rhs
        for c in kkt.backward_conditions:
            if getattr(c, "implicit", False):
                adjoints.update(zip(c.nodes, c.solved()))
            else:
                adjoints[c.wrt] = c.rhs
        return Solution(graph, node_values, {z: adjoints[z] for z in graph.nodes}, True)
    check_kinks(kinks)
    symbolic = values is None
    if symbolic:
        env: dict = {s: s for s in (*graph.inputs, *graph.constants, *graph.dims)}
    else:
        env = read_values(graph, values)
    # what implicit blocks and recurrences keep between the sweeps (factorisations,
    # trajectories), the kinks met and the live readers: the one sweep's state
    state = Sweep(symbolic=symbolic, checkpoints=checkpoints)
    try:
        with np.errstate(all="ignore"), watch_kinks(nan=kinks == "nan") as met:
            state.kinks = met
            # Step 1: dL/dlambda_i = 0  <=>  z_i = f_i(z_alpha(i)), in topological order
            # (an implicit block: r_B = 0, by Newton's method).
            sweep(kkt.forward_conditions, env, state)
            # Step 2: dL/dz_j = 0  <=>  lambda_j = [j = n] + sum_{i in beta(j)} lambda_i
            # df_i/dz_j, in reverse order: every reader i of z_j comes before j (an
            # implicit block: one solve with (dr_B/dz_B)^T).
            state.live = _reaching(graph, graph.output)
            sweep(kkt.backward_conditions, env, state)
    except RecursionError:
        condition = state.condition
        raise AdjointError(
            f"the symbolic solution for {condition.unknown} is deeper than sympy can build "
            "(its simplifications recurse through the whole expression): solve at a point, "
            "g.solve({...}), or read the conditions themselves, g.stationarity(), where "
            "each is written in its neighbours' terms",
            node=condition.wrt,
        ) from None
    except np.linalg.LinAlgError as exc:
        condition = state.condition
        node = condition.unknown if isinstance(condition, ForwardCondition) else condition.wrt
        raise AdjointError(
            f"cannot solve for {condition.unknown} = {text(condition.rhs)} here: numpy says "
            f"{exc} (a matrix to invert is singular); choose values where it is invertible",
            node=node,
        ) from None
    except NoNumericRule:
        condition = state.condition
        node = condition.unknown if isinstance(condition, ForwardCondition) else condition.wrt
        raise AdjointError(
            f"cannot evaluate {condition.unknown} = {text(condition.rhs)} numerically: it "
            "has an undefined function or an unevaluated derivative; solve symbolically "
            "with g.solve(), or give the function a numeric implementation with "
            "adjoint.elementary",
            node=node,
        ) from None
    if not symbolic and not finite(env[graph.output]):
        # f is undefined here, so is its derivative by every input: an input f does
        # not read gets nan too, as compiled programs give
        for x in graph.inputs:
            lam = graph.multiplier(x)
            env[lam] = np.full(np.shape(env[lam]), np.nan)[()]
    if not symbolic:  # sizes of dimensions stay integers
        dims = set(graph.dims)
        env = {k: v if k in dims else finish(v, read_only=True) for k, v in env.items()}
    node_values = {z: env[z] for z in (*graph.inputs, *graph.constants, *graph.defined)}
    adjoints = {z: env[graph.multiplier(z)] for z in graph.nodes}
    undefined = {} if symbolic else _undefined(graph, node_values, adjoints)
    found = _kinks(met, kinks)
    work = state.work
    blocks = tuple(
        report(c, work[c.block])
        for c in (kkt.forward_conditions if graph.blocks else ())
        if c.implicit and c.block in work
    )
    counts = {rec.state: work[rec].counts for rec in graph.recurrences if rec in work}
    schedule = next(iter(counts.values())) if len(counts) == 1 else NodeMap(counts) or None
    return Solution(graph, node_values, adjoints, symbolic, undefined, found, env, blocks, schedule)


@dataclass(frozen=True)
class Kink:
    """A kink met while solving: the partial ``d node / d argument`` does not exist at
    ``entries`` (index tuples into the kinked expression of ``node``'s constraint; one
    empty tuple for a scalar), where it took the conventional value or ``nan``."""

    node: sp.Symbol
    argument: sp.Symbol
    entries: tuple[tuple[int, ...], ...]
    taken: str  # "convention" or "nan"

    def where(self) -> str:
        """The entries in words: "" for a scalar, "at entries (0, 1), (2, 0)" else."""
        if self.entries == ((),):
            return ""
        shown = ", ".join(str(e) for e in self.entries[:4])
        more = f" and {len(self.entries) - 4} more" if len(self.entries) > 4 else ""
        return f" at entr{'y' if len(self.entries) == 1 else 'ies'} {shown}{more}"

    def __str__(self) -> str:
        value = (
            "nan (kinks='nan')"
            if self.taken == "nan"
            else "the conventional one-sided value (relu'(0) = 0, sign(0) = 0, "
            "Heaviside(0) = 1/2); kinks='nan' gives nan instead"
        )
        return f"kink{self.where()}: d{self.node}/d{self.argument} is {value}"


def _kinks(met, taken: str) -> tuple[Kink, ...]:
    """The kinks recorded in ``met`` (contribution, mask) as :class:`Kink` s, one per
    partial, entries merged, in the order Step 2 met them."""
    found: dict = {}
    for t, mask in met.met:
        if t is None:  # not a partial of Step 2
            continue
        entries = found.setdefault((t.reader, t.node), set())
        entries.update(tuple(int(i) for i in e) for e in np.argwhere(mask))
    return tuple(Kink(r, j, tuple(sorted(e)), taken) for (r, j), e in found.items())


def _undefined(graph, values: dict, adjoints: dict) -> dict:
    """``{node: why}`` for each node whose value or multiplier is not a number here."""
    notes = {}
    for z in graph.defined:
        if not finite(values[z]):
            bad = next((p for p in graph.parents(z) if p in notes), None)
            notes[z] = (
                f"undefined: it reads {bad.name}, which is undefined"
                if bad is not None
                else "undefined: outside the domain of its constraint"
            )
    for z in graph.nodes:
        if z not in notes and not finite(adjoints[z]):
            notes[z] = (
                "no derivative here: a node outside its domain (or a kink, solved with "
                "kinks='nan') lies between it and the output"
            )
    return notes


def _reaching(graph, output) -> set:
    """The nodes the output depends on (itself included): the only readers whose
    multiplier is not 0."""
    live, stack = {output}, [output]
    while stack:
        for p in graph.parents(stack.pop()):
            if p not in live:
                live.add(p)
                stack.append(p)
    return live


def forward_sweep(graph, env: dict, shift: Mapping | None = None) -> dict:
    """Step 1 alone, on a copy of ``env`` (values of the inputs and constants, and
    possibly of nodes already solved), with ``shift[z]`` added to ``z``: to an input's
    value, or to a constraint, loosened to ``z_i = f_i + shift`` (for an implicit
    node, to ``r_i = shift``).

    Nodes in ``env`` that read nothing shifted keep their values; the others are
    solved again. Used by the checkers (differences) and by shadow prices.
    """
    env, shift = dict(env), dict(shift or {})
    changed = set()
    for z, amount in shift.items():
        if graph.node(z).kind != "defined":
            env[z] = env[z] + amount
            changed.add(z)
    # what must be solved again: what is loosened, unsolved, or reads what changed
    again = []
    for c in stationarity(graph).forward_conditions:
        loosened = any(z in shift for z in c.nodes)
        if c.recurrent and loosened:
            raise AdjointError(
                f"a recurrence's nodes ({', '.join(map(str, c.nodes))}) cannot be "
                "loosened one by one: shift the inputs it reads instead",
                node=c.nodes[0],
            )
        if loosened or changed.intersection(c.reads) or not all(z in env for z in c.nodes):
            again.append(c)
            changed.update(c.nodes)
    with np.errstate(all="ignore"):
        sweep(again, env, Sweep(shift=shift))
    return env


class NodeMap(Mapping):
    """A read-only mapping from node symbols to values; a node's name works as a key,
    and so does a plain ``Symbol`` of that name."""

    __slots__ = ("_data", "_names")

    def __init__(self, data: dict):
        self._data = dict(data)
        self._names = {k.name: k for k in self._data}

    def __getitem__(self, key):
        if key not in self._data:
            name = key if isinstance(key, str) else getattr(key, "name", None)
            if name in self._names:
                key = self._names[name]
        return self._data[key]

    def __contains__(self, key) -> bool:
        try:
            self[key]
        except (KeyError, TypeError):
            return False
        return True

    def __iter__(self) -> Iterator:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k}: {v}" for k, v in self._data.items()) + "}"

    def __reduce__(self):
        return (NodeMap, (self._data,))

    def to_dict(self) -> dict:
        """``{node name: value}`` as plain data (:func:`adjoint.core.records.plain`)."""
        return plain(dict(self))


class Solution:
    """The solution of ``grad L = 0``: every ``z``, every ``lambda``, and the gradient.

    ``values[z]`` is node z's value, ``adjoints[z]`` its multiplier ``lambda_z =
    d z_n / d z`` (Theorem 16.1), ``gradient`` the inputs' multipliers in input order
    and ``output`` the value of ``z_n``. Numbers are floats; a symbolic solution
    holds sympy expressions of the inputs. A solution never changes once made.

    ``sol[z]`` is the value of node ``z``, the same as ``sol.values[z]``.

    ``undefined`` names, with the reason, each node whose value is not a number (a
    constraint outside its domain, as ``log`` of a negative number) or whose
    multiplier is not (an undefined node between it and the output, or a kink solved
    with ``kinks="nan"``). There the multipliers are ``nan``: never a finite number
    computed through a ``nan``.

    ``kinks`` lists every kink met (:class:`Kink`: the node, the partial, the entries,
    and whether the conventional value or ``nan`` was taken there).

    ``blocks`` reports, for each implicit block, how it was solved
    (:class:`~adjoint.system.implicit.Block`: Newton's iterations, the final residual and the
    backward solve's relative residual). ``schedule`` counts a recurrence's forward
    steps, stored states and reverse steps (one per recurrence, by state, for several).
    """

    __slots__ = (
        "_formulas",
        "adjoints",
        "blocks",
        "environment",
        "gradient",
        "kinks",
        "output",
        "output_node",
        "schedule",
        "symbolic",
        "undefined",
        "values",
    )

    def __init__(
        self,
        graph,
        values: dict,
        adjoints: dict,
        symbolic: bool,
        undefined=None,
        kinks=(),
        environment=None,
        blocks=(),
        schedule=None,
    ):
        if environment is None:
            environment = {**values, **{graph.multiplier(z): v for z, v in adjoints.items()}}
        fields = {
            "undefined": NodeMap(undefined or {}),
            "kinks": tuple(kinks),
            "blocks": tuple(blocks),
            "schedule": schedule,
            # every value solving knew, keyed by symbol (nodes, multipliers, dimensions),
            # so that what reads a solution need not read the point and solve again
            "environment": MappingProxyType(dict(environment)),
            "values": NodeMap(values),
            "adjoints": NodeMap(adjoints),
            "gradient": NodeMap({x: adjoints[x] for x in graph.inputs}),
            "output_node": graph.output,
            "output": values[graph.output],
            "symbolic": symbolic,
            "_formulas": {z: _formula(graph, z) for z in graph.defined},
        }
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __getitem__(self, node):
        """``sol[z]`` is the value of node ``z`` (by symbol or name), as
        ``sol.values[z]``; its multiplier is ``sol.adjoints[z]``."""
        try:
            return self.values[node]
        except (KeyError, TypeError):
            raise KeyError(
                f"{node} is not a node of this solution; its nodes are "
                f"{', '.join(map(str, self.values))}"
            ) from None

    def __contains__(self, node) -> bool:
        return node in self.values

    __iter__ = None  # not a sequence: iterate over sol.values or sol.adjoints

    def __setattr__(self, name, value):
        raise AttributeError("a Solution does not change once made")

    def __reduce__(self):
        state = {name: getattr(self, name) for name in self.__slots__}
        state["environment"] = dict(self.environment)  # a mappingproxy does not pickle
        return (_rebuild_solution, (state,))

    def to_dict(self) -> dict:
        """The solution as plain data (:func:`adjoint.core.records.plain`): the output, the
        values, the multipliers and the gradient by node name, and what was undefined,
        the kinks, the blocks and the schedule."""
        return {
            "output": plain(self.output),
            "values": plain(self.values),
            "adjoints": plain(self.adjoints),
            "gradient": plain(self.gradient),
            "undefined": plain(self.undefined),
            "kinks": [str(k) for k in self.kinks],
            "blocks": plain(self.blocks),
            "schedule": plain(self.schedule),
            "symbolic": self.symbolic,
        }

    def rows(self) -> list[tuple]:
        """``(node, formula or role, value, lambda)`` for each node, in order."""
        rows = []
        for z, value in self.values.items():
            formula = self._formulas.get(z, "input" if z in self.adjoints else "constant")
            rows.append((z, formula, value, self.adjoints.get(z)))
        return rows

    def _repr_latex_(self) -> str:
        return solution_latex(self)

    def __repr__(self) -> str:
        body = [
            (
                str(z),
                text(f) if isinstance(f, sp.Basic) else f,
                number(v),
                "" if lam is None else number(lam),
            )
            for z, f, v, lam in self.rows()
        ]
        notes = self.notes()
        if not notes:
            shown = table(("node", "f_i", "z", "lambda"), body)
        else:
            column = ["; ".join(notes.get(z, ())) for z, *_ in self.rows()]
            shown = table(
                ("node", "f_i", "z", "lambda", "note"), [(*r, n) for r, n in zip(body, column)]
            )
        return "\n".join([shown, *map(repr, self.blocks)])

    def notes(self) -> dict:
        """``{node: (note, ...)}``: why a node is undefined, and the kinks of its
        constraint; what tables, explanations and drawings print beside it."""
        notes: dict = {}
        for z, why in self.undefined.items():
            notes.setdefault(z, []).append(why)
        for k in self.kinks:
            notes.setdefault(k.node, []).append(str(k))
        return {z: tuple(n) for z, n in notes.items()}


def _formula(graph, z):
    """What a solution's table shows for a defined node: ``f_i``, or ``r_i = 0``."""
    node = graph.node(z)
    if node.recurrence is not None:
        rec = node.recurrence
        return "recurrence" if z == rec.state else recurrence_formula(graph, rec, z)
    if node.implicit:
        return equation(node.residual, sp.Integer(0))
    return node.expr


def _rebuild_solution(state: dict) -> Solution:
    solution = object.__new__(Solution)
    state = {
        "blocks": (),
        "schedule": None,
        **state,
        "environment": MappingProxyType(state.get("environment", {})),
    }
    for name, value in state.items():
        object.__setattr__(solution, name, value)
    return solution


def grad(expr, wrt, at: Mapping | None = None):
    """The gradient of ``expr`` by the adjoint method.

    ``expr`` is split into a graph (``Graph.from_expr``) with ``wrt`` as inputs and
    any other free symbol as a constant; ``grad L = 0`` is solved for it.

    Parameters
    ----------
    expr : sympy.Expr or str
    wrt : Symbol or sequence of Symbols
    at : dict, optional
        Values for ``wrt`` (and any other symbol); the result is then numeric.

    Returns
    -------
    dict or value
        ``{symbol: derivative}`` in the order of ``wrt``; a single derivative when
        ``wrt`` is one symbol.

    Examples
    --------
    >>> import sympy as sp
    >>> x, y = sp.symbols("x y", real=True)
    >>> grad(sp.sin(x * y), [x, y])
    {x: y*cos(x*y), y: x*cos(x*y)}
    >>> grad(x**2, x, at={x: 3.0})
    6.0
    """
    single = isinstance(wrt, (sp.Symbol, sp.MatrixSymbol, str))
    wrt_list = [wrt] if single else as_list(wrt, "wrt")
    if isinstance(expr, str):
        expr = parse(expr)
    names = {w.name if isinstance(w, (sp.Symbol, sp.MatrixSymbol)) else w for w in wrt_list}
    constants = (
        [s for s in free_symbols(expr) if s.name not in names] if isinstance(expr, sp.Basic) else []
    )
    g = split(ConstraintGraph, expr, wrt_list, constants)
    sol = solve(g, at)
    return sol.gradient[g.inputs[0]] if single else dict(sol.gradient)
