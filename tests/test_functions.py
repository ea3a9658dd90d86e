"""Every elementary function, differentiated as a real function of real nodes."""

import math

import pytest
import sympy as sp
from reference import central_difference, evaluate, relative_error

import adjoint

x, y = sp.symbols("x y", real=True)

# (f, a point where it is smooth)
SMOOTH = [
    (sp.sin(x), 0.7),
    (sp.cos(x), 0.7),
    (sp.tan(x), 0.7),
    (sp.cot(x), 0.7),
    (sp.sec(x), 0.7),
    (sp.csc(x), 0.7),
    (sp.asin(x), 0.3),
    (sp.acos(x), 0.3),
    (sp.atan(x), 0.3),
    (sp.acot(x), 0.3),
    (sp.asec(x), 1.7),
    (sp.acsc(x), 1.7),
    (sp.sinh(x), 0.7),
    (sp.cosh(x), 0.7),
    (sp.tanh(x), 0.7),
    (sp.coth(x), 0.7),
    (sp.sech(x), 0.7),
    (sp.csch(x), 0.7),
    (sp.asinh(x), 0.7),
    (sp.acosh(x), 1.7),
    (sp.atanh(x), 0.3),
    (sp.acoth(x), 1.7),
    (sp.asech(x), 0.3),
    (sp.acsch(x), 0.7),
    (sp.exp(x), 0.7),
    (sp.log(x), 0.7),
    (sp.sqrt(x), 0.7),
    (sp.cbrt(x), 0.7),
    (x**-3, 0.7),
    (x ** sp.Rational(3, 2), 0.7),
    (x**x, 0.7),
    (2**x, 0.7),
    (sp.erf(x), 0.7),
    (sp.erfc(x), 0.7),
    (sp.gamma(x), 0.7),
    (sp.loggamma(x), 0.7),
    (sp.LambertW(x), 0.7),
    (sp.besselj(1, x), 0.7),
    (sp.Abs(x), -0.7),
    (sp.sign(x), 0.7),
    (sp.Heaviside(x), -0.7),
    (sp.Max(x, 0), 0.7),
    (sp.Min(x, 0), 0.7),
    (sp.Piecewise((x**2, x > 0), (sp.sin(x), True)), -0.7),
]


@pytest.mark.parametrize("f, at", SMOOTH, ids=[str(f) for f, _ in SMOOTH])
def test_derivative_of_each_function_matches_sympy_and_differences(f, at):
    g = adjoint.Graph.from_expr(f, inputs=[x])
    sol = g.solve({x: at})
    assert relative_error(sol.output, evaluate(f, {x: at})) < 1e-12
    assert relative_error(sol.gradient[x], evaluate(sp.diff(f, x), {x: at})) < 1e-9
    fn = sp.lambdify([x], f, "mpmath")
    fd = central_difference(lambda v: float(fn(v[0])), __import__("numpy").array([at]))[0]
    assert relative_error(sol.gradient[x], fd) < 1e-6


@pytest.mark.parametrize(
    "f", [x**y, sp.atan2(y, x), sp.Max(x, y, 1), sp.Min(x * y, x), sp.Abs(x - y) * x]
)
def test_functions_of_two_nodes(f):
    g = adjoint.Graph.from_expr(f, inputs=[x, y])
    point = {x: 1.3, y: 0.4}
    sol = g.solve(point)
    for s in (x, y):
        assert relative_error(sol.gradient[s], evaluate(sp.diff(f, s), point)) < 1e-9


@pytest.mark.parametrize(
    "f, kink",
    [
        (sp.Abs(x), 0.0),
        (sp.Max(x, 1), 1.0),
        (sp.Min(x, 2 * x), 0.0),
        (sp.Heaviside(x), 0.0),
        (sp.sign(x), 0.0),
        (sp.Abs(x) * x**2 + sp.Max(x, 0.5), 0.5),
    ],
)
def test_where_the_derivative_does_not_exist_the_convention_is_said_or_nan_asked(f, kink):
    g = adjoint.Graph.from_expr(f, inputs=[x])
    at_kink = g.solve({x: kink})
    assert math.isfinite(at_kink.gradient[x]) and at_kink.kinks  # taken, and listed
    assert math.isnan(g.solve({x: kink}, kinks="nan").gradient[x])
    away = g.solve({x: kink + 0.25})
    assert math.isfinite(away.gradient[x]) and not away.kinks


def test_a_sign_that_is_part_of_f_is_not_mistaken_for_a_kink():
    # d/dx (x sign(y)) = sign(y), which is 0 at y = 0: a real value, not a kink.
    g = adjoint.Graph.from_expr(x * sp.sign(y), inputs=[x, y])
    assert g.solve({x: 2.0, y: 0.0}).gradient[x] == 0.0


def test_symbolic_exponent_and_rational_powers():
    a = sp.Symbol("a", real=True)
    g = adjoint.Graph.from_expr(x**a, inputs=[x, a])
    sym = g.solve().gradient
    assert sp.simplify(sym[x] - a * x ** (a - 1)) == 0
    assert sp.simplify(sym[a] - x**a * sp.log(x)) == 0


def test_outside_the_domain_gives_nan_not_a_complex_number():
    g = adjoint.Graph.from_expr(sp.log(x) + sp.sqrt(x), inputs=[x])
    sol = g.solve({x: -1.0})
    assert math.isnan(sol.output) and math.isnan(sol.gradient[x])


def test_undefined_function_solves_symbolically_and_errs_numerically():
    f = sp.Function("f")
    g = adjoint.Graph.from_expr(f(x**2), inputs=[x])
    grad = g.solve().gradient[x]
    assert grad.has(sp.Derivative) or grad.has(sp.Subs)
    with pytest.raises(adjoint.AdjointError, match="numerically"):
        g.solve({x: 1.0})


# -- the vocabulary of adjoint.functions ---------------------------------------------

import numpy as np  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from adjoint import functions as fn  # noqa: E402

NP = {
    "sigmoid": (lambda v: 1 / (1 + np.exp(-v)), lambda v: np.exp(-v) / (1 + np.exp(-v)) ** 2),
    "relu": (lambda v: np.maximum(v, 0), lambda v: (v > 0) * 1.0),
    "softplus": (lambda v: np.log1p(np.exp(v)), lambda v: 1 / (1 + np.exp(-v))),
    "tanh": (np.tanh, lambda v: 1 / np.cosh(v) ** 2),
    "exp": (np.exp, np.exp),
    "log": (np.log, lambda v: 1 / v),
    "abs": (np.abs, np.sign),
}


@pytest.mark.parametrize("name", sorted(NP))
def test_the_vocabulary_on_a_scalar_matches_numpy(name):
    f, df = NP[name]
    g = adjoint.Graph()
    t = g.input("t")
    g.define("z", getattr(fn, name)(t))
    for at in (0.7, 1.9):
        sol = g.solve({t: at})
        assert relative_error(sol.output, f(at)) < 1e-13
        assert relative_error(sol.gradient[t], df(at)) < 1e-12
        _value, (grad,) = g.compile()(t=at)
        assert relative_error(grad, df(at)) < 1e-12


@pytest.mark.parametrize("name", sorted(NP))
def test_the_vocabulary_entry_by_entry_on_a_matrix(name):
    _f, df = NP[name]
    g = adjoint.Graph()
    M = g.input("M", shape=(2, 3))
    H = g.define("H", getattr(fn, name)(M))
    g.define("f", adjoint.sum_entries(H))
    M0 = np.array([[0.5, 1.25, 2.0], [0.25, 1.5, 3.0]])
    sol = g.solve({M: M0})
    assert sol.gradient[M].shape == M0.shape
    np.testing.assert_allclose(sol.gradient[M], df(M0), rtol=1e-12)
    _, (compiled,) = g.compile()(M=M0)
    np.testing.assert_allclose(compiled, df(M0), rtol=1e-12)


def test_names_and_named_derivatives_not_lambdas():
    g = adjoint.Graph()
    H = g.input("H", shape=(3, 2))
    S = g.define("S", fn.sigmoid(H))
    g.define("f", adjoint.sum_entries(S))
    text = str(g.stationarity())
    assert "sigmoid.(H)" in text and "sigmoid_prime.(H)" in text
    assert "->" not in text and "Lambda(" not in text
    tex = adjoint.core.display.latex(g.stationarity().gradient[0].rhs)
    assert r"\sigma'_{\circ}" in tex
    t = sp.Symbol("t", real=True)
    assert sp.diff(fn.sigmoid(t), t) == fn.sigmoid_prime(t)
    assert sp.diff(fn.softplus(t), t) == fn.sigmoid(t)


def test_relu_takes_0_at_its_kink_nan_when_asked_and_is_exact_elsewhere():
    g = adjoint.Graph()
    t = g.input("t")
    g.define("z", fn.relu(t) * 3)
    assert g.solve({t: 0.0}).gradient[t] == 0.0  # relu'(0) = 0, as JAX and PyTorch
    assert math.isnan(g.solve({t: 0.0}, kinks="nan").gradient[t])
    assert g.solve({t: -1.0}).gradient[t] == 0.0 and g.solve({t: 2.0}).gradient[t] == 3.0


def test_sigmoid_and_softplus_do_not_overflow_in_compiled_code():
    g = adjoint.Graph()
    M = g.input("M", shape=(1, 4))
    g.define("f", adjoint.sum_entries(fn.sigmoid(M)) + adjoint.sum_entries(fn.softplus(M)))
    M0 = np.array([[-1000.0, -40.0, 40.0, 1000.0]])
    value, (grad,) = g.compile()(M=M0)  # filterwarnings = error: no overflow warning either
    # sigma(-40) + sigma(40) = 1; softplus(40) = 40 + softplus(-40)
    assert value == pytest.approx(2 + 40 + 1000 + 2 * np.log1p(np.exp(-40.0)), rel=1e-15)
    assert grad[0, 1] == pytest.approx(1 / (1 + np.exp(40.0)) + 1 / (1 + np.exp(40.0)))


def _softmax(Z):
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def _fd(f, W, h=1e-6):
    G = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        E = np.zeros_like(W)
        E[idx] = h
        G[idx] = (f(W + E) - f(W - E)) / (2 * h)
    return G


def _mlp_graph():
    n, d, h, k = sp.symbols("n d h k", integer=True, positive=True)
    g = adjoint.Graph()
    X, Y = g.constant("X", shape=(n, d)), g.constant("Y", shape=(n, k))
    W1, b1 = g.input("W1", shape=(d, h)), g.input("b1", shape=(1, h))
    W2, b2 = g.input("W2", shape=(h, k)), g.input("b2", shape=(1, k))
    A = g.define("A", fn.tanh(X * W1 + fn.repeat_rows(b1, n)))
    Z = g.define("Z", A * W2 + fn.repeat_rows(b2, n))
    g.define("f", fn.cross_entropy(Y, Z))
    return g


def _mlp_by_hand(X, Y, W1, b1, W2, b2):
    """Hand-written backprop of the MLP with biases and softmax cross-entropy."""
    A = np.tanh(X @ W1 + b1)
    Z = A @ W2 + b2
    P = _softmax(Z)
    loss = -np.sum(Y * np.log(P))
    dZ = P * Y.sum(axis=1, keepdims=True) - Y
    dA = dZ @ W2.T
    dH = dA * (1 - A**2)
    return loss, {
        "W1": X.T @ dH,
        "b1": dH.sum(0, keepdims=True),
        "W2": A.T @ dZ,
        "b2": dZ.sum(0, keepdims=True),
    }


@settings(max_examples=15, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(2, 4),
    st.integers(0, 2**16),
)
def test_mlp_with_biases_against_hand_backprop_and_differences(n, d, h, k, seed):
    rng = np.random.default_rng(seed)
    g = _mlp_graph()
    values = {
        "X": rng.normal(size=(n, d)),
        "Y": np.eye(k)[rng.integers(0, k, n)],
        "W1": rng.normal(size=(d, h)),
        "b1": rng.normal(size=(1, h)),
        "W2": rng.normal(size=(h, k)),
        "b2": rng.normal(size=(1, k)),
    }
    sol = g.solve(values)
    loss, hand = _mlp_by_hand(**values)
    assert sol.output == pytest.approx(loss, rel=1e-12)
    value, compiled = g.compile()(**values)
    assert value == pytest.approx(loss, rel=1e-12)
    for name, got in zip([s.name for s in g.inputs], compiled):
        assert got.shape == values[name].shape == sol.gradient[name].shape
        np.testing.assert_allclose(sol.gradient[name], hand[name], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got, hand[name], rtol=1e-10, atol=1e-12)
        fd = _fd(lambda w, name=name: _mlp_by_hand(**{**values, name: w})[0], values[name])
        assert np.max(np.abs(got - fd)) <= 1e-6 * max(1.0, np.max(np.abs(fd)))


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 8), st.integers(1, 4), st.integers(0, 2**16))
def test_logistic_regression_against_hand_backprop_and_differences(n, d, seed):
    rng = np.random.default_rng(seed)
    m, p = sp.symbols("m p", integer=True, positive=True)
    g = adjoint.Graph()
    X, y = g.constant("X", shape=(m, p)), g.constant("y", shape=(m, 1))
    w, c = g.input("w", shape=(p, 1)), g.input("c")
    z = g.define("z", X * w + c * sp.OneMatrix(m, 1))
    # -log sigma(z) for y = 1 and -log(1 - sigma(z)) = softplus(z) - z... together:
    g.define("f", adjoint.sum_entries(fn.softplus(z)) - sp.Trace(y.T * z))
    values = {"X": rng.normal(size=(n, d)), "y": 1.0 * rng.integers(0, 2, (n, 1))}
    values |= {"w": rng.normal(size=(d, 1)), "c": float(rng.normal())}

    def loss(w, c):
        s = 1 / (1 + np.exp(-(values["X"] @ w + c)))
        yv = values["y"]
        return -np.sum(yv * np.log(s) + (1 - yv) * np.log(1 - s))

    sol = g.solve(values)
    assert sol.output == pytest.approx(loss(values["w"], values["c"]), rel=1e-10)
    residual = 1 / (1 + np.exp(-(values["X"] @ values["w"] + values["c"]))) - values["y"]
    np.testing.assert_allclose(sol.gradient["w"], values["X"].T @ residual, rtol=1e-10, atol=1e-13)
    assert sol.gradient["c"] == pytest.approx(residual.sum(), rel=1e-10, abs=1e-13)
    fd = _fd(lambda v: loss(v, values["c"]), values["w"])
    np.testing.assert_allclose(sol.gradient["w"], fd, rtol=1e-6, atol=1e-7)


def test_compiled_logsumexp_and_softmax_are_stable_at_logits_of_1000():
    n, k = sp.symbols("n k", integer=True, positive=True)
    g = adjoint.Graph()
    Y, Z = g.constant("Y", shape=(n, k)), g.input("Z", shape=(n, k))
    g.define("f", fn.cross_entropy(Y, Z))
    Z0 = np.array([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 999.0]])
    Y0 = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    value, (grad,) = g.compile()(Y=Y0, Z=Z0)
    lse2 = 1000 + np.log(2 + np.exp(-1.0))
    assert value == pytest.approx(1000.0 + lse2 - 1000.0, rel=1e-14)
    np.testing.assert_allclose(grad, _softmax(Z0) - Y0, rtol=1e-12, atol=1e-300)
    assert np.all(np.isfinite(grad))


HELPERS = [
    (
        "repeat_rows",
        lambda M, n, d: fn.repeat_rows(M, n),
        (1, 3),
        lambda v: np.broadcast_to(v, (4, 3)),
    ),
    (
        "repeat_columns",
        lambda M, n, d: fn.repeat_columns(M, d),
        (4, 1),
        lambda v: np.broadcast_to(v, (4, 3)),
    ),
    ("row_sums", lambda M, n, d: fn.row_sums(M), (4, 3), lambda v: v.sum(1, keepdims=True)),
    ("column_sums", lambda M, n, d: fn.column_sums(M), (4, 3), lambda v: v.sum(0, keepdims=True)),
    ("row_means", lambda M, n, d: fn.row_means(M), (4, 3), lambda v: v.mean(1, keepdims=True)),
    (
        "column_means",
        lambda M, n, d: fn.column_means(M),
        (4, 3),
        lambda v: v.mean(0, keepdims=True),
    ),
    (
        "logsumexp rows",
        lambda M, n, d: fn.logsumexp(M, 1),
        (4, 3),
        lambda v: np.log(np.exp(v).sum(1, keepdims=True)),
    ),
    (
        "logsumexp columns",
        lambda M, n, d: fn.logsumexp(M, 0),
        (4, 3),
        lambda v: np.log(np.exp(v).sum(0, keepdims=True)),
    ),
    (
        "softmax rows",
        lambda M, n, d: fn.softmax(M, 1),
        (4, 3),
        lambda v: np.exp(v) / np.exp(v).sum(1, keepdims=True),
    ),
    (
        "softmax columns",
        lambda M, n, d: fn.softmax(M, 0),
        (4, 3),
        lambda v: np.exp(v) / np.exp(v).sum(0, keepdims=True),
    ),
    ("divide", lambda M, n, d: fn.divide(M, fn.exp(M)), (4, 3), lambda v: v / np.exp(v)),
    ("power", lambda M, n, d: fn.power(M, 3), (4, 3), lambda v: v**3),
    ("inverse", lambda M, n, d: fn.inverse(M), (3, 3), np.linalg.inv),
    ("transpose", lambda M, n, d: M.T, (4, 3), lambda v: v.T),
]


@pytest.mark.parametrize("name, build, shape, reference", HELPERS, ids=[h[0] for h in HELPERS])
def test_every_helper_gradient_has_its_input_shape_and_matches_differences(
    name, build, shape, reference
):
    # f = <C, helper(M)> with a fixed random C: the gradient is the helper's adjoint applied to C.
    n, d = sp.symbols("n d", integer=True, positive=True)
    g = adjoint.Graph()
    sym_shape = tuple({4: n, 3: d, 1: 1}[s] for s in shape)
    M = g.input("M", shape=sym_shape)
    expr = build(M, n, d)
    C = g.constant("C", shape=expr.shape)  # declares the sizes a helper repeats to
    H = g.define("H", expr)
    g.define("f", sp.Trace(C.T * H))
    rng = np.random.default_rng(7)
    M0 = rng.uniform(0.5, 1.5, size=shape) + (3 * np.eye(3) if shape == (3, 3) else 0)
    C0 = rng.normal(size=reference(M0).shape)
    sol = g.solve({M: M0, C: C0})
    assert sol.output == pytest.approx(np.sum(C0 * reference(M0)), rel=1e-12)
    assert sol.gradient[M].shape == M0.shape
    fd = _fd(lambda v: np.sum(C0 * reference(v)), M0)
    np.testing.assert_allclose(sol.gradient[M], fd, rtol=1e-6, atol=1e-8)
    _, (compiled,) = g.compile()(M=M0, C=C0)
    np.testing.assert_allclose(compiled, sol.gradient[M], rtol=1e-12, atol=1e-14)


def test_an_entry_and_a_one_by_one_matrix_as_a_scalar():
    n = sp.Symbol("n", integer=True, positive=True)
    g = adjoint.Graph()
    w, x = g.input("w", shape=(n, 1)), g.constant("x", shape=(n, 1))
    M = g.input("M", shape=(n, n))
    g.define("f", fn.scalar(w.T * M * w) + fn.scalar(w.T * x) ** 2 + fn.entry(M, 0, 1))
    rng = np.random.default_rng(3)
    w0, x0, M0 = rng.normal(size=(3, 1)), rng.normal(size=(3, 1)), rng.normal(size=(3, 3))
    sol = g.solve({w: w0, x: x0, M: M0})
    E01 = np.zeros((3, 3))
    E01[0, 1] = 1
    np.testing.assert_allclose(sol.gradient[w], (M0 + M0.T) @ w0 + 2 * (w0.T @ x0) * x0, rtol=1e-12)
    np.testing.assert_allclose(sol.gradient[M], w0 @ w0.T + E01, rtol=1e-12)
    _, (_gw, gM) = g.compile()(w=w0, x=x0, M=M0)
    np.testing.assert_allclose(gM, w0 @ w0.T + E01, rtol=1e-12)
    with pytest.raises(adjoint.ShapeError, match="1 x 1"):
        fn.scalar(M)


def test_logdet_compiles_to_slogdet_and_inverse_products_to_solve():
    n = sp.Symbol("n", integer=True, positive=True)
    g = adjoint.Graph()
    X, b = g.input("X", shape=(n, n)), g.constant("b", shape=(n, 1))
    g.define("f", fn.logdet(X) + sp.Trace(b.T * fn.inverse(X) * b))
    source = g.source()
    assert "slogdet" in source and "linalg.solve" in source
    rng = np.random.default_rng(5)
    X0, b0 = rng.normal(size=(4, 4)) + 4 * np.eye(4), rng.normal(size=(4, 1))
    inv = np.linalg.inv(X0)
    value, (grad,) = g.compile()(X=X0, b=b0)
    assert value == pytest.approx(np.log(np.linalg.det(X0)) + (b0.T @ inv @ b0).item(), rel=1e-12)
    np.testing.assert_allclose(grad, inv.T - inv.T @ b0 @ b0.T @ inv.T, rtol=1e-10)
    big = 1e3 * np.eye(200)  # det overflows a float; log det does not
    g2 = adjoint.Graph()
    Y = g2.input("Y", shape=(n, n))
    g2.define("f", fn.logdet(Y))
    value, (grad,) = g2.compile()(Y=big)
    assert value == pytest.approx(200 * np.log(1e3), rel=1e-12)
    np.testing.assert_allclose(grad, np.eye(200) / 1e3)
    assert math.isnan(g2.compile()(Y=np.diag([-1.0, 1.0]))[0])  # det < 0: no real log


def test_the_vocabularys_latex_renders_in_katex(katex):
    import rendering

    g = _mlp_graph()
    n, d = sp.symbols("n d", integer=True, positive=True)
    E = sp.MatrixSymbol("E", n, d)
    pieces = [
        rendering.from_repr_latex(g.stationarity()._repr_latex_()),
        rendering.from_repr_latex(g._repr_latex_()),
    ]
    for e in [
        fn.softmax(E, 0),
        fn.logsumexp(E, 1),
        fn.repeat_columns(fn.row_sums(E), d),
        fn.column_sums(fn.relu(E)) + fn.column_means(fn.softplus(E)),
        fn.sigmoid(E),
        fn.entry(E.T * E, 0, 1) ** 2,
        fn.logdet(E.T * E) + sp.Trace(sp.Identity(d) * fn.inverse(E.T * E)),
        sp.OneMatrix(n, 1).T * E,
        fn.UnitMatrix(n, d, 0, 1),
        sp.diff(fn.sigmoid(sp.Symbol("x")) ** 2, sp.Symbol("x")),
    ]:
        pieces.append((adjoint.core.display.latex(e), True))
    errors = katex.errors(pieces)
    bad = [f"{src}: {err}" for (src, _), err in zip(pieces, errors) if err]
    assert not bad, "\n".join(bad)
    assert all(src.isascii() for src, _ in pieces)


def test_sympys_entry_of_a_product_is_refused_with_the_fix():
    n = sp.Symbol("n", integer=True, positive=True)
    g = adjoint.Graph()
    w, x = g.input("w", shape=(n, 1)), g.constant("x", shape=(n, 1))
    with pytest.raises(adjoint.ShapeError, match="scalar"):
        g.define("f", (w.T * x)[0, 0] ** 2)
    assert len(g) == 2
    g.define("f", fn.scalar(w.T * x) ** 2)
    sol = g.solve({w: np.array([[1.0], [2.0]]), x: np.array([[3.0], [-1.0]])})
    np.testing.assert_allclose(sol.gradient[w], 2 * 1.0 * np.array([[3.0], [-1.0]]))


def test_compiled_sigmoid_is_as_precise_as_scipys_expit_at_both_ends():
    """The compiled logistic function, against the exact value (mpmath, 40 digits):
    within 2 ulps wherever SciPy's expit is, which is wherever e^-x is finite; 0
    beyond, as expit; 1 where it rounds to 1; scalars and matrices alike, and on JAX
    (whose XLA flushes subnormal results to 0)."""
    import mpmath
    import scipy.special

    x = sp.Symbol("x", real=True)
    edges = np.array([0.0, 1e-300, 20.0, 36.0, 37.0, 700.0, 709.7, 709.8, 745.0, 800.0])
    points = np.concatenate([edges, -edges, np.linspace(-760, 760, 3041)])
    with mpmath.workdps(40):
        exact = np.array([float(1 / (1 + mpmath.exp(-mpmath.mpf(p)))) for p in points])
    ulps = 2 * np.spacing(exact)
    expit = scipy.special.expit(points)
    inside = points > -np.log(np.finfo(float).max)  # e^-x finite
    assert np.all(np.abs(expit - exact)[inside] <= ulps[inside])  # the reference itself
    assert np.all(expit[~inside] == 0)
    scalar = adjoint.Graph.from_expr(adjoint.sigmoid(x))
    g = adjoint.Graph()
    M = g.input("M", shape=(1, len(points)))
    g.define("f", adjoint.sum_entries(fn.sigmoid(M)))
    normal = inside & (exact >= np.finfo(float).tiny)
    for backend in ("numpy", "jax"):
        value = scalar.compile(backend=backend, gradient=False)(points)
        (grad,) = g.compile(backend=backend)(M=points[None, :])[1]  # d f / d M = sigma'
        kept = inside if backend == "numpy" else normal
        assert np.all(np.abs(value - exact)[kept] <= ulps[kept])
        assert np.all(value[~inside] == 0) and np.all(value[exact == 1] == 1)
        # sigma' = sigma (1 - sigma): 2 ulps of sigma, up to 2.2e-16, is the error
        slope = exact * (1 - exact)
        assert np.all(np.abs(grad[0] - slope)[kept] <= ulps[kept] + 2.3e-16)
        assert np.all(grad[0][~inside | (exact == 1)] == 0)


def test_compiled_softplus_is_numpys_logaddexp_to_an_ulp_at_both_ends():
    # NumPy prints softplus as max(x, 0) + log1p(e^-|x|), logaddexp's own formula in
    # array passes: it must agree with logaddexp(0, x) where that underflows, overflows
    # or is exact
    x = sp.Symbol("x", real=True)
    g = adjoint.Graph.from_expr(adjoint.softplus(x))
    points = np.array([0.0, -0.0, 5e-324, 1e-300, -1e-300, 1e-8, -30.0, 30.0, 700.0, 800.0])
    points = np.concatenate([points, -points, np.linspace(-40, 40, 801)])
    for backend in ("numpy", "jax"):
        value, (grad,) = g.compile(backend=backend)(points)
        np.testing.assert_allclose(value, np.logaddexp(0.0, points), rtol=4e-16, atol=0)
        with np.errstate(over="ignore"):  # the logistic function, by cases: no cancellation
            e = np.exp(-np.abs(points))
            logistic = np.where(points >= 0, 1 / (1 + e), e / (1 + e))
        np.testing.assert_allclose(grad, logistic, rtol=1e-15, atol=0)
    assert g.compile()(1e308)[0] == 1e308  # 1e308 + log1p(0), not an overflow
