"""Kinks are facts about entries: the conventional one-sided value by default, every
kink listed per node and entry, and nan at the kinked entries only when asked.

Before, a relu at exactly 0 made the whole matrix gradient nan (nan times a zero row of
X is nan), so zero-initialised biases broke training.
"""

import numpy as np
import pytest
import sympy as sp

import adjoint
from adjoint.functions import relu, repeat_rows, sum_entries

x, y = sp.symbols("x y")


def _net():
    g = adjoint.Graph()
    X = g.constant("X", shape=(3, 2))
    W = g.input("W", shape=(2, 2))
    b = g.input("b", shape=(1, 2))
    P = g.define("P", X * W + repeat_rows(b, 3))
    H = g.define("H", relu(P))
    g.define("f", sum_entries(H.applyfunc(lambda t: t**2)) + sum_entries(H))
    return g


def _point():
    X = np.array([[0.0, 0.0], [1.0, 2.0], [-0.5, 1.5]])  # a row of X that is all zero
    W = np.array([[0.3, -0.2], [0.4, 0.15]])
    return {"X": X, "W": W, "b": np.zeros((1, 2))}  # a zero bias: P[0, :] = 0 exactly


def _reference(at, side):
    """The gradient with relu'(P) = [P > 0] (side 0) written out by hand."""
    X, W, b = at["X"], at["W"], at["b"]
    P = X @ W + b
    H = np.maximum(P, 0)
    dH = 2 * H + 1
    step = (P > 0) * 1.0 + side * (P == 0)
    dP = dH * step
    return X.T @ dP, dP.sum(axis=0, keepdims=True)


def test_a_relu_at_zero_takes_the_one_sided_value_and_leaves_the_rest_alone():
    g, at = _net(), _point()
    sol = g.solve(at)
    dW, db = _reference(at, 0.0)
    np.testing.assert_allclose(sol.gradient["W"], dW, rtol=1e-12)
    np.testing.assert_allclose(sol.gradient["b"], db, rtol=1e-12)
    assert np.all(np.isfinite(sol.gradient["W"]))


def test_compiled_programs_take_the_same_convention():
    g, at = _net(), _point()
    for backend in ("numpy", "jax"):
        _, (dW, db) = g.compile(backend=backend)(**at)
        ref_W, ref_b = _reference(at, 0.0)
        np.testing.assert_allclose(dW, ref_W, rtol=1e-12)
        np.testing.assert_allclose(db, ref_b, rtol=1e-12)


def test_every_kink_met_is_listed_per_node_and_entry():
    g, at = _net(), _point()
    sol = g.solve(at)
    assert len(sol.kinks) == 1
    (k,) = sol.kinks
    assert k.node.name == "H" and k.argument.name == "P"
    assert k.entries == ((0, 0), (0, 1))
    assert k.taken == "convention"
    text = repr(sol)
    assert "kink at entries (0, 0), (0, 1)" in text
    assert "kink" in str(g.explain(at))


def test_no_kink_is_listed_where_none_is_met():
    g = _net()
    at = {**_point(), "b": np.full((1, 2), 0.1)}
    assert g.solve(at).kinks == ()


def test_strict_mode_gives_nan_at_the_kinked_entries_only():
    g, at = _net(), _point()
    sol = g.solve(at, kinks="nan")
    lam_P = sol.adjoints["P"]
    assert np.all(np.isnan(lam_P[0])) and np.all(np.isfinite(lam_P[1:]))
    assert sol.kinks[0].taken == "nan"
    _, (_dW, db) = g.compile(kinks="nan")(**at)
    assert np.all(np.isnan(db))


@pytest.mark.parametrize(
    ("expr", "at", "expected"),
    [
        (sp.Abs(x), {x: 0.0}, 0.0),  # sign(0) = 0
        (sp.Max(x, y), {x: 1.0, y: 1.0}, 0.5),  # a tie splits, as JAX's maximum
        (relu(x), {x: 0.0}, 0.0),
        (sp.Max(0, 1 - x) ** 2, {x: 1.0}, 0.0),  # the derivative exists: 0
    ],
)
def test_scalar_kinks_take_the_conventional_value(expr, at, expected):
    g = adjoint.Graph.from_expr(expr)
    sol = g.solve(at)
    assert sol.gradient[x] == expected
    assert sol.kinks, "the kink is listed"
    _value, gradient = g.compile()(**{s.name: v for s, v in at.items()})
    assert gradient[0] == expected


def test_strict_mode_keeps_a_derivative_that_exists_at_a_kink():
    """max(0, 1 - x)**2 at 1: both one-sided derivatives are 0, so is f'(1). (Split
    into elementary nodes, the kink of max alone has two one-sided partials, 0 and 1:
    strict mode says nan there, in solving and compiled programs alike.)"""
    g = adjoint.Graph()
    g.define("f", sp.Max(0, 1 - g.input("x")) ** 2)
    assert g.solve({x: 1.0}, kinks="nan").gradient[x] == 0.0
    assert g.compile(kinks="nan")(x=1.0)[1][0] == 0.0
    split = adjoint.Graph.from_expr(sp.Max(0, 1 - x) ** 2)
    assert np.isnan(split.solve({x: 1.0}, kinks="nan").gradient[x])
    assert np.isnan(split.compile(kinks="nan")(x=1.0)[1][0])
    g = adjoint.Graph.from_expr(sp.Abs(x))
    assert np.isnan(g.solve({x: 0.0}, kinks="nan").gradient[x])
    assert np.isnan(g.compile(kinks="nan")(x=0.0)[1][0])


def test_a_bad_kinks_option_is_refused():
    g = adjoint.Graph.from_expr(sp.Abs(x))
    with pytest.raises(adjoint.AdjointError, match="kinks"):
        g.solve({x: 0.0}, kinks="strict")
    with pytest.raises(adjoint.AdjointError, match="kinks"):
        g.compile(kinks="one-sided")


def test_verify_does_not_call_a_convention_at_a_kink_a_failure():
    """Differences straddle the kink and see the average slope: that is no evidence
    against the convention, so the node is 'not checked', never FAIL."""
    g, at = _net(), _point()
    report = g.verify(at)
    assert "FAIL" not in repr(report), report
    assert any(c.method == "kink" for c in report.checks)
    assert "FAIL" not in str(g.explain(at))


def test_the_drawing_says_where_a_kink_was_met():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g, at = _net(), _point()
    ax = g.draw(g.solve(at))
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "kink at entries (0, 0), (0, 1)" in texts.replace("\n", " ")
    assert "kink" in g.to_dot(g.solve(at))
    plt.close(ax.figure)


def test_the_command_line_lists_kinks_in_json():
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "adjoint",
            "explain",
            "abs(x) + x",
            "--at",
            "x=0",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    kinks = json.loads(out.stdout)["result"]["kinks"]
    assert kinks == [{"node": "z1", "partial": "dz1/dx", "entries": [[]], "taken": "convention"}]
