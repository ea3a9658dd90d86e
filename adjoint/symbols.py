"""Naming: node symbols (always real) and the Lagrange multiplier of each node."""

from __future__ import annotations

import keyword

import sympy as sp

from .errors import AdjointError, ShapeError

__all__ = ["MatrixMultiplier", "Multiplier", "multiplier_of", "node_symbol"]


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


def node_symbol(name, what: str = "node", shape=None):
    """The symbol for a new node: a real ``Symbol`` (or a ``MatrixSymbol`` when it has
    a shape) made from a name, or the user's own symbol."""
    if isinstance(name, sp.MatrixSymbol):
        if isinstance(name, MatrixMultiplier):
            raise AdjointError(f"{name} is a Lagrange multiplier, not a name for {_article(what)}")
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
        if shape is not None:
            return sp.MatrixSymbol(name.name, *check_shape(shape, name.name))
        return name
    if not isinstance(name, str):
        raise AdjointError(
            f"the name of {_article(what)} must be a string or a sympy Symbol, got "
            f"{type(name).__name__} {name!r}"
        )
    if not name.isidentifier() or keyword.iskeyword(name):
        raise AdjointError(
            f"{name!r} is not a valid {what} name: use letters, digits and underscores, "
            "starting with a letter (for example 'z1' or 'W_1')",
            node=name,
        )
    if name.startswith((Multiplier.PREFIX, MatrixMultiplier.PREFIX)):
        raise AdjointError(
            f"{name!r} is not a valid {what} name: names starting with "
            f"{Multiplier.PREFIX!r} or {MatrixMultiplier.PREFIX!r} are kept for the "
            "Lagrange multipliers",
            node=name,
        )
    if shape is not None:
        return sp.MatrixSymbol(name, *check_shape(shape, name))
    return sp.Symbol(name, real=True)


def _article(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"
