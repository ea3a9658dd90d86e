"""Numeric evaluation of sympy expressions: a NumPy printer and function builder.

Expressions are printed with a subclass of sympy's ``NumPyPrinter`` (extended for
the cases it lacks) and compiled once into a Python function. What NumPy cannot
do (polygamma, LambertW, Bessel functions, ...) falls back to mpmath.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import sympy as sp
from sympy.printing.numpy import NumPyPrinter

__all__ = ["CUSTOM", "NumericPrinter", "numeric_function", "to_real", "undefined_at_zero"]

#: Numeric implementations of user-defined elementary operations, by name
#: (see :func:`adjoint.elementary`); generated code calls them as ``_custom[name]``.
CUSTOM: dict = {}


class NumericPrinter(NumPyPrinter):
    """``NumPyPrinter`` with the cases a gradient program needs.

    ``DiracDelta`` (the derivative of ``sign`` and ``Heaviside``) is 0 away from
    the origin and has no finite value at it: it prints as ``nan`` there.
    """

    def _print_DiracDelta(self, expr):
        x = self._print(expr.args[0])
        where, nan = self._module_format("numpy.where"), self._module_format("numpy.nan")
        return f"{where}(({x}) == 0, {nan}, 0.0)"

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


class undefined_at_zero(sp.Function):
    """``undefined_at_zero(value, u)``: ``value``, except where ``u = 0``, where it is nan.

    Marks a derivative at a kink (of ``Abs``, ``Max``, ``Heaviside``), in matrix
    rules and in generated code, so the numbers say "not differentiable" there
    instead of picking a one-sided value. It prints as ``value`` alone.
    """

    nargs = 2

    def _sympystr(self, printer):
        return printer._print(self.args[0])

    def _latex(self, printer):
        return printer._print(self.args[0])

    def _numpycode(self, printer):
        value, u = (printer._print(a) for a in self.args)
        where, nan = printer._module_format("numpy.where"), printer._module_format("numpy.nan")
        return f"{where}(({u}) == 0, {nan}, {value})"


class NoNumericRule(Exception):
    """Raised inside the package when an expression has no numeric implementation."""


def numeric_function(args: Sequence[sp.Symbol], expr: sp.Expr):
    """``expr`` as a fast Python function of ``args`` (NumPy first, else mpmath).

    Raises :class:`NoNumericRule` when neither can evaluate ``expr`` (an undefined
    function, an unevaluated ``Derivative``).
    """
    if expr.has(sp.Derivative, sp.Subs) or any(
        isinstance(f, sp.core.function.AppliedUndef) for f in expr.atoms(sp.Function)
    ):
        raise NoNumericRule(expr)
    printer = NumericPrinter({"fully_qualified_modules": True, "strict": True})
    names = [f"a{k}" for k in range(len(args))]
    placeholders = {
        a: sp.MatrixSymbol(n, *a.shape) if isinstance(a, sp.MatrixSymbol) else sp.Symbol(n)
        for a, n in zip(args, names)
    }
    try:
        body = printer.doprint(expr.xreplace(placeholders))
    except Exception:
        return _mpmath_function(args, expr)
    namespace = {"numpy": np, "math": math, "functools": functools, "_custom": CUSTOM}
    for module in printer.module_imports:
        if module.split(".")[0] not in namespace:
            return _mpmath_function(args, expr)
    return eval(f"lambda {', '.join(names)}: {body}", namespace)


def _mpmath_function(args, expr):
    try:
        f = sp.lambdify(args, expr, modules="mpmath")
    except Exception as exc:
        raise NoNumericRule(expr) from exc

    def evaluate(*values):
        values = [np.asarray(v, dtype=float) for v in values]
        if all(v.ndim == 0 for v in values):
            return to_real(f(*map(float, values)))
        shape = np.broadcast_shapes(*(v.shape for v in values))
        cols = [np.broadcast_to(v, shape).ravel() for v in values]
        out = [to_real(f(*map(float, point))) for point in zip(*cols)]
        return np.array(out, dtype=float).reshape(shape)

    return evaluate


def to_real(value) -> float:
    """A float from a numeric result; a complex result (outside the domain) is nan."""
    try:
        return float(value)
    except TypeError:
        z = complex(value)
        return z.real if z.imag == 0 else math.nan
