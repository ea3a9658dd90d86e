"""One declaration per operation: every operation of adjoint.functions prints itself
in NumPy, JAX, text and LaTeX, carries its first and second order rules, and reads
back from the text it prints; no printer module knows one by name.

The references are independent of the code under test: values from sympy's own
entries of the expression (``as_explicit``), derivatives by central differences."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import adjoint
from adjoint.core.display import latex, text
from adjoint.operations import functions as F
from adjoint.operations.matrices import RULES, TANGENTS, pullback, tangent
from adjoint.operations.numeric import JaxNumericPrinter, NumericPrinter, namespace

A = sp.MatrixSymbol("A", 2, 3)
b = sp.MatrixSymbol("b", 1, 3)
c = sp.MatrixSymbol("c", 2, 1)
x = sp.Symbol("x", real=True)

#: An example of each operation; a new operation fails test_every_operation_has_an_example
#: until it is given one here.
EXAMPLES = {
    F.sigmoid: F.sigmoid(x),
    F.sigmoid_prime: F.sigmoid_prime(x),
    F.relu: F.relu(x),
    F.relu_prime: F.relu_prime(x),
    F.softplus: F.softplus(x),
    F.RowRepeat: F.RowRepeat(b, 2),
    F.ColumnRepeat: F.ColumnRepeat(c, 3),
    F.RowSums: F.RowSums(A),
    F.ColumnSums: F.ColumnSums(A),
    F.LogSumExp: F.LogSumExp(A, 1),
    F.Softmax: F.Softmax(A, 0),
    F.UnitMatrix: F.UnitMatrix(2, 3, 1, 2),
    F.Entry: F.Entry(A, 1, 2),
}
VALUES = {
    A: np.array([[0.3, -1.2, 2.0], [0.7, 0.1, -0.4]]),
    b: np.array([[1.5, -0.5, 0.25]]),
    c: np.array([[0.2], [-0.9]]),
    x: 0.6,
}


def _reference(expr) -> np.ndarray:
    """The value from sympy's own entries, the matrices put in entry by entry."""
    if isinstance(expr, F.Entry):
        M, i, j = expr.args
        return _reference(M)[int(i), int(j)]
    explicit = expr.as_explicit() if isinstance(expr, sp.MatrixExpr) else expr
    subs = {}
    for M, v in VALUES.items():
        if isinstance(M, sp.MatrixSymbol):
            subs.update({M[i, j]: v[i, j] for i in range(v.shape[0]) for j in range(v.shape[1])})
        else:
            subs[M] = v
    value = explicit.xreplace(subs).doit()
    if hasattr(value, "rewrite"):
        value = value.rewrite(sp.exp)
    return np.array(sp.N(value), dtype=float)


def _program(expr, printer) -> float | np.ndarray:
    code = printer.doprint(expr)
    scope = namespace("numpy" if isinstance(printer, NumericPrinter) else "jax")
    names = {str(s): VALUES[s] for s in VALUES}
    return np.asarray(eval(code, scope, dict(names)), dtype=float)


def test_every_operation_has_an_example():
    assert set(EXAMPLES) == set(F.OPERATIONS)


@pytest.mark.parametrize("op", F.OPERATIONS, ids=lambda op: op.__name__)
def test_numpy_and_jax_forms_compute_the_operation(op):
    expr = EXAMPLES[op]
    assert isinstance(expr, op)
    want = _reference(expr)
    np.testing.assert_allclose(_program(expr, NumericPrinter()), want, rtol=1e-13)
    pytest.importorskip("jax")
    import jax

    with jax.enable_x64(True):
        got = _program(expr, JaxNumericPrinter())
    np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize("op", F.OPERATIONS, ids=lambda op: op.__name__)
def test_text_form_reads_back(op):
    expr = EXAMPLES[op]
    written = text(expr)
    back = adjoint.parse(written, symbols=[A, b, c, x])
    assert text(back) == written
    np.testing.assert_allclose(_reference(back), _reference(expr), rtol=1e-14)


def test_latex_forms_render(katex):
    items = [latex(EXAMPLES[op]) for op in F.OPERATIONS]
    assert katex.errors(items) == [None] * len(items), list(zip(F.OPERATIONS, items))


@pytest.mark.parametrize("op", F.OPERATIONS, ids=lambda op: op.__name__)
def test_first_and_second_order_rules(op):
    """A function of one number: its derivative and second derivative against central
    differences; a matrix operation: its pullback and tangent rules, <V, J U> against
    <J^T V, U> and J U against differences of its NumPy form."""
    expr = EXAMPLES[op]
    if not isinstance(expr, sp.MatrixExpr) and op is not F.Entry:
        d1, d2 = sp.diff(expr, x), sp.diff(expr, x, 2)
        assert not d1.has(sp.Derivative) and not d2.has(sp.Derivative)
        h, at = 1e-5, VALUES[x]

        def at_x(e, where):
            VALUES[x] = where
            try:
                return float(_program(e, NumericPrinter()))
            finally:
                VALUES[x] = at

        for low, high in ((expr, d1), (d1, d2)):
            difference = (at_x(low, at + h) - at_x(low, at - h)) / (2 * h)
            assert at_x(high, at) == pytest.approx(difference, rel=1e-6, abs=1e-9)
        return
    if op is F.UnitMatrix:  # a constant: no argument moves, and its tangent is zero
        assert tangent(expr, {A: sp.MatrixSymbol("U", 2, 3)}) == sp.ZeroMatrix(2, 3)
        return
    assert op in RULES and op in TANGENTS
    (M,) = [m for m in (A, b, c) if expr.has(m)]
    rng = np.random.default_rng(0)
    U = rng.normal(size=VALUES[M].shape)
    dot = sp.MatrixSymbol("U", *M.shape)
    shape = expr.shape if isinstance(expr, sp.MatrixExpr) else (1, 1)
    matrix = isinstance(expr, sp.MatrixExpr)
    cot = sp.MatrixSymbol("V", *shape) if matrix else sp.Symbol("v")
    V = rng.normal(size=shape)
    VALUES[dot], VALUES[cot] = U, (V if matrix else float(V[0, 0]))
    at = VALUES[M]
    try:
        JU = _program(tangent(expr, {M: dot}), NumericPrinter())
        h = 1e-6
        VALUES[M] = at + h * U
        up = _program(expr, NumericPrinter())
        VALUES[M] = at - h * U
        down = _program(expr, NumericPrinter())
        VALUES[M] = at
        np.testing.assert_allclose(JU, (up - down) / (2 * h), rtol=1e-6, atol=1e-8)
        JTV = _program(pullback(expr, cot, M), NumericPrinter())
        assert float(np.sum(V * JU)) == pytest.approx(float(np.sum(JTV * U)), rel=1e-12)
    finally:
        VALUES[M] = at
        VALUES.pop(dot)
        VALUES.pop(cot)


def test_no_printer_module_knows_an_operation_by_name():
    """The one-declaration rule, read off the source: no ``_print_<Operation>`` method
    in any module of the package."""
    names = {f"_print_{op.__name__}" for op in F.OPERATIONS}
    found = []
    for path in Path(adjoint.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name in names:
                found.append(f"{path.name}: {node.name}")
    assert not found, found
