"""Walking sympy expressions as DAGs.

sympy's own ``free_symbols``, ``has`` and ``atoms`` walk an expression as a tree,
so a subexpression shared in many places is walked each time: exponential in the
depth for heavily shared expressions. These walks visit each distinct
subexpression once, with an explicit stack (no recursion limit).
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp

__all__ = ["SUM_LIMIT", "expand_sums", "free_symbols", "postorder", "scan"]


def postorder(expr: sp.Basic, enter: Callable[[sp.Basic], bool] | None = None) -> list:
    """The distinct subexpressions of ``expr``, each after its arguments.

    Only subexpressions for which ``enter`` is true are entered (all, by default);
    the others are leaves.
    """
    order, seen = [], set()
    stack = [(expr, False)]
    while stack:
        e, expanded = stack.pop()
        if expanded:
            order.append(e)
            continue
        if e in seen:
            continue
        seen.add(e)
        stack.append((e, True))
        if enter is None or enter(e):
            stack.extend((a, False) for a in reversed(e.args) if a not in seen)
    return order


def _binds(e: sp.Basic) -> bool:
    return bool(getattr(e, "bound_symbols", None))


_NOT_REAL = (sp.I, sp.zoo, sp.nan)


def scan(expr: sp.Basic) -> tuple[list, bool, bool]:
    """The free symbols of ``expr`` (MatrixSymbols too) sorted by name, whether it
    holds ``I``, ``zoo`` or ``nan``, and whether it holds a ``Sum`` or ``Product`` (see
    :func:`expand_sums`): all from one DAG walk.

    The symbols in a matrix dimension (``n`` in ``Identity(n)``) are among them.
    """
    found, not_real, sums = set(), False, False
    leaf = (sp.MatrixSymbol, sp.Symbol)
    for e in postorder(expr, enter=lambda e: not (_binds(e) or isinstance(e, leaf))):
        if isinstance(e, leaf):
            found.add(e)
        elif _binds(e):
            found |= e.free_symbols
            sums = sums or isinstance(e, (sp.Sum, sp.Product))
        elif e.is_Atom and e in _NOT_REAL:
            not_real = True
    return sorted(found, key=lambda s: s.name), not_real, sums


def free_symbols(expr: sp.Basic) -> list[sp.Symbol]:
    """The free symbols of ``expr`` (MatrixSymbols too), sorted by name, in one DAG walk."""
    return scan(expr)[0]


#: A finite sum or product is written out when it has at most this many terms.
SUM_LIMIT = 1000


def expand_sums(expr: sp.Basic) -> sp.Basic:
    """``expr`` with each finite ``Sum`` and ``Product`` over numbers written out
    (``Sum(x**k, (k, 0, 3))`` is ``1 + x + x**2 + x**3``), so that every term is an
    elementary operation; ``ValueError`` (with what to write instead) for one whose
    bounds are not numbers or that has more than :data:`SUM_LIMIT` terms.
    """
    found = [e for e in postorder(expr) if isinstance(e, (sp.Sum, sp.Product))]
    if not found:
        return expr
    if any(e.atoms(sp.matrices.expressions.matexpr.MatrixElement) for e in found):
        return expr  # an entry of a matrix product: the shape checks explain it
    replaced = {}
    for e in found:  # inner ones first: postorder
        e = e.xreplace(replaced)
        count = 1
        for _, low, high in e.limits:
            if not (low.is_Integer and high.is_Integer):
                raise ValueError(
                    f"{e} runs over a symbolic range: write its terms out, or give the "
                    "bounds as numbers"
                )
            count *= max(int(high) - int(low) + 1, 0)
        if count > SUM_LIMIT:
            raise ValueError(
                f"{e} has {count} terms (more than {SUM_LIMIT}): write it with matrices "
                "(sum_entries of an element-wise expression) instead"
            )
        replaced[e] = e.doit()
    return expr.xreplace(replaced)
