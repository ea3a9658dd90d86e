"""The errors `adjoint` raises on bad input.

Every error is an :class:`AdjointError`, which is a :class:`ValueError`, so
``except ValueError`` keeps working. Each names the node it is about (``.node``,
``None`` when the problem is not tied to one node) and says how to fix it.
"""

from __future__ import annotations

__all__ = [
    "AdjointError",
    "BadValueError",
    "CycleError",
    "DuplicateNameError",
    "ExpressionError",
    "MissingValueError",
    "ParseError",
    "ShapeError",
    "UnknownSymbolError",
    "WriteError",
    "as_list",
    "write_text",
]


class AdjointError(ValueError):
    """Base class of every error the package raises on bad input."""

    def __init__(self, message: str, node=None):
        super().__init__(message)
        self.node = node


class CycleError(AdjointError):
    """The constraints read each other in a cycle: they do not form a DAG."""

    def __init__(self, message: str, cycle=(), node=None):
        super().__init__(message, node=node)
        self.cycle = tuple(cycle)


class UnknownSymbolError(AdjointError):
    """A symbol is not a node (input, constant or defined node) of the graph."""


class DuplicateNameError(AdjointError):
    """A name is declared twice."""


class ShapeError(AdjointError):
    """A shape does not match: a matrix node, or an array given for it."""


class MissingValueError(AdjointError):
    """A value needed for solving (an input or a constant) was not given."""


class BadValueError(AdjointError):
    """A value given for a node is not a real number (or array of them)."""


class ExpressionError(AdjointError):
    """Something given as an expression is not a sympy expression."""


class ParseError(ExpressionError):
    """Text given as an expression cannot be parsed safely."""


def as_list(value, what: str) -> list:
    """``value`` as a list, or an error saying that ``what`` must be a sequence."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise AdjointError(
            f"{what} must be a list (or other sequence), got {type(value).__name__} {value!r}"
        )
    return list(value)


class WriteError(AdjointError):
    """A result could not be written where it was asked to go."""


def write_text(path, text: str) -> None:
    """``text`` into the file ``path``: the one writer of results (command line, grading),
    so that a missing folder or a read-only file is a :class:`WriteError` naming the
    path, never a traceback."""
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise WriteError(
            f"cannot write to {path}: {exc.strerror or exc}; check that its folder exists "
            "and can be written"
        ) from None
