"""Shapes: a gradient has its input's shape, mismatched shapes are the package's
error, and reductions and element-wise functions of matrices are differentiated
right (every test here failed on the package before its fix)."""

import numpy as np
import pytest
import sympy as sp

import adjoint
from adjoint import AdjointError, ShapeError

n, d = sp.symbols("n d", integer=True, positive=True)


def _bias_graph(b_shape):
    g = adjoint.Graph()
    X = g.input("X", shape=(n, d))
    W = g.input("W", shape=(d, d))
    b = g.input("b", shape=b_shape)
    return g, X, W, b


@pytest.mark.parametrize("b_shape", [(1, d), (d, 1)])
def test_a_sum_of_matrices_of_different_symbolic_shapes_is_refused(b_shape):
    g, X, W, b = _bias_graph(b_shape)
    with pytest.raises(ShapeError) as info:
        g.define("H", X * W + b)
    message = str(info.value)
    assert "H" in message and "OneMatrix" in message  # names the node and the fix
    assert info.value.node.name == "H"
    assert len(g) == 3  # the graph is unchanged


def test_the_bias_written_with_a_ones_column_has_the_gradient_of_its_shape():
    g, X, W, b = _bias_graph((1, d))
    H = g.define("H", X * W + sp.OneMatrix(n, 1) * b)
    g.define("f", adjoint.frobenius2(H))
    rng = np.random.default_rng(0)
    point = {X: rng.normal(size=(5, 3)), W: rng.normal(size=(3, 3)), b: rng.normal(size=(1, 3))}
    sol = g.solve(point)
    assert sol.gradient[b].shape == (1, 3)
    # by hand: f = ||X W + 1 b||^2, df/db = 2 * 1^T (X W + 1 b)
    Hv = point[X] @ point[W] + point[b]
    np.testing.assert_allclose(sol.gradient[b], 2 * Hv.sum(axis=0, keepdims=True), rtol=1e-12)


def test_mismatched_shapes_in_text_are_the_packages_shape_error():
    g = adjoint.Graph()
    g.input("X", shape=(4, 3))
    g.input("W", shape=(3, 3))
    g.input("b", shape=(1, 3))
    for text in ("X*W + b", "X @ X"):
        with pytest.raises(AdjointError):
            g.define("H", text)
    assert len(g) == 3


def test_a_scalar_symbol_with_the_name_of_a_matrix_node_is_refused():
    g = adjoint.Graph()
    g.input("A", shape=(2, 2))
    with pytest.raises(ShapeError, match="A"):
        g.define("f", sp.Symbol("A") * 2)
    assert len(g) == 1


def test_a_scalar_function_of_a_matrix_is_refused_with_the_elementwise_fix():
    g = adjoint.Graph()
    A = g.input("A", shape=(2, 2))
    with pytest.raises(ShapeError, match="applyfunc"):
        g.define("f", sp.exp(A))
    assert len(g) == 1


def test_two_dimensions_with_one_name_and_different_assumptions_are_refused():
    g = adjoint.Graph()
    g.input("X", shape=(sp.Symbol("n", integer=True, positive=True), 2))
    with pytest.raises(AdjointError, match="n"):
        g.input("Y", shape=(sp.Symbol("n"), 2))
    assert len(g) == 1


def test_every_multiplier_has_the_shape_of_its_node():
    g, point = adjoint.examples.two_layer_net()
    sol = g.solve(point)
    for z in g.nodes:
        assert np.shape(sol.adjoints[z]) == np.shape(sol.values[z])


@pytest.mark.parametrize(
    "wrong",
    [lambda v: v[:1], lambda v: np.ones((2, 2, 2)), lambda v: float(np.sum(v))],
    ids=["fewer rows", "more axes", "a number"],
)
def test_a_gradient_of_the_wrong_shape_fails_every_checker(monkeypatch, wrong):
    g, point = adjoint.examples.two_layer_net()
    real_solve = adjoint.system.solve.solve

    def broken(graph, values=None):
        sol = real_solve(graph, values)
        if values is None:
            return sol
        W2 = graph.lookup("W2")
        grad = dict(sol.gradient)
        grad[W2] = wrong(grad[W2])
        fields = {name: getattr(sol, name) for name in sol.__slots__}
        fields["gradient"] = adjoint.NodeMap(grad)
        out = object.__new__(adjoint.Solution)
        for k, v in fields.items():
            object.__setattr__(out, k, v)
        return out

    monkeypatch.setattr(adjoint.system.solve, "solve", broken)
    monkeypatch.setattr(adjoint.coursework.checks, "solve", broken)
    assert not adjoint.check_gradient(g, point).ok
    assert not adjoint.taylor_test(g, point).ok


def test_a_scalar_node_inside_an_elementwise_function_gets_its_gradient():
    # sum_ij sin(A_ij + x): d/dx = sum_ij cos(A_ij + x); it once came out 0.
    g = adjoint.Graph()
    A = g.input("A", shape=(2, 3))
    x = g.input("x")
    t = sp.Dummy("t", real=True)
    S = g.define("S", A.applyfunc(sp.Lambda(t, sp.sin(t + x))))
    g.define("f", adjoint.sum_entries(S))
    rng = np.random.default_rng(0)
    Av = rng.normal(size=(2, 3))
    sol = g.solve({A: Av, x: 0.3})
    assert sol.gradient[x] == pytest.approx(np.cos(Av + 0.3).sum(), rel=1e-12)
    np.testing.assert_allclose(sol.gradient[A], np.cos(Av + 0.3), rtol=1e-12)
    _, (gA, gx) = g.compile()(Av, 0.3)
    assert gx == pytest.approx(np.cos(Av + 0.3).sum(), rel=1e-12)
    np.testing.assert_allclose(gA, np.cos(Av + 0.3), rtol=1e-12)


def test_points_are_refused_beside_matrix_inputs():
    g = adjoint.Graph()
    A = g.input("A", shape=(2, 2))
    x = g.input("x")
    g.define("f", sp.Trace(A.T * A) * x)
    with pytest.raises(ShapeError, match="points"):
        g.compile()(np.eye(2), np.array([1.0, 10.0]))
    _value, (gA, _gx) = g.compile()(np.eye(2), 10.0)
    np.testing.assert_allclose(gA, 20 * np.eye(2))


@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda T: T * sp.sin(T), lambda t: np.sin(t) + t * np.cos(t)),
        (lambda T: sp.exp(T) * T, lambda t: np.exp(t) * (1 + t)),
        (lambda T: T + T**3, lambda t: 1 + 3 * t**2),
    ],
)
def test_a_scalar_formula_of_a_reduction_is_differentiated_once(build, expected):
    g = adjoint.Graph()
    A = g.input("A", shape=(2, 2))
    g.define("f", build(sp.Trace(A)))
    Av = np.array([[0.3, 0.1], [0.2, 0.4]])
    sol = g.solve({A: Av})
    np.testing.assert_allclose(sol.gradient[A], expected(0.7) * np.eye(2), rtol=1e-12)


@pytest.mark.parametrize(
    "build",
    [
        lambda A, s: sp.sin(sp.Determinant(A)),
        lambda A, s: sp.exp(s * sp.Trace(A)),
        lambda A, s: sp.sin(sp.Determinant(A) + sp.Trace(A) * s),
    ],
    ids=["sin det", "exp s tr", "sin(det + s tr)"],
)
def test_second_order_of_a_scalar_function_of_a_reduction(build):
    # Against differences of the gradient (itself checked against sympy elsewhere).
    g = adjoint.Graph()
    A, s = g.input("A", shape=(2, 2)), g.input("s")
    g.define("f", build(A, s))
    at = {A: np.array([[1.0, 0.2], [-0.5, 0.9]]), s: 0.3}
    v = {A: np.array([[0.2, -0.1], [0.4, 1.0]]), s: 0.7}
    hv = g.hvp(at, v)
    h = 1e-5

    def gradient(t):
        return g.solve({A: at[A] + t * v[A], s: at[s] + t * v[s]}).gradient

    up, down = gradient(h), gradient(-h)
    np.testing.assert_allclose(hv[A], (up[A] - down[A]) / (2 * h), rtol=1e-6, atol=1e-8)
    assert hv[s] == pytest.approx((up[s] - down[s]) / (2 * h), rel=1e-6, abs=1e-8)
