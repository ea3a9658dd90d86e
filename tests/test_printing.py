"""Array printing: a trace of a product is reduced to a sum, never formed; both array
modules print through the same methods."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import adjoint
from adjoint.operations.matrices import frobenius2, sum_entries
from adjoint.operations.numeric import JaxNumericPrinter, NumericPrinter, numeric_function
from adjoint.operations.primitives import undefined_at_zero

m, k = sp.symbols("m k", integer=True, positive=True)
A, B = sp.MatrixSymbol("A", m, k), sp.MatrixSymbol("B", m, k)
P, Q = sp.MatrixSymbol("P", m, k), sp.MatrixSymbol("Q", k, m)
c = sp.Symbol("c", real=True)

# (trace expression, its reduced code, the unreduced value from numpy by hand)
REDUCTIONS = [
    (sp.Trace(A.T * B), "numpy.einsum('ij,ij->',A,B)", lambda v: np.trace(v["A"].T @ v["B"])),
    (sp.Trace(A * B.T), "numpy.einsum('ij,ij->',A,B)", lambda v: np.trace(v["A"] @ v["B"].T)),
    (frobenius2(A), "numpy.einsum('ij,ij->',A,A)", lambda v: np.trace(v["A"].T @ v["A"])),
    (frobenius2(A + B), "numpy.sum((A+B)**2)", lambda v: np.sum((v["A"] + v["B"]) ** 2)),
    (sp.Trace(P * Q), "numpy.sum(P*Q.T)", lambda v: np.trace(v["P"] @ v["Q"])),
    (sum_entries(A), "numpy.sum(A)", lambda v: np.trace(np.ones((v["k"], v["m"])) @ v["A"])),
    (
        3 * sp.Trace(A.T * B),
        "3*numpy.einsum('ij,ij->',A,B)",
        lambda v: 3 * np.trace(v["A"].T @ v["B"]),
    ),
    (
        sp.Trace(2 * A.T * B),
        "(2*numpy.einsum('ij,ij->',A,B))",
        lambda v: 2 * np.trace(v["A"].T @ v["B"]),
    ),
    (
        sp.Trace(-A.T * B),
        "(-numpy.einsum('ij,ij->',A,B))",
        lambda v: -np.trace(v["A"].T @ v["B"]),
    ),
    (sp.Trace(c * P * Q), "(c*numpy.sum(P*Q.T))", lambda v: v["c"] * np.trace(v["P"] @ v["Q"])),
    (
        sp.Trace(P * Q + Q.T * P.T),
        "(numpy.sum(P*Q.T) + numpy.sum(Q.T*P))",
        lambda v: np.trace(v["P"] @ v["Q"] + v["Q"].T @ v["P"].T),
    ),
    (
        sp.Trace(P * Q * P * Q),
        "numpy.sum((P @ Q @ P)*Q.T)",
        lambda v: np.trace(v["P"] @ v["Q"] @ v["P"] @ v["Q"]),
    ),
    (sp.Trace(sp.Transpose(P * Q)), "numpy.sum(P*Q.T)", lambda v: np.trace((v["P"] @ v["Q"]).T)),
]


def _printer(cls=NumericPrinter):
    return cls({"fully_qualified_modules": True, "strict": True})


@pytest.mark.parametrize("expr, code, _", REDUCTIONS)
def test_a_trace_of_a_product_prints_as_a_sum_never_forming_the_product(expr, code, _):
    printed = _printer().doprint(expr)
    assert printed.replace(" ", "") == code.replace(" ", "")
    if "@" not in code:
        assert "@" not in printed and "trace" not in printed


@settings(max_examples=15)
@given(st.integers(1, 7), st.integers(1, 7), st.integers(0, 2**32 - 1))
def test_reduced_traces_equal_the_unreduced_numpy_value(rows, cols, seed):
    rng = np.random.default_rng(seed)
    values = {
        "A": rng.normal(size=(rows, cols)),
        "B": rng.normal(size=(rows, cols)),
        "P": rng.normal(size=(rows, cols)),
        "Q": rng.normal(size=(cols, rows)),
        "c": rng.normal(),
        "m": rows,  # non-square whenever rows != cols
        "k": cols,
    }
    symbols = [A, B, P, Q, c, m, k]
    for expr, _, unreduced in REDUCTIONS:
        fn = numeric_function(symbols, expr)
        got = fn(*(values[s.name] for s in symbols))
        assert got == pytest.approx(unreduced(values), rel=1e-12, abs=1e-12), expr


def test_jax_prints_the_same_methods_through_its_own_module():
    printer = _printer(JaxNumericPrinter)
    assert printer.doprint(sp.Trace(A.T * B)) == "jax.numpy.einsum('ij,ij->', A, B)"
    assert printer.doprint(sp.Trace(P)) == "jax.numpy.trace(P)"
    assert printer.doprint(sp.OneMatrix(m, k)) == "jax.numpy.ones((m, k))"
    x = sp.Symbol("x", real=True)
    assert printer.doprint(sp.DiracDelta(x)) == "(0.0*(x))"  # the convention
    assert printer.doprint(undefined_at_zero(2 * x, x)) == "(2*x)"
    # a sum in the value keeps its parentheses where a product reads it
    assert printer.doprint(sp.Symbol("c") * undefined_at_zero(x + 1, x)) == "c*(x + 1)"
    printer.kinks = "nan"
    assert printer.doprint(sp.DiracDelta(x)) == "jax.numpy.where((x) == 0, jax.numpy.nan, 0.0*(x))"
    assert printer.doprint(undefined_at_zero(2 * x, x)).startswith(
        "jax.numpy.where((x) == 0, jax.numpy.nan,"
    )
    assert printer.doprint(sp.erf(x)) == "jax.scipy.special.erf(x)"
    assert printer.doprint(sp.Identity(m)) == "jax.numpy.eye(m)"


def test_solving_uses_the_reduced_sum_too(monkeypatch):
    n, d = sp.symbols("n d", integer=True, positive=True)
    g = adjoint.Graph()
    Bm, Z = g.input("B", shape=(n, d)), g.constant("Z", shape=(n, d))
    R = g.define("R", Bm - Z)
    g.define("f", frobenius2(R) + sp.Trace(Bm.T * Z) + sum_entries(R))
    rng = np.random.default_rng(0)
    b, z = rng.normal(size=(7, 2)), rng.normal(size=(7, 2))

    def no_trace(*args, **kwargs):
        raise AssertionError("a trace of a product was formed")

    monkeypatch.setattr(np, "trace", no_trace)
    sol = g.solve({"B": b, "Z": z})
    assert sol.output == pytest.approx(np.sum((b - z) ** 2) + np.sum(b * z) + np.sum(b - z))
    np.testing.assert_allclose(sol.gradient["B"], 2 * (b - z) + z + 1, rtol=1e-12)
    value, (grad,) = g.compile()(b, z)
    assert value == pytest.approx(sol.output)
    np.testing.assert_allclose(grad, 2 * (b - z) + z + 1, rtol=1e-12)
    assert "trace" not in g.source()


def test_an_elementwise_square_differentiates_to_twice_its_base_not_a_first_power():
    """d(H.^2) = 2 H .* dH, as the Cookbook writes it: no HadamardPower(H, 1) in the
    printed conditions, and no .* with ones in second order."""
    g = adjoint.Graph()
    X, W = g.input("X", shape=(4, 3)), g.input("W", shape=(3, 2))
    g.define("H", "sigmoid.(X*W)")
    g.define("f", "sum_entries(H .* H)")
    printed = str(g.stationarity()) + str(g.second_order())
    assert "HadamardPower(H, 1)" not in printed and "HadamardPower(H, 0)" not in printed
    assert "Lambda_H = (2*H) .* (lambda_f*ones(4, 2))" in printed
    rng = np.random.default_rng(0)
    at = {X: rng.normal(size=(4, 3)), W: rng.normal(size=(3, 2))}
    assert adjoint.check_gradient(g, at).ok and adjoint.check_hvp(g, at).ok
