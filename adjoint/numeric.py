"""Numeric evaluation of sympy expressions: array printers and a function builder.

Expressions are printed with sympy's ``NumPyPrinter`` (or ``JaxPrinter``) extended by
one mixin, :class:`ArrayPrinting`, for the cases they lack, and compiled once into a
Python function. A trace of a product prints as a sum of an element-wise product,
never forming the product. What NumPy cannot do (polygamma, LambertW, Bessel
functions, ...) is printed as a vectorised call of mpmath. Solving and generated
programs use the same printer.
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
from sympy.printing.numpy import JaxPrinter, NumPyPrinter
from sympy.printing.precedence import PRECEDENCE, precedence

__all__ = [
    "ArrayPrinting",
    "JaxNumericPrinter",
    "NoNumericRule",
    "NumericPrinter",
    "namespace",
    "numeric_function",
    "on_host",
    "to_real",
]


class ArrayPrinting:
    """What a gradient program needs beyond sympy's array printers, for any array module.

    Mixed into ``NumPyPrinter`` (:class:`NumericPrinter`) and ``JaxPrinter``
    (:class:`JaxNumericPrinter`); module functions print through the printer's own
    module (``self._module``), so the same methods serve both.

    ``DiracDelta`` (the derivative of ``sign`` and ``Heaviside``) is 0 away from
    the origin and has no finite value at it: it prints as ``nan`` there.

    ``aliases`` maps subexpressions to the code that stands for them (a placeholder
    argument to its variable, a part computed earlier to its temporary), so that a
    shared template prints for each node without being rebuilt in the node's symbols.
    The user-defined operations printed are collected in ``implementations``.
    """

    def __init__(self, settings=None, aliases=None):
        super().__init__(settings)
        self.aliases = {} if aliases is None else aliases
        self.implementations: dict = {}

    def _print(self, expr, **kwargs):
        if self.aliases:
            try:
                alias = self.aliases.get(expr)
            except TypeError:  # unhashable: a list of arguments
                alias = None
            if alias is not None:
                return alias
        return super()._print(expr, **kwargs)

    def _array_fn(self, name: str) -> str:
        return self._module_format(f"{self._module}.{name}")

    def _print_DiracDelta(self, expr):
        x = self._print(expr.args[0])
        return f"{self._array_fn('where')}(({x}) == 0, {self._array_fn('nan')}, 0.0)"

    def _print_undefined_at_zero(self, expr):
        value, u = (self._print(a) for a in expr.args)
        return f"{self._array_fn('where')}(({u}) == 0, {self._array_fn('nan')}, {value})"

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

    # -- matrices: products print as @, and the cases the array printers lack --

    def _print_MatMul(self, expr):
        coeff, mats = expr.as_coeff_matrices()
        product = " @ ".join(self.parenthesize(m, 60) for m in mats)
        if coeff == 1:
            return f"({product})"
        if coeff == -1:  # -(A @ B), not (-A) @ B: negate the smaller result
            return f"(-{product})" if len(mats) == 1 else f"(-({product}))"
        # a sum as coefficient keeps its parentheses: (a + b) X, not a + b X
        return f"({self.parenthesize(coeff, precedence(sp.Mul))} * ({product}))"

    def _print_Trace(self, expr):
        return self._trace(expr.arg)

    def _trace(self, M) -> str:
        """``tr(M)``; of a product, as a sum of an element-wise product, ``tr(P Q) =
        sum(P o Q^T)``, never forming ``P Q`` (``tr(A^T B)`` is ``sum(A*B)``)."""
        if isinstance(M, sp.MatAdd):  # the trace is linear: reduce each summand
            return "(" + " + ".join(self._trace(a) for a in M.args) + ")"
        if isinstance(M, sp.Transpose):
            return self._trace(M.arg)
        coeff, mats = M.as_coeff_matrices() if isinstance(M, sp.MatMul) else (1, [M])
        if len(mats) == 1:
            body = f"{self._array_fn('trace')}({self._print(mats[0])})"
        else:
            left = mats[0] if len(mats) == 2 else sp.MatMul(*mats[:-1])
            body = self._sum_of_product(left, mats[-1])
        if coeff == 1:
            return body
        if coeff == -1:
            return f"(-{body})"
        return f"({self.parenthesize(coeff, PRECEDENCE['Mul'])}*{body})"

    def _sum_of_product(self, P, Q) -> str:
        """``tr(P Q)`` as ``sum(P o Q^T)``."""
        total = self._array_fn("sum")
        if isinstance(Q, sp.OneMatrix):  # tr(P 1) = sum(P): sum_entries
            return f"{total}({self._print(P)})"
        if isinstance(P, sp.OneMatrix):
            return f"{total}({self._print(Q)})"
        if isinstance(Q, sp.Transpose):
            Q = Q.arg
        elif isinstance(P, sp.Transpose):
            P = P.arg
        else:
            Q = sp.Transpose(Q)
        if isinstance(P, sp.MatrixSymbol) and isinstance(Q, sp.MatrixSymbol):
            # a contraction of two stored arrays forms no temporary at all
            einsum = self._array_fn("einsum")
            return f"{einsum}('ij,ij->', {self._print(P)}, {self._print(Q)})"
        if P == Q:  # tr(A^T A): A is printed, and computed, once
            return f"{total}({self.parenthesize(P, PRECEDENCE['Pow'], True)}**2)"
        mul = PRECEDENCE["Mul"]  # strict: a product of matrices prints in parentheses already
        return f"{total}({self.parenthesize(P, mul, True)}*{self.parenthesize(Q, mul, True)})"

    def _print_Determinant(self, expr):
        return f"{self._module_format(self._module + '.linalg.det')}({self._print(expr.arg)})"

    def _print_Identity(self, expr):
        return f"{self._array_fn('eye')}({self._print(expr.rows)})"

    def _print_ZeroMatrix(self, expr):
        return f"{self._array_fn('zeros')}(({self._print(expr.rows)}, {self._print(expr.cols)}))"

    def _print_OneMatrix(self, expr):
        return f"{self._array_fn('ones')}(({self._print(expr.rows)}, {self._print(expr.cols)}))"

    def _print_HadamardPower(self, expr):
        return f"({self._print(expr.base)})**({self._print(expr.exp)})"

    def _print_ElementwiseApplyFunction(self, expr):
        # The function's body is written for one entry; the array module applies it to all.
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
        # What the array module lacks (polygamma, LambertW, Bessel functions) runs
        # through mpmath, one point at a time.
        name = _MPMATH_NAMES.get(expr.func.__name__, expr.func.__name__)
        if not hasattr(mpmath, name):
            raise NoNumericRule(expr)
        names = ", ".join(f"_a{k}" for k in range(len(expr.args)))
        args = ", ".join(self._print(a) for a in expr.args)
        return f"_vectorize(lambda {names}: _real(mpmath.{name}({names})))({args})"


class NumericPrinter(ArrayPrinting, NumPyPrinter):
    """``NumPyPrinter`` with the cases a gradient program needs (see :class:`ArrayPrinting`)."""


class JaxNumericPrinter(ArrayPrinting, JaxPrinter):
    """``JaxPrinter`` with the same cases; what ``jax.numpy`` lacks runs on the host
    (``_vectorize`` in :func:`namespace` ``("jax")``, and :func:`on_host`)."""

    def _print_special(self, name, expr):
        args = ", ".join(self._print(a) for a in expr.args)
        return f"{self._module_format('jax.scipy.special.' + name)}({args})"

    def _print_erf(self, expr):
        return self._print_special("erf", expr)

    def _print_erfc(self, expr):
        return self._print_special("erfc", expr)

    def _print_gamma(self, expr):
        return self._print_special("gamma", expr)

    def _print_loggamma(self, expr):
        return self._print_special("gammaln", expr)


_MPMATH_NAMES = {"LambertW": "lambertw"}
_CHAIN_LIMIT = 100


def _vectorize(fn):
    """``fn``, a function of numbers (math.gamma, an mpmath call), applied entry by entry.

    Where it has no float value it is nan (a pole, outside its domain), or inf when it
    overflows at positive arguments (``gamma(200)``), as NumPy's own functions say it.
    """

    def entry(*args):
        try:
            return fn(*args)
        except (ValueError, ZeroDivisionError):
            return math.nan
        except OverflowError:
            return math.inf if all(a > 0 for a in args) else math.nan

    return np.vectorize(entry, otypes=[float])


def namespace(backend: str = "numpy") -> dict:
    """The names printed code refers to: the modules and the package's helpers.

    For ``"jax"`` (which needs ``jax`` installed), what has no JAX implementation (an
    mpmath fallback here; a user's :func:`adjoint.elementary` operation through
    :func:`on_host`) runs its NumPy code on the host, so that jitted programs can call it.
    """
    names = {
        "numpy": np,
        "math": math,
        "mpmath": mpmath,
        "functools": functools,
        "_vectorize": _vectorize,
        "_real": to_real,
    }
    if backend == "jax":
        import jax
        import jax.numpy
        import jax.scipy.special  # printed code reads it as jax.scipy.special

        del names["numpy"]
        names["jax"] = jax
        names["_vectorize"] = lambda fn: on_host(_vectorize(fn))
    return names


def on_host(fn):
    """``fn``, NumPy code on arrays, callable from jitted JAX code (through
    ``jax.pure_callback``); its result has the arguments' broadcast shape and floating
    dtype."""
    import jax
    import jax.numpy as jnp

    def call(*args):
        args = [jnp.asarray(a) for a in args]
        shape = jnp.broadcast_shapes(*(a.shape for a in args))
        dtype = jnp.result_type(float, *args)

        def run(*values):
            return np.broadcast_to(np.asarray(fn(*values), dtype=dtype), shape).copy()

        result = jax.ShapeDtypeStruct(shape, dtype)
        return jax.pure_callback(run, result, *args, vmap_method="broadcast_all")

    return call


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
    names = [f"a{k}" for k in range(len(args))]
    printer = NumericPrinter(
        {"fully_qualified_modules": True, "strict": True}, aliases=dict(zip(args, names))
    )
    try:
        body = printer.doprint(expr)
    except PrintMethodNotImplementedError as exc:
        raise NoNumericRule(expr) from exc
    if any(module.split(".")[0] not in namespace() for module in printer.module_imports):
        raise NoNumericRule(expr)
    source = f"lambda {', '.join(names)}: {body}"
    if printer.implementations:
        return eval(source, {**namespace(), **printer.implementations})
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
