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

from .errors import AdjointError
from .expressions import free_symbols
from .numeric import numeric_function
from .primitives import derivative_from_output, mark_kinks

__all__ = ["RULES", "MatrixOperation", "frobenius2", "pullback", "rule", "sum_entries"]


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


@rule(sp.HadamardPower)
def _hadamard_power(expr, cot):
    base, exp = expr.args
    if exp.free_symbols:
        raise AdjointError(f"{expr}: an element-wise power with a variable exponent")
    return [(base, sp.HadamardProduct(cot, exp * sp.HadamardPower(base, exp - 1)))]


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
    if not (k.is_Integer and k > 0):
        raise AdjointError(f"{expr}: only positive integer powers of a matrix have a rule")
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
            "Add one with @adjoint.matrices.rule"
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
                    "Add one with @adjoint.matrices.rule"
                )
            fn = _scalar
        stack.extend(fn(e, c))
    if not found:
        return sp.ZeroMatrix(*target.shape) if isinstance(target, sp.MatrixExpr) else sp.S.Zero
    total = sp.MatAdd(*found) if isinstance(target, sp.MatrixExpr) else sp.Add(*found)
    return total.doit() if isinstance(total, sp.MatrixExpr) else total


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
            self._numeric[k] = _reuse_output(self.local(k), self.expr, self.node)
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


def _reuse_output(expr, F, Z):
    """``expr`` with ``F`` replaced by its node ``Z``; for an element-wise ``F = f.(X)``,
    ``f'.(X)`` becomes ``g.(Z)`` where ``f' = g(f)`` is declared (adjoint.primitives)."""
    replacements = {F: Z}
    if isinstance(F, ElementwiseApplyFunction):
        var, body = F.function.variables[0], F.function.expr
        y = sp.Dummy("y", real=True)
        g = derivative_from_output(body, var, y)
        if g is not None:
            fprime = sp.diff(body, var)
            for e in expr.atoms(ElementwiseApplyFunction):
                if (
                    e.expr == F.expr
                    and e.function.expr.xreplace({e.function.variables[0]: var}) == fprime
                ):
                    replacements[e] = Z if g == y else ElementwiseApplyFunction(sp.Lambda(y, g), Z)
    return expr.xreplace(replacements)
