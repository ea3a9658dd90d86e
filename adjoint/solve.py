"""Solving ``grad L = 0``: the two sweeps of the backpropagation algorithm.

The solver knows no derivative rule. It takes the stationarity conditions
(:mod:`adjoint.lagrangian`) and solves each for its own unknown: the forward
conditions in topological order give every ``z_i`` (Step 1), then the adjoint
conditions in reverse order give every ``lambda_j`` (Step 2), each reading only
what is already known because the system is triangular.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping

import numpy as np
import sympy as sp

from .display import number, text
from .errors import (
    AdjointError,
    BadValueError,
    MissingValueError,
    ShapeError,
    UnknownSymbolError,
    as_list,
)
from .expressions import free_symbols
from .graph import Graph
from .lagrangian import ADJOINT, FORWARD, GRADIENT
from .numeric import NoNumericRule, to_real

__all__ = ["NodeMap", "Solution", "grad", "solve"]


class NodeMap(Mapping):
    """A read-only mapping from node symbols to values; a node's name works as a key."""

    __slots__ = ("_data", "_names")

    def __init__(self, data: dict):
        self._data = dict(data)
        self._names = {k.name: k for k in self._data}

    def __getitem__(self, key):
        if isinstance(key, str) and key in self._names:
            key = self._names[key]
        return self._data[key]

    def __iter__(self) -> Iterator:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k}: {v}" for k, v in self._data.items()) + "}"


class Solution:
    """The solution of ``grad L = 0``: every ``z``, every ``lambda``, and the gradient.

    ``values[z]`` is node z's value, ``adjoints[z]`` its multiplier ``lambda_z =
    d z_n / d z`` (Theorem 16.1), ``gradient`` the inputs' multipliers in input order
    and ``output`` the value of ``z_n``. Numbers are floats; a symbolic solution
    holds sympy expressions of the inputs. A solution never changes once made.
    """

    __slots__ = ("_formulas", "adjoints", "gradient", "output", "output_node", "symbolic", "values")

    def __init__(self, graph: Graph, values: dict, adjoints: dict, symbolic: bool):
        object.__setattr__(self, "values", NodeMap(values))
        object.__setattr__(self, "adjoints", NodeMap(adjoints))
        object.__setattr__(self, "gradient", NodeMap({x: adjoints[x] for x in graph.inputs}))
        object.__setattr__(self, "output_node", graph.output)
        object.__setattr__(self, "output", values[graph.output])
        object.__setattr__(self, "symbolic", symbolic)
        object.__setattr__(self, "_formulas", {z: graph.expr(z) for z in graph.defined})

    def __setattr__(self, name, value):
        raise AttributeError("a Solution does not change once made")

    def rows(self) -> list[tuple]:
        """``(node, formula or role, value, lambda)`` for each node, in order."""
        rows = []
        for z, value in self.values.items():
            formula = self._formulas.get(z, "input" if z in self.adjoints else "constant")
            rows.append((z, formula, value, self.adjoints.get(z)))
        return rows

    def _repr_latex_(self) -> str:
        from .display import solution_latex

        return solution_latex(self)

    def __repr__(self) -> str:
        header = ("node", "f_i", "z", "lambda")
        body = [
            (
                str(z),
                text(f) if isinstance(f, sp.Basic) else f,
                number(v),
                "" if lam is None else number(lam),
            )
            for z, f, v, lam in self.rows()
        ]
        widths = [max(len(r[c]) for r in [header, *body]) for c in range(4)]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header, *body]
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def solve(graph: Graph, values: Mapping | None = None) -> Solution:
    """Solve ``grad L = 0`` for ``graph``; see :meth:`Graph.solve`."""
    kkt = graph.stationarity()
    symbolic = values is None
    if symbolic:
        env: dict = {s: s for s in graph.inputs + graph.constants}
        env.update((d, d) for d in graph._dims.values())
    else:
        env = read_values(graph, values)
    condition = None
    try:
        with np.errstate(all="ignore"):
            for role in (FORWARD, ADJOINT, GRADIENT):
                for condition in kkt.conditions(role):
                    env[condition.unknown] = condition.solve(env, symbolic)
    except NoNumericRule:
        node = condition.unknown if condition.role == FORWARD else condition.wrt
        raise AdjointError(
            f"cannot evaluate {condition.unknown} = {text(condition.rhs)} numerically: it "
            "has an undefined function or an unevaluated derivative; solve symbolically "
            "with g.solve(), or give the function a numeric implementation with "
            "adjoint.elementary",
            node=node,
        ) from None
    if not symbolic:
        env = {k: _finish(v) for k, v in env.items()}
    node_values = {z: env[z] for z in graph.inputs + graph.constants + graph.defined}
    adjoints = {z: env[graph.multiplier(z)] for z in graph.nodes}
    return Solution(graph, node_values, adjoints, symbolic)


def _finish(value):
    """A float, or a read-only float array for a matrix node."""
    if isinstance(value, np.ndarray) and value.ndim:
        out = np.array(value, dtype=float)
        out.setflags(write=False)
        return out
    return to_real(value)


def read_values(graph: Graph, values: Mapping) -> dict:
    """Check and convert the values given for the inputs and constants.

    The result also binds each symbolic matrix dimension (``n``) to its size.
    """
    if not isinstance(values, Mapping):
        raise BadValueError(
            f"values must be a dict from inputs to numbers, such as {{x: 1.5}}, got "
            f"{type(values).__name__}"
        )
    given = {}
    for key, value in values.items():
        try:
            symbol = graph._lookup(key)
        except UnknownSymbolError:
            raise UnknownSymbolError(
                f"a value is given for {key}, which is not a node of this graph; its inputs "
                f"are {', '.join(map(str, graph.inputs)) or 'none'}",
                node=key,
            ) from None
        kind = graph.node(symbol).kind
        if kind == "defined":
            raise BadValueError(
                f"a value is given for {symbol}, but {symbol} = {graph.expr(symbol)} is "
                "computed by its constraint; give values only for inputs and constants",
                node=symbol,
            )
        given[symbol] = value
    missing = [s for s in graph.inputs + graph.constants if s not in given]
    if missing:
        raise MissingValueError(
            f"no value is given for {', '.join(map(str, missing))}; every input and "
            "constant needs one, as in g.solve({" + ", ".join(f"{s}: 1.0" for s in missing) + "})",
            node=missing[0],
        )
    env: dict = {}
    dims: dict = {}
    for symbol in graph.inputs + graph.constants:  # declaration order binds dimensions
        shape = graph.node(symbol).shape
        if shape is None:
            env[symbol] = _as_number(symbol, given[symbol])
        else:
            env[symbol] = as_array(symbol, given[symbol], shape, dims)
    env.update(dims)
    return env


def as_array(symbol, value, shape, dims: dict, dtype=float) -> np.ndarray:
    """A real array of the declared shape; symbolic dimensions are bound in ``dims``.

    Shared by solving and by compiled programs, so both say the same about a
    wrong shape.
    """
    expected = " x ".join(str(d) for d in shape)
    try:
        if value is None or isinstance(value, (str, bytes)) or np.iscomplexobj(value):
            raise TypeError("not real")
        array = np.array(value, dtype=dtype)
    except (TypeError, ValueError):
        raise BadValueError(
            f"the value of {symbol} must be a real {expected} array, got {type(value).__name__}",
            node=symbol,
        ) from None
    if array.ndim != 2:
        raise ShapeError(
            f"{symbol} is a {expected} matrix, but the array given for it has shape "
            f"{array.shape}" + (" (reshape it to a column, (n, 1))" if array.ndim == 1 else ""),
            node=symbol,
        )
    for declared, size in zip(shape, array.shape):
        if isinstance(declared, sp.Symbol):
            declared = dims.setdefault(declared, size)
        if int(declared) != size:
            bound = " x ".join(str(dims.get(d, d)) for d in shape)
            raise ShapeError(
                f"{symbol} must be {expected} (here {bound}), but the array given for it "
                f"has shape {array.shape[0]} x {array.shape[1]}",
                node=symbol,
            )
    if not np.all(np.isfinite(array)):
        raise BadValueError(
            f"the array given for {symbol} has entries that are not finite", node=symbol
        )
    return array


def _as_number(symbol, value) -> np.float64:
    if isinstance(value, sp.Basic):
        if not (value.is_number and value.is_real):
            raise BadValueError(
                f"the value of {symbol} is {value}, which is not a real number", node=symbol
            )
        value = float(value)
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise BadValueError(
            f"the value of {symbol} must be a real number, got {type(value).__name__} {value!r}",
            node=symbol,
        )
    try:
        value = float(value)
    except OverflowError:  # an integer beyond the range of a float
        value = math.inf
    if not math.isfinite(value):
        raise BadValueError(
            f"the value of {symbol} is {value}, not a finite number (a float ranges to about "
            "1.8e308)",
            node=symbol,
        )
    return np.float64(value)


def grad(expr, wrt, at: Mapping | None = None):
    """The gradient of ``expr`` by the adjoint method.

    ``expr`` is split into a graph (:meth:`Graph.from_expr`) with ``wrt`` as inputs and
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
        from .parsing import parse

        expr = parse(expr)
    names = {w.name if isinstance(w, sp.Symbol) else w for w in wrt_list}
    constants = (
        [s for s in free_symbols(expr) if s.name not in names] if isinstance(expr, sp.Basic) else []
    )
    g = Graph.from_expr(expr, inputs=wrt_list, constants=constants)
    sol = g.solve(at)
    return sol.gradient[g.inputs[0]] if single else dict(sol.gradient)
