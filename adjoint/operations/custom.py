"""User-defined elementary operations: a name, a numeric implementation, its partials.

    >>> import numpy as np, sympy as sp
    >>> from adjoint import Graph, elementary
    >>> softplus = elementary(
    ...     "softplus",
    ...     numeric=lambda x: np.logaddexp(0.0, x),
    ...     partials=[lambda x: 1 / (1 + sp.exp(-x))],
    ... )
    >>> g = Graph.from_expr(softplus(sp.Symbol("x", real=True) ** 2))
    >>> round(g.solve({"x": 1.0}).gradient["x"], 6)  # 2x sigmoid(x**2)
    1.462117

The operation is a sympy ``Function`` subclass that keeps its own numeric
implementation (as sympy's ``implemented_function`` does): its ``fdiff`` gives the
partials (so the adjoint conditions use them), and it prints into generated code as
a call of that implementation. A hand-derived partial is checked by comparing the
reverse sweep with differences of the numeric implementation:
``check_gradient(g, at=...)``. A name can be given to one operation only at a time:
two operations printed alike would be mistaken for each other.
"""

from __future__ import annotations

import copyreg
import weakref
from collections.abc import Callable, Sequence

import sympy as sp

from ..core.errors import AdjointError
from ..core.parsing import Word, register_word
from ..core.symbols import check_name

#: The operations alive, by name: only to refuse a second one under the same name.
_IN_USE: weakref.WeakValueDictionary = weakref.WeakValueDictionary()

__all__ = ["elementary"]


def elementary(
    name: str,
    numeric: Callable,
    partials: Sequence[Callable],
    latex: str | None = None,
) -> type[sp.Function]:
    """A new elementary operation for graphs.

    Parameters
    ----------
    name : str
        Its name, a Python identifier.
    numeric : callable
        The value from NumPy arrays (or floats) of its arguments.
    partials : sequence of callables
        ``partials[k](*args)`` is the sympy expression of ``df/d(arg k)``; there is
        one per argument.
    latex : str, optional
        Its name in LaTeX (default ``\\operatorname{name}``).
    """
    if not isinstance(name, str):
        raise AdjointError(f"an elementary operation needs a name (text), got {name!r}")
    check_name(name, "elementary operation")  # an identifier as Python reads it
    if not callable(numeric) or not partials or not all(callable(p) for p in partials):
        raise AdjointError(
            f"elementary({name!r}) needs a callable numeric implementation and one callable "
            "partial per argument"
        )
    clash = _IN_USE.get(name)
    if clash is not None or hasattr(sp, name) or name in sp.functions.__dict__:
        raise AdjointError(
            f"an elementary operation named {name!r} already exists"
            + (" in sympy" if clash is None else " (made by an earlier adjoint.elementary call)")
            + "; give this one another name, or reuse the existing one"
        )
    partials = tuple(partials)
    _check_partials(name, partials)
    symbol = latex or rf"\operatorname{{{name}}}"

    def fdiff(self, argindex=1):
        return partials[argindex - 1](*self.args)

    code_name = f"_custom_{name}"

    def _numpycode(self, printer):
        registry = getattr(printer, "implementations", None)
        if registry is not None:  # the program's namespace will need it
            registry[code_name] = numeric
        args = ", ".join(printer._print(a) for a in self.args)
        return f"{code_name}({args})"

    def _latex(self, printer, exp=None):
        body = rf"{symbol}\left({', '.join(printer._print(a) for a in self.args)}\right)"
        return body if exp is None else rf"{body}^{{{exp}}}"

    op = ElementaryClass(
        name,
        (sp.Function,),
        {
            "nargs": len(partials),
            "fdiff": fdiff,
            "numeric_implementation": staticmethod(numeric),
            "code_name": code_name,
            "_numpycode": _numpycode,
            "_jaxcode": _numpycode,  # the same call; a JAX program runs it on the host
            "_latex": _latex,
            "__doc__": f"The user-defined elementary operation {name}.",
            "__module__": __name__,
            "elementary_spec": (name, numeric, partials, latex),
        },
    )
    _IN_USE[name] = op
    register_word(name, Word(op, (len(partials),)), weak=True)  # text may call it
    return op


def _check_partials(name: str, partials) -> None:
    """Each partial, called on real symbols, gives a sympy expression: a NumPy function
    given where a sympy expression belongs is refused now, not at the first solve."""
    args = sp.symbols(f"_a0:{len(partials)}", real=True)
    for k, partial in enumerate(partials):
        try:
            value = partial(*args)
            ok = isinstance(sp.sympify(value, strict=True), sp.Expr)
        except Exception:  # whatever the user's callable raises on symbols
            ok = False
        if not ok:
            raise AdjointError(
                f"elementary({name!r}): partial {k} must give a sympy expression of the "
                f"arguments (as lambda x: 1 - sp.tanh(x)**2), but called on symbols it does "
                "not; NumPy functions belong in numeric=, not in partials="
            )


class ElementaryClass(type(sp.Function)):
    """The class of a user's operation: pickled as the call that makes it, so that a
    graph holding one crosses to another process (an autograder's worker)."""


def _remake(name, numeric, partials, latex):
    existing = _IN_USE.get(name)
    if existing is not None and existing.elementary_spec == (name, numeric, partials, latex):
        return existing
    return elementary(name, numeric, partials, latex)


copyreg.pickle(ElementaryClass, lambda op: (_remake, op.elementary_spec))
