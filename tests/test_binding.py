"""``CompiledFunction.bind``: values fixed once, checked once, copied; the others given
per call. Checked against the solver and central differences, and by counting the
arrays read to be checked."""

import numpy as np
import pytest

import adjoint
import adjoint.programs.codegen as codegen
from adjoint.examples import two_layer_net


def logistic(n=40, d=5, seed=0):
    g = adjoint.Graph()
    X, y = g.constant("X", shape=(n, d)), g.constant("y", shape=(n, 1))
    w = g.input("w", shape=(d, 1))
    g.define("z", "X*w")
    g.define("f", "sum_entries(softplus.(z) - y .* z) + sum_entries(w .* w)/2")
    rng = np.random.default_rng(seed)
    data = {
        "X": rng.normal(size=(n, d)),
        "y": (rng.uniform(size=(n, 1)) < 0.5).astype(float),
        "w": 0.3 * rng.normal(size=(d, 1)),
        "v_w": rng.normal(size=(d, 1)),
    }
    return g, (X, y, w), data


def by_hand(X, y, w, v):
    """The loss, its gradient X^T (s - y) + w and its HVP X^T (s (1 - s) X v) + v."""
    z = X @ w
    s = 1 / (1 + np.exp(-z))
    f = np.sum(np.logaddexp(0.0, z) - y * z) + np.sum(w * w) / 2
    return f, X.T @ (s - y) + w, X.T @ (s * (1 - s) * (X @ v)) + v


def test_a_bound_function_gives_the_hand_written_results_by_position_and_by_name():
    g, _, data = logistic()
    hvp = g.compile(hvp=True).bind(X=data["X"], y=data["y"])
    want = by_hand(data["X"], data["y"], data["w"], data["v_w"])
    for _ in range(2):  # the first call goes through the checks, the second the short way
        for value, (grad,), (hv,) in (
            hvp(data["w"], data["v_w"]),
            hvp(v_w=data["v_w"], w=data["w"]),
            hvp(data["w"], v_w=data["v_w"]),
        ):
            assert value == pytest.approx(want[0], rel=1e-13)
            np.testing.assert_allclose(grad, want[1], rtol=1e-12)
            np.testing.assert_allclose(hv, want[2], rtol=1e-12)
    assert repr(hvp) == "<compiled adjoint program of w, v_w (X, y bound)>"
    twice = g.compile(hvp=True).bind(X=data["X"]).bind(y=data["y"])
    assert twice(data["w"], data["v_w"])[0] == pytest.approx(want[0], rel=1e-13)


def test_bound_values_are_copied_and_checked_once(monkeypatch):
    g, _, data = logistic()
    X = data["X"].copy()
    value = g.compile().bind(X=X, y=data["y"])
    first = value(data["w"])
    X[:] = 0.0  # the user's array changes; the bound copy does not
    again = value(data["w"])
    assert again[0] == first[0] and np.array_equal(again[1][0], first[1][0])
    assert again[0] == pytest.approx(by_hand(data["X"], data["y"], data["w"], data["w"])[0])
    read = []
    vdot = codegen._vdot
    monkeypatch.setattr(codegen, "_vdot", lambda a, b: read.append(a.shape) or vdot(a, b))
    value(data["w"])
    assert read == [data["w"].shape]  # w alone: X and y were checked when bound
    unbound = g.compile()
    unbound(data["w"], data["X"], data["y"])
    read.clear()
    unbound(data["w"], data["X"], data["y"])
    assert sorted(read) == sorted([data["w"].shape, data["X"].shape, data["y"].shape])


@pytest.mark.parametrize(
    "bad, error, words",
    [
        ({"X": np.full((40, 5), np.nan)}, adjoint.BadValueError, "X.*not finite"),
        ({"X": np.ones((40, 4))}, adjoint.ShapeError, "X"),
        ({"y": np.ones(40)}, adjoint.ShapeError, "y.*reshape"),
        ({"Z": np.ones((40, 5))}, adjoint.MissingValueError, "Z is not an input or constant"),
    ],
)
def test_bad_values_are_refused_when_bound(bad, error, words):
    g, _, _ = logistic()
    f = g.compile()
    with pytest.raises(error, match=words):
        f.bind(**bad)


def test_calls_of_a_bound_function_are_checked_as_the_function_checks_them():
    g, _, data = logistic()
    f = g.compile(hvp=True).bind(X=data["X"], y=data["y"])
    w, v = data["w"], data["v_w"]
    f(w, v)  # shapes known: the short way from here on
    nan = w.copy()
    nan[2, 0] = np.nan
    calls = [
        (lambda: f(nan, v), adjoint.BadValueError, "w.*not finite"),
        (lambda: f(w, np.inf * v), adjoint.BadValueError, "v_w.*not finite"),
        (lambda: f(w, v, X=data["X"]), adjoint.BadValueError, "X is bound already"),
        (lambda: f(w, v, v), adjoint.BadValueError, "too many values.*X, y bound"),
        (lambda: f(w, w=w), adjoint.BadValueError, "w is given twice"),
        (lambda: f(w), adjoint.MissingValueError, "no value is given for v_w"),
        (lambda: f(w, v.T), adjoint.ShapeError, "v_w"),
        (lambda: f(w, v, q=v), adjoint.MissingValueError, "q is not an input"),
    ]
    for call, error, words in calls:
        with pytest.raises(error, match=words):
            call()
    with pytest.raises(adjoint.BadValueError, match="X is bound already"):
        f.bind(X=data["X"])


def test_sizes_bound_with_the_data_hold_for_every_call():
    """The two-layer net's n and d come from the bound X; a weight of another d is
    refused, and the function used with other data meanwhile does not change that."""
    g, point = two_layer_net(n=6, d=3, seed=0)
    args = {s.name: v for s, v in point.items()}
    f = g.compile()
    net = f.bind(X=args["X"], y=args["y"])
    want = g.solve(point)
    for _ in range(2):
        value, (g1, _g2) = net(args["W1"], args["W2"])
        assert value == pytest.approx(want.output, rel=1e-12)
        np.testing.assert_allclose(g1, want.gradient[g.lookup("W1")], rtol=1e-12)
    _g9, point9 = two_layer_net(n=9, d=4, seed=1)  # the function learns other sizes
    args9 = {s.name: v for s, v in point9.items()}
    f(**args9)
    with pytest.raises(adjoint.ShapeError):
        net(args9["W1"], args9["W2"])  # d = 4 against the bound X's 3 columns
    assert net(args["W1"], args["W2"])[0] == pytest.approx(want.output, rel=1e-12)


def test_a_bound_hvp_takes_stacked_directions_and_agrees_with_differences():
    g, _, data = logistic()
    f = g.compile(hvp=True).bind(X=data["X"], y=data["y"], w=data["w"])
    rng = np.random.default_rng(3)
    V = rng.normal(size=(4, *data["w"].shape))
    _, _, (stacked,) = f(V)
    gradient = g.compile().bind(X=data["X"], y=data["y"])
    h = 1e-6
    for k in range(4):
        up = gradient(data["w"] + h * V[k])[1][0]
        down = gradient(data["w"] - h * V[k])[1][0]
        np.testing.assert_allclose(stacked[k], (up - down) / (2 * h), rtol=1e-6, atol=1e-8)
        _, _, (one,) = f(V[k])
        np.testing.assert_allclose(stacked[k], one, rtol=1e-12)


def test_binding_on_the_jax_backend(monkeypatch):
    """JAX: the bound data goes to the device once; a call checks and sends only what
    it is given."""
    pytest.importorskip("jax")
    g, _, data = logistic()
    f = g.compile(hvp=True, backend="jax").bind(X=data["X"], y=data["y"])
    want = by_hand(data["X"], data["y"], data["w"], data["v_w"])
    read = []
    vdot = codegen._vdot
    monkeypatch.setattr(codegen, "_vdot", lambda a, b: read.append(a.shape) or vdot(a, b))
    for _ in range(2):
        read.clear()
        value, (grad,), (hv,) = f(data["w"], data["v_w"])
        assert value == pytest.approx(want[0], rel=1e-13)
        np.testing.assert_allclose(grad, want[1], rtol=1e-12)
        np.testing.assert_allclose(hv, want[2], rtol=1e-12)
    assert read == [data["w"].shape, data["v_w"].shape]  # X and y: checked when bound
    flagged = []  # nor summed on the device, call after call
    general = f.function._run_flagged
    monkeypatch.setattr(f.function, "_run_flagged", lambda v: flagged.append(1) or general(v))
    f(data["w"], data["v_w"])
    assert flagged == []
    with pytest.raises(adjoint.BadValueError, match=r"w.*not finite"):
        f(data["w"] * np.nan, data["v_w"])
    with pytest.raises(adjoint.BadValueError, match=r"v_w.*not finite"):
        f(data["w"], data["v_w"] * np.inf)
