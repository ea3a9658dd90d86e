"""Numeric evaluation of sympy expressions: array printers and a function builder.

Expressions are printed with sympy's ``NumPyPrinter`` (or ``JaxPrinter``) extended by
one mixin, :class:`ArrayPrinting`, for the cases they lack, and compiled once into a
Python function. A trace of a product prints as a sum of an element-wise product,
never forming the product. What NumPy cannot do (polygamma, LambertW, Bessel
functions, ...) is printed as a vectorised call of mpmath. Solving and generated
programs use the same printer.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from collections.abc import Sequence

import mpmath
import numpy as np
import sympy as sp
from sympy.core.function import AppliedUndef
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
from sympy.printing.codeprinter import PrintMethodNotImplementedError
from sympy.printing.numpy import JaxPrinter, NumPyPrinter
from sympy.printing.precedence import PRECEDENCE

from ..core.errors import AdjointError
from ..core.values import to_real
from . import checkpointing, runtime
from .primitives import one_sided

__all__ = [
    "ArrayPrinting",
    "JaxNumericPrinter",
    "NoNumericRule",
    "NumericPrinter",
    "namespace",
    "numeric_function",
    "on_host",
    "to_real",
    "watch_kinks",
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

    def __init__(self, settings=None, aliases=None, kinks: str = "convention"):
        super().__init__(settings)
        self.aliases = {} if aliases is None else aliases
        self.implementations: dict = {}
        if kinks not in KINK_MODES:
            raise ValueError(f"kinks must be one of {KINK_MODES}, got {kinks!r}")
        self.kinks = kinks

    def _print(self, expr, **kwargs):
        if self.aliases:
            try:
                alias = self.aliases.get(expr)
            except TypeError:  # unhashable: a list of arguments
                alias = None
            if alias is not None:
                return alias
        # the package's operations print themselves (adjoint.functions)
        own = getattr(type(expr), "_adjoint_array", None)
        if own is not None:
            return own(expr, self)
        return super()._print(expr, **kwargs)

    def _array_fn(self, name: str) -> str:
        return self._module_format(f"{self._module}.{name}")

    # -- kinks: where a derivative does not exist (see adjoint.operations.primitives) --------
    #
    # "convention" prints the derivative with the markers' conventional values at the
    # kink (sign(0) = 0, Heaviside(0) = 1/2, relu'(0) = 0, as JAX and PyTorch give);
    # "nan" gives nan at each kinked entry, unless the one-sided derivatives agree there
    # (the derivative of max(0, 1 - x)**2 at 1 exists and is 0); "watch" prints a call
    # of _kink, which solving uses to record every kink met, per entry, and to choose
    # between the two at run time (see :func:`watch_kinks`).

    def _at_kink(self, value, u, sides) -> str:
        """``value`` (printed) at a kink where ``u`` (printed) is zero."""
        if self.kinks == "convention":
            return f"({value})"  # it stands where a function call stood: parenthesised
        where, nan = self._array_fn("where"), self._array_fn("nan")
        if self.kinks == "nan":
            if sides is None:
                return f"{where}(({u}) == 0, {nan}, {value})"
            left, right = (self._print(side) for side in sides)
            at = f"{where}(({left}) == ({right}), {left}, {nan})"
            return f"{where}(({u}) == 0, {at}, {value})"
        if sides is None:
            return f"_kink({value}, {u})"
        left, right = (self._print(side) for side in sides)
        return f"_kink({value}, {u}, lambda: ({left}, {right}))"

    def _print_undefined_at_zero(self, expr):
        value, u = expr.args
        return self._at_kink(self._print(value), self._print(u), one_sided(value, u))

    # Numbers beyond a float's exact integers are printed as the float they become in
    # arithmetic (JAX refuses a Python int past int64), and past a float's range as
    # inf, the number they are in floating point, never an OverflowError.
    def _print_Integer(self, expr):
        if abs(int(expr)) < _EXACT:
            return super()._print_Integer(expr)
        return self._float_literal(expr)

    def _print_Rational(self, expr):
        if abs(expr.p) < _EXACT and expr.q < _EXACT:
            return super()._print_Rational(expr)
        return self._float_literal(expr)

    def _float_literal(self, number) -> str:
        value = float(sp.Float(number, 17))  # mpmath's float: inf past the range
        if math.isinf(value):
            return f"({'-' if value < 0 else ''}{self._array_fn('inf')})"
        return repr(value)

    def _print_Heaviside(self, expr):
        # printed directly: sympy's printers rewrite it as a Piecewise, which for the
        # derivative of a max of several arguments (Heaviside(a - Max(b, c, d))) nests
        # into a select numpy cannot evaluate
        h = self._print(expr.args[0])
        at_zero = self._print(expr.args[1]) if len(expr.args) > 1 else "0.5"
        where, nan = self._array_fn("where"), self._array_fn("nan")
        step = f"{where}(_h > 0, 1.0, {where}(_h < 0, 0.0, {where}(_h == 0, {at_zero}, {nan})))"
        return f"(lambda _h: {step})({h})"

    def _print_DiracDelta(self, expr):
        # the derivative of a step: 0 away from it, no finite value on it
        x = self._print(expr.args[0])
        return self._at_kink(f"0.0*({x})", x, None)

    def _print_Piecewise(self, expr):
        # numpy reads nan > 0 as False and would pick another piece: a value computed
        # through a nan. Where a condition's operands are not numbers, neither is this.
        relations = set().union(*(c.atoms(sp.core.relational.Relational) for _, c in expr.args))
        chosen = super()._print_Piecewise(expr)
        if not relations:
            return chosen
        guard = self._print(sp.Add(*(r.lhs - r.rhs for r in relations)))
        isnan, where = self._array_fn("isnan"), self._array_fn("where")
        return f"{where}({isnan}({guard}), {self._array_fn('nan')}, {chosen})"

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
        if len(mats) > 1 and any(isinstance(m, sp.Inverse) for m in mats):
            product = self._print_Inverse_solved(mats)
            if coeff == 1:
                return product
            return f"(({self._print(coeff)}) * {product})"
        product = self._chain(mats)
        if coeff == 1:
            return f"({product})"
        if coeff == -1:  # -(A @ B), not (-A) @ B: negate the smaller result
            return f"(-{product})" if len(mats) == 1 else f"(-({product}))"
        # the coefficient in parentheses: a sum (a + b) * (I) must not print as a + b * (I)
        return f"(({self._print(coeff)}) * ({product}))"

    def _chain(self, mats) -> str:
        """``M1 @ M2 @ ...``, a 1 x 1 factor as a product by a number: ``h * L`` for
        ``h L`` (it broadcasts, and fuses with its neighbours where a dot would not)."""
        if len(mats) == 1 or not any(_one_by_one(m) for m in mats):
            return self._product(mats)
        scalars = [self.parenthesize(m, 60) for m in mats if _one_by_one(m)]
        rest = [m for m in mats if not _one_by_one(m)]
        if not rest:  # 1 x 1 times 1 x 1: still a 1 x 1 matrix
            return " * ".join(scalars)
        product = self._product(rest)
        return " * ".join([f"({product})" if len(rest) > 1 else product, *scalars])

    def _product(self, mats) -> str:
        """``M1 @ M2 @ ...``; for JAX, ``A^T B`` first as one ``dot_general`` contracting
        the rows of both: XLA turns a transpose times a column into a loop over the
        transposed matrix (1.5x slower for logistic regression's X^T r)."""
        if self._module == "jax.numpy" and isinstance(mats[0], sp.Transpose) and len(mats) > 1:
            A, B = mats[0].arg, mats[1]
            head = (
                f"{self._module_format('jax.lax.dot_general')}({self._print(A)}, "
                f"{self._print(B)}, (((0,), (0,)), ((), ())))"
            )
            return " @ ".join([head, *(self.parenthesize(m, 60) for m in mats[2:])])
        return " @ ".join(self.parenthesize(m, 60) for m in mats)

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

    def _print_log(self, expr):
        if isinstance(expr.args[0], sp.Determinant):  # log det X: slogdet, nan if det X <= 0
            x = self._print(expr.args[0].arg)
            slogdet, where = self._array_fn("linalg.slogdet"), self._array_fn("where")
            return (
                f"(lambda _s: {where}(_s[0] > 0, _s[1], {self._array_fn('nan')}))({slogdet}({x}))"
            )
        return super()._print_log(expr)

    def _print_Inverse_solved(self, mats) -> str:
        """A product with inverses in it, ``P^-1 Q`` as ``solve(P, Q)`` (``Q P^-1`` as
        ``solve(P^T, Q^T)^T``): no inverse is formed where a solve will do."""
        solve = self._array_fn("linalg.solve")
        for m, f in enumerate(mats):
            if isinstance(f, sp.Inverse) and m + 1 < len(mats):
                rest = self._print_Inverse_solved(mats[m + 1 :])
                solved = f"{solve}({self._print(f.arg)}, {rest})"
                return f"({' @ '.join([*(self.parenthesize(a, 60) for a in mats[:m]), solved])})"
        if len(mats) > 1 and isinstance(mats[-1], sp.Inverse):
            left = self._print_Inverse_solved(mats[:-1])
            return f"{solve}(({self._print(mats[-1].arg)}).T, ({left}).T).T"
        if len(mats) == 1:
            return self.parenthesize(mats[0], 60)
        return f"({' @ '.join(self.parenthesize(m, 60) for m in mats)})"

    def _print_Determinant(self, expr):
        return f"{self._module_format(self._module + '.linalg.det')}({self._print(expr.arg)})"

    def _print_Identity(self, expr):
        return f"{self._array_fn('eye')}({self._print(expr.rows)})"

    def _print_ZeroMatrix(self, expr):
        return f"{self._array_fn('zeros')}(({self._print(expr.rows)}, {self._print(expr.cols)}))"

    def _print_OneMatrix(self, expr):
        return f"{self._array_fn('ones')}(({self._print(expr.rows)}, {self._print(expr.cols)}))"

    def _print_MatAdd(self, expr):
        # ones - y is 1 - y: every term has the sum's shape, so a number added to the
        # others broadcasts to exactly the columns of ones it stands for
        scale, rest = _ones_parts(expr.args)
        if scale == 0 or not rest:
            return self._print_Add(expr)
        others = rest[0] if len(rest) == 1 else sp.MatAdd(*rest, evaluate=False)
        number = sp.Float(scale) if scale.is_Integer else scale
        return f"({self._print(number)} + {self._print(others)})"

    def _print_HadamardProduct(self, expr):
        # Fewer passes over the entries: a column of ones that a sum's pullback spreads
        # (lambda 1_n) and a number factor scale the product once; a factor B.^-1
        # divides (one rounding where B.^-1 then a product took two)
        scale, up, down = sp.S.One, [], []
        for a in expr.args:
            coeff = _ones_coefficient(a)
            if coeff is not None:
                scale *= coeff
                continue
            if isinstance(a, sp.MatMul):
                coeff, rest = a.as_coeff_mmul()
                if coeff.is_Number and coeff != 1:
                    scale *= coeff
                    a = (
                        rest.args[0]
                        if isinstance(rest, sp.MatMul) and len(rest.args) == 1
                        else rest
                    )
            if isinstance(a, sp.HadamardPower) and a.exp == -1:
                down.append(a.base)
            elif _reciprocal(a):  # (lambda e: e**-1).(B), a reciprocal's derivative
                down.append(a.expr)
            else:
                up.append(a)
        if not up and not down:
            return super()._print_HadamardProduct(expr)
        mul = PRECEDENCE["Mul"]
        text = " * ".join(self._factor(a) for a in up) or "1.0"
        if down:
            text = f"{text} / " + " / ".join(self._factor(b) for b in down)
        if scale == -1:
            return f"(-({text}))"
        if scale != 1:
            return f"({self.parenthesize(scale, mul)} * ({text}))"
        return f"({text})"

    def _factor(self, e) -> str:
        """``e`` printed to stand in a product: in parentheses unless it is a name (an
        element-wise function may print as a sum, 1 - A**2 for tanh')."""
        text = self._print(e)
        return text if text.isidentifier() else f"({text})"

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
_EXACT = 2**53  # integers below it are exact in a float
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


def _one_by_one(m) -> bool:
    """Whether ``m`` is known to be a 1 x 1 matrix."""
    return tuple(getattr(m, "shape", ())) == (1, 1)


def namespace(backend: str = "numpy") -> dict:
    """The names printed code refers to: the modules and the package's helpers.

    For ``"jax"`` (which needs ``jax`` installed), what has no JAX implementation (an
    mpmath fallback here; a user's :func:`adjoint.elementary` operation through
    :func:`on_host`) runs its NumPy code on the host, so that jitted programs can call it.
    """
    import scipy.special  # the logistic function (expit); imported when a program is made

    names = {
        "numpy": np,
        "scipy": scipy,
        "math": math,
        "mpmath": mpmath,
        "functools": functools,
        "_vectorize": _vectorize,
        "_real": to_real,
        "_kink": _kink,
        # implicit blocks (adjoint.operations.runtime): NumPy and SciPy (JAX's own, below)
        "_newton": runtime.newton,
        "_solve_transposed": runtime.solve_transposed,
        "_newton_matrix": runtime.newton_matrix,
        "_linear_solve": runtime.linear_solve,
        "_solve_matrix_transposed": runtime.solve_matrix_transposed,
        # recurrences (adjoint.operations.checkpointing): the two sweeps' loops
        "_recurrence": checkpointing.forward,
        "_recurrence_reverse": checkpointing.reverse,
    }
    if backend == "jax":
        import jax
        import jax.numpy
        import jax.scipy.special  # printed code reads it as jax.scipy.special

        del names["numpy"]
        for name in ("_newton", "_solve_transposed", "_newton_matrix", "_linear_solve"):
            names[name] = getattr(runtime, name[1:] + "_jax")
        names["_solve_matrix_transposed"] = runtime.solve_matrix_transposed_jax
        names["_recurrence"] = checkpointing.forward_jax
        names["_recurrence_reverse"] = checkpointing.reverse_jax
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


KINK_MODES = ("convention", "nan", "watch")


def check_kinks(kinks) -> None:
    """The ``kinks=`` option of solving, compiling and second order: "convention" or "nan"."""
    if kinks not in ("convention", "nan"):
        raise AdjointError(f"kinks must be 'convention' or 'nan', got {kinks!r}")


class Kinks:
    """The kinks met while solving: ``met`` gets, for each call of a derivative at a
    kink, what was being evaluated and the boolean mask of the entries at the kink;
    ``nan`` says whether those entries are ``nan`` (or the conventional value)."""

    __slots__ = ("at", "met", "nan")

    def __init__(self, nan: bool = False):
        self.met: list = []  # (what was being evaluated, mask of the entries at a kink)
        self.nan = nan
        self.at = None  # set by the solver: the contribution being evaluated


_WATCH: contextvars.ContextVar[Kinks | None] = contextvars.ContextVar("kinks", default=None)


@contextlib.contextmanager
def watch_kinks(nan: bool = False):
    """Within it, numeric functions (from :func:`numeric_function`) record each kink
    they meet in the :class:`Kinks` yielded, and give ``nan`` there when ``nan``."""
    kinks = Kinks(nan)
    token = _WATCH.set(kinks)
    try:
        yield kinks
    finally:
        _WATCH.reset(token)


def _kink(value, u, sides=None):
    """A derivative ``value`` that has a kink where ``u`` is zero (printed by
    ``kinks="watch"``): recorded when a :func:`watch_kinks` is on, and nan there if it
    asks so (the one-sided value, where ``sides`` gives both and they agree)."""
    kinks = _WATCH.get()
    if kinks is None:
        return value
    hit = np.asarray(u) == 0
    if not hit.any():
        return value
    shape = np.broadcast_shapes(np.shape(value), hit.shape)
    kinks.met.append((kinks.at, np.broadcast_to(hit, shape)))
    if not kinks.nan:
        return value
    at = np.nan
    if sides is not None:
        left, right = sides()
        at = np.where(np.asarray(left) == np.asarray(right), left, np.nan)
    return np.where(hit, at, value)[()]


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
        {"fully_qualified_modules": True, "strict": True},
        aliases=dict(zip(args, names)),
        kinks="watch",
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


def _ones_coefficient(e):
    """``c`` when ``e`` is ``c`` times a matrix of ones, else None."""
    coeff, mats = e.as_coeff_mmul() if isinstance(e, sp.MatMul) else (sp.S.One, e)
    mats = list(mats.args) if isinstance(mats, sp.MatMul) else [mats]
    if len(mats) == 1 and isinstance(mats[0], sp.OneMatrix):
        return sp.sympify(coeff)
    return None


def _ones_parts(terms) -> tuple:
    """``(c, rest)``: the terms that are multiples of a matrix of ones, summed into
    the number ``c``, and the others."""
    scale, rest = sp.S.Zero, []
    for t in terms:
        coeff = _ones_coefficient(t)
        if coeff is None:
            rest.append(t)
        else:
            scale += coeff
    return scale, rest


def _reciprocal(e) -> bool:
    """Whether ``e`` is ``x -> x**-1`` applied to the entries of a matrix."""
    if not isinstance(e, ElementwiseApplyFunction):
        return False
    (var,), body = e.function.variables, e.function.expr
    return isinstance(body, sp.Pow) and body.base == var and body.exp == -1
