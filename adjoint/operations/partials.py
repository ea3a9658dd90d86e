"""Local partial derivatives ``df_i/dz_j`` of scalar constraints.

Step 2 needs, for every edge j -> i, the partial of ``f_i`` with respect to one of
its arguments: local work, O(|E|) in all, never a derivative of the whole
Lagrangian. Many nodes apply the same operation (``sin(z3)`` and ``sin(z8)``), so a
right-hand side is first written as an :class:`Operation` of placeholder
arguments, whose partials are derived once and then instantiated per node.

A node may read many others (a loss summed over thousands of terms): each partial
is derived from the part of ``f_i`` that reads its argument (the summands that hold
it), and evaluated from the arguments it needs, so the work stays linear in the
number of edges.

Placeholders are real, so that ``Abs``, ``sign``, ``Max`` and the like get real
derivatives whatever the assumptions on the user's symbols.
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from .numeric import numeric_function
from .primitives import derivative_from_output, kinks, mark_kinks, undefined_at_zero

__all__ = ["Operation", "operation", "placeholders", "position"]

_PLACEHOLDERS: list[sp.Dummy] = []
_POSITION: dict[sp.Dummy, int] = {}
_CACHE_LIMIT = 50_000


def placeholders(n: int) -> list[sp.Dummy]:
    """The real placeholders ``a0 .. a{n-1}``, the same objects on every call."""
    while len(_PLACEHOLDERS) < n:
        a = sp.Dummy(f"a{len(_PLACEHOLDERS)}", real=True)
        _POSITION[a] = len(_PLACEHOLDERS)
        _PLACEHOLDERS.append(a)
    return _PLACEHOLDERS[:n]


def position(a) -> int | None:
    """The index of a placeholder ``a_k`` (``k``); None for anything else."""
    return _POSITION.get(a)


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

    __slots__ = (
        "_coupled",
        "_numeric",
        "_partials",
        "_parts",
        "_second",
        "_second_numeric",
        "_shared",
        "_value_fn",
        "args",
        "out",
        "template",
    )

    @staticmethod
    def argument(a) -> int | None:
        """The index ``k`` of a placeholder argument ``a_k`` of a template; None for
        anything else (what a printer of the template maps to the node's reads)."""
        return position(a)

    def __init__(self, template: sp.Expr, arity: int):
        self.template = template
        *args, self.out = placeholders(arity + 1)
        self.args = tuple(args)
        self._partials: dict[int, sp.Expr] = {}
        self._numeric: dict[int, list] = {}
        self._parts: dict | None = None
        self._value_fn = None
        self._shared = None
        self._second: dict[tuple[int, int], sp.Expr] = {}
        self._second_numeric: dict[tuple[int, int], list] = {}
        self._coupled: dict[int, tuple[int, ...]] = {}

    def _summands(self, k: int) -> list | None:
        """For a sum, the summands that read ``a_k``; ``None`` for anything else."""
        if self._parts is None:
            self._parts = {}
            if isinstance(self.template, sp.Add):
                for term in self.template.args:
                    for a in term.free_symbols:
                        self._parts.setdefault(a, []).append(term)
        if not self._parts:
            return None
        return self._parts.get(self.args[k], [])

    def part(self, k: int) -> sp.Expr:
        """The part of ``f`` that reads ``a_k``: for a sum, the summands that hold it."""
        terms = self._summands(k)
        return self.template if terms is None else sp.Add(*terms)

    def partial(self, k: int) -> sp.Expr:
        """``df/da_k``, as mathematics writes it. The summands of a sum are operations
        of their own (``a3**2`` and ``a7**2`` are one kind), each derived once."""
        if k not in self._partials:
            a, terms = self.args[k], self._summands(k)
            if terms is None:
                self._partials[k] = sp.diff(self.template, a)
            else:
                self._partials[k] = sp.Add(*(_summand_partial(t, a) for t in terms))
        return self._partials[k]

    def second_partial(self, k: int, m: int) -> sp.Expr:
        """``d2f/da_k da_m``, derived once per operation like :meth:`partial`: for a sum,
        from the summands that hold both arguments, each through its own operation."""
        key = (min(k, m), max(k, m))
        if key not in self._second:
            a, b = self.args[key[0]], self.args[key[1]]
            terms = self._summands(key[0])
            if terms is None:
                self._second[key] = sp.diff(self.partial(key[0]), b)
            else:
                both = [t for t in terms if b in t.free_symbols]
                self._second[key] = sp.Add(*(_summand_second(t, a, b) for t in both))
        return self._second[key]

    def coupled(self, k: int) -> tuple[int, ...]:
        """The arguments ``m`` with ``d2f/da_k da_m`` not zero, in order: for a sum, only
        those sharing a summand with ``a_k``, so that a node reading thousands of others
        costs the pairs inside its summands, not all pairs of its arguments."""
        if k not in self._coupled:
            terms = self._summands(k)
            if terms is None:
                candidates = range(len(self.args))
            else:
                held = set().union(*(t.free_symbols for t in terms)) if terms else set()
                candidates = sorted(_POSITION[a] for a in held if a in _POSITION)
            self._coupled[k] = tuple(m for m in candidates if self.second_partial(k, m) != 0)
        return self._coupled[k]

    def numeric_second_partial(self, k: int, m: int) -> sp.Expr:
        """``d2f/da_k da_m`` as it is evaluated: nan at the kinks of ``f`` and of its first
        partials; in the own value where the first partial is declared in it
        (``tanh'' = -2 y (1 - y**2)``)."""
        return self._second_entry(k, m)[0]

    def _second_entry(self, k: int, m: int) -> list:
        key = (min(k, m), max(k, m))
        if key not in self._second_numeric:
            first = self.numeric_partial(key[0])
            if self.out in first.free_symbols:
                # the chain rule through the own value: y' is the numeric partial in a_l
                second = sp.diff(first, self.args[key[1]]) + sp.diff(
                    first, self.out
                ) * self.numeric_partial(key[1])
            else:
                second = self.second_partial(*key)
                part = self.part(key[0])
                for u in {*kinks(self.partial(key[0]), part), *kinks(second, part)}:
                    second = undefined_at_zero(second, u)
            self._second_numeric[key] = [second, None, None]
        return self._second_numeric[key]

    def numeric_second_partial_fn(self, k: int, m: int):
        """:meth:`numeric_second_partial` as a function, and the placeholders it reads."""
        entry = self._second_entry(k, m)
        if entry[1] is None:
            entry[2] = tuple(sorted(_POSITION.keys() & entry[0].free_symbols, key=_POSITION.get))
            entry[1] = numeric_function(entry[2], entry[0])
        return entry[1], entry[2]

    def second_local(self, k: int, m: int, reads) -> sp.Expr:
        """``d2f_i/dz_j dz_k`` for ``z_j = reads[k]``, ``z_k = reads[m]``, in the node's
        own symbols."""
        return self.instantiate(self.second_partial(k, m), reads)

    def numeric_second_local(self, k: int, m: int, reads, out) -> sp.Expr:
        return self.instantiate(self.numeric_second_partial(k, m), reads, out)

    def second_local_value(self, k: int, m: int, reads, out, env):
        """The numeric second partial at the values in ``env``; ``out`` is ``z_i``'s value."""
        fn, needs = self.numeric_second_partial_fn(k, m)
        return fn(*(out if a is self.out else env[reads[_POSITION[a]]] for a in needs))

    def numeric_partial(self, k: int) -> sp.Expr:
        """``df/da_k`` as it is evaluated: in the own value where declared, nan at kinks."""
        return self._numeric_entry(k)[0]

    def _numeric_entry(self, k: int) -> list:
        """``[numeric partial, its function, the placeholders it reads]``."""
        if k not in self._numeric:
            partial = derivative_from_output(self.template, self.args[k], self.out)
            if partial is None:
                partial = mark_kinks(self.partial(k), self.part(k))
            self._numeric[k] = [partial, None, None]
        return self._numeric[k]

    def numeric_partial_fn(self, k: int):
        """:meth:`numeric_partial` as a function of the placeholders it reads, and those
        placeholders (arguments by position, then the own value)."""
        entry = self._numeric_entry(k)
        if entry[1] is None:
            entry[2] = tuple(sorted(_POSITION.keys() & entry[0].free_symbols, key=_POSITION.get))
            entry[1] = numeric_function(entry[2], entry[0])
        return entry[1], entry[2]

    def reuses_output(self, k: int) -> bool:
        """Whether the numeric partial reads the stored value ``z_i`` rather than ``f_i``."""
        return self.out in self.numeric_partial(k).free_symbols

    def shared(self) -> tuple[sp.Expr, ...]:
        """Subexpressions of ``f`` that its numeric partials need too (``sin(a)`` in
        ``sin(a)*b``): generated code computes them once, in Step 1."""
        if self._shared is None:
            needed = set()
            for k in range(len(self.args)):
                needed.update(sp.preorder_traversal(self.numeric_partial(k)))
            candidates = [
                e
                for e in sp.preorder_traversal(self.template)
                if e is not self.template
                and isinstance(e, (sp.Function, sp.Pow))
                and e.free_symbols
                and e in needed
            ]
            # the outermost ones only: sin(a) is kept and not also a inside it
            outer = []
            for e in candidates:
                if not any(o.has(e) for o in outer):
                    outer.append(e)
            self._shared = tuple(outer)
        return self._shared

    def value_fn(self):
        """``f`` as a numeric function of the argument values."""
        if self._value_fn is None:
            self._value_fn = numeric_function(self.args, self.template)
        return self._value_fn

    # The interface a contribution reads; matrix operations (adjoint.operations.matrices) share it.

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

    def local_value(self, k: int, reads, out, env):
        """The numeric partial at the values in ``env``; ``out`` is ``z_i``'s value."""
        fn, needs = self.numeric_partial_fn(k)
        return fn(*(out if a is self.out else env[reads[_POSITION[a]]] for a in needs))

    def contribution_value(self, k: int, reads, lam, out, env):
        return lam * self.local_value(k, reads, out, env)

    def instantiate(self, expr: sp.Expr, reads: Sequence[sp.Symbol], out=None) -> sp.Expr:
        """``expr`` (the template or a partial) in a node's own arguments (and value)."""
        mapping = {}
        for a in expr.free_symbols:
            if a is self.out:
                if out is not None:
                    mapping[a] = out
            elif a in _POSITION:
                mapping[a] = reads[_POSITION[a]]
        return expr.xreplace(mapping)


_OPERATIONS: dict[sp.Expr, Operation] = {}


def operation(expr: sp.Expr, reads: Sequence[sp.Symbol]) -> Operation:
    """The shared :class:`Operation` that ``expr`` applies to the nodes ``reads``."""
    template = expr.xreplace(dict(zip(reads, placeholders(len(reads)))))
    return _shared(template, len(reads))


def _shared(template: sp.Expr, arity: int) -> Operation:
    op = _OPERATIONS.get(template)
    if op is None:
        if len(_OPERATIONS) >= _CACHE_LIMIT:
            _OPERATIONS.clear()
        op = _OPERATIONS[template] = Operation(template, arity)
    return op


def _summand_second(term: sp.Expr, a: sp.Dummy, b: sp.Dummy) -> sp.Expr:
    """``d2 term / da db`` for one summand of a sum, through the summand's own operation."""
    held = sorted(_POSITION.keys() & term.free_symbols, key=_POSITION.get)
    canonical = placeholders(len(held))
    op = _shared(term.xreplace(dict(zip(held, canonical))), len(held))
    second = op.second_partial(held.index(a), held.index(b))
    return second.xreplace(dict(zip(canonical, held)))


def _summand_partial(term: sp.Expr, a: sp.Dummy) -> sp.Expr:
    """``d term / d a`` for one summand of a sum, through the summand's own operation."""
    held = sorted(_POSITION.keys() & term.free_symbols, key=_POSITION.get)
    canonical = placeholders(len(held))
    op = _shared(term.xreplace(dict(zip(held, canonical))), len(held))
    return op.partial(held.index(a)).xreplace(dict(zip(canonical, held)))
