"""What the package declares about elementary functions, beyond sympy's derivatives.

Two facts, each kept here once and read by scalar partials, matrix rules, solving
and generated code alike:

* **output reuse**: a derivative written with the function's own value
  (``tanh' = 1 - tanh**2``, ``exp' = exp``), so Step 2 reads the stored ``z_i``
  instead of computing ``f_i`` again. A function class may declare it itself with a
  static method ``output_derivative(y)``; the table below covers sympy's own.
* **kinks**: where a derivative does not exist (``|x|`` at 0, ``max`` at a tie, the
  boundary of a piecewise function, the cut of ``atan2``). sympy differentiates
  ``Abs`` to ``sign`` and ``Max`` to ``Heaviside``, whose values at 0 are conventions.
  :func:`mark_kinks` wraps a derivative in :class:`undefined_at_zero`, so that every
  kink is known: solving records each one met (per node and entry) and gives the
  conventional value there (``sign(0) = 0``, ``Heaviside(0) = 1/2``, ``relu'(0) = 0``,
  as JAX and PyTorch do), or ``nan`` when asked (``kinks="nan"``), except where the
  one-sided derivatives agree (:func:`one_sided`).
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp

__all__ = [
    "KINKED",
    "OUTPUT_DERIVATIVES",
    "derivative_from_output",
    "kinked",
    "kinks",
    "mark_kinks",
    "one_sided",
    "undefined_at_zero",
]

#: ``f'(x)`` written with ``y = f(x)``, for functions of one argument.
OUTPUT_DERIVATIVES: dict[type, Callable[[sp.Expr], sp.Expr]] = {
    sp.exp: lambda y: y,
    sp.tanh: lambda y: 1 - y**2,
}

#: sympy's derivatives of Abs, Max, Min, sign and Heaviside are written with these;
#: each is a kink of f at the zero of its argument.
_KINK_MARKERS = (sp.sign, sp.Heaviside, sp.DiracDelta)


def derivative_from_output(f: sp.Expr, arg: sp.Symbol, y: sp.Expr) -> sp.Expr | None:
    """``df/darg`` written with ``y``, the value of ``f``, where that is declared.

    ``f`` is one elementary function of ``arg`` (``tanh(a)``, ``sqrt(a)``); ``None``
    when no such form is declared.

    >>> a, y = sp.symbols("a y", real=True)
    >>> derivative_from_output(sp.tanh(a), a, y)
    1 - y**2
    >>> derivative_from_output(sp.sqrt(a), a, y)
    1/(2*y)
    >>> derivative_from_output(sp.sin(a), a, y) is None
    True
    """
    if f.args != (arg,) and not (isinstance(f, sp.Pow) and f.base == arg):
        return None
    declared = getattr(type(f), "output_derivative", None) or OUTPUT_DERIVATIVES.get(type(f))
    if declared is not None:
        return declared(y)
    if isinstance(f, sp.Pow) and f.exp == sp.S.Half:  # sqrt: 1 / (2 sqrt(a))
        return 1 / (2 * y)
    return None


def kinks(derivative: sp.Expr, f: sp.Expr) -> tuple[sp.Expr, ...]:
    """The expressions whose zeros are kinks: where ``derivative`` (of ``f``) does not
    exist. They are the arguments of the markers (``sign``, ``Heaviside``) that
    differentiation brought in, not those ``f`` had already."""
    born = derivative.atoms(*_KINK_MARKERS) - f.atoms(*_KINK_MARKERS)
    found = {a.args[0] for a in born}
    # A piecewise function may jump or bend where a condition changes: on its boundary.
    for piecewise in f.atoms(sp.Piecewise):
        for _, condition in piecewise.args:
            found.update(r.lhs - r.rhs for r in condition.atoms(sp.core.relational.Relational))
    # atan2(y, x) jumps by 2 pi across its cut, y = 0 with x <= 0.
    found.update(y**2 + sp.Max(x, 0) for y, x in (a.args for a in f.atoms(sp.atan2)))
    return tuple(sorted(found, key=sp.default_sort_key))


def mark_kinks(derivative: sp.Expr, f: sp.Expr) -> sp.Expr:
    """``derivative``, made ``nan`` at each kink of ``f`` (see :func:`kinks`)."""
    for u in kinks(derivative, f):
        derivative = undefined_at_zero(derivative, u)
    return derivative


#: The functions with a kink or a jump somewhere: where the derivative of an
#: expression that holds one may not exist. A class of the package's declares it with
#: ``kinked = True`` (relu does). Grading reads this; solving marks the kinks the
#: derivatives bring in (:func:`kinks`).
KINKED = (
    sp.Abs,
    sp.sign,
    sp.Heaviside,
    sp.Piecewise,
    sp.Max,
    sp.Min,
    sp.floor,
    sp.ceiling,
    sp.frac,
    sp.Mod,
    sp.DiracDelta,
    sp.atan2,
)


def kinked(f) -> bool:
    """Whether the function application ``f`` has a kink or a jump somewhere."""
    return isinstance(f, KINKED) or bool(getattr(type(f), "kinked", False))


#: The values of a kink's marker just below and just above the kink. A class may
#: declare its own as ``one_sided = (below, above)`` (relu' does).
_SIDES = {sp.sign: (-1, 1), sp.Heaviside: (0, 1)}


def one_sided(value: sp.Expr, u: sp.Expr) -> tuple[sp.Expr, sp.Expr] | None:
    """``value``'s limits as ``u`` tends to 0 from below and from above, read off the
    markers in it whose argument is ``u`` (or ``-u``); ``None`` when there are none
    (the boundary of a piecewise function, a ``DiracDelta``): then nothing is known.

    >>> x = sp.Symbol("x", real=True)
    >>> one_sided(2 * sp.Max(0, 1 - x) * -sp.Heaviside(1 - x), 1 - x)
    (0, -2*Max(0, 1 - x))
    """
    markers = [m for m in value.atoms(sp.Function) if _sides_of(m) is not None]
    below, above = {}, {}
    for m in markers:
        w = m.args[0]
        if w == u:
            flip = False
        elif w == -u or sp.expand(w + u) == 0:
            flip = True
        else:
            continue
        lo, hi = _sides_of(m)
        below[m], above[m] = (hi, lo) if flip else (lo, hi)
    if not below or value.has(sp.DiracDelta):
        return None
    return value.xreplace(below), value.xreplace(above)


def _sides_of(marker):
    declared = getattr(type(marker), "one_sided", None)
    if declared is not None:
        return declared
    return _SIDES.get(type(marker))


class undefined_at_zero(sp.Function):
    """``undefined_at_zero(value, u)``: the derivative ``value``, which has a kink
    where ``u = 0``.

    It prints as ``value`` alone in text and LaTeX. In numeric code it is the
    conventional value, ``nan`` at the kink (``kinks="nan"``), or a call that records
    the kink (solving): see :class:`adjoint.operations.numeric.ArrayPrinting`.
    """

    nargs = 2

    def _sympystr(self, printer):
        return printer._print(self.args[0])

    def _latex(self, printer):
        return printer._print(self.args[0])
