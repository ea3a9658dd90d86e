"""``compile(backend="jax")``: the same generated program, jitted by JAX.

Checked against the NumPy program and against central differences of the composed
function; jit compiling is slow, so the random examples are few.
"""

import sys

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import central_difference, composed
from strategies import dags, points

import adjoint
from adjoint.examples import lecture_dag, two_layer_net
from adjoint.operations.matrices import frobenius2, sum_entries

jax = pytest.importorskip("jax")


@settings(max_examples=8)
@given(st.data())
def test_jax_program_equals_numpy_program_and_differences_on_random_dags(data):
    g = data.draw(dags(max_nodes=6))
    point = data.draw(points(g))
    args = [np.array([point[x], point[x] / 2]) for x in g.inputs]  # two points each
    value, gradient = g.compile(backend="jax")(*args)
    expected, expected_gradient = g.compile()(*args)
    np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-12)
    for lam, want in zip(gradient, expected_gradient):
        assert lam.dtype == np.float64 and lam.shape == (2,)
        np.testing.assert_allclose(lam, want, rtol=1e-11, atol=1e-12)
    fn = sp.lambdify(g.inputs, composed(g)[g.output], "numpy")
    for k in range(2):
        x0 = np.array([a[k] for a in args])
        fd = central_difference(lambda v: fn(*v), x0)
        for j in range(len(g.inputs)):
            assert gradient[j][k] == pytest.approx(fd[j], rel=1e-6, abs=1e-6)


def _loss(W1, W2, X, y):
    return np.sum((np.tanh(X @ W1) @ W2 - y) ** 2)


def test_two_layer_net_in_float64():
    g, point = two_layer_net(n=40, d=6, seed=3)
    args = {s.name: v for s, v in point.items()}
    value, (g1, g2) = g.compile(backend="jax")(**args)
    expected, (e1, e2) = g.compile()(**args)
    assert value == pytest.approx(_loss(**args), rel=1e-14)  # float32 is far from this
    assert value == pytest.approx(expected, rel=1e-14)
    np.testing.assert_allclose(g1, e1, rtol=1e-12)
    np.testing.assert_allclose(g2, e2, rtol=1e-12)
    assert g1.dtype == g2.dtype == np.float64
    rng = np.random.default_rng(1)
    for _ in range(3):  # directional central differences, in random directions
        v1, v2 = rng.normal(size=g1.shape), rng.normal(size=g2.shape)
        h = 1e-6
        plus = _loss(args["W1"] + h * v1, args["W2"] + h * v2, args["X"], args["y"])
        minus = _loss(args["W1"] - h * v1, args["W2"] - h * v2, args["X"], args["y"])
        fd = (plus - minus) / (2 * h)
        assert np.sum(g1 * v1) + np.sum(g2 * v2) == pytest.approx(fd, rel=1e-6)


def test_the_users_jax_setting_is_left_as_it_was():
    g, _ = lecture_dag()
    f = g.compile(backend="jax")
    before = jax.config.jax_enable_x64
    value, (gx, _gy) = f(1.5, -2.0)
    assert jax.config.jax_enable_x64 == before
    assert value == pytest.approx(np.sin(-3.0) + 1.5, rel=1e-15)  # float64 digits
    assert gx == pytest.approx(-2.0 * np.cos(-3.0) + 1, rel=1e-15)
    with jax.enable_x64(False):  # even with 64-bit types off around the call
        assert f(1.5, -2.0)[0] == pytest.approx(np.sin(-3.0) + 1.5, rel=1e-15)
    assert isinstance(value, np.floating) and isinstance(gx, np.floating)


def test_float32():
    g, _ = lecture_dag()
    value, gradient = g.compile(backend="jax", dtype="float32")(1.5, -2.0)
    assert np.asarray(value).dtype == np.float32
    assert all(np.asarray(v).dtype == np.float32 for v in gradient)
    assert float(gradient[0]) == pytest.approx(-2.0 * np.cos(-3.0) + 1, rel=1e-5)


def test_jax_arrays_are_accepted():
    g, _ = lecture_dag()
    xs = np.array([1.5, 0.5])
    with jax.enable_x64(True):
        x = jax.numpy.array(xs)
    value, _ = g.compile(backend="jax")(x, -2.0)
    np.testing.assert_allclose(value, np.sin(-2.0 * xs) + xs, rtol=1e-15)
    with jax.enable_x64(False):
        x32 = jax.numpy.array(xs)  # float32: converted to float64 first
    value, _ = g.compile(backend="jax")(x32, -2.0)
    np.testing.assert_allclose(value, np.sin(-2.0 * xs) + xs, rtol=1e-6)
    assert value.dtype == np.float64
    n2, point = two_layer_net(n=6, d=3)
    with jax.enable_x64(True):
        args = {s.name: jax.numpy.asarray(v) for s, v in point.items()}
    value, (g1, _) = n2.compile(backend="jax")(**args)
    np.testing.assert_allclose(g1, n2.solve(point).gradient["W1"], rtol=1e-12)


def _matrix_graph():
    n, d = sp.symbols("n d", integer=True, positive=True)
    g = adjoint.Graph()
    B, Z = g.input("B", shape=(n, d)), g.constant("Z", shape=(n, d))
    W = g.input("W", shape=(d, d))
    H = g.define("H", (B * W).applyfunc(sp.tanh))
    g.define("f", frobenius2(H - Z) + 3 * sp.Trace(B.T * Z) + sum_entries(H))
    return g


@settings(max_examples=4)
@given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_matrix_graphs_with_symbolic_shapes(n, d, seed):
    g = _matrix_graph()
    rng = np.random.default_rng(seed)
    B, Z, W = rng.normal(size=(n, d)), rng.normal(size=(n, d)), rng.normal(size=(d, d))
    value, (gB, gW) = g.compile(backend="jax")(B, W, Z)
    expected, (eB, eW) = g.compile()(B, W, Z)
    assert value == pytest.approx(expected, rel=1e-13)
    np.testing.assert_allclose(gB, eB, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(gW, eW, rtol=1e-11, atol=1e-13)

    def loss(B, W):  # by hand, as the unreduced traces
        H = np.tanh(B @ W)
        return np.trace((H - Z).T @ (H - Z)) + 3 * np.trace(B.T @ Z) + np.sum(H)

    assert value == pytest.approx(loss(B, W), rel=1e-12)
    vB, vW, h = rng.normal(size=B.shape), rng.normal(size=W.shape), 1e-6
    fd = (loss(B + h * vB, W + h * vW) - loss(B - h * vB, W - h * vW)) / (2 * h)
    assert np.sum(gB * vB) + np.sum(gW * vW) == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_special_functions_custom_operations_and_kinks():
    x, y = sp.symbols("x y", real=True)
    softplus = adjoint.elementary(
        "softplus_jax_test",
        numeric=lambda t: np.logaddexp(0.0, t),
        partials=[lambda t: 1 / (1 + sp.exp(-t))],
    )
    expr = sp.erf(x) * sp.polygamma(1, 2 + y**2) + softplus(x * y) + sp.Abs(y) * sp.besselj(0, x)
    g = adjoint.Graph.from_expr(expr)
    xs, ys = np.array([-1.3, 0.2, 0.7]), np.array([0.5, -0.4, 0.0])
    for kinks in ("convention", "nan"):
        value, gradient = g.compile(backend="jax", kinks=kinks)(xs, ys)
        expected, expected_gradient = g.compile(kinks=kinks)(xs, ys)
        np.testing.assert_allclose(value, expected, rtol=1e-13)
        for lam, want in zip(gradient, expected_gradient):
            np.testing.assert_allclose(lam, want, rtol=1e-12, equal_nan=True)
    assert np.isnan(gradient[1][2]) and np.isfinite(gradient[1][:2]).all()  # |y| at 0
    value, gradient = g.compile(backend="jax")(xs, ys)
    assert np.isfinite(gradient[1]).all()  # sign(0) = 0 by convention
    for k in range(2):
        sol = g.solve({x: float(xs[k]), y: float(ys[k])})
        assert value[k] == pytest.approx(sol.output)
        assert gradient[0][k] == pytest.approx(sol.gradient[x])


@pytest.mark.parametrize(
    "call, error, word",
    [
        (lambda f: f(1.5), adjoint.MissingValueError, "y"),
        (lambda f: f(1.5, y="abc"), adjoint.BadValueError, "y"),
        (lambda f: f(1.5, -2.0, 3.0), adjoint.BadValueError, "too many"),
        (lambda f: f(x=1.0, y=2.0, q=1.0), adjoint.AdjointError, "q"),
        (lambda f: f(1.0, x=2.0), adjoint.BadValueError, "twice"),
        (lambda f: f(np.ones(3), np.ones(2)), adjoint.ShapeError, "broadcast"),
        (lambda f: f(1.0, 1j), adjoint.BadValueError, "y"),
        (lambda f: f(None, 1.0), adjoint.BadValueError, "x"),
    ],
)
def test_calling_mistakes_get_the_same_errors_as_numpy(call, error, word):
    g, _ = lecture_dag()
    for backend in ("numpy", "jax"):
        with pytest.raises(error, match=word) as raised:
            call(g.compile(backend=backend))
        if backend == "numpy":
            message = str(raised.value)
        assert str(raised.value) == message


def test_matrix_shape_mistakes():
    g, point = two_layer_net(n=5, d=3)
    f = g.compile(backend="jax")
    args = {s.name: v for s, v in point.items()}
    with pytest.raises(adjoint.ShapeError, match="y"):
        f(**{**args, "y": np.ones((4, 1))})
    with pytest.raises(adjoint.BadValueError, match="X"):
        f(**{**args, "X": np.full((5, 3), np.nan)})


def test_without_jax_a_clear_error(monkeypatch):
    g, _ = lecture_dag()
    monkeypatch.setitem(sys.modules, "jax", None)  # import jax now raises ImportError
    with pytest.raises(adjoint.AdjointError, match=r"pip install 'adjoint\[jax\]'"):
        g.compile(backend="jax")
    assert "jax.numpy.sin" in g.source(backend="jax")  # printing needs no JAX
    monkeypatch.undo()
    assert g.compile(backend="jax")(1.5, -2.0)[0] == pytest.approx(np.sin(-3.0) + 1.5)


def test_unknown_backend():
    g, _ = lecture_dag()
    for call in (g.compile, g.source):
        with pytest.raises(adjoint.AdjointError, match=r"torch.*choose one of"):
            call(backend="torch")


def test_exported_source_runs_under_jax_jit():
    g, point = two_layer_net(n=8, d=3)
    src = g.source(backend="jax")
    assert "numpy." not in src.replace("jax.numpy.", "")
    scope = {"jax": jax}
    exec(src, scope)
    args = {s.name: v for s, v in point.items()}
    with jax.enable_x64(True):
        value, (g1, _) = jax.jit(scope["f_and_gradient"])(**args)
    sol = g.solve(point)
    assert float(value) == pytest.approx(sol.output, rel=1e-13)
    np.testing.assert_allclose(np.asarray(g1), sol.gradient["W1"], rtol=1e-11)


def test_the_command_line_prints_the_jax_program_and_knows_no_torch(capsys):
    from adjoint.cli import main

    assert main(["compile", "sin(x*y) + x**2", "--backend", "jax"]) == 0
    out = capsys.readouterr().out
    assert "jax.numpy.sin(" in out and "numpy." not in out.replace("jax.numpy.", "")
    with pytest.raises(SystemExit):
        main(["compile", "x*y", "--backend", "torch"])
    assert "invalid choice: 'torch'" in capsys.readouterr().err


def test_jax_arrays_are_checked_on_the_device_as_numpy_arrays_are_on_the_host():
    """The short way in for JAX (entries summed in the program, beside it) refuses a
    nan as the general checks do, and accepts finite entries whose sum overflows."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    g = adjoint.Graph()
    g.input("W", shape=(2, 3))
    g.constant("X", shape=(4, 2))
    g.define("f", "sum_entries(tanh.(X*W))")
    c = g.compile(backend="jax")
    rng = np.random.default_rng(0)
    W, X = rng.normal(size=(2, 3)), rng.normal(size=(4, 2))
    want = c(W=W, X=X)
    with jax.enable_x64(True):
        jW, jX = jnp.asarray(W), jnp.asarray(X)
    got = c(W=jW, X=jX)
    assert got[0] == pytest.approx(want[0], rel=1e-14)
    np.testing.assert_allclose(got[1][0], want[1][0], rtol=1e-14)
    bad = X.copy()
    bad[1, 1] = np.nan
    with pytest.raises(adjoint.AdjointError, match="not finite"):
        c(W=W, X=bad)
    with jax.enable_x64(True):
        jbad = jnp.asarray(bad)
    with pytest.raises(adjoint.AdjointError, match="not finite"):
        c(W=jW, X=jbad)
    inf = X.copy()
    inf[3, 0] = -np.inf
    for W_given in (W, jW):  # NumPy arrays alone (checked on the host), or mixed
        with pytest.raises(adjoint.AdjointError, match="not finite"):
            c(W=W_given, X=inf)
    huge = np.full((4, 2), 1e308)  # finite entries, a sum that overflows
    value, (grad,) = c(W=W, X=huge)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
