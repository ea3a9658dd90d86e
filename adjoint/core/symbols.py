"""Naming: node symbols (always real) and the Lagrange multiplier of each node."""

from __future__ import annotations

import keyword
import unicodedata

import numpy as np
import sympy as sp

from .errors import AdjointError, ShapeError

__all__ = [
    "CHECKS",
    "STEP",
    "STEPS",
    "MatrixMultiplier",
    "Multiplier",
    "StepSum",
    "check_name",
    "multiplier_of",
    "node_symbol",
    "over_steps",
    "step_value",
]


class Multiplier(sp.Symbol):
    """``lambda_j``, the Lagrange multiplier of the constraint on node ``z_j``.

    It prints as ``lambda_z1`` and renders in LaTeX as ``\\lambda_{z_{1}}``: the
    Greek letter with the node's own name as subscript.
    """

    PREFIX = "lambda_"

    @property
    def node_name(self) -> str:
        return self.name[len(self.PREFIX) :]

    def _latex(self, printer) -> str:
        return r"\lambda_{" + printer._print(sp.Symbol(self.node_name)) + "}"


class MatrixMultiplier(sp.MatrixSymbol):
    """``Lambda_j``, the multiplier of a matrix node ``Z_j``: a matrix of its shape.

    It prints as ``Lambda_H`` and renders in LaTeX as ``\\Lambda_{H}``.
    """

    PREFIX = "Lambda_"

    @property
    def node_name(self) -> str:
        return self.name[len(self.PREFIX) :]

    def _latex(self, printer) -> str:
        return r"\Lambda_{" + printer._print(sp.Symbol(self.node_name)) + "}"


def multiplier_of(node):
    """The multiplier of a node: a real symbol, or a matrix of the node's shape."""
    if isinstance(node, sp.MatrixSymbol):
        return MatrixMultiplier(MatrixMultiplier.PREFIX + node.name, *node.shape)
    return Multiplier(Multiplier.PREFIX + node.name, real=True)


def check_shape(shape, name) -> tuple:
    """A matrix shape: two dimensions, each a positive integer or a sympy symbol."""
    if not (isinstance(shape, (tuple, list)) and len(shape) == 2):
        raise ShapeError(
            f"the shape of {name} must be a pair (rows, cols), got {shape!r}", node=name
        )
    dims = []
    for dim in shape:
        if isinstance(dim, sp.Symbol):
            check_name(dim.name, "dimension")
        if isinstance(dim, sp.Symbol) or (
            isinstance(dim, (int, sp.Integer)) and not isinstance(dim, bool) and dim > 0
        ):
            dims.append(sp.sympify(dim))
        else:
            raise ShapeError(
                f"the shape of {name} is {shape!r}: each dimension must be a positive "
                "integer or a sympy Symbol such as n",
                node=name,
            )
    return tuple(dims)


def check_name(name: str, what: str = "node") -> None:
    """Refuse a name that Python, the text parser or the multipliers would read as
    something else: it must be an identifier in NFKC normal form (the form Python
    reads), no keyword, not start with an underscore (kept for the package) nor with
    ``lambda_``/``Lambda_`` (kept for the multipliers)."""
    normal = unicodedata.normalize("NFKC", name)
    if normal != name:
        raise AdjointError(
            f"{name!r} is not a valid {what} name: Python reads it as {normal!r} (its NFKC "
            f"form), so two names would be one variable; write {normal!r}",
            node=name,
        )
    if not name.isidentifier() or keyword.iskeyword(name):
        raise AdjointError(
            f"{name!r} is not a valid {what} name: use letters, digits and underscores, "
            "starting with a letter (for example 'z1' or 'W_1'), and no Python keyword",
            node=name,
        )
    if name.startswith("_"):
        raise AdjointError(
            f"{name!r} is not a valid {what} name: a leading underscore is kept for the "
            f"package's own names; write {name.lstrip('_') or 'z'!r}",
            node=name,
        )
    if name.startswith((Multiplier.PREFIX, MatrixMultiplier.PREFIX)):
        raise AdjointError(
            f"{name!r} is not a valid {what} name: names starting with "
            f"{Multiplier.PREFIX!r} or {MatrixMultiplier.PREFIX!r} are kept for the "
            "Lagrange multipliers",
            node=name,
        )
    if name.startswith(_TANGENT_PREFIXES) or _prints_like_the_packages(name):
        raise AdjointError(
            f"{name!r} is not a valid {what} name: it prints as {sp.latex(sp.Symbol(name))}, "
            "as the package writes the multipliers (lambda) and the tangents (a dot), so "
            "two different symbols of one equation would print alike; choose another name, "
            "such as 'mu_a' or 'a_rate'",
            node=name,
        )


#: The tangents of second order (adjoint.system.second_order) are named with these.
_TANGENT_PREFIXES = ("zdot_", "Zdot_", "lambdadot_", "Lambdadot_")


def _prints_like_the_packages(name: str) -> bool:
    r"""Whether sympy prints ``name`` with a Greek lambda or a dot accent, as the
    multipliers (``\lambda_{a}``) and tangents (``\dot{a}``) print."""
    if "dot" not in name and "amda" not in name and "ambda" not in name:
        return False  # the common case, without printing
    latex = sp.latex(sp.Symbol(name))
    return latex.startswith((r"\lambda", r"\Lambda")) or "dot{" in latex


#: The assumptions a value can be checked against (``x = Symbol('x', positive=True)``
#: lets sympy turn ``Abs(x)`` into ``x``, so a negative value would give a wrong
#: answer). ``True`` requires the check to hold, ``False`` to fail.
CHECKS = {
    "positive": lambda v: v > 0,
    "negative": lambda v: v < 0,
    "nonnegative": lambda v: v >= 0,
    "nonpositive": lambda v: v <= 0,
    "zero": lambda v: v == 0,
    "nonzero": lambda v: v != 0,
    "integer": lambda v: v == np.round(v),
    "even": lambda v: (v == np.round(v)) & (np.round(v) % 2 == 0),
    "odd": lambda v: (v == np.round(v)) & (np.round(v) % 2 == 1),
}
#: Assumptions no float can be checked against: refused.
_UNCHECKABLE = ("rational", "irrational", "algebraic", "transcendental", "prime", "composite")


def _check_assumptions(symbol, what: str) -> None:
    facts = symbol.assumptions0
    if facts.get("real") is False or facts.get("imaginary") is True:
        raise AdjointError(
            f"{symbol} is declared not real; nodes are real numbers: declare it without "
            "assumptions, or real=True",
            node=symbol,
        )
    if what == "node":  # a defined node's value comes from its constraint alone
        claimed = sorted(k for k in CHECKS if facts.get(k) is not None)
        if claimed:
            raise AdjointError(
                f"{symbol} is declared {', '.join(k for k in claimed if facts[k])}, but its "
                "value comes from its constraint, which nothing guarantees to keep it so "
                "(and sympy would simplify with it); declare it without assumptions",
                node=symbol,
            )
    loose = [k for k in _UNCHECKABLE if facts.get(k) and not facts.get("integer")]
    if loose:
        raise AdjointError(
            f"{symbol} is declared {loose[0]}, which no value given as a float can be checked "
            "against; declare it without that assumption",
            node=symbol,
        )


def node_symbol(name, what: str = "node", shape=None):
    """The symbol for a new node: a real ``Symbol`` (or a ``MatrixSymbol`` when it has
    a shape) made from a name, or the user's own symbol."""
    if isinstance(name, sp.MatrixSymbol):
        if isinstance(name, MatrixMultiplier):
            raise AdjointError(f"{name} is a Lagrange multiplier, not a name for {_article(what)}")
        check_name(name.name, what)
        for dim in name.shape:
            if isinstance(dim, sp.Symbol):
                check_name(dim.name, "dimension")
        if shape is not None and tuple(check_shape(shape, name.name)) != tuple(name.shape):
            raise ShapeError(
                f"{name.name} has shape {name.shape}, but shape={shape!r} was given",
                node=name,
            )
        return name
    if isinstance(name, sp.Symbol):
        if isinstance(name, Multiplier):
            raise AdjointError(
                f"{name} is a Lagrange multiplier, not a name for {_article(what)}", node=name
            )
        check_name(name.name, what)
        _check_assumptions(name, what)
        if shape is not None:
            return sp.MatrixSymbol(name.name, *check_shape(shape, name.name))
        return name
    if not isinstance(name, str):
        raise AdjointError(
            f"the name of {_article(what)} must be a string or a sympy Symbol, got "
            f"{type(name).__name__} {name!r}"
        )
    check_name(name, what)
    if shape is not None:
        return sp.MatrixSymbol(name, *check_shape(shape, name))
    return sp.Symbol(name, real=True)


def _article(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


# -- the step notation of recurrences --------------------------------------------------

#: The step index of a recurrence, as ``step`` and ``cost`` name it.
STEP = sp.Symbol("t", integer=True, nonnegative=True)
#: The number of steps, as conditions and text name it.
STEPS = sp.Symbol("T", integer=True, positive=True)


def step_value(symbol, index, name=None):
    """``symbol`` (named ``name``) at step ``index`` (``t + k``, ``T - k`` or a number):
    ``z[t + 1]``, an ``Indexed``, for a scalar; a matrix symbol named ``x[t + 1]`` for a
    matrix. Text reads both back (:func:`adjoint.core.parsing.parse` with ``steps=``)."""
    name = name or symbol.name
    if isinstance(index, str):  # "T", or "t"
        index = {"T": STEPS, "t": STEP}[index]
    index = sp.sympify(index)
    if isinstance(symbol, sp.MatrixSymbol):
        return sp.MatrixSymbol(f"{name}[{index}]", *symbol.shape)
    return sp.IndexedBase(name)[index]


class StepSum(sp.MatrixExpr):
    """``sum_{t=0}^{T-1}`` of a matrix expression, for printing (sympy's ``Sum`` is for
    scalars)."""

    def __new__(cls, expr):
        return sp.Basic.__new__(cls, expr)

    @property
    def shape(self):
        return self.args[0].shape

    def _sympystr(self, printer) -> str:
        return f"Sum({printer._print(self.args[0])}, (t, 0, T - 1))"

    def _latex(self, printer) -> str:
        return r"\sum_{t=0}^{T - 1} \left(" + printer._print(self.args[0]) + r"\right)"


def over_steps(expr):
    """``sum_{t<T} expr``: sympy's ``Sum`` for a scalar, :class:`StepSum` for a matrix."""
    if isinstance(expr, (sp.MatrixExpr, sp.MatrixBase)):
        return StepSum(sp.ImmutableMatrix(expr) if isinstance(expr, sp.MatrixBase) else expr)
    return sp.Sum(expr, (STEP, 0, STEPS - 1))
