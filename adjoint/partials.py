"""Local partial derivatives ``df_i/dz_j`` of each constraint.

Step 2 needs, for every edge j -> i, the partial of ``f_i`` with respect to one of
its arguments: local work, O(|E|) in all, never a derivative of the whole
Lagrangian. Many nodes apply the same operation (``sin(z3)`` and ``sin(z8)``), so a
right-hand side is first written as an :class:`Operation` of placeholder
arguments, whose partials are derived once and then instantiated per node.

Placeholders are real, so that ``Abs``, ``sign``, ``Max`` and the like get real
derivatives whatever the assumptions on the user's symbols.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sympy as sp

from .numeric import numeric_function

__all__ = ["Operation", "operation"]

_PLACEHOLDERS: list[sp.Dummy] = []
#: Derivatives of these are 0 or undefined at the origin of their argument;
#: where one appears in a partial but not in f itself, f has a kink there.
_KINKS = (sp.sign, sp.Heaviside, sp.DiracDelta)
_CACHE_LIMIT = 50_000


def placeholders(n: int) -> list[sp.Dummy]:
    while len(_PLACEHOLDERS) < n:
        _PLACEHOLDERS.append(sp.Dummy(f"a{len(_PLACEHOLDERS)}", real=True))
    return _PLACEHOLDERS[:n]


class Operation:
    """A right-hand side ``f(a_0, ..., a_{m-1})`` in placeholder arguments.

    Its partials, their kinks and its numeric functions are built on first use and
    shared by every node that applies the same operation.
    """

    __slots__ = (
        "_kinks",
        "_partial_fns",
        "_partials",
        "_reusing",
        "_shared",
        "_value_fn",
        "args",
        "template",
    )

    def __init__(self, template: sp.Expr, arity: int):
        self.template = template
        self.args = tuple(placeholders(arity))
        self._partials: dict[int, sp.Expr] = {}
        self._kinks: dict[int, tuple[sp.Expr, ...]] = {}
        self._value_fn = None
        self._partial_fns: dict[int, object] = {}
        self._reusing: dict[int, sp.Expr] = {}
        self._shared = None

    def partial(self, k: int) -> sp.Expr:
        """``df/da_k``."""
        if k not in self._partials:
            self._partials[k] = sp.diff(self.template, self.args[k])
        return self._partials[k]

    def partial_of_output(self, k: int) -> sp.Expr:
        """``df/da_k`` written with ``f``'s own value where that is shorter
        (``1 - f**2`` for tanh, ``f`` for exp), with ``f`` as one more placeholder,
        after the arguments. Generated code uses it to read the stored value."""
        if k not in self._reusing:
            partial = self.partial(k)
            out = sp.Dummy("out", real=True)
            reused = partial
            if not self.template.is_Atom and partial.has(*self.template.atoms(sp.Function, sp.Pow)):
                candidate = partial.subs(self.template, out)
                if sp.count_ops(candidate) < sp.count_ops(partial):
                    reused = candidate
            own_value = placeholders(len(self.args) + 1)[-1]
            self._reusing[k] = reused.xreplace({out: own_value})
        return self._reusing[k]

    def shared(self) -> tuple[sp.Expr, ...]:
        """Subexpressions of ``f`` that its partials need too (``sin(a)`` in
        ``sin(a)*b``): generated code computes them once, in Step 1."""
        if self._shared is None:
            partials = [self.partial_of_output(k) for k in range(len(self.args))]
            candidates = [
                e
                for e in sp.preorder_traversal(self.template)
                if e is not self.template
                and isinstance(e, (sp.Function, sp.Pow))
                and e.free_symbols
                and any(p.has(e) for p in partials)
            ]
            # the outermost ones only: sin(a) is kept and not also a inside it
            self._shared = tuple(
                e for e in candidates if not any(o is not e and o.has(e) for o in candidates)
            )
        return self._shared

    def kinks(self, k: int) -> tuple[sp.Expr, ...]:
        """Expressions whose zero is a point where ``df/da_k`` does not exist."""
        if k not in self._kinks:
            born = self.partial(k).atoms(*_KINKS) - self.template.atoms(*_KINKS)
            self._kinks[k] = tuple(sorted({a.args[0] for a in born}, key=sp.default_sort_key))
        return self._kinks[k]

    def value_fn(self):
        """``f`` as a numeric function of the argument values."""
        if self._value_fn is None:
            self._value_fn = numeric_function(self.args, self.template)
        return self._value_fn

    def partial_fn(self, k: int):
        """``df/da_k`` as a numeric function; ``nan`` where it does not exist."""
        if k not in self._partial_fns:
            base = numeric_function(self.args, self.partial(k))
            kinks = [numeric_function(self.args, u) for u in self.kinks(k)]
            if kinks:

                def fn(*values, base=base, kinks=kinks):
                    out = base(*values)
                    for kink in kinks:
                        out = np.where(kink(*values) == 0, np.nan, out)
                    return out

            else:
                fn = base
            self._partial_fns[k] = fn
        return self._partial_fns[k]

    def instantiate(self, expr: sp.Expr, reads: Sequence[sp.Symbol]) -> sp.Expr:
        """``expr`` (the template or one of its partials) in a node's own arguments."""
        return expr.xreplace(dict(zip(self.args, reads)))

    # The interface a Term uses; matrix operations (adjoint.matrices) share it.

    def derive(self, k: int) -> None:
        self.partial(k)

    def term(self, k: int, reads, multiplier) -> sp.Expr:
        """``lambda_i * df_i/dz_j`` for ``z_j = reads[k]``."""
        return multiplier * self.instantiate(self.partial(k), reads)

    def value(self, args, env):
        return self.value_fn()(*args)

    def term_value(self, k: int, args, lam, env):
        return lam * self.partial_fn(k)(*args)


_OPERATIONS: dict[sp.Expr, Operation] = {}


def operation(expr: sp.Expr, reads: Sequence[sp.Symbol]) -> Operation:
    """The shared :class:`Operation` that ``expr`` applies to the nodes ``reads``."""
    args = placeholders(len(reads))
    template = expr.xreplace(dict(zip(reads, args)))
    op = _OPERATIONS.get(template)
    if op is None:
        if len(_OPERATIONS) >= _CACHE_LIMIT:
            _OPERATIONS.clear()
        op = _OPERATIONS[template] = Operation(template, len(reads))
    return op
