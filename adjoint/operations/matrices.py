"""Adjoint rules for matrix-valued nodes: one explicit table, one rule per class.

For a node ``Z_i = F_i(...)`` the Lagrangian holds ``<Lambda_i, Z_i - F_i>``, the
Frobenius product ``Trace(Lambda_i^T (Z_i - F_i))``. Its derivative with respect
to a node ``Z_j`` that ``F_i`` reads is a vector-Jacobian product: ``Lambda_i``
pulled back through ``F_i``. The rules below do that one sympy class at a time;
:func:`pullback` walks ``F_i``'s own (small) expression tree with them. For a
matrix product ``C = A B`` this gives Claim 16.2, ``Lambda_A = Lambda_C B^T`` and
``Lambda_B = A^T Lambda_C``.

Scalar subexpressions (``c * A`` with a scalar node ``c``, ``Trace(...) / n``)
take their partials from sympy's ``diff``, as scalar nodes do.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from ..core.errors import AdjointError
from ..core.expressions import free_symbols
from .numeric import numeric_function
from .primitives import derivative_from_output, kinks, mark_kinks, undefined_at_zero

__all__ = [
    "RULES",
    "TANGENTS",
    "MatrixOperation",
    "frobenius2",
    "pullback",
    "reuse_output",
    "rule",
    "sum_entries",
    "tangent",
    "tangent_rule",
]


def sum_entries(A: sp.MatrixExpr) -> sp.Expr:
    """The sum of the entries of ``A``, as ``Trace(1 A)`` with ``1`` a matrix of ones."""
    return sp.Trace(sp.OneMatrix(A.cols, A.rows) * A)


def frobenius2(A: sp.MatrixExpr) -> sp.Expr:
    """The squared Frobenius norm ``||A||^2 = Trace(A^T A)``."""
    # Not A.T * A: the operator distributes the transpose over sums, losing the sharing.
    return sp.Trace(sp.MatMul(sp.Transpose(A), A))


#: ``RULES[cls](expr, cotangent)`` gives ``[(argument, its cotangent), ...]``.
RULES: dict[type, Callable] = {}


def rule(cls: type):
    """Register the adjoint rule of a sympy matrix class."""

    def register(fn):
        RULES[cls] = fn
        return fn

    return register


@rule(sp.MatAdd)
def _matadd(expr, cot):
    # Every summand receives the whole cotangent.
    return [(arg, cot) for arg in expr.args]


@rule(sp.MatMul)
def _matmul(expr, cot):
    # C = c A_1 ... A_k: Lambda_{A_m} = c (A_1..A_{m-1})^T Lambda (A_{m+1}..A_k)^T.
    coeff, mats = expr.as_coeff_matrices()
    pulled = []
    for m, factor in enumerate(mats):
        left = [sp.MatMul(*mats[:m]).T] if m else []
        right = [sp.MatMul(*mats[m + 1 :]).T] if m + 1 < len(mats) else []
        pulled.append((factor, sp.MatMul(coeff, *left, cot, *right)))
    if coeff.free_symbols:  # a scalar node in the coefficient: <Lambda, A_1 ... A_k>
        pulled.append((coeff, sp.Trace(cot.T * sp.MatMul(*mats))))
    return pulled


@rule(sp.Transpose)
def _transpose(expr, cot):
    return [(expr.arg, cot.T)]


@rule(sp.HadamardProduct)
def _hadamard(expr, cot):
    args = expr.args
    return [(arg, sp.HadamardProduct(cot, *args[:m], *args[m + 1 :])) for m, arg in enumerate(args)]


def _power(base, k):
    """``base .^ k``, written as the lecture would: ``base`` for 1, ones for 0."""
    if k == 1:
        return base
    if k == 0:
        return sp.OneMatrix(*base.shape)
    return sp.HadamardPower(base, k)


@rule(sp.HadamardPower)
def _hadamard_power(expr, cot):
    base, exp = expr.args
    if exp.free_symbols:
        raise AdjointError(f"{expr}: an element-wise power with a variable exponent")
    return [(base, sp.HadamardProduct(cot, exp * _power(base, exp - 1)))]


@rule(ElementwiseApplyFunction)
def _elementwise(expr, cot):
    # Lambda_A = Lambda o f'(A), f' applied entry by entry (real entries), nan at kinks.
    d = sp.Dummy("d", real=True)
    body = expr.function(d)
    fprime = sp.Lambda(d, mark_kinks(sp.diff(body, d), body))
    pulled = [(expr.expr, sp.HadamardProduct(cot, ElementwiseApplyFunction(fprime, expr.expr)))]
    # A scalar s that the entry-wise function reads besides the entry (sin(a + s)):
    # d/ds sum_ij Lambda_ij f(A_ij, s) = <Lambda, f_s.(A)>.
    for s in sorted(body.free_symbols - {d}, key=lambda s: s.name):
        fs = sp.Lambda(d, mark_kinks(sp.diff(body, s), body))
        pulled.append((s, sp.Trace(cot.T * ElementwiseApplyFunction(fs, expr.expr))))
    return pulled


@rule(sp.Trace)
def _trace(expr, cot):
    # d tr(A) = tr(I^T dA): the cotangent of A is lambda I.
    return [(expr.arg, cot * sp.Identity(expr.arg.rows))]


@rule(sp.MatPow)
def _matpow(expr, cot):
    # A^k = A A ... A: the product rule, summed over the k places A stands in.
    base, k = expr.args
    if k.is_Integer and k < 0:  # A^-k = (A^-1)^k: the inverse's rule, then the product's
        inverse = sp.Inverse(base)
        return [(inverse, cot)] if k == -1 else _matpow(sp.MatPow(inverse, -k), cot)
    if not (k.is_Integer and k > 0):
        raise AdjointError(f"{expr}: only integer powers of a matrix have a rule")
    k = int(k)
    power = lambda m: sp.MatPow(base, m).doit() if m else sp.Identity(base.rows)  # noqa: E731
    return [(base, sp.MatMul(power(m).T, cot, power(k - 1 - m).T)) for m in range(k)]


@rule(sp.Determinant)
def _determinant(expr, cot):
    # d det(A) = det(A) tr(A^-1 dA), so Lambda_A = lambda det(A) A^-T.
    return [(expr.arg, cot * expr * sp.Inverse(expr.arg).T)]


@rule(sp.Inverse)
def _inverse(expr, cot):
    # d(A^-1) = -A^-1 dA A^-1, so Lambda_A = -A^-T Lambda A^-T.
    inv = expr
    return [(expr.arg, -inv.T * cot * inv.T)]


def _scalar(expr, cot):
    """A scalar operation (Add, Mul, sin, ...): partials from sympy's ``diff``."""
    pulled = []
    if any(isinstance(arg, sp.MatrixExpr) for arg in expr.args):
        raise AdjointError(
            f"no adjoint rule for {type(expr).__name__}, which reads a matrix (in {expr}); "
            f"the matrix operations with rules are: {', '.join(c.__name__ for c in RULES)}. "
            "Add one with @adjoint.operations.matrices.rule"
        )
    args = expr.args
    for k, arg in enumerate(args):
        if not arg.free_symbols or not isinstance(arg, sp.Expr):
            continue
        # This argument alone: the same subexpression in another argument (T in
        # T*sin(T)) is pulled back when that argument is walked.
        d = sp.Dummy("d", real=True)
        alone = expr.func(*(d if i == k else a for i, a in enumerate(args)))
        partial = sp.diff(alone, d).xreplace({d: arg})
        pulled.append((arg, cot * partial))
    return pulled


_LEAVES = (sp.MatrixSymbol, sp.Symbol, sp.Identity, sp.ZeroMatrix, sp.OneMatrix)


def pullback(expr: sp.Expr, cot: sp.Expr, target: sp.Basic) -> sp.Expr:
    """The cotangent that ``target`` receives when ``expr`` receives ``cot``.

    ``target`` is a node symbol (a Symbol or a MatrixSymbol) that ``expr`` reads.
    Sums over every place ``target`` occurs in ``expr``.
    """
    found = []
    stack = [(expr, cot)]
    while stack:
        e, c = stack.pop()
        if e == target:
            found.append(c)
            continue
        if isinstance(e, _LEAVES) or not e.has(target):
            continue
        fn = RULES.get(type(e))
        if fn is None:
            if isinstance(e, sp.MatrixExpr):
                raise AdjointError(
                    f"no adjoint rule for {type(e).__name__} (in {expr}); the matrix "
                    f"operations with rules are: {', '.join(c.__name__ for c in RULES)}. "
                    "Add one with @adjoint.operations.matrices.rule"
                )
            fn = _scalar
        stack.extend(fn(e, c))
    if not found:
        return sp.ZeroMatrix(*target.shape) if isinstance(target, sp.MatrixExpr) else sp.S.Zero
    total = sp.MatAdd(*found) if isinstance(target, sp.MatrixExpr) else sp.Add(*found)
    return total.doit() if isinstance(total, sp.MatrixExpr) else total


# -- tangents: the derivative of an expression along the tangents of its symbols --------

#: ``TANGENTS[cls](expr, d)`` gives the tangent of ``expr`` (``d(e)`` is the tangent
#: of a subexpression ``e``): forward mode, one class at a time. Applied to a pullback
#: (whose multiplier has a tangent too) it gives the second-order adjoint contribution.
TANGENTS: dict[type, Callable] = {}


def tangent_rule(cls: type):
    """Register the tangent rule of a sympy class."""

    def register(fn):
        TANGENTS[cls] = fn
        return fn

    return register


def _zero(e):
    return sp.ZeroMatrix(*e.shape) if isinstance(e, sp.MatrixExpr) else sp.S.Zero


def _is_zero(e) -> bool:
    return isinstance(e, sp.ZeroMatrix) or (not isinstance(e, sp.MatrixExpr) and e == 0)


def _sum(terms, like):
    terms = [t for t in terms if not _is_zero(t)]
    if not terms:
        return _zero(like)
    if len(terms) == 1:
        return terms[0]
    return sp.MatAdd(*terms) if isinstance(like, sp.MatrixExpr) else sp.Add(*terms)


@tangent_rule(sp.MatAdd)
def _d_matadd(expr, d):
    return _sum([d(a) for a in expr.args], expr)


@tangent_rule(sp.MatMul)
def _d_matmul(expr, d):
    # d(c A_1 ... A_k) = dc A_1 ... A_k + sum_m c A_1 .. dA_m .. A_k
    coeff, mats = expr.as_coeff_matrices()
    c = [] if coeff == 1 else [coeff]
    terms = []
    for m, factor in enumerate(mats):
        dm = d(factor)
        if not _is_zero(dm):
            terms.append(sp.MatMul(*c, *mats[:m], dm, *mats[m + 1 :]))
    dc = d(coeff)
    if not _is_zero(dc):
        terms.append(sp.MatMul(dc, *mats))
    return _sum(terms, expr)


@tangent_rule(sp.Transpose)
def _d_transpose(expr, d):
    da = d(expr.arg)
    return _zero(expr) if _is_zero(da) else sp.Transpose(da)


@tangent_rule(sp.HadamardProduct)
def _d_hadamard(expr, d):
    args = expr.args
    terms = []
    for m, a in enumerate(args):
        da = d(a)
        if not _is_zero(da):
            terms.append(sp.HadamardProduct(*args[:m], da, *args[m + 1 :]))
    return _sum(terms, expr)


@tangent_rule(sp.HadamardPower)
def _d_hadamard_power(expr, d):
    base, exp = expr.args
    if exp.free_symbols:
        raise AdjointError(f"{expr}: an element-wise power with a variable exponent")
    db = d(base)
    if _is_zero(db):
        return _zero(expr)
    return sp.HadamardProduct(exp * _power(base, exp - 1), db)


def _unmarked(e):
    """``e`` without its kink marks, and the expressions whose zeros they mark."""
    marks = e.atoms(undefined_at_zero)
    return e.xreplace({m: m.args[0] for m in marks}), {m.args[1] for m in marks}


@tangent_rule(ElementwiseApplyFunction)
def _d_elementwise(expr, d):
    # d f.(X) = f'.(X) o dX, f' nan at the kinks of f and of f itself where f is a
    # derivative already (the pullback's f'.(X), differentiated again).
    dx = d(expr.expr)
    if _is_zero(dx):
        return _zero(expr)
    var = sp.Dummy("d", real=True)
    body, marked = _unmarked(expr.function(var))
    fprime = sp.diff(body, var)
    for u in {*marked, *kinks(fprime, body)}:
        fprime = undefined_at_zero(fprime, u)
    return sp.HadamardProduct(ElementwiseApplyFunction(sp.Lambda(var, fprime), expr.expr), dx)


@tangent_rule(sp.Trace)
def _d_trace(expr, d):
    da = d(expr.arg)
    return sp.S.Zero if _is_zero(da) else sp.Trace(da)


@tangent_rule(sp.Inverse)
def _d_inverse(expr, d):
    # d X^-1 = -X^-1 dX X^-1
    dx = d(expr.arg)
    return _zero(expr) if _is_zero(dx) else sp.MatMul(-1, expr, dx, expr)


@tangent_rule(sp.Determinant)
def _d_determinant(expr, d):
    # d det X = det X tr(X^-1 dX)
    dx = d(expr.arg)
    return sp.S.Zero if _is_zero(dx) else expr * sp.Trace(sp.Inverse(expr.arg) * dx)


@tangent_rule(sp.MatPow)
def _d_matpow(expr, d):
    base, k = expr.args
    if k.is_Integer and k < 0:  # A^-k = (A^-1)^k
        inverse = sp.Inverse(base)
        return d(inverse) if k == -1 else _d_matpow(sp.MatPow(inverse, -k), d)
    if not (k.is_Integer and k > 0):
        raise AdjointError(f"{expr}: only integer powers of a matrix have a rule")
    db = d(base)
    if _is_zero(db):
        return _zero(expr)
    k = int(k)
    power = lambda m: [sp.MatPow(base, m).doit()] if m else []  # noqa: E731
    return _sum([sp.MatMul(*power(m), db, *power(k - 1 - m)) for m in range(k)], expr)


@tangent_rule(undefined_at_zero)
def _d_undefined(expr, d):
    value, u = expr.args
    dv = d(value)
    return sp.S.Zero if _is_zero(dv) else undefined_at_zero(dv, u)


def _d_scalar(expr, d):
    """A scalar operation (Add, Mul, sin, ...): partials from sympy's ``diff``."""
    if any(isinstance(arg, sp.MatrixExpr) for arg in expr.args):
        raise AdjointError(
            f"no tangent rule for {type(expr).__name__}, which reads a matrix (in {expr}); "
            f"the matrix operations with tangent rules are: "
            f"{', '.join(c.__name__ for c in TANGENTS)}. Add one with "
            "@adjoint.operations.matrices.tangent_rule"
        )
    terms = []
    args = expr.args
    for k, arg in enumerate(args):
        if not arg.free_symbols or not isinstance(arg, sp.Expr):
            continue
        da = d(arg)
        if _is_zero(da):
            continue
        # this argument alone: the same subexpression elsewhere has its own term
        var = sp.Dummy("d", real=True)
        body = expr.func(*(var if i == k else a for i, a in enumerate(args)))
        partial = mark_kinks(sp.diff(body, var), body).xreplace({var: arg})
        terms.append(partial * da)
    return sp.Add(*terms)


def tangent(expr: sp.Expr, dots: dict) -> sp.Expr:
    """The derivative of ``expr`` along ``dots``, ``{symbol: its tangent}`` (symbols
    not in ``dots`` are held fixed), by the rules in :data:`TANGENTS`."""
    memo: dict = {}
    moving = tuple(dots)

    def d(e):
        if e in dots:
            return dots[e]
        if e in memo:
            return memo[e]
        if isinstance(e, _LEAVES) or not isinstance(e, sp.Basic) or not e.has(*moving):
            out = _zero(e)
        else:
            fn = TANGENTS.get(type(e))
            if fn is None:
                if isinstance(e, sp.MatrixExpr):
                    raise AdjointError(
                        f"no tangent rule for {type(e).__name__} (in {expr}); the matrix "
                        f"operations with tangent rules are: "
                        f"{', '.join(c.__name__ for c in TANGENTS)}. Add one with "
                        "@adjoint.operations.matrices.tangent_rule"
                    )
                fn = _d_scalar
            out = fn(e, d)
        memo[e] = out
        return out

    return d(expr)


def reuse_output(expr: sp.Expr, F: sp.Expr, Z: sp.MatrixSymbol) -> sp.Expr:
    """``expr`` with ``F`` read from its stored node ``Z``; for an element-wise ``F =
    f.(X)``, every ``g.(X)`` whose ``g`` can be written with ``f`` alone (``tanh'' =
    -2 tanh (1 - tanh**2)``, or through ``f' = h(f)`` where adjoint.operations.primitives declares
    it: ``sigmoid' = s (1 - s)``, ``sqrt' = 1/(2 sqrt)``) becomes a function of ``Z``:
    generated code then does not compute ``f`` again, in either order."""
    replacements = {F: Z}
    if isinstance(F, ElementwiseApplyFunction):
        var, body = F.function.variables[0], F.function.expr
        y = sp.Dummy("y", real=True)
        # f' written with f where that is declared (sigmoid' = s (1 - s)): so that a
        # derivative's own function (sigmoid_prime) reads the stored value too
        g = derivative_from_output(body, var, y)
        fprime = None if g is None else sp.diff(body, var)
        for e in expr.atoms(ElementwiseApplyFunction):
            if e == F or e.expr != F.expr:
                continue
            v = e.function.variables[0]
            inner = e.function.expr
            if fprime is not None and fprime != 0:
                inner = inner.xreplace({fprime.xreplace({var: v}): g})
            written = inner.xreplace({body.xreplace({var: v}): y})
            if v not in written.free_symbols:
                replacements[e] = (
                    Z if written == y else ElementwiseApplyFunction(sp.Lambda(y, written), Z)
                )
    return expr.xreplace(replacements)


class MatrixOperation:
    """A constraint that reads or gives a matrix, with the pullbacks of its multiplier.

    Unlike scalar operations, which are shared between nodes through placeholder
    templates, each matrix constraint is its own operation: graphs of matrix nodes
    are small, and their shapes differ from node to node. Its contributions are
    pullbacks ``J^T Lambda_i``, not products of ``lambda_i`` with a partial.
    """

    pullback = True

    def __init__(self, expr: sp.Expr, reads, multiplier, node):
        self.expr = expr
        self.reads = tuple(reads)
        self.multiplier = multiplier
        self.node = node
        dims = set()
        for s in (*self.reads, multiplier):
            dims.update(d for d in getattr(s, "shape", ()) if isinstance(d, sp.Symbol))
        dims.update(
            s for s in free_symbols(expr) if isinstance(s, sp.Symbol) and s not in self.reads
        )
        self.dims = tuple(sorted(dims, key=lambda s: s.name))
        self._pullbacks: dict[int, sp.Expr] = {}
        self._numeric: dict[int, sp.Expr] = {}
        self._fns: dict = {}

    def local(self, k: int, reads=None, multiplier=None) -> sp.Expr:
        """The pullback of ``Lambda_i`` through this constraint to ``reads[k]``."""
        if k not in self._pullbacks:
            self._pullbacks[k] = pullback(self.expr, self.multiplier, self.reads[k])
        return self._pullbacks[k]

    contribution = local

    def numeric_local(self, k: int, reads=None, multiplier=None, out=None) -> sp.Expr:
        """The pullback as it is evaluated: ``F_i`` read from the stored node ``Z_i``, and
        ``f'.(X)`` written with it where declared (``1 - Z**2`` for tanh)."""
        if k not in self._numeric:
            self._numeric[k] = reuse_output(self.local(k), self.expr, self.node)
        return self._numeric[k]

    def reuses_output(self, k: int) -> bool:
        return self.node in free_symbols(self.numeric_local(k))

    def value(self, args, env):
        if "value" not in self._fns:
            self._fns["value"] = numeric_function(self.reads + self.dims, self.expr)
        return self._fns["value"](*args, *[env[d] for d in self.dims])

    def contribution_value(self, k: int, reads, lam, out, env):
        if k not in self._fns:
            self._fns[k] = numeric_function(
                (*self.reads, self.multiplier, self.node, *self.dims), self.numeric_local(k)
            )
        args = [env[r] for r in reads]
        return self._fns[k](*args, lam, out, *[env[d] for d in self.dims])
