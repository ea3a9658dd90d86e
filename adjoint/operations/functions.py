"""What a student writes after the lecture: biases, activations, softmax, log-determinants.

Two kinds of names, each with its adjoint rule in :data:`adjoint.operations.matrices.RULES`:

* **helpers that make broadcasting explicit**: :func:`repeat_rows` (``1_n b``, a bias
  added to every row), :func:`repeat_columns` (``c 1_d^T``), and their adjoints
  :func:`row_sums` (``E 1``) and :func:`column_sums` (``1^T E``); means; sums of
  entries; :func:`entry` and :func:`scalar` (a 1 x 1 matrix read as a number).
* **the vocabulary**: :func:`sigmoid`, :func:`relu`, :func:`softplus`, :func:`tanh`,
  :func:`exp`, :func:`log`, :func:`abs`, usable on a scalar or entry by entry on a
  matrix; :func:`logsumexp` and :func:`softmax` along rows or columns;
  :func:`cross_entropy`; :func:`logdet`, :func:`inverse`, :func:`det`.

Every function prints with its name (``\\sigma(H)``) and differentiates to a named
derivative (``\\sigma'(H)``), never a ``Lambda``; compiled code is one array call,
with the max-shift wherever an exponential is summed.
"""

from __future__ import annotations

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixElement
from sympy.printing.precedence import PRECEDENCE

from ..core.errors import ShapeError
from ..core.parsing import Word, register_word
from .matrices import rule, sum_entries, tangent_rule

__all__ = [
    "ColumnRepeat",
    "ColumnSums",
    "Entry",
    "LogSumExp",
    "RowRepeat",
    "RowSums",
    "Softmax",
    "UnitMatrix",
    "abs",
    "column_means",
    "column_sums",
    "cross_entropy",
    "det",
    "divide",
    "entry",
    "exp",
    "inverse",
    "log",
    "logdet",
    "logsumexp",
    "mean_entries",
    "power",
    "relu",
    "repeat_columns",
    "repeat_rows",
    "row_means",
    "row_sums",
    "scalar",
    "sigmoid",
    "softmax",
    "softplus",
    "sum_entries",
    "tanh",
]

_builtin_abs = abs


def _is_matrix(a) -> bool:
    return isinstance(a, sp.MatrixExpr)


#: the helpers that print as products (``1_n b``, ``E 1``) bind like one
_PRODUCT = PRECEDENCE["Mul"]


def _size(k):
    k = sp.sympify(k)
    # a symbol is a dimension (numeric code renames it, dropping its assumptions)
    if not (k.is_Integer and k > 0) and not (k.is_Symbol and k.is_positive is not False):
        raise ShapeError(f"{k} is not a size: use a positive integer or an integer symbol")
    return k


# -- scalar functions, applied entry by entry to matrices ----------------------------


class _Elementwise(sp.Function):
    """A function of one real number; on a matrix it applies entry by entry."""

    nargs = 1

    def __new__(cls, arg, **kwargs):
        if _is_matrix(arg):
            return arg.applyfunc(cls)
        return super().__new__(cls, arg, **kwargs)

    def _eval_is_real(self):
        return self.args[0].is_real


class sigmoid(_Elementwise):
    """The logistic function ``1 / (1 + e^-x)``; ``sigma' = sigma (1 - sigma)``."""

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return 1 / (1 + sp.exp(-x))

    def fdiff(self, argindex=1):
        return sigmoid_prime(self.args[0])

    @staticmethod
    def output_derivative(y):
        return y * (1 - y)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sp.exp(-x))

    def _latex(self, printer, exp=None):
        return _latex_call(r"\sigma", self, printer, exp)

    def _adjoint_array(self, printer):
        return _logistic(printer, self.args[0])


class sigmoid_prime(_Elementwise):
    """``sigma'(x) = sigma(x) (1 - sigma(x))``, by name."""

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            s = 1 / (1 + sp.exp(-x))
            return s * (1 - s)

    def fdiff(self, argindex=1):
        x = self.args[0]
        return sigmoid_prime(x) * (1 - 2 * sigmoid(x))

    def _eval_rewrite_as_exp(self, x, **kwargs):
        s = 1 / (1 + sp.exp(-x))
        return s * (1 - s)

    def _latex(self, printer, exp=None):
        return _latex_call(r"\sigma'", self, printer, exp)

    def _adjoint_array(self, printer):
        return f"(lambda _s: _s*(1.0 - _s))({_logistic(printer, self.args[0])})"


class relu(_Elementwise):
    """``max(x, 0)``; its derivative :class:`relu_prime` is 0 at the kink 0 by convention."""

    kinked = True

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.Max(x, 0)

    def fdiff(self, argindex=1):
        return relu_prime(self.args[0])

    def _eval_rewrite_as_Max(self, x, **kwargs):
        return sp.Max(x, 0)

    def _latex(self, printer, exp=None):
        return _latex_call(r"\operatorname{relu}", self, printer, exp)

    def _adjoint_array(self, printer):
        return f"{printer._array_fn('maximum')}({printer._print(self.args[0])}, 0.0)"


class relu_prime(_Elementwise):
    """The step ``[x > 0]``; at the kink ``x = 0`` it is 0 by convention (as in JAX and
    PyTorch), 0 from the left and 1 from the right."""

    one_sided = (sp.S.Zero, sp.S.One)
    kinked = True

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.S.One if x > 0 else sp.S.Zero

    def fdiff(self, argindex=1):
        return sp.S.Zero

    def _latex(self, printer, exp=None):
        return _latex_call(r"\operatorname{relu}'", self, printer, exp)

    def _adjoint_array(self, printer):
        # relu'(0) = 0 by convention; 0 from the left, 1 from the right
        x = printer._print(self.args[0])
        return printer._at_kink(f"(1.0*(({x}) > 0))", x, self.one_sided)


class softplus(_Elementwise):
    """``log(1 + e^x)``, computed without overflow; ``softplus' = sigma``."""

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.log(1 + sp.exp(x))

    # no derivative from the output: 1 - e^-y cancels to 0 where softplus is tiny
    # (x = -40: 4e-18, not 0); sigma(x) keeps its full relative precision
    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sp.log(1 + sp.exp(x))

    def _latex(self, printer, exp=None):
        return _latex_call(r"\operatorname{softplus}", self, printer, exp)

    def _adjoint_array(self, printer):
        x = printer._print(self.args[0])
        if printer._module != "numpy":  # jax.nn.softplus: XLA fuses it into one pass
            return f"{printer._module_format('jax.nn.softplus')}({x})"
        # NumPy's own logaddexp(0, x) formula, max(x, 0) + log1p(e^-|x|), in array
        # passes: 2.5x faster than its scalar loop (and within an ulp of it)
        fn = printer._array_fn
        body = f"{fn('maximum')}(e, 0.0) + {fn('log1p')}({fn('exp')}(-{fn('abs')}(e)))"
        return f"(lambda e: {body})({x})"


def _logistic(printer, x) -> str:
    """NumPy: ``1/(1 + e^-x)``, SciPy's own expit formula (0 where e^-x overflows, full
    relative precision in the tail, subnormals kept) in array passes, 2.5x faster than
    its scalar loop. JAX: ``jax.nn.sigmoid``, one fused pass."""
    if printer._module != "numpy":
        return f"{printer._module_format('jax.nn.sigmoid')}({printer._print(x)})"
    arg = printer._print(x)
    if not arg.isidentifier():
        arg = f"({arg})"
    return f"(1/(1 + {printer._array_fn('exp')}(-{arg})))"


def _latex_call(name, f, printer, exp=None):
    head = name if exp is None else f"{name}^{{{exp}}}"
    return rf"{head}\left({printer._print(f.args[0])}\right)"


# -- what the printers share (each operation prints itself, with these) --------------


def _call(printer, name, *args) -> str:
    """Text: the call that made the expression, ``row_sums(E)``."""
    return f"{name}({', '.join(printer._print(a) for a in args)})"


def _ones(printer, size, transposed=False) -> str:
    """LaTeX: a column of ones, as the lecture writes broadcasts and sums."""
    return rf"\mathbf{{1}}_{{{printer._print(size)}}}" + (r"^{\top}" if transposed else "")


def _factor(printer, M) -> str:
    return printer.parenthesize(M, PRECEDENCE["Mul"])


def _broadcast(printer, expr, shape: str) -> str:
    """NumPy/JAX: the package broadcasts here and only here, where repeat_rows and
    repeat_columns stand. The repeated vector's own size is read from the array: a
    dimension inside a MatrixSymbol's shape is not renamed with the arguments."""
    arg, fn = printer._print(expr.arg), printer._array_fn("broadcast_to")
    if arg.isidentifier():
        return f"{fn}({arg}, {shape.replace('_v', arg)})"
    return f"(lambda _v: {fn}(_v, {shape}))({arg})"


def _lift(fn):
    def apply(x):
        return x.applyfunc(fn) if _is_matrix(x) else fn(x)

    apply.__name__ = fn.__name__
    apply.__doc__ = f"``{fn.__name__}`` of a scalar, or entry by entry of a matrix."
    return apply


tanh = _lift(sp.tanh)
exp = _lift(sp.exp)
log = _lift(sp.log)
abs = _lift(sp.Abs)


# -- broadcasting, made explicit ------------------------------------------------------


class _Helper(sp.MatrixExpr):
    """A matrix expression of one matrix argument and integer parameters."""

    is_commutative = False

    @property
    def arg(self):
        return self.args[0]

    def doit(self, **hints):
        deep = hints.get("deep", True)
        args = [a.doit(**hints) if deep else a for a in self.args]
        return self.func(*args)


class RowRepeat(_Helper):
    """``1_n b``: the row ``b`` (1 x d) repeated ``n`` times, n x d (a bias).

    Its adjoint sums the columns: ``Lambda_b = 1_n^T Lambda``.
    """

    precedence = _PRODUCT

    def __new__(cls, b, n):
        b, n = sp.sympify(b), _size(n)
        if b.shape[0] != 1:
            raise ShapeError(f"repeat_rows repeats a row (1 x d); {b} is {_shape(b)}")
        return sp.Basic.__new__(cls, b, n)

    @property
    def shape(self):
        return (self.args[1], self.arg.shape[1])

    def _entry(self, i, j, **kwargs):
        return self.arg[0, j]

    def _adjoint_array(self, printer):
        return _broadcast(printer, self, f"({printer._print(self.args[1])}, _v.shape[1])")

    def _adjoint_text(self, printer):
        return _call(printer, "repeat_rows", *self.args)

    def _latex(self, printer, exp=None):
        return rf"{_ones(printer, self.args[1])} {_factor(printer, self.arg)}"


class ColumnRepeat(_Helper):
    """``c 1_d^T``: the column ``c`` (n x 1) repeated ``d`` times, n x d."""

    precedence = _PRODUCT

    def __new__(cls, c, d):
        c, d = sp.sympify(c), _size(d)
        if c.shape[1] != 1:
            raise ShapeError(f"repeat_columns repeats a column (n x 1); {c} is {_shape(c)}")
        return sp.Basic.__new__(cls, c, d)

    @property
    def shape(self):
        return (self.arg.shape[0], self.args[1])

    def _entry(self, i, j, **kwargs):
        return self.arg[i, 0]

    def _adjoint_array(self, printer):
        return _broadcast(printer, self, f"(_v.shape[0], {printer._print(self.args[1])})")

    def _adjoint_text(self, printer):
        return _call(printer, "repeat_columns", *self.args)

    def _latex(self, printer, exp=None):
        return rf"{_factor(printer, self.arg)} {_ones(printer, self.args[1], True)}"


class RowSums(_Helper):
    """``E 1_d``: the sum of each row of ``E`` (n x d), n x 1."""

    precedence = _PRODUCT

    def __new__(cls, E):
        return sp.Basic.__new__(cls, sp.sympify(E))

    @property
    def shape(self):
        return (self.arg.shape[0], sp.S.One)

    def _entry(self, i, j, **kwargs):
        return _total(lambda k: self.arg[i, k], self.arg.shape[1])

    def _adjoint_array(self, printer):
        return f"{printer._array_fn('sum')}({printer._print(self.arg)}, axis=1, keepdims=True)"

    def _adjoint_text(self, printer):
        return _call(printer, "row_sums", self.arg)

    def _latex(self, printer, exp=None):
        return rf"{_factor(printer, self.arg)} {_ones(printer, self.arg.shape[1])}"


class ColumnSums(_Helper):
    """``1_n^T E``: the sum of each column of ``E`` (n x d), 1 x d."""

    precedence = _PRODUCT

    def __new__(cls, E):
        return sp.Basic.__new__(cls, sp.sympify(E))

    @property
    def shape(self):
        return (sp.S.One, self.arg.shape[1])

    def _entry(self, i, j, **kwargs):
        return _total(lambda k: self.arg[k, j], self.arg.shape[0])

    def _adjoint_array(self, printer):
        return f"{printer._array_fn('sum')}({printer._print(self.arg)}, axis=0, keepdims=True)"

    def _adjoint_text(self, printer):
        return _call(printer, "column_sums", self.arg)

    def _latex(self, printer, exp=None):
        return rf"{_ones(printer, self.arg.shape[0], True)} {_factor(printer, self.arg)}"


def _total(term, size) -> sp.Expr:
    """``sum_k term(k)`` for ``k < size``: written out at a numeric size, a ``Sum`` otherwise."""
    size = sp.sympify(size)
    if size.is_Integer:
        return sp.Add(*[term(k) for k in range(int(size))])
    k = sp.Dummy("k", integer=True)
    return sp.Sum(term(k), (k, 0, size - 1))


def _axis(axis) -> int:
    if axis not in (0, 1):
        raise ShapeError(f"axis must be 1 (along each row) or 0 (along each column), not {axis}")
    return int(axis)


class _AlongAxis(_Helper):
    """A function of a matrix along each row (axis 1) or each column (axis 0)."""

    def __new__(cls, A, axis=1):
        return sp.Basic.__new__(cls, sp.sympify(A), sp.Integer(_axis(axis)))

    @property
    def axis(self) -> int:
        return int(self.args[1])

    def _adjoint_text(self, printer):
        return f"{self.word}({printer._print(self.arg)}, axis={self.axis})"

    def _latex(self, printer, exp=None):
        where = "rows" if self.axis == 1 else "columns"
        name = rf"\operatorname{{{self.symbol}}}_{{\text{{{where}}}}}"
        return rf"{name}\left({printer._print(self.arg)}\right)"


class LogSumExp(_AlongAxis):
    """``log sum_j e^{A_ij}`` along each row (axis 1: n x 1) or each column (axis 0: 1 x d)."""

    word, symbol = "logsumexp", "lse"

    def _adjoint_array(self, printer):
        # the max-shift: m + log(sum(exp(a - m))), with m the largest entry of the row
        f, ax = printer._array_fn, f"axis={self.axis}, keepdims=True"
        lse = f"_m + {f('log')}({f('sum')}({f('exp')}(_a - _m), {ax}))"
        shifted = f"(lambda _m: {lse})({f('max')}(_a, {ax}))"
        return f"(lambda _a: {shifted})({printer._print(self.arg)})"

    @property
    def shape(self):
        r, c = self.arg.shape
        return (r, sp.S.One) if self.axis == 1 else (sp.S.One, c)

    def _entry(self, i, j, **kwargs):
        r, c = self.arg.shape
        if self.axis == 1:
            return sp.log(_total(lambda k: sp.exp(self.arg[i, k]), c))
        return sp.log(_total(lambda k: sp.exp(self.arg[k, j]), r))


class Softmax(_AlongAxis):
    """``e^{A_ij} / sum_k e^{A_ik}`` along each row (axis 1) or column (axis 0); A's shape."""

    word, symbol = "softmax", "softmax"

    def _adjoint_array(self, printer):
        f, ax = printer._array_fn, f"axis={self.axis}, keepdims=True"
        ratio = f"(lambda _e: _e / {f('sum')}(_e, {ax}))({f('exp')}(_a - {f('max')}(_a, {ax})))"
        return f"(lambda _a: {ratio})({printer._print(self.arg)})"

    @property
    def shape(self):
        return self.arg.shape

    def _entry(self, i, j, **kwargs):
        lse = LogSumExp(self.arg, self.axis)
        at = (i, 0) if self.axis == 1 else (0, j)
        return sp.exp(self.arg[i, j] - lse[at])


class UnitMatrix(_Helper):
    """``e_i e_j^T``: the rows x cols matrix with a single one, at ``(i, j)``."""

    def __new__(cls, rows, cols, i, j):
        return sp.Basic.__new__(cls, *map(sp.sympify, (rows, cols, i, j)))

    @property
    def shape(self):
        return self.args[0], self.args[1]

    def _entry(self, a, b, **kwargs):
        return sp.KroneckerDelta(a, self.args[2]) * sp.KroneckerDelta(b, self.args[3])

    def _adjoint_array(self, printer):
        rows, cols, i, j = (printer._print(a) for a in self.args)
        eye = printer._array_fn("eye")
        return f"({eye}({rows}, 1, -({i})) @ {eye}(1, {cols}, {j}))"

    def _adjoint_text(self, printer):
        return _call(printer, "unit", *self.args)

    def _latex(self, printer, exp=None):
        i, j = (printer._print(a) for a in self.args[2:])
        return rf"e_{{{i}}} e_{{{j}}}^{{\top}}"

    def doit(self, **hints):
        return self


class Entry(sp.Expr):
    """``M[i, j]`` of any matrix expression, kept as it is: sympy's own entry of a
    product is a sum over an index, which has no matrix rule."""

    is_commutative = True

    def __new__(cls, M, i, j):
        i, j = sp.sympify(i), sp.sympify(j)
        if isinstance(M, sp.MatrixBase):  # an explicit matrix: its entry is a number
            return M[i, j]
        for k, size in ((i, sp.sympify(M.shape[0])), (j, sp.sympify(M.shape[1]))):
            if not k.is_Integer or (size.is_Integer and not 0 <= k < size) or k < 0:
                raise ShapeError(f"entry ({i}, {j}) of {M} ({_shape(M)}): out of range")
        return sp.Basic.__new__(cls, M, i, j)

    def _eval_is_real(self):
        return True

    def doit(self, **hints):
        M, i, j = self.args
        return Entry(M.doit(**hints), i, j) if hints.get("deep", True) else self

    def _sympystr(self, printer):
        M, i, j = self.args
        return f"{printer.parenthesize(M, 1000)}[{i}, {j}]"

    def _adjoint_array(self, printer):
        M, i, j = self.args
        at = f"{printer._print(i)}, {printer._print(j)}"
        return f"{printer.parenthesize(M, PRECEDENCE['Atom'])}[{at}]"

    def _latex(self, printer, exp=None):
        M, i, j = self.args
        head = rf"\left({printer._print(M)}\right)_{{{i} {j}}}"
        return head if exp is None else f"{head}^{{{exp}}}"


def _shape(M) -> str:
    return f"{M.shape[0]} x {M.shape[1]}"


def repeat_rows(b: sp.MatrixExpr, n) -> RowRepeat:
    """``1_n b``: the row ``b`` (1 x d) on each of ``n`` rows; a bias of a layer is
    ``X*W + repeat_rows(b, n)``. (A column bias ``b``, d x 1: ``repeat_rows(b.T, n)``.)"""
    return RowRepeat(b, n)


def repeat_columns(c: sp.MatrixExpr, d) -> ColumnRepeat:
    """``c 1_d^T``: the column ``c`` (n x 1) in each of ``d`` columns."""
    return ColumnRepeat(c, d)


def row_sums(E: sp.MatrixExpr) -> RowSums:
    """The sum of each row, ``E 1`` (n x 1)."""
    return RowSums(E)


def column_sums(E: sp.MatrixExpr) -> ColumnSums:
    """The sum of each column, ``1^T E`` (1 x d)."""
    return ColumnSums(E)


def row_means(E: sp.MatrixExpr) -> sp.MatrixExpr:
    """The mean of each row (n x 1)."""
    return sp.MatMul(1 / E.shape[1], RowSums(E))


def column_means(E: sp.MatrixExpr) -> sp.MatrixExpr:
    """The mean of each column (1 x d)."""
    return sp.MatMul(1 / E.shape[0], ColumnSums(E))


def mean_entries(E: sp.MatrixExpr) -> sp.Expr:
    """The mean of all entries."""
    return sum_entries(E) / (E.shape[0] * E.shape[1])


def logsumexp(A: sp.MatrixExpr, axis: int = 1) -> LogSumExp:
    """``log sum exp`` along each row (``axis=1``, n x 1) or column (``axis=0``, 1 x d);
    compiled with the max-shift, so logits of 1000 do not overflow."""
    return LogSumExp(A, axis)


def softmax(A: sp.MatrixExpr, axis: int = 1) -> Softmax:
    """The softmax along each row (``axis=1``) or column (``axis=0``)."""
    return Softmax(A, axis)


def cross_entropy(Y: sp.MatrixExpr, Z: sp.MatrixExpr, axis: int = 1) -> sp.Expr:
    """``-sum_ij Y_ij log softmax(Z)_ij``, labels ``Y`` (one-hot rows for ``axis=1``) and
    logits ``Z``, written ``sum(rowsums(Y) o lse(Z)) - <Y, Z>`` so that it never takes
    the log of a softmax that underflowed."""
    if tuple(Y.shape) != tuple(Z.shape):
        raise ShapeError(f"cross_entropy: labels {Y} ({_shape(Y)}) and logits {Z} ({_shape(Z)})")
    sums = RowSums(Y) if _axis(axis) == 1 else ColumnSums(Y)
    lse = LogSumExp(Z, axis)
    pair = sp.MatMul(sp.Transpose(sums), lse) if axis == 1 else sp.MatMul(lse, sp.Transpose(sums))
    return sp.Trace(pair) - sp.Trace(sp.MatMul(sp.Transpose(Y), Z))


def entry(M: sp.MatrixExpr, i, j) -> sp.Expr:
    """The entry ``M[i, j]``, a scalar. (sympy's ``(A*B)[i, j]`` is already a sum over
    entries, which has no matrix rule: write ``entry(A*B, i, j)``.)"""
    return Entry(M, i, j)


def scalar(M: sp.MatrixExpr) -> sp.Expr:
    """A 1 x 1 matrix (``a.T*X*b``) as the number it holds, for a scalar formula."""
    if tuple(M.shape) != (1, 1):
        raise ShapeError(f"scalar() reads a 1 x 1 matrix; {M} is {_shape(M)}")
    return Entry(M, 0, 0)


def divide(A: sp.MatrixExpr, B: sp.MatrixExpr) -> sp.MatrixExpr:
    """``A ./ B``, entry by entry."""
    return sp.HadamardProduct(A, sp.HadamardPower(B, -1))


def power(A: sp.MatrixExpr, k) -> sp.MatrixExpr:
    """``A .^ k``, entry by entry (``k`` a number)."""
    return sp.HadamardPower(A, k)


def det(X: sp.MatrixExpr) -> sp.Expr:
    """``det X``."""
    return sp.Determinant(X)


def logdet(X: sp.MatrixExpr) -> sp.Expr:
    """``log det X`` (nan where ``det X <= 0``), compiled with ``numpy.linalg.slogdet``."""
    return sp.log(sp.Determinant(X))


def inverse(X: sp.MatrixExpr) -> sp.MatrixExpr:
    """``X^{-1}``; compiled as ``solve(X, B)`` wherever it multiplies a matrix ``B``."""
    return sp.Inverse(X)


# -- adjoint rules --------------------------------------------------------------------


@rule(RowRepeat)
def _row_repeat(expr, cot):
    return [(expr.arg, ColumnSums(cot))]


@rule(ColumnRepeat)
def _column_repeat(expr, cot):
    return [(expr.arg, RowSums(cot))]


@rule(RowSums)
def _row_sums(expr, cot):
    return [(expr.arg, ColumnRepeat(cot, expr.arg.shape[1]))]


@rule(ColumnSums)
def _column_sums(expr, cot):
    return [(expr.arg, RowRepeat(cot, expr.arg.shape[0]))]


def _spread(v, like, axis):
    """``v`` (a row or column of ``like``'s reduction along ``axis``) spread to ``like``'s shape."""
    return ColumnRepeat(v, like.shape[1]) if axis == 1 else RowRepeat(v, like.shape[0])


@rule(LogSumExp)
def _logsumexp(expr, cot):
    # d lse(a) = softmax(a)^T da, for each row (or column).
    return [(expr.arg, sp.HadamardProduct(_spread(cot, expr.arg, expr.axis), Softmax(*expr.args)))]


@rule(Softmax)
def _softmax(expr, cot):
    # J^T Lambda = S o (Lambda - (sum over the axis of Lambda o S), spread back).
    s = expr
    reduce = RowSums if expr.axis == 1 else ColumnSums
    inner = _spread(reduce(sp.HadamardProduct(cot, s)), expr.arg, expr.axis)
    return [(expr.arg, sp.HadamardProduct(s, sp.MatAdd(cot, -inner)))]


def _unit(M, i, j):
    if tuple(M.shape) == (1, 1):
        return sp.Identity(1)
    return UnitMatrix(M.shape[0], M.shape[1], i, j)


@rule(MatrixElement)
@rule(Entry)
def _matrix_element(expr, cot):
    # d M_ij / d M = e_i e_j^T.
    M, i, j = expr.args
    return [(M, sp.MatMul(cot, _unit(M, i, j)))]


# -- tangents (forward mode) beside each rule, for second order ----------------------


def _zero_like(e):
    return sp.ZeroMatrix(*e.shape) if isinstance(e, sp.MatrixExpr) else sp.S.Zero


def _linear(make):
    """The tangent of a map linear in its first argument: the map of its tangent."""

    def tangent(expr, d):
        da = d(expr.args[0])
        if isinstance(da, sp.ZeroMatrix) or da == 0:
            return _zero_like(expr)
        return make(expr, da)

    return tangent


tangent_rule(RowRepeat)(_linear(lambda e, da: RowRepeat(da, e.args[1])))
tangent_rule(ColumnRepeat)(_linear(lambda e, da: ColumnRepeat(da, e.args[1])))
tangent_rule(RowSums)(_linear(lambda e, da: RowSums(da)))
tangent_rule(ColumnSums)(_linear(lambda e, da: ColumnSums(da)))
tangent_rule(Entry)(_linear(lambda e, da: Entry(da, *e.args[1:])))
tangent_rule(MatrixElement)(_linear(lambda e, da: Entry(da, *e.args[1:])))


@tangent_rule(LogSumExp)
def _d_logsumexp(expr, d):
    # d lse(a) = sum over the axis of softmax(a) o da
    da = d(expr.arg)
    if isinstance(da, sp.ZeroMatrix):
        return _zero_like(expr)
    reduce = RowSums if expr.axis == 1 else ColumnSums
    return reduce(sp.HadamardProduct(Softmax(*expr.args), da))


@tangent_rule(Softmax)
def _d_softmax(expr, d):
    # dS = S o (da - (sum over the axis of S o da), spread back)
    da = d(expr.arg)
    if isinstance(da, sp.ZeroMatrix):
        return _zero_like(expr)
    reduce = RowSums if expr.axis == 1 else ColumnSums
    inner = _spread(reduce(sp.HadamardProduct(expr, da)), expr.arg, expr.axis)
    return sp.HadamardProduct(expr, sp.MatAdd(da, -inner))


# -- the vocabulary of text: every name the text printer writes reads back ------------

for _name, _word in {
    # functions of one number (on a matrix, entry by entry: sigmoid.(H))
    "sigmoid": Word(sigmoid),
    "sigmoid_prime": Word(sigmoid_prime),
    "relu": Word(relu),
    "relu_prime": Word(relu_prime),
    "softplus": Word(softplus),
    # matrices: reductions, broadcasts and the rest, as the text printer writes them
    "Trace": Word(sp.Trace, matrices=True),
    "Determinant": Word(sp.Determinant, matrices=True),
    "HadamardPower": Word(sp.HadamardPower, (2,), matrices=True),
    "repeat_rows": Word(repeat_rows, (2,), matrices=True),
    "repeat_columns": Word(repeat_columns, (2,), matrices=True),
    "row_sums": Word(row_sums, matrices=True),
    "column_sums": Word(column_sums, matrices=True),
    "row_means": Word(row_means, matrices=True),
    "column_means": Word(column_means, matrices=True),
    "sum_entries": Word(sum_entries, matrices=True),
    "mean_entries": Word(mean_entries, matrices=True),
    "logsumexp": Word(logsumexp, matrices=True, keywords=("axis",)),
    "softmax": Word(softmax, matrices=True, keywords=("axis",)),
    "cross_entropy": Word(cross_entropy, (2,), matrices=True, keywords=("axis",)),
    "ones": Word(lambda rows, cols: sp.OneMatrix(rows, cols), (2,), matrices=True),
    "eye": Word(sp.Identity, matrices=True),
    "unit": Word(UnitMatrix, (4,), matrices=True),
    "entry": Word(entry, (3,), matrices=True),
    "scalar": Word(scalar, matrices=True),
    "det": Word(det, matrices=True),
    "logdet": Word(logdet, matrices=True),
    "inverse": Word(inverse, matrices=True),
    "divide": Word(divide, (2,), matrices=True),
    "power": Word(power, (2,), matrices=True),
}.items():
    register_word(_name, _word)
del _name, _word


#: The operations this module declares. Each class is the one place the package
#: learns an operation's facts: its value (sympy), its rules (``fdiff`` for a function
#: of one number; a pullback in ``matrices.RULES`` and a tangent in
#: ``matrices.TANGENTS`` for a matrix operation), how it prints (``_adjoint_array``
#: for NumPy and JAX, ``_adjoint_text`` for text where the call is not its class name,
#: ``_latex``) and the word text calls it by (registered above). ``tests/
#: test_operations.py`` holds every one of them to all of it.
OPERATIONS = (
    sigmoid,
    sigmoid_prime,
    relu,
    relu_prime,
    softplus,
    RowRepeat,
    ColumnRepeat,
    RowSums,
    ColumnSums,
    LogSumExp,
    Softmax,
    UnitMatrix,
    Entry,
)
