"""Naming: node symbols (always real) and the Lagrange multiplier of each node."""

from __future__ import annotations

import keyword

import sympy as sp

from .errors import AdjointError

__all__ = ["Multiplier", "multiplier_of", "node_symbol"]


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


def multiplier_of(node: sp.Symbol) -> Multiplier:
    """The multiplier symbol of a scalar node (real, like the node)."""
    return Multiplier(Multiplier.PREFIX + node.name, real=True)


def node_symbol(name, what: str = "node") -> sp.Symbol:
    """The symbol for a new node: a real ``Symbol`` made from a name, or the user's own."""
    if isinstance(name, sp.Symbol):
        if isinstance(name, Multiplier):
            raise AdjointError(
                f"{name} is a Lagrange multiplier, not a name for a {what}", node=name
            )
        return name
    if not isinstance(name, str):
        raise AdjointError(
            f"a {what} name must be a string or a sympy Symbol, got {type(name).__name__} {name!r}"
        )
    if not name.isidentifier() or keyword.iskeyword(name):
        raise AdjointError(
            f"{name!r} is not a valid {what} name: use letters, digits and underscores, "
            "starting with a letter (for example 'z1' or 'W_1')",
            node=name,
        )
    if name.startswith(Multiplier.PREFIX):
        raise AdjointError(
            f"{name!r} is not a valid {what} name: names starting with "
            f"{Multiplier.PREFIX!r} are kept for the Lagrange multipliers",
            node=name,
        )
    return sp.Symbol(name, real=True)
