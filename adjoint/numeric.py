"""Numeric evaluation of sympy expressions: a NumPy printer and function builder.

Expressions are printed with a subclass of sympy's ``NumPyPrinter`` (extended for
the cases it lacks) and compiled once into a Python function. What NumPy cannot
do (polygamma, LambertW, Bessel functions, ...) is printed as a vectorised call of
mpmath. Solving and generated programs use the same printer.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import mpmath
import numpy as np
import sympy as sp
from sympy.core.function import AppliedUndef
from sympy.printing.codeprinter import PrintMethodNotImplementedError
from sympy.printing.numpy import NumPyPrinter

__all__ = [
    "NoNumericRule",
    "NumericPrinter",
    "implementations",
    "namespace",
    "numeric_function",
    "to_real",
]


class NumericPrinter(NumPyPrinter):
    """``NumPyPrinter`` with the cases a gradient program needs.

    ``DiracDelta`` (the derivative of ``sign`` and ``Heaviside``) is 0 away from
    the origin and has no finite value at it: it prints as ``nan`` there.
    """

    def _print_DiracDelta(self, expr):
        x = self._print(expr.args[0])
        where, nan = self._module_format("numpy.where"), self._module_format("numpy.nan")
        return f"{where}(({x}) == 0, {nan}, 0.0)"

    # Python's compiler recurses once per binary operator, so a sum of thousands of
    # terms (a loss over many inputs) is printed as one call instead of a chain.
    def _print_Add(self, expr, order=None):
        if len(expr.args) > _CHAIN_LIMIT:
            return f"sum(({', '.join(self._print(a) for a in expr.args)},))"
        return super()._print_Add(expr, order=order)

    def _print_Mul(self, expr):
        if len(expr.args) > _CHAIN_LIMIT:
            return f"math.prod(({', '.join(self._print(a) for a in expr.args)},))"
        return super()._print_Mul(expr)

    def _print_Multiplier(self, expr):
        return self._print_Symbol(expr)

    # -- matrices: products print as @, and the cases NumPyPrinter lacks --

    def _print_MatMul(self, expr):
        coeff, mats = expr.as_coeff_matrices()
        product = " @ ".join(self.parenthesize(m, 60) for m in mats)
        if coeff == 1:
            return f"({product})"
        return f"({self._print(coeff)} * ({product}))"

    def _print_Trace(self, expr):
        return f"{self._module_format('numpy.trace')}({self._print(expr.arg)})"

    def _print_Determinant(self, expr):
        return f"{self._module_format(self._module + '.linalg.det')}({self._print(expr.arg)})"

    def _print_Identity(self, expr):
        return f"{self._module_format('numpy.eye')}({self._print(expr.rows)})"

    def _print_ZeroMatrix(self, expr):
        zeros = self._module_format("numpy.zeros")
        return f"{zeros}(({self._print(expr.rows)}, {self._print(expr.cols)}))"

    def _print_OneMatrix(self, expr):
        ones = self._module_format("numpy.ones")
        return f"{ones}(({self._print(expr.rows)}, {self._print(expr.cols)}))"

    def _print_HadamardPower(self, expr):
        return f"({self._print(expr.base)})**({self._print(expr.exp)})"

    def _print_ElementwiseApplyFunction(self, expr):
        # The function's body is written for one entry; NumPy applies it to all.
        var, body = expr.function.variables[0], expr.function.expr
        arg = self._print(expr.expr)
        if arg.isidentifier():  # tanh.(H) prints as numpy.tanh(H)
            return self._print(body.xreplace({var: sp.Symbol(arg)}))
        entry = sp.Symbol("_entry")
        return f"(lambda _entry: {self._print(body.xreplace({var: entry}))})({arg})"

    # math.erf and friends take one number; arrays of points need them vectorised.
    def _print_vectorised(self, name, expr):
        args = ", ".join(self._print(a) for a in expr.args)
        return f"_vectorize(math.{name})({args})"

    def _print_erf(self, expr):
        return self._print_vectorised("erf", expr)

    def _print_erfc(self, expr):
        return self._print_vectorised("erfc", expr)

    def _print_gamma(self, expr):
        return self._print_vectorised("gamma", expr)

    def _print_loggamma(self, expr):
        return self._print_vectorised("lgamma", expr)

    def _print_Function(self, expr):
        try:
            return super()._print_Function(expr)
        except PrintMethodNotImplementedError:
            if isinstance(expr, AppliedUndef):
                raise NoNumericRule(expr) from None
        # What NumPy lacks (polygamma, LambertW, Bessel functions) runs through mpmath,
        # one point at a time.
        name = _MPMATH_NAMES.get(expr.func.__name__, expr.func.__name__)
        if not hasattr(mpmath, name):
            raise NoNumericRule(expr)
        names = ", ".join(f"_a{k}" for k in range(len(expr.args)))
        args = ", ".join(self._print(a) for a in expr.args)
        return f"_vectorize(lambda {names}: _real(mpmath.{name}({names})))({args})"


_MPMATH_NAMES = {"LambertW": "lambertw"}
_CHAIN_LIMIT = 100


def _vectorize(fn):
    return np.vectorize(fn, otypes=[float])


def namespace() -> dict:
    """The names printed code refers to: the modules and the package's helpers."""
    return {
        "numpy": np,
        "math": math,
        "mpmath": mpmath,
        "functools": functools,
        "_vectorize": _vectorize,
        "_real": to_real,
    }


def implementations(*exprs: sp.Basic) -> dict:
    """The numeric implementations of the user-defined operations (``adjoint.elementary``)
    that ``exprs`` call, under the names printed code calls them by."""
    found = {}
    for expr in exprs:
        for f in expr.atoms(sp.Function):
            impl = getattr(type(f), "numeric_implementation", None)
            if impl is not None:
                found[type(f).code_name] = impl
    return found


class NoNumericRule(Exception):
    """Raised inside the package when an expression has no numeric implementation."""


def numeric_function(args: Sequence[sp.Symbol], expr: sp.Expr):
    """``expr`` as a fast Python function of ``args`` (NumPy, and mpmath for what NumPy
    lacks).

    Raises :class:`NoNumericRule` when ``expr`` has no numeric implementation (an
    undefined function, an unevaluated ``Derivative``).
    """
    if expr.has(sp.Derivative, sp.Subs):
        raise NoNumericRule(expr)
    printer = NumericPrinter({"fully_qualified_modules": True, "strict": True})
    names = [f"a{k}" for k in range(len(args))]
    placeholders = {
        a: sp.MatrixSymbol(n, *a.shape) if isinstance(a, sp.MatrixSymbol) else sp.Symbol(n)
        for a, n in zip(args, names)
    }
    try:
        body = printer.doprint(expr.xreplace(placeholders))
    except PrintMethodNotImplementedError as exc:
        raise NoNumericRule(expr) from exc
    found = implementations(expr)
    if any(module.split(".")[0] not in namespace() for module in printer.module_imports):
        raise NoNumericRule(expr)
    source = f"lambda {', '.join(names)}: {body}"
    if found:
        return eval(source, {**namespace(), **found})
    return _compiled(source)


@functools.lru_cache(maxsize=4096)
def _compiled(source: str):
    # Many partials print alike once their arguments are renamed (2*a0 for every
    # summand x_k**2 of a sum of squares): compile each text once.
    return eval(source, namespace())


def to_real(value) -> float:
    """A float from a numeric result; a complex result (outside the domain) is nan."""
    try:
        return float(value)
    except TypeError:
        z = complex(value)
        return z.real if z.imag == 0 else math.nan
