"""Values given for the inputs and constants: checked and converted in one place.

Solving (``g.solve(values)``), compiled programs and the checkers all read values
through these functions, so they accept and refuse the same things: real, finite
numbers (arrays of them for matrix nodes, or arrays of points for scalar nodes in
compiled programs); never ``nan``, ``inf``, booleans, strings, complex numbers or
integers beyond the range of a float.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np
import sympy as sp

from .errors import BadValueError, MissingValueError, ShapeError, UnknownSymbolError
from .symbols import CHECKS

__all__ = [
    "as_array",
    "as_number",
    "as_numpy_numbers",
    "as_points",
    "bind_dimensions",
    "by_node",
    "check_square",
    "finish",
    "finite",
    "read_values",
    "relative_error",
    "to_real",
]


def finite(value) -> bool:
    """Whether a value (a number, or every entry of an array) is finite."""
    if isinstance(value, float):  # numpy's float64 too: the solver's common case
        return math.isfinite(value)
    return bool(np.all(np.isfinite(value)))


def by_node(graph, mapping, what: str) -> dict:
    """``mapping`` keyed by the graph's own symbols: each key a node's symbol or name,
    each node given once. ``what`` names the mapping in messages ("the values")."""
    if not isinstance(mapping, Mapping):
        raise BadValueError(
            f"{what} must be a dict from inputs to numbers, such as {{x: 1.5}}, got "
            f"{type(mapping).__name__}"
        )
    given = {}
    for key, value in mapping.items():
        try:
            symbol = graph.lookup(key)
        except UnknownSymbolError:
            raise UnknownSymbolError(
                f"{what} give {key}, which is not a node of this graph; its inputs "
                f"are {', '.join(map(str, graph.inputs)) or 'none'}",
                node=key,
            ) from None
        if symbol in given:
            raise BadValueError(
                f"{what} give {symbol} twice (as {symbol} and by name); give it once",
                node=symbol,
            )
        given[symbol] = value
    return given


def read_values(graph, values: Mapping) -> dict:
    """The values given for every input and constant of ``graph``, checked and
    converted; the result also binds each symbolic matrix dimension (``n``) to its size
    (by agreement: see :func:`bind_dimensions`).
    """
    given = by_node(graph, values, "the values")
    for symbol in given:
        if graph.node(symbol).kind == "defined":
            rule = (
                f"{graph.residual(symbol)} = 0"
                if graph.is_implicit(symbol)
                else f"{symbol} = {graph.expr(symbol)}"
            )
            raise BadValueError(
                f"a value is given for {symbol}, but {rule} is computed by its constraint; "
                "give values only for inputs and constants",
                node=symbol,
            )
    missing = [s for s in graph.inputs + graph.constants if s not in given]
    if missing:
        raise MissingValueError(
            f"no value is given for {', '.join(map(str, missing))}; every input and "
            "constant needs one, as in g.solve({" + ", ".join(f"{s}: 1.0" for s in missing) + "})",
            node=missing[0],
        )
    env: dict = {}
    arrays = []
    for symbol in graph.inputs + graph.constants:
        shape, steps = graph.node(symbol).shape, graph.node(symbol).steps
        if steps is not None:
            env[symbol] = as_sequence(symbol, given[symbol], steps, shape)
        elif shape is None:
            env[symbol] = as_number(symbol, given[symbol])
        else:
            env[symbol] = as_array(symbol, given[symbol], shape)
            arrays.append((symbol, shape, env[symbol]))
    env.update(bind_dimensions(arrays))
    check_square(graph.square_operands(), env)
    return env


def as_numpy_numbers(env: Mapping) -> dict:
    """``env`` with Python floats as numpy floats, to evaluate partials on: numpy's
    ``0.0 ** -1`` is inf (marked undefined by the solution), Python's raises."""
    return {k: np.float64(v) if isinstance(v, float) else v for k, v in env.items()}


def check_square(operands, dims: Mapping) -> None:
    """Each trace, determinant, inverse or power has a square operand once the
    symbolic dimensions have sizes (``dims``): ``Trace(M)`` of an ``n x m`` matrix is
    refused at ``n = 2, m = 3``, naming the node and the sizes. ``operands`` are the
    graph's :meth:`~adjoint.system.graph.ConstraintGraph.square_operands`."""
    for node, operation, operand in operands:
        rows, cols = (sp.sympify(sp.sympify(d).xreplace(dims)) for d in operand.shape)
        if rows.is_Integer and cols.is_Integer and rows != cols:
            raise ShapeError(
                f"the constraint for {node} takes the {operation} of {operand}, which is "
                f"{operand.shape[0]} x {operand.shape[1]}: with these values {rows} x {cols}, "
                f"not square; give arrays for which {operand.shape[0]} = {operand.shape[1]}",
                node=node,
            )


def as_sequence(symbol, value, steps: int, shape) -> np.ndarray:
    """A sequence's values: a real, finite array of ``steps`` entries (each of the
    declared shape, for a matrix sequence)."""
    want = (steps,) if shape is None else (steps, *(int(d) for d in shape))
    words = " x ".join(map(str, want))
    array = _real_array(symbol, value, float, f"a real array of shape {words}")
    if array.shape != want:
        raise ShapeError(
            f"the sequence {symbol} has {steps} steps"
            + ("" if shape is None else f" of {shape[0]} x {shape[1]} values")
            + f", so its value must have shape {want}, but it has shape {array.shape}",
            node=symbol,
        )
    return array


def as_array(symbol, value, shape, dtype=float) -> np.ndarray:
    """A real, finite two-dimensional array, of the declared size along each number in
    ``shape``; symbolic dimensions are bound afterwards, by :func:`bind_dimensions`."""
    array = _real_array(symbol, value, dtype, lambda: f"a real {_expected(shape)} array")
    if array.ndim != 2:
        raise ShapeError(
            f"{symbol} is a {_expected(shape)} matrix, but the array given for it has shape "
            f"{array.shape}" + (" (reshape it to a column, (n, 1))" if array.ndim == 1 else ""),
            node=symbol,
        )
    for declared, size in zip(shape, array.shape):
        # a compiled program calls this on every call: no sympy printing on the way
        if isinstance(declared, sp.Symbol):
            continue
        if int(declared) != size:
            raise ShapeError(
                f"{symbol} must be {_expected(shape)}, but the array given for it has shape "
                f"{_size(array)}",
                node=symbol,
            )
    return array


def _expected(shape) -> str:
    return " x ".join(str(d) for d in shape)


def bind_dimensions(arrays) -> dict:
    """``{n: size}`` for each symbolic dimension of ``arrays`` (``(symbol, declared
    shape, array)`` in declaration order), bound by agreement.

    Each array says what size it gives each dimension; the size most arrays give
    wins, and the first array that gives another is the one named, with every
    array it conflicts with. When no size has a majority, every side is named.
    """
    says: dict = {}  # {dim: {size: [symbols giving it]}}, each symbol once per size
    for symbol, shape, array in arrays:
        for declared, size in zip(shape, array.shape):
            if isinstance(declared, sp.Symbol):
                sizes = says.setdefault(declared, {}).setdefault(size, [])
                if symbol not in sizes:
                    sizes.append(symbol)
    dims = {d: next(iter(sizes)) for d, sizes in says.items() if len(sizes) == 1}
    of = {symbol: (shape, array) for symbol, shape, array in arrays}
    for d, sizes in says.items():
        if len(sizes) == 1:
            continue
        ranked = sorted(sizes.items(), key=lambda item: -len(item[1]))
        (size, agree), (_, runner_up) = ranked[0], ranked[1]
        if len(agree) > len(runner_up):
            dims[d] = size
            culprit = next(
                s for s, _, _ in arrays if any(s in v for k, v in sizes.items() if k != size)
            )
            shape, array = of[culprit]
            others = [s for s in agree if s != culprit]
            wanted = " x ".join(str(dims.get(e, size if e == d else e)) for e in shape)
            raise ShapeError(
                f"{culprit} must be {' x '.join(map(str, shape))}, but the array given for it "
                f"is {_size(array)}: it makes {d} = "
                f"{', '.join(str(k) for k, v in sizes.items() if culprit in v and k != size)}, "
                f"while {d} = {size} from "
                + ", ".join(f"{s} ({_size(of[s][1])})" for s in others)
                + (" and its own other axis" if culprit in agree else "")
                + f"; give {culprit} a {wanted} array",
                node=culprit,
            )
        sides = "; ".join(
            f"{d} = {k} from "
            + ", ".join(f"{s} ({_declared(of[s][0])}: {_size(of[s][1])})" for s in v)
            for k, v in ranked
        )
        named = [s for s, _, _ in arrays if any(s in v for v in sizes.values())]
        if len(named) == 1:  # one array, two sizes for one dimension
            shape, array = of[named[0]]
            raise ShapeError(
                f"{named[0]} must be {' x '.join(map(str, shape))}, but the array given for it "
                f"is {_size(array)}: {d} cannot be both " + " and ".join(str(k) for k in sizes),
                node=named[0],
            )
        raise ShapeError(
            f"the arrays disagree on the dimension {d}, and no size has a majority: {sides}; "
            f"give arrays that agree on {d}",
            node=named[-1],
        )
    return dims


def _declared(shape) -> str:
    return " x ".join(map(str, shape))


def _size(array) -> str:
    return " x ".join(map(str, np.shape(array)))


def as_points(symbol, value, dtype=float) -> np.ndarray:
    """A scalar node's value in a compiled program: a real number, or an array of points."""
    array = _real_array(symbol, value, dtype, "real numbers")
    _check_assumptions(symbol, array)
    return array


def as_number(symbol, value) -> np.float64:
    """A scalar node's value for solving: one real, finite number."""
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
            f"the value of {symbol} is {value}, not a finite number"
            + ("" if math.isnan(value) else " (a float ranges to about 1.8e308)"),
            node=symbol,
        )
    _check_assumptions(symbol, np.float64(value))
    return np.float64(value)


def _check_assumptions(symbol, value) -> None:
    """The value keeps what the symbol's assumptions promised sympy (``positive=True``
    let it write ``Abs(x)`` as ``x``)."""
    facts = getattr(symbol, "assumptions0", {})
    for fact, holds in CHECKS.items():
        promised = facts.get(fact)
        if promised is None:
            continue
        with np.errstate(invalid="ignore"):
            ok = np.all(holds(value)) if promised else not np.any(holds(value))
        if not ok:
            raise BadValueError(
                f"{symbol} is declared {'' if promised else 'not '}{fact} (sympy simplifies "
                f"with it), but the value given for it, {value}, is not; give a value that "
                "is, or declare the symbol without that assumption",
                node=symbol,
            )


def _real_array(symbol, value, dtype, what) -> np.ndarray:
    """``what`` is the text of what is expected, or a function giving it (made only for
    an error: compiled programs call this on every call)."""

    def bad(got: str) -> BadValueError:
        said = what() if callable(what) else what
        return BadValueError(f"the value of {symbol} must be {said}, got {got}", node=symbol)

    if value is None or isinstance(value, (str, bytes, bool, np.bool_)):
        raise bad(f"{type(value).__name__} {value!r}")
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError, OverflowError):
        raise bad(type(value).__name__) from None
    if raw.dtype.kind not in "iuf":  # booleans, complex numbers, strings, objects
        if raw.dtype == object:
            try:  # Python integers beyond int64, or sympy numbers
                raw = np.asarray(value, dtype=float)
            except (TypeError, ValueError, OverflowError):
                raise bad("values that are not real numbers") from None
        else:
            raise bad(f"an array of {raw.dtype}")
    with np.errstate(all="ignore"):
        array = np.asarray(raw, dtype=dtype)
        # One pass, no temporary: a finite sum has no inf or nan entry; only when the
        # sum is not finite (or overflows) are the entries scanned.
        finite = np.isfinite(array.sum()) or np.all(np.isfinite(array))
    if not finite:
        raise BadValueError(
            f"the value given for {symbol} has entries that are not finite (nan or inf, or "
            f"beyond the range of {np.dtype(dtype).name})",
            node=symbol,
        )
    return array


def relative_error(a, b, floor: float = 1.0) -> float:
    """The worst ``|a - b| / max(floor, |a|, |b|)`` over the entries of ``a`` and ``b``.

    ``inf`` when the shapes differ or a value is not finite: a checker never
    broadcasts a mismatch into a pass, nor compares through a nan.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.inf
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(floor, np.maximum(np.abs(a), np.abs(b)))))


def finish(value, read_only: bool = False):
    """A float (nan for a complex number: outside the domain), or a float array for a
    matrix node, read-only if asked: how every numeric result leaves the package."""
    if isinstance(value, float):  # numpy's float64 too: the common case, first
        return float(value)
    if isinstance(value, np.ndarray) and value.ndim:
        out = np.array(value, dtype=float)
        if read_only:
            out.setflags(write=False)
        return out
    return to_real(value)


def to_real(value) -> float:
    """A float from a numeric result; a complex result (outside the domain) is nan."""
    try:
        return float(value)
    except TypeError:
        z = complex(value)
        return z.real if z.imag == 0 else math.nan
