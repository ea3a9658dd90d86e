"""The constraint system ``z_i = f_i(z_alpha(i))`` and its computation graph.

A :class:`ConstraintGraph` holds inputs, constants (data: a value at solve time, but
no variable of the problem) and defined nodes, each with its right-hand side ``f_i``.
Nodes can only read nodes declared before them, so declaration order is a
topological order and no sort is ever needed.

This module sits at the bottom of the package and imports nothing above it. The
Lagrangian, the stationarity conditions, the solution and every display are derived
by the modules above, as functions of a graph; :class:`adjoint.Graph` (in
:mod:`adjoint.api`) adds them as methods.
"""

from __future__ import annotations

import gc
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass

import networkx as nx
import numpy as np
import sympy as sp
from sympy.core.function import Application

from ..core.errors import (
    AdjointError,
    BadValueError,
    CycleError,
    DuplicateNameError,
    ExpressionError,
    ShapeError,
    UnknownSymbolError,
    as_list,
)
from ..core.expressions import expand_sums, free_symbols, postorder, scan
from ..core.parsing import parse
from ..core.symbols import (
    CHECKS,
    STEP,
    MatrixMultiplier,
    Multiplier,
    multiplier_of,
    node_symbol,
)

__all__ = ["STEP", "ConstraintGraph", "Node", "Recurrence"]

INPUT, CONSTANT, DEFINED = "input", "constant", "defined"
_A_KIND = {INPUT: "an input", CONSTANT: "a constant", DEFINED: "a defined node"}


_SETTING_ASIDE = False  # whether a derived view being built has set the collector's objects aside


@dataclass(frozen=True, eq=False)
class Recurrence:
    """A rolled recurrence ``z_{t+1} = step(z_t, ..., t)``, ``z_0 = init``, for ``t = 0 ..
    steps - 1``, declared once: ``state`` is the symbol ``z`` (``z_t`` in ``step`` and
    ``cost``), ``final`` the node ``z_T`` and ``cost`` the node ``sum_{t<T} cost(z_t, t)``
    (``None`` without a cost). ``reads`` are the nodes ``step``, ``init`` and ``cost``
    read: parameters (read at every step) and sequences (their value at t)."""

    state: sp.Symbol
    step: sp.Expr
    init: sp.Expr
    steps: int
    final: sp.Symbol
    cost: sp.Symbol | None
    stage: sp.Expr | None  # the stage cost l(z_t, ..., t)
    reads: tuple

    @property
    def name(self) -> str:
        return self.state.name

    def __repr__(self) -> str:
        return f"Recurrence({self.state.name}, {self.steps} steps)"

    def __str__(self) -> str:
        return self.state.name


@dataclass(frozen=True)
class Node:
    """One node of the graph: its symbol, its role and, if defined, its constraint."""

    symbol: sp.Symbol
    kind: str  # "input", "constant" or "defined"
    index: int  # position in declaration order
    expr: sp.Expr | None = None  # f_i, for defined nodes
    reads: tuple[sp.Symbol, ...] = ()  # every node f_i reads, constants too, in order
    parents: tuple[sp.Symbol, ...] = ()  # alpha(i): the variables among `reads`
    shape: tuple | None = None  # (rows, cols) of a matrix node; None for a scalar
    rule: Implicit | None = None  # its residual, for a node defined implicitly
    steps: int | None = None  # a sequence: one value per step t = 0 .. steps - 1
    recurrence: Recurrence | None = None  # the recurrence a node belongs to

    @property
    def implicit(self) -> bool:
        """Whether the node is defined by a residual ``r_i = 0`` rather than ``z_i = f_i``."""
        return self.rule is not None

    @property
    def residual(self) -> sp.Expr | None:
        """``r_i``, for an implicit node."""
        return None if self.rule is None else self.rule.residual

    @property
    def block(self) -> tuple:
        """The unknowns solved with an implicit node (itself too); empty for the others."""
        return () if self.rule is None else self.rule.block


@dataclass(frozen=True)
class Implicit:
    """How an implicit node is defined and solved: its residual, the block of unknowns
    solved together, Newton's first guess (a number, an array or an expression), the
    tolerance on its step and its iteration limit."""

    residual: sp.Expr
    block: tuple
    guess: object = None
    tolerance: float = 1e-10
    iterations: int = 50


class ConstraintGraph:
    """A system of constraints ``z_i = f_i(z_alpha(i))`` forming a DAG.

    Examples
    --------
    >>> import sympy as sp
    >>> g = ConstraintGraph()
    >>> x, y = g.input("x"), g.input("y")
    >>> z1 = g.define("z1", x * y)
    >>> z2 = g.define("z2", sp.sin(z1) + x)
    >>> g.parents(z2), g.children(x)
    ((x, z1), (z1, z2))
    """

    def __init__(self) -> None:
        self._nodes: dict[sp.Symbol, Node] = {}
        self._by_name: dict[str, sp.Symbol] = {}
        self._children: dict[sp.Symbol, list[sp.Symbol]] = {}
        self._dims: dict[str, sp.Symbol] = {}  # symbolic matrix dimensions, by name
        self._multipliers: dict = {}
        self._explicit_output: sp.Symbol | None = None
        self._last_defined: sp.Symbol | None = None
        self._cache: dict = {}
        self._rolled = False  # whether a sequence or a recurrence was declared

    # -- declaring ---------------------------------------------------------

    def input(self, name, shape=None) -> sp.Symbol:
        """Declare an input ``z_1 .. z_d``: a variable with no constraint of its own.

        With ``shape=(rows, cols)`` (integers or sympy symbols) it is a matrix and
        the call returns a ``MatrixSymbol``.
        """
        return self._declare(name, INPUT, shape)

    def constant(self, name, shape=None) -> sp.Symbol:
        """Declare data: a value given at solve time, with no multiplier and no gradient."""
        return self._declare(name, CONSTANT, shape)

    def define(self, name, expr) -> sp.Symbol:
        """Add the constraint ``name = expr`` and return the new node's symbol.

        ``expr`` is a sympy expression (or text, parsed without running it) in the
        nodes and constants declared so far; the nodes it reads are its parents.
        """
        symbol = self._new_symbol(name, "node")
        expr = self.read_expr(expr, symbol)
        shape = tuple(expr.shape) if isinstance(expr, sp.MatrixExpr) else None
        if shape is not None:
            symbol = node_symbol(symbol, "node", shape)
        elif isinstance(symbol, sp.MatrixSymbol):
            raise ShapeError(
                f"{symbol} is a {symbol.shape[0]} x {symbol.shape[1]} matrix, but its "
                f"constraint {expr} is a scalar",
                node=symbol,
            )
        expr, reads = self._resolve_reads(expr, symbol)
        if self._rolled:
            self._check_whole(expr, symbol, reads)
        if shape is not None or any(self._nodes[r].shape is not None for r in reads):
            _check_shapes(expr, symbol)
        parents = tuple(s for s in reads if self._nodes[s].kind != CONSTANT)
        node = Node(symbol, DEFINED, len(self._nodes), expr, reads, parents, shape)
        self._add(node)
        for parent in parents:
            self._children[parent].append(symbol)
        self._last_defined = symbol
        return symbol

    def implicit(
        self,
        names,
        residuals,
        guess=None,
        shape=None,
        *,
        tolerance: float = 1e-10,
        iterations: int = 50,
    ):
        """Declare nodes by their residuals: ``y`` such that ``r(y, ...) = 0``.

        ``names`` is one name (or symbol) with one residual, or a list of names with
        as many residuals: a block of unknowns solved together. A residual is text
        or a sympy expression in the block's own symbols and earlier nodes; for a
        matrix node give ``shape=(rows, cols)`` (or a ``MatrixSymbol``). ``guess`` is
        Newton's first guess (a number, an array, or an expression of earlier nodes;
        a list for a block); by default 0. Newton stops when its step is below
        ``tolerance`` relative to the solution, within ``iterations`` steps.

        The Lagrangian carries ``-lambda_i r_i`` for each residual: ``lambda_i`` is
        the price of the residual, ``d z_n / d eps`` when ``r_i = eps``.

        Examples
        --------
        >>> g = ConstraintGraph()
        >>> x = g.input("x")
        >>> y = g.implicit("y", "y**3 + y - x")
        >>> g.residual(y)
        -x + y**3 + y
        """
        single = not isinstance(names, (list, tuple))
        names = [names] if single else list(names)
        residuals = [residuals] if single else as_list(residuals, "the residuals")
        if not names or len(residuals) != len(names):
            raise AdjointError(
                f"{len(names)} unknown(s) and {len(residuals)} residual(s) were given: an "
                "implicit block needs one residual per unknown"
            )
        guesses = [guess] if single else _per_unknown(guess, len(names), "guess")
        if shape is not None and not single:
            raise ShapeError(
                "shape= is for one implicit node; a block of several unknowns is of scalars"
            )
        symbols = []
        for name in names:
            symbol = self._new_symbol(name, "node", shape)
            if symbol.name in {s.name for s in symbols}:
                raise DuplicateNameError(f"{symbol} is named twice in one block", node=symbol)
            symbols.append(symbol)
        own = tuple(symbols)
        if len(own) > 1 and any(isinstance(s, sp.MatrixSymbol) for s in own):
            raise ShapeError(
                f"the block {', '.join(map(str, own))} mixes several unknowns with a matrix: "
                "a block of several unknowns must be of scalars (a matrix node is a block "
                "of its own)",
                node=own[0],
            )
        exprs, reads_of = [], []
        for symbol, residual in zip(own, residuals):
            what = f"the residual for {symbol}"
            expr = self.read_expr(residual, symbol, own, what=what)
            want = tuple(symbol.shape) if isinstance(symbol, sp.MatrixSymbol) else None
            got = tuple(expr.shape) if isinstance(expr, sp.MatrixExpr) else None
            if want != got:
                raise ShapeError(
                    f"{what} is {_shape_words(got)}, but {symbol} is {_shape_words(want)}: "
                    "a residual has the shape of its unknown",
                    node=symbol,
                )
            expr, reads = self._resolve_reads(expr, symbol, own)
            if want is not None or any(
                r not in own and self._nodes[r].shape is not None for r in reads
            ):
                _check_shapes(expr, symbol)
            exprs.append(expr)
            reads_of.append(reads)
        for symbol, expr, reads in zip(own, exprs, reads_of):
            if not set(reads) & set(own):
                raise ExpressionError(
                    f"the residual for {symbol}, {expr}, reads no unknown of its block "
                    f"({', '.join(map(str, own))}): it cannot determine them",
                    node=symbol,
                )
        unread = [s for s in own if not any(s in reads for reads in reads_of)]
        if unread:
            raise ExpressionError(
                f"no residual reads {', '.join(map(str, unread))}: each unknown of an "
                "implicit block must appear in its residuals",
                node=unread[0],
            )
        guesses = [self._guess(s, g, own) for s, g in zip(own, guesses)]
        tolerance, iterations = _newton_options(tolerance, iterations)
        first = len(self._nodes)
        for k, (symbol, expr, reads) in enumerate(zip(own, exprs, reads_of)):
            parents = tuple(
                r for r in reads if r != symbol and (r in own or self._nodes[r].kind != CONSTANT)
            )
            rule = Implicit(expr, own, guesses[k], tolerance, iterations)
            shape_k = getattr(symbol, "shape", None)
            node = Node(symbol, DEFINED, first + k, None, reads, parents, shape_k, rule)
            self._add(node)
        for symbol in own:
            for parent in self._nodes[symbol].parents:
                self._children[parent].append(symbol)
        self._last_defined = own[-1]
        return own[0] if single else own

    def sequence(self, name, steps, shape=None, constant: bool = False) -> sp.Symbol:
        """Declare a per-step input ``u_t`` for ``t = 0 .. steps - 1``: its value is an array
        of length ``steps`` (``steps x rows x cols`` with ``shape``), its gradient one entry
        per step. ``constant=True`` makes it data (no gradient). In a recurrence's
        ``step`` and ``cost`` its name means its value at t."""
        steps = _steps(steps, name)
        symbol = self._declare(name, CONSTANT if constant else INPUT, shape, steps=steps)
        self._rolled = True
        return symbol

    def recurrence(self, name, step, init, steps, cost=None, shape=None) -> Recurrence:
        """Declare a rolled recurrence ``z_{t+1} = step(z_t, ..., t)`` for ``t = 0 .. steps -
        1`` from ``z_0 = init``, never unrolled.

        In ``step`` and ``cost`` (text or sympy) the state's name means ``z_t``, a
        sequence's name its value at t, any other node its value (a parameter, read at
        every step), and ``t`` the step index. Returns a :class:`Recurrence` whose
        ``final`` node is ``z_T`` and ``cost`` node ``sum_{t<T} cost(z_t, t)``, both usable
        in :meth:`define`. Its Lagrangian terms are ``-sum_t lambda_{t+1} (z_{t+1} -
        step(z_t, t))``: the costates, solved in reverse.
        """
        steps = _steps(steps, name)
        dims = shape if shape is not None else getattr(name, "shape", ())
        if any(not sp.sympify(d).is_Integer for d in dims):
            label = getattr(name, "name", name)
            raise ShapeError(
                f"a recurrence stores its states by step: give numbers for the shape of the "
                f"state {label}, not {tuple(dims)} (shape=(3, 1), say); its parameters may "
                "keep symbolic sizes only where the state's shape fixes them",
                node=label,
            )
        state = self._new_symbol(name, "node", shape)
        if isinstance(name, sp.MatrixSymbol) and shape is None:
            shape = tuple(name.shape)
        names = [f"{state.name}_final"] + ([f"{state.name}_cost"] if cost is not None else [])
        for extra in names:
            if extra in self._by_name or extra in self._dims:
                raise DuplicateNameError(
                    f"the recurrence {state} names its nodes {', '.join(names)}, but {extra} is "
                    "already a node; rename one",
                    node=state,
                )
        if STEP.name in self._by_name:
            raise DuplicateNameError(
                "a recurrence names its step index t, but t is a node of this graph; rename "
                "that node",
                node=state,
            )
        own = (state, STEP)
        want = tuple(state.shape) if isinstance(state, sp.MatrixSymbol) else None
        step_expr, step_reads = self._recurrence_part(
            step, state, own, f"the step of {state}", want
        )
        init_expr, init_reads = self._recurrence_part(
            init, state, (), f"the initial state of {state}", want
        )
        reads = [r for r in step_reads if r not in own]
        stage = None
        if cost is not None:
            stage, cost_reads = self._recurrence_part(
                cost, state, own, f"the cost of {state}", "cost"
            )
            reads += [r for r in cost_reads if r not in own]
        for r in reads:
            record = self._nodes[r]
            if record.steps is not None and record.steps != steps:
                raise ShapeError(
                    f"the recurrence {state} has {steps} steps, but the sequence {r} has "
                    f"{record.steps}: a sequence read at every step has one value per step",
                    node=state,
                )
        init_reads = [r for r in init_reads if r is not state]
        for r in init_reads:
            if self._nodes[r].steps is not None:
                raise ExpressionError(
                    f"the initial state of {state} reads the sequence {r}, which has a value "
                    "per step: read one value, as a parameter, or put it into the step",
                    node=state,
                )
        every = tuple(dict.fromkeys([*reads, *init_reads]))
        every = tuple(sorted(every, key=lambda s: self._nodes[s].index))
        final = node_symbol(names[0], "node", want)
        total = None
        if cost is not None:
            total = node_symbol(
                names[1], "node", tuple(stage.shape) if isinstance(stage, sp.MatrixExpr) else None
            )
        spec = Recurrence(state, step_expr, init_expr, steps, final, total, stage, every)
        self._rolled = True
        parents = tuple(r for r in every if self._nodes[r].kind != CONSTANT)
        first = len(self._nodes)
        self._add(Node(state, DEFINED, first, None, every, parents, want, recurrence=spec))
        for parent in parents:
            self._children[parent].append(state)
        for k, symbol in enumerate(s for s in (final, total) if s is not None):
            shape_k = tuple(symbol.shape) if isinstance(symbol, sp.MatrixSymbol) else None
            self._add(
                Node(
                    symbol,
                    DEFINED,
                    first + 1 + k,
                    None,
                    (state,),
                    (state,),
                    shape_k,
                    recurrence=spec,
                )
            )
            self._children[state].append(symbol)
            self._last_defined = symbol
        return spec

    def _check_whole(self, expr, symbol, reads) -> None:
        """A constraint reads neither a sequence (one value per step: only a
        recurrence's step reads it) nor a recurrence's trajectory (its nodes z_final and
        z_cost stand for it)."""
        for r in reads:
            record = self._nodes[r]
            if record.steps is not None:
                raise ExpressionError(
                    f"the constraint for {symbol} reads the sequence {r}, which has one value "
                    "per step: read it in a recurrence's step or cost",
                    node=symbol,
                )
            if record.recurrence is not None and record.recurrence.state == r:
                rec = record.recurrence
                use = rec.final.name + ("" if rec.cost is None else f" or {rec.cost.name}")
                raise ExpressionError(
                    f"the constraint for {symbol} reads the recurrence {r} as a whole; read "
                    f"its nodes instead: {use}",
                    node=symbol,
                )

    def _recurrence_part(self, expr, state, own, what: str, want):
        """``step``, ``init`` or ``cost`` of a recurrence, read and checked: its shape
        (``want``; ``"cost"``: a scalar or 1 x 1) and the nodes it reads."""
        if isinstance(expr, sp.MatrixBase):  # entries written with the state's own symbol
            expr = sp.ImmutableMatrix(expr)
        else:
            expr = self.read_expr(expr, state, own, what=what)
        got = tuple(expr.shape) if isinstance(expr, (sp.MatrixExpr, sp.MatrixBase)) else None
        ok = got in (None, (1, 1)) if want == "cost" else got == want
        if not ok:
            need = "a scalar (or 1 x 1)" if want == "cost" else _shape_words(want)
            raise ShapeError(f"{what} is {_shape_words(got)}, but it must be {need}", node=state)
        expr, reads = self._resolve_reads(expr, state, own)
        if got is not None and not isinstance(expr, sp.MatrixBase):
            _check_shapes(expr, state)
        return expr, reads

    def set_output(self, node) -> None:
        """Make ``node`` the output ``z_n`` (by default, the last defined node)."""
        symbol = self.lookup(node)
        if self._nodes[symbol].kind != DEFINED:
            raise AdjointError(
                f"{symbol} is an {self._nodes[symbol].kind}, and the output must be a defined "
                f"node; define one, as in g.define('f', {symbol})",
                node=symbol,
            )
        self._explicit_output = symbol
        self._changed()

    # -- reading -----------------------------------------------------------

    @property
    def nodes(self) -> tuple[sp.Symbol, ...]:
        """The variables of the problem, inputs first, then defined nodes, topologically."""
        return self.inputs + self.defined

    @property
    def inputs(self) -> tuple[sp.Symbol, ...]:
        """The inputs, in declaration order."""
        return self._of_kind(INPUT)

    @property
    def constants(self) -> tuple[sp.Symbol, ...]:
        """The constants (data), in declaration order."""
        return self._of_kind(CONSTANT)

    @property
    def defined(self) -> tuple[sp.Symbol, ...]:
        """The nodes with a constraint ``z_i = f_i``, in topological order."""
        return self._of_kind(DEFINED)

    @property
    def output(self) -> sp.Symbol:
        """The output node ``z_n``."""
        if self._explicit_output is not None:
            return self._explicit_output
        if self._last_defined is None:
            raise AdjointError(
                "the graph has no defined node, so no output: add a constraint with "
                "g.define(name, expr)"
            )
        return self._last_defined

    @property
    def dims(self) -> tuple[sp.Symbol, ...]:
        """The symbolic matrix dimensions (``n`` in an n x d input), in declaration order."""
        return tuple(self._dims.values())

    def node(self, symbol) -> Node:
        """The :class:`Node` record of a symbol (or name)."""
        return self._nodes[self.lookup(symbol)]

    def expr(self, node) -> sp.Expr:
        """``f_i``, the right-hand side of a defined node's constraint."""
        record = self.node(node)
        if record.kind != DEFINED:
            raise AdjointError(f"{record.symbol} is an {record.kind}: it has no constraint")
        if record.implicit:
            raise AdjointError(
                f"{record.symbol} is defined implicitly, by {record.residual} = 0: it has no "
                f"formula f_i; its residual is g.residual({record.symbol.name!r})",
                node=record.symbol,
            )
        return record.expr

    def residual(self, node) -> sp.Expr:
        """``r_i``, what a defined node's constraint sets to zero: the residual of an
        implicit node, ``z_i - f_i`` for an explicit one."""
        record = self.node(node)
        if record.implicit:
            return record.residual
        expr = self.expr(node)
        if isinstance(record.symbol, sp.MatrixSymbol):
            return sp.MatAdd(record.symbol, -expr)
        return record.symbol - expr

    def is_implicit(self, node) -> bool:
        """Whether ``node`` is defined by a residual (:meth:`implicit`)."""
        return self.node(node).implicit

    @property
    def blocks(self) -> tuple[tuple[sp.Symbol, ...], ...]:
        """The implicit blocks, in topological order: the unknowns solved together."""
        if "blocks" not in self._cache:
            found = dict.fromkeys(self._nodes[z].block for z in self.defined)
            self._cache["blocks"] = tuple(b for b in found if b)
        return self._cache["blocks"]

    @property
    def recurrences(self) -> tuple[Recurrence, ...]:
        """The rolled recurrences, in declaration order."""
        if "recurrences" not in self._cache:
            found = dict.fromkeys(
                self._nodes[z].recurrence for z in self.defined if self._nodes[z].recurrence
            )
            self._cache["recurrences"] = tuple(found)
        return self._cache["recurrences"]

    def require_no_recurrence(self, what: str) -> None:
        """Refuse, naming ``what`` and the recurrences, where they are not handled yet."""
        if self.recurrences:
            names = ", ".join(r.name for r in self.recurrences)
            raise AdjointError(
                f"{what} does not handle recurrences yet ({names}); g.solve and g.compile "
                "(with checkpoints=...), g.stationarity, g.lagrangian, g.explain, second "
                "order (g.tangent, g.hvp, g.hessian at a point), check_gradient, taylor_test "
                "and check_hvp do",
                node=self.recurrences[0].state,
            )

    def require_explicit(self, what: str) -> None:
        """Refuse, naming ``what`` and the implicit nodes, where they are not handled yet."""
        implicit = [z for block in self.blocks for z in block]
        if implicit:
            raise AdjointError(
                f"{what} does not handle implicit nodes yet ({', '.join(map(str, implicit))}); "
                "solving (g.solve, g.stationarity), g.compile() (NumPy and JAX), second order "
                "(g.tangent, g.hvp, g.hessian at a point), g.explain, drawings, the "
                "checkers (g.verify, check_gradient, taylor_test, check_hvp) and "
                "check_adjoints do",
                node=implicit[0],
            )

    def parents(self, node) -> tuple[sp.Symbol, ...]:
        """alpha(i): the variables that ``f_i`` reads (constants are data, not parents)."""
        return self.node(node).parents

    def children(self, node) -> tuple[sp.Symbol, ...]:
        """beta(j): the nodes whose constraint reads ``z_j``."""
        return tuple(self._children.get(self.lookup(node), ()))

    def multiplier(self, node) -> Multiplier:
        """The Lagrange multiplier ``lambda_j`` of a node (inputs have one too: the gradient)."""
        record = self.node(node)
        if record.kind == CONSTANT:
            raise AdjointError(
                f"{record.symbol} is a constant: it is data, not a variable, so it has no "
                "multiplier; declare it with g.input to differentiate with respect to it",
                node=record.symbol,
            )
        # Kept, not remade: creating a sympy Symbol with assumptions is not cheap,
        # and nodes are never renamed or removed.
        lam = self._multipliers.get(record.symbol)
        if lam is None:
            lam = self._multipliers[record.symbol] = multiplier_of(record.symbol)
        return lam

    @property
    def nx(self) -> nx.DiGraph:
        """The graph as a (frozen) ``networkx.DiGraph``: an edge j -> i when f_i reads z_j."""
        if "nx" not in self._cache:
            digraph = nx.DiGraph()
            for symbol in self.nodes:
                record = self._nodes[symbol]
                digraph.add_node(symbol, kind=record.kind, expr=record.expr, shape=record.shape)
            for symbol in self.defined:
                digraph.add_edges_from((p, symbol) for p in self._nodes[symbol].parents)
            self._cache["nx"] = nx.freeze(digraph)
        return self._cache["nx"]

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, item) -> bool:
        try:
            self.lookup(item)
        except AdjointError:
            return False
        return True

    # -- copies -------------------------------------------------------------

    def copy(self):
        """A graph with the same constraints, independent of this one: defining on the
        copy leaves the original as it was."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__getstate__())
        return clone

    __copy__ = copy

    def __deepcopy__(self, memo):
        return self.copy()  # symbols and node records are immutable

    def __getstate__(self) -> dict:
        # Derived views (compiled programs above all) are rebuilt on demand, not copied.
        state = dict(self.__dict__)
        for key in ("_nodes", "_by_name", "_dims", "_multipliers"):
            state[key] = dict(state[key])
        state["_children"] = {k: list(v) for k, v in state["_children"].items()}
        state["_cache"] = {}
        return state

    # -- derived views ----------------------------------------------------

    def square_operands(self) -> tuple:
        """``(node, operation, operand)`` for each trace, determinant, inverse or matrix
        power whose operand is square only if its symbolic dimensions agree (``M`` of
        shape ``n x m``): checked when values bind the dimensions."""
        return self.derived("square operands", _square_operands)

    def derived(self, key, build):
        """A view of the graph built by ``build(graph)`` once, and kept until the graph
        changes (the modules above this one keep the Lagrangian, ``grad L = 0`` and
        compiled programs here)."""
        if key not in self._cache:
            # Each full collection of the cyclic garbage collector rescans every object
            # alive, here the graph's sympy objects, none of them garbage: that doubled
            # the time of the linear assemblies (grad L = 0, second order). They are set
            # aside (gc.freeze) while a view is built, unless someone else keeps objects
            # frozen; the collector itself keeps running.
            # (A view built inside another finds them set aside already: asking
            # gc.get_freeze_count then would count every frozen object.)
            global _SETTING_ASIDE
            mine = not _SETTING_ASIDE and gc.get_freeze_count() == 0
            if mine:
                _SETTING_ASIDE = True
                gc.freeze()
            try:
                self._cache[key] = build(self)
            finally:
                if mine:
                    gc.unfreeze()
                    _SETTING_ASIDE = False
        return self._cache[key]

    # -- alternative constructors -----------------------------------------

    @classmethod
    def from_equations(
        cls,
        equations: Iterable,
        inputs: Iterable,
        constants: Iterable = (),
        output=None,
        implicit: bool = False,
    ) -> ConstraintGraph:
        """Build a graph from constraints given in any order.

        Each constraint is ``sympy.Eq(z, f)``, a pair ``(z, f)`` or text ``"z = f"``.
        They are ordered with networkx; a cycle is an error naming its nodes, unless
        ``implicit=True``: then each cycle (a strongly connected component) becomes an
        implicit block with residuals ``z - f``, solved together by Newton's method.
        The output is ``output``, or else the one node no other constraint reads.

        Examples
        --------
        >>> import sympy as sp
        >>> x, y, z1, z2 = sp.symbols("x y z1 z2", real=True)
        >>> g = ConstraintGraph.from_equations([sp.Eq(z2, sp.sin(z1)), sp.Eq(z1, x * y)], [x, y])
        >>> g.defined
        (z1, z2)
        """
        g = cls()
        for symbol in as_list(inputs, "inputs"):
            g.input(symbol)
        for symbol in as_list(constants, "constants"):
            g.constant(symbol)
        pairs = [_constraint(item) for item in as_list(equations, "the equations")]
        position: dict[str, int] = {}
        for k, (lhs, _) in enumerate(pairs):
            name = lhs.name
            if name in position or name in g:
                raise DuplicateNameError(
                    f"{name} is given two constraints (or is also an input or constant); "
                    "each node has exactly one",
                    node=lhs,
                )
            position[name] = k
        dependencies = nx.DiGraph()
        dependencies.add_nodes_from(position)
        rhs = []
        for lhs, expr in pairs:
            if isinstance(expr, str):
                # Text is read once the nodes it names are defined, so that it knows
                # their shapes (a matrix node's transpose, say): here only the names.
                names = set(re.findall(r"(?<![\w.])[^\W\d]\w*", expr)) & position.keys()
            else:
                if not isinstance(expr, sp.Basic):
                    expr = g.read_expr(expr, lhs, [sp.Symbol(n, real=True) for n in position])
                names = {s.name for s in free_symbols(expr)} & position.keys()
            rhs.append(expr)
            for name in names:
                dependencies.add_edge(name, lhs.name)
        if not implicit and not nx.is_directed_acyclic_graph(dependencies):
            cycle = [u for u, _ in nx.find_cycle(dependencies)]
            raise CycleError(
                "the constraints form a cycle, "
                + " -> ".join(cycle + cycle[:1])
                + ": each z_i may read only nodes that do not depend on it; to solve the "
                "cycle as an implicit block (Newton's method on z - f = 0), pass "
                "implicit=True",
                cycle=cycle,
                node=cycle[0],
            )
        components = nx.condensation(dependencies)
        first = {c: min(position[n] for n in components.nodes[c]["members"]) for c in components}
        for c in nx.lexicographical_topological_sort(components, key=first.get):
            names = sorted(components.nodes[c]["members"], key=position.get)
            if len(names) == 1 and not dependencies.has_edge(names[0], names[0]):
                lhs, _ = pairs[position[names[0]]]
                expr = rhs[position[names[0]]]
                if isinstance(expr, str):
                    expr = g.read_expr(expr, lhs)
                    if isinstance(expr, sp.MatrixExpr):
                        lhs = lhs.name  # a matrix node, of the shape its constraint has
                g.define(lhs, expr)
                continue
            own = [pairs[position[n]][0] for n in names]
            residuals = []
            for lhs in own:
                expr = rhs[position[lhs.name]]
                if isinstance(expr, str):
                    expr = g.read_expr(expr, lhs, own)
                residuals.append(lhs - expr)
            g.implicit(own if len(own) > 1 else own[0], residuals if len(own) > 1 else residuals[0])
        if output is not None:
            g.set_output(output)
        else:
            sinks = [s for s in g.defined if not g.children(s)]
            if len(sinks) > 1:
                raise AdjointError(
                    "several constraints are read by no other one ("
                    + ", ".join(map(str, sinks))
                    + "): say which is the output with output=...",
                )
            if sinks:
                g.set_output(sinks[0])
        return g

    # -- internals ---------------------------------------------------------

    def _of_kind(self, kind: str) -> tuple[sp.Symbol, ...]:
        key = ("kind", kind)
        if key not in self._cache:
            self._cache[key] = tuple(s for s, n in self._nodes.items() if n.kind == kind)
        return self._cache[key]

    def _declare(self, name, kind: str, shape, steps=None) -> sp.Symbol:
        symbol = self._new_symbol(name, kind, shape)
        dims = [d for d in getattr(symbol, "shape", ()) if isinstance(d, sp.Symbol)]
        for d in dims:
            if d.name in self._dims and self._dims[d.name] != d:
                raise ShapeError(
                    f"the dimension {d} of {symbol} has the name of another dimension {d} with "
                    f"other assumptions ({self._dims[d.name].assumptions0} against "
                    f"{d.assumptions0}); use one symbol for it",
                    node=symbol,
                )
            if d.name in self._by_name:
                raise DuplicateNameError(
                    f"the dimension {d} of {symbol} has the name of a node; rename one",
                    node=symbol,
                )
        shape = getattr(symbol, "shape", None)
        self._add(Node(symbol, kind, len(self._nodes), shape=shape, steps=steps))
        self._dims.update((d.name, d) for d in dims)
        return symbol

    def _new_symbol(self, name, what: str, shape=None):
        symbol = node_symbol(name, what, shape)
        if symbol.name in self._by_name:
            existing = self._nodes[self._by_name[symbol.name]]
            raise DuplicateNameError(
                f"{symbol.name} is already declared (as {_A_KIND[existing.kind]}); "
                "each node needs its own name",
                node=symbol,
            )
        if symbol.name in self._dims:
            raise DuplicateNameError(
                f"{symbol.name} is already a matrix dimension; give the node another name",
                node=symbol,
            )
        return symbol

    def _add(self, node: Node) -> None:
        self._nodes[node.symbol] = node
        self._by_name[node.symbol.name] = node.symbol
        self._children[node.symbol] = []
        self._changed()

    def _changed(self) -> None:
        self._cache.clear()

    def lookup(self, node) -> sp.Symbol:
        """The graph's symbol for a symbol or a name; an error naming it if unknown."""
        try:
            if node in self._nodes:  # the common case first: one hash lookup
                return node
        except TypeError:  # unhashable: not a node, said below
            pass
        if isinstance(node, Recurrence):
            node = node.state
        if isinstance(node, (Multiplier, MatrixMultiplier)):
            node = node.node_name
        if isinstance(node, (sp.Symbol, sp.MatrixSymbol)):
            if node in self._nodes:
                return node
            node = node.name
        if isinstance(node, str) and node in self._by_name:
            return self._by_name[node]
        if isinstance(node, str) and node.startswith((Multiplier.PREFIX, MatrixMultiplier.PREFIX)):
            # a multiplier's name stands for its node, as the multiplier itself does
            name = node.split("_", 1)[1]
            if name in self._by_name:
                return self._by_name[name]
        known = ", ".join(s.name for s in self._nodes) or "none yet"
        raise UnknownSymbolError(
            f"{node} is not a node of this graph (its nodes: {known})", node=node
        )

    def read_expr(
        self, expr, node, extra_symbols=(), what: str | None = None, steps=None
    ) -> sp.Expr:
        """``expr`` as a sympy expression: text is parsed, Python numbers converted.

        Text may name the graph's nodes and ``extra_symbols``; ``what`` names the
        expression in error messages (by default, the constraint for ``node``).
        """
        if isinstance(expr, sp.Expr) and not isinstance(expr, sp.MatrixBase):
            return expr  # the common case, with nothing to say about it
        what = what or f"the constraint for {node}"
        if isinstance(expr, str):
            try:
                return parse(expr, symbols=[*self._nodes, *extra_symbols], steps=steps)
            except ExpressionError as exc:
                raise type(exc)(f"in {what}: {exc}", node=node) from None
        if isinstance(expr, sp.MatrixBase):
            raise ExpressionError(
                f"{what} is an explicit matrix; write matrix nodes with symbols, as in "
                "g.define('H', X * W) with X, W from g.input(..., shape=...)",
                node=node,
            )
        if isinstance(expr, bool) or not isinstance(expr, (sp.Basic, int, float)):
            raise ExpressionError(
                f"{what} must be a sympy expression or text, got {type(expr).__name__} {expr!r}",
                node=node,
            )
        expr = sp.sympify(expr)  # only numbers and Basic reach here: nothing is parsed
        if not isinstance(expr, sp.Expr):
            raise ExpressionError(
                f"{what} must be an expression, got {type(expr).__name__} {expr}", node=node
            )
        return expr

    @staticmethod
    def _expanded(expr, node, what):
        """A finite ``Sum`` written out; any other refused, naming the node."""
        try:
            return expand_sums(expr)
        except ValueError as exc:
            raise ExpressionError(f"in {what}: {exc}", node=node) from None

    def _resolve_reads(self, expr: sp.Expr, node: sp.Symbol, own: tuple = ()):
        """The nodes ``expr`` reads, in declaration order; unknown symbols are errors.

        A symbol that matches a node by name but differs in assumptions (the user's
        own ``Symbol('x')`` for the graph's real ``x``) is taken to mean that node.
        ``own`` are the unknowns of an implicit block being declared, which its
        residuals read; they come last.
        """
        renames = {}
        reads = []
        own_names = {s.name: s for s in own}
        symbols, not_real, sums = scan(expr)
        if sums:  # written out, in the walk that finds the reads anyway
            expr = self._expanded(expr, node, f"the constraint for {node}")
            symbols, not_real, _ = scan(expr)
        if not_real:
            raise ExpressionError(
                f"the constraint for {node} is not real-valued ({expr}): nodes are real",
                node=node,
            )
        for s in symbols:
            if s in self._nodes:
                reads.append(s)
            elif s.name in own_names:
                mine = own_names[s.name]
                if isinstance(s, sp.MatrixSymbol) != isinstance(mine, sp.MatrixSymbol) or (
                    isinstance(s, sp.MatrixSymbol) and tuple(s.shape) != tuple(mine.shape)
                ):
                    raise ShapeError(
                        f"the residual for {node} reads {s} with shape "
                        f"{getattr(s, 'shape', 'scalar')}, but the unknown {mine} is "
                        f"{getattr(mine, 'shape', 'a scalar')}: give shape= to match",
                        node=node,
                    )
                if s != mine:
                    renames[s] = mine
                reads.append(mine)
            elif s.name in self._dims and not isinstance(s, sp.MatrixSymbol):
                continue  # a matrix dimension, as in Identity(n): not a node
            elif s.name in self._by_name and isinstance(s, sp.MatrixSymbol):
                raise ShapeError(
                    f"the constraint for {node} reads {s} as a {s.shape} matrix, but the "
                    f"node {s} is {getattr(self._by_name[s.name], 'shape', 'a scalar')}",
                    node=node,
                )
            elif s.name in self._by_name and isinstance(self._by_name[s.name], sp.MatrixSymbol):
                m = self._by_name[s.name]
                raise ShapeError(
                    f"the constraint for {node} reads a scalar symbol {s}, but the node {m} is "
                    f"a {m.shape[0]} x {m.shape[1]} matrix: use the symbol g.input returned",
                    node=node,
                )
            elif s.name in self._by_name:
                claimed = [k for k in CHECKS if s.assumptions0.get(k) is not None]
                if claimed:  # sympy may already have simplified with them: refuse
                    raise AdjointError(
                        f"the constraint for {node} reads a symbol {s} declared "
                        f"{claimed[0]}, other than the node {s}: sympy may have simplified "
                        f"with it (|{s}| as {s}); use the symbol the graph returned",
                        node=node,
                    )
                renames[s] = self._by_name[s.name]
                reads.append(renames[s])
            elif s.name == node.name:
                raise CycleError(
                    f"the constraint for {node} reads {node} itself; a node can only read "
                    "nodes declared before it",
                    cycle=[node],
                    node=node,
                )
            else:
                raise UnknownSymbolError(
                    f"the constraint {node} = {expr} reads {s}, which is not a node of the "
                    f"graph; declare it first with g.input({s.name!r}) or "
                    f"g.constant({s.name!r})",
                    node=node,
                )
        if renames:
            expr = expr.xreplace(renames)
        if own:  # an implicit block's own unknowns come after every earlier node
            last = len(self._nodes)
            order = {s: last + k for k, s in enumerate(own)}
            reads.sort(key=lambda s: order[s] if s in order else self._nodes[s].index)
        else:
            reads.sort(key=lambda s: self._nodes[s].index)
        return expr, tuple(dict.fromkeys(reads))

    def _guess(self, symbol, guess, own):
        """Newton's first guess for ``symbol``: a float, an array of its shape, or an
        expression of earlier nodes (never of its own block)."""
        shape = getattr(symbol, "shape", None)
        if guess is None:
            return None
        if isinstance(guess, (str, sp.Basic)) and not isinstance(guess, sp.Number):
            expr = self.read_expr(guess, symbol, what=f"the guess for {symbol}")
            got = tuple(expr.shape) if isinstance(expr, sp.MatrixExpr) else None
            if got not in (None, tuple(shape) if shape is not None else None):
                raise ShapeError(
                    f"the guess for {symbol} is {_shape_words(got)}, but {symbol} is "
                    f"{_shape_words(shape)}",
                    node=symbol,
                )
            reads = [s for s in free_symbols(expr) if s.name in {o.name for o in own}]
            if reads:
                raise ExpressionError(
                    f"the guess for {symbol} reads {reads[0]}, an unknown of its own block: "
                    "a guess may read only earlier nodes",
                    node=symbol,
                )
            expr, _ = self._resolve_reads(expr, symbol)
            return expr
        try:
            value = np.asarray(guess, dtype=float)
        except (TypeError, ValueError):
            raise BadValueError(
                f"the guess for {symbol} must be a number, an array or an expression, got "
                f"{type(guess).__name__} {guess!r}",
                node=symbol,
            ) from None
        if not np.all(np.isfinite(value)):
            raise BadValueError(f"the guess for {symbol} is not finite: {guess!r}", node=symbol)
        if value.ndim == 0:
            return float(value)
        if (
            shape is None
            or value.ndim != 2
            or any(
                isinstance(d, (int, sp.Integer)) and int(d) != n for d, n in zip(shape, value.shape)
            )
        ):
            raise ShapeError(
                f"the guess for {symbol} is a {' x '.join(map(str, value.shape))} array, but "
                f"{symbol} is {_shape_words(shape)}",
                node=symbol,
            )
        return value


def _constraint(item):
    """``(lhs symbol or name, rhs)`` from an Eq, a pair or the text ``'z = f'``."""
    if isinstance(item, str):
        lhs, sep, rhs = item.partition("=")
        if not sep or rhs.startswith("="):
            raise ExpressionError(f"expected a constraint 'z = f(...)', got {item!r}")
        return node_symbol(lhs.strip()), rhs
    if isinstance(item, sp.Eq):
        lhs, rhs = item.lhs, item.rhs
    elif isinstance(item, tuple) and len(item) == 2:
        lhs, rhs = item
    else:
        raise ExpressionError(
            f"expected a constraint sympy.Eq(z, f), a pair (z, f) or text 'z = f', got {item!r}"
        )
    if isinstance(lhs, str):
        lhs = node_symbol(lhs)
    if not isinstance(lhs, (sp.Symbol, sp.MatrixSymbol)):
        raise ExpressionError(
            f"the left side of a constraint must be the node's symbol, got {lhs} in {lhs} = {rhs}"
        )
    return lhs, rhs


def _shape_words(shape) -> str:
    return "a scalar" if shape is None else f"{shape[0]} x {shape[1]}"


def _steps(steps, name) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise AdjointError(f"steps of {name} must be a positive integer, got {steps!r}")
    return int(steps)


def _per_unknown(value, n: int, what: str) -> list:
    """One ``what`` per unknown of a block: a list of ``n``, or one for all."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise AdjointError(f"{len(value)} values of {what} for a block of {n} unknowns")
        return list(value)
    return [value] * n


def _newton_options(tolerance, iterations) -> tuple[float, int]:
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, (int, float))
        or not (0 < tolerance < 1)
    ):
        raise AdjointError(f"tolerance must be a number between 0 and 1, got {tolerance!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise AdjointError(f"iterations must be a positive integer, got {iterations!r}")
    return float(tolerance), iterations


def _shape(e) -> str:
    return f"{e.shape[0]} x {e.shape[1]}"


_SQUARE = (sp.Trace, sp.Determinant, sp.Inverse, sp.MatPow)


def _square_operands(graph) -> tuple:
    if not graph.dims:  # numeric shapes: sympy itself refuses a non-square operand
        return ()
    found = []
    for z in graph.defined:
        rec = graph.node(z).recurrence
        if rec is None:
            exprs = [graph.residual(z)]
        else:  # a recurrence's step, initial state and stage cost, once, for its state
            exprs = [rec.step, rec.init, *([] if rec.stage is None else [rec.stage])]
            exprs = exprs if z == rec.state else []
        for e in (
            e
            for expr in exprs
            for e in postorder(expr, enter=lambda e: not isinstance(e, sp.MatrixSymbol))
        ):
            if isinstance(e, _SQUARE):
                operand = e.args[0]
                rows, cols = operand.shape
                if rows != cols:
                    found.append((z, type(e).__name__, operand))
    return tuple(found)


def _check_shapes(expr: sp.Expr, node) -> None:
    """Every matrix operation in ``expr`` has operands of matching declared shapes.

    sympy lets a sum of an ``n x d`` and a ``1 x d`` matrix pass, since ``n`` might be
    1, and numpy would then broadcast: the gradient of the ``1 x d`` operand would come
    back ``n x d``. The package broadcasts nothing it was not told to.
    """
    for e in postorder(expr, enter=lambda e: not isinstance(e, (sp.Symbol, sp.MatrixSymbol))):
        if isinstance(e, (sp.MatAdd, sp.HadamardProduct)):
            first = e.args[0]
            for other in e.args[1:]:
                if tuple(other.shape) != tuple(first.shape):
                    kind = "sum" if isinstance(e, sp.MatAdd) else "element-wise product"
                    raise ShapeError(
                        f"the constraint for {node} has a {kind} of {first} ({_shape(first)}) "
                        f"and {other} ({_shape(other)}): the shapes must be equal, nothing is "
                        "broadcast. To add a row b (1 x d) to each row of an n x d matrix, "
                        "write adjoint.repeat_rows(b, n) (a column bias b, d x 1: "
                        "repeat_rows(b.T, n); it is OneMatrix(n, 1)*b, with its own rule); "
                        "a column c (n x 1) to each column: adjoint.repeat_columns(c, d)",
                        node=node,
                    )
        elif isinstance(e, sp.MatMul):
            mats = [a for a in e.args if isinstance(a, sp.MatrixExpr)]
            for left, right in itertools.pairwise(mats):
                if left.shape[1] != right.shape[0]:
                    raise ShapeError(
                        f"the constraint for {node} multiplies {left} ({_shape(left)}) by "
                        f"{right} ({_shape(right)}): the inner sizes {left.shape[1]} and "
                        f"{right.shape[0]} differ; check for a missing transpose",
                        node=node,
                    )
        elif isinstance(e, Application) and any(isinstance(a, sp.MatrixExpr) for a in e.args):
            m = next(a for a in e.args if isinstance(a, sp.MatrixExpr))
            raise ShapeError(
                f"the constraint for {node} applies {type(e).__name__} to the matrix {m} as a "
                f"whole; to apply it entry by entry write {m}.applyfunc(sp.{type(e).__name__})",
                node=node,
            )
        elif isinstance(e, sp.Sum) and e.atoms(sp.matrices.expressions.matexpr.MatrixElement):
            # sympy writes an entry of a product, (w.T*x)[0, 0], as a sum over an index
            raise ShapeError(
                f"the constraint for {node} has {e}, an entry of a matrix product written by "
                "sympy as a sum over an index, which has no matrix rule; write the entry as "
                "adjoint.functions.entry(w.T*x, 0, 0), or a 1 x 1 matrix as "
                "adjoint.functions.scalar(w.T*x)",
                node=node,
            )
