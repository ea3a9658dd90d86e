"""Local partial derivatives ``df_i/dz_j`` of scalar constraints.

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

import sympy as sp

from .numeric import numeric_function
from .primitives import derivative_from_output, mark_kinks

__all__ = ["Operation", "operation", "placeholders"]

_PLACEHOLDERS: list[sp.Dummy] = []
_CACHE_LIMIT = 50_000


def placeholders(n: int) -> list[sp.Dummy]:
    """The real placeholders ``a0 .. a{n-1}``, the same objects on every call."""
    while len(_PLACEHOLDERS) < n:
        _PLACEHOLDERS.append(sp.Dummy(f"a{len(_PLACEHOLDERS)}", real=True))
    return _PLACEHOLDERS[:n]


class Operation:
    """A scalar right-hand side ``f(a_0, ..., a_{m-1})`` in placeholder arguments.

    Its partials and numeric functions are built on first use and shared by every
    node that applies the same operation. Its *numeric partials* are the ones that
    solving and generated code evaluate: the own value ``f`` (one more placeholder,
    after the arguments) stands where a derivative is declared in terms of it, and
    kinks are marked ``nan``.
    """

    #: Contributions of a scalar operation are ``lambda_i * df_i/dz_j``.
    pullback = False

    __slots__ = ("_numeric", "_partials", "_shared", "_value_fn", "args", "out", "template")

    def __init__(self, template: sp.Expr, arity: int):
        self.template = template
        *self.args, self.out = placeholders(arity + 1)
        self.args = tuple(self.args)
        self._partials: dict[int, sp.Expr] = {}
        self._numeric: dict[int, tuple] = {}
        self._value_fn = None
        self._shared = None

    def partial(self, k: int) -> sp.Expr:
        """``df/da_k``, as mathematics writes it."""
        if k not in self._partials:
            self._partials[k] = sp.diff(self.template, self.args[k])
        return self._partials[k]

    def numeric_partial(self, k: int) -> sp.Expr:
        """``df/da_k`` as it is evaluated: in the own value where declared, nan at kinks."""
        return self._numeric_entry(k)[0]

    def numeric_partial_fn(self, k: int):
        """:meth:`numeric_partial` as a function of the arguments and the own value."""
        entry = self._numeric_entry(k)
        if entry[1] is None:
            entry[1] = numeric_function((*self.args, self.out), entry[0])
        return entry[1]

    def _numeric_entry(self, k: int) -> list:
        if k not in self._numeric:
            partial = derivative_from_output(self.template, self.args[k], self.out)
            if partial is None:
                partial = mark_kinks(self.partial(k), self.template)
            self._numeric[k] = [partial, None]
        return self._numeric[k]

    def reuses_output(self, k: int) -> bool:
        """Whether the numeric partial reads the stored value ``z_i`` rather than ``f_i``."""
        return self.out in self.numeric_partial(k).free_symbols

    def shared(self) -> tuple[sp.Expr, ...]:
        """Subexpressions of ``f`` that its numeric partials need too (``sin(a)`` in
        ``sin(a)*b``): generated code computes them once, in Step 1."""
        if self._shared is None:
            partials = [self.numeric_partial(k) for k in range(len(self.args))]
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

    def value_fn(self):
        """``f`` as a numeric function of the argument values."""
        if self._value_fn is None:
            self._value_fn = numeric_function(self.args, self.template)
        return self._value_fn

    # The interface a contribution reads; matrix operations (adjoint.matrices) share it.

    def value(self, args, env):
        """``f_i`` at the values ``args`` of its arguments."""
        return self.value_fn()(*args)

    def local(self, k: int, reads, multiplier) -> sp.Expr:
        """``df_i/dz_j`` for ``z_j = reads[k]``, in the node's own symbols."""
        return self.instantiate(self.partial(k), reads)

    def contribution(self, k: int, reads, multiplier) -> sp.Expr:
        """``lambda_i * df_i/dz_j``: what the reader adds to the condition of ``z_j``."""
        return multiplier * self.local(k, reads, multiplier)

    def numeric_local(self, k: int, reads, multiplier, out) -> sp.Expr:
        """The partial as it is evaluated, with ``out`` for the stored ``z_i``."""
        return self.instantiate(self.numeric_partial(k), reads, out)

    def local_value(self, k: int, args, out, env):
        return self.numeric_partial_fn(k)(*args, out)

    def contribution_value(self, k: int, args, lam, out, env):
        return lam * self.numeric_partial_fn(k)(*args, out)

    def instantiate(self, expr: sp.Expr, reads: Sequence[sp.Symbol], out=None) -> sp.Expr:
        """``expr`` (the template or a partial) in a node's own arguments (and value)."""
        mapping = dict(zip(self.args, reads))
        if out is not None:
            mapping[self.out] = out
        return expr.xreplace(mapping)


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
