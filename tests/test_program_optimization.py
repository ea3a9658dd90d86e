"""Whole-program sharing in generated programs (adjoint.programs.optimize) and the short way
in for arrays: the programs compute what they computed before, exactly, with fewer
passes over the data."""

from __future__ import annotations

import ast
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import matrix_graphs

import adjoint
from adjoint.programs.optimize import share


def _logistic(n=40, d=3):
    g = adjoint.Graph()
    g.constant("X", shape=(n, d)), g.constant("y", shape=(n, 1)), g.input("w", shape=(d, 1))
    g.define("p", "sigmoid.(X*w)")
    g.define(
        "f",
        f"-sum_entries(y .* log.(p) + (ones({n}, 1) - y) .* log.(ones({n}, 1) - p))"
        " + sum_entries(w .* w)/2",
    )
    rng = np.random.default_rng(3)
    X, w, v = rng.normal(size=(n, d)), rng.normal(size=(d, 1)), rng.normal(size=(d, 1))
    y = (rng.uniform(size=(n, 1)) < 0.5).astype(float)
    return g, X, y, w, v


def _calls(source: str) -> list[str]:
    return [ast.unparse(n) for n in ast.walk(ast.parse(source)) if isinstance(n, ast.BinOp)]


def test_logistic_regression_hvp_computes_each_part_once():
    g, _X, _y, _w, _v = _logistic()
    source = ast.unparse(ast.parse(g.compile(hvp=True).source))  # the code, no comments
    products = _calls(source)
    # X v (the tangent of X w) was printed in two conditions, and computed twice
    assert products.count("X @ v_w") == 1
    assert source.count("exp(-(X @ w))") == 1  # the sigmoid, once
    assert "ones(" not in source  # ones .* A is A; ones - y is 1 - y
    assert "lam_f" not in source  # lambda_f = 1 is a number, its tangent 0
    body = ast.parse(source).body[0].body
    assigned = [s.targets[0].id for s in body if isinstance(s, ast.Assign)]
    read = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
    returned = {n.id for n in ast.walk(body[-1]) if isinstance(n, ast.Name)}
    assert all(name in read or name in returned for name in assigned)  # no dead statement


def test_logistic_regression_hvp_is_the_closed_form():
    """Against the closed forms (Matrix Cookbook): grad = X^T (s - y) + w,
    H v = X^T (s (1 - s) .* X v) + v, on both backends."""
    g, X, y, w, v = _logistic()
    s = 1 / (1 + np.exp(-(X @ w)))
    f = -np.sum(y * np.log(s) + (1 - y) * np.log(1 - s)) + np.sum(w * w) / 2
    grad, hv = X.T @ (s - y) + w, X.T @ (s * (1 - s) * (X @ v)) + v
    value, (g_w,), (h_w,) = g.compile(hvp=True)(w=w, X=X, y=y, v_w=v)
    assert value == pytest.approx(f, rel=1e-13)
    np.testing.assert_allclose(g_w, grad, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(h_w, hv, rtol=1e-12, atol=1e-13)
    # positionally, in parameter order, through the general checks: the same numbers
    c = g.compile(hvp=True)
    again = c(w, X, y, v)
    np.testing.assert_array_equal(again[2][0], h_w)


def test_the_short_way_in_checks_what_the_long_way_checks():
    g, X, y, w, v = _logistic()
    c = g.compile(hvp=True)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(adjoint.AdjointError, match="not finite"):
        c(w=w, X=bad, y=y, v_w=v)
    with pytest.raises(adjoint.AdjointError, match="X"):
        c(w=w, X=X[:, :2], y=y, v_w=v)
    with pytest.raises(adjoint.AdjointError, match="no value"):
        c(w=w, X=X, y=y)
    huge = X.copy()
    huge[:2] = 1e308  # the sum overflows: the entries are finite, and accepted
    value = c(w=w, X=huge, y=y, v_w=v)[0]
    assert isinstance(value, float | np.floating)
    # another dtype takes the long way and gives the same numbers
    ints = np.rint(X * 10).astype(int)
    np.testing.assert_array_equal(
        c(w=w, X=ints, y=y, v_w=v)[1][0], c(w=w, X=ints.astype(float), y=y, v_w=v)[1][0]
    )


def test_a_value_that_is_not_finite_gives_nan_derivatives():
    g = adjoint.Graph()
    g.input("W", shape=(2, 2))
    g.define("f", "sum_entries(log.(W))")
    c = g.compile(hvp=True)
    value, (grad,), (hv,) = c(W=np.array([[1.0, -1.0], [2.0, 3.0]]), v_W=np.ones((2, 2)))
    assert math.isnan(value)
    assert np.isnan(grad).all() and np.isnan(hv).all()


# -- share, on programs written by hand ----------------------------------------------


def _run(lines, names, values):
    body = "\n".join(f"    {line}" for line in lines)
    scope = {"numpy": np}
    exec(f"def f({', '.join(names)}):\n{body}\n", scope)
    with np.errstate(all="ignore"):
        return scope["f"](*values)


def test_share_keeps_comments_and_frees_values():
    lines = [
        "# Step 1",
        "a = numpy.sin(x) * numpy.cos(x)  # a = sin(x) cos(x)",
        "b = numpy.sin(x) * numpy.cos(x) + y  # b",
        "c = (lambda _e: _e * _e)(a + b)",
        "dead = numpy.exp(x)",
        "# Step 2",
        "return (c, b)",
    ]
    out = share(lines, keep={"x", "y", "c", "b"})
    assert out[0] == "# Step 1"
    assert "# Step 2" in out and "# a = sin(x) cos(x)" in "\n".join(out)
    assert not any(line.startswith("dead") for line in out)
    assert sum("numpy.sin(x)" in line for line in out) == 1
    assert any(line.startswith("del ") and "a" in line for line in out)
    x, y = np.array([0.3, -2.0, np.nan]), np.array([1.0, np.inf, 2.0])
    for want, got in zip(_run(lines, ["x", "y"], [x, y]), _run(out, ["x", "y"], [x, y])):
        np.testing.assert_array_equal(got, want)


def test_share_leaves_what_it_cannot_read_safely():
    # a name assigned twice, a loop: printed as they were
    assert share(["a = x + 1", "a = a * 2", "return a"], keep={"x", "a"}) is None
    assert share(["for i in range(3):", "    x = x + i", "return x"], keep={"x"}) is None
    # a branch is evaluated in part: nothing hoisted out of it
    out = share(
        [
            "a = numpy.log(x) if x > 0 else 0.0",
            "b = numpy.log(x) if x > 0 else 1.0",
            "return (a, b)",
        ],
        keep={"x", "a", "b"},
    )
    assert out is not None and not any(line.startswith("_cse") for line in out)


def test_share_respects_a_lambda_that_shadows_a_name():
    lines = ["a = (lambda t: (lambda t: t * 2)(t + 1) + t)(x)", "return a"]
    out = share(lines, keep={"x", "a"})
    assert _run(out, ["x"], [3.0]) == _run(lines, ["x"], [3.0]) == 11.0


_LEAVES = st.sampled_from(["x", "y", "z", "1.0", "-1.0", "2", "0.5", "-0.0"])


def _expressions():
    return st.recursive(
        _LEAVES,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            inner.map(lambda e: f"(-{e})"),
            inner.map(lambda e: f"numpy.exp({e})"),
            inner.map(lambda e: f"(lambda _e: _e * _e - _e)({e})"),
        ),
        max_leaves=12,
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(_expressions(), min_size=1, max_size=5), st.integers(0, 2**32 - 1))
def test_share_computes_the_same_floats_bit_for_bit(exprs, seed):
    """The rewrites (numbers put for names, a + -b as a - b, the sign moved onto a
    leading number, lambdas applied, repeats shared) are exact in IEEE arithmetic:
    the same numbers, infinities and signed zeros, nan where there was nan."""
    lines = ["one = 1.0", "zero = 0.0", f"t0 = {exprs[0]} * one"]
    lines += [f"t{k} = {e} + t{k - 1} * zero" for k, e in enumerate(exprs) if k]
    names = [f"t{k}" for k in range(len(exprs))]
    lines.append(f"return ({', '.join(names)},)")
    out = share(lines, {"x", "y", "z", *names})
    assert out is not None
    rng = np.random.default_rng(seed)
    values = [
        np.concatenate(
            [rng.normal(size=6) * 10.0 ** rng.integers(-3, 4), [0.0, -0.0, np.inf, np.nan]]
        )
        for _ in range(3)
    ]
    try:
        want = _run(lines, ["x", "y", "z"], values)
    except ZeroDivisionError:  # 1.0 / (1.0 - 1.0) among the numbers: so must the other
        with pytest.raises(ZeroDivisionError):
            _run(out, ["x", "y", "z"], values)
        return
    for a, b in zip(want, _run(out, ["x", "y", "z"], values)):
        a, b = np.broadcast_to(a, np.shape(b)), np.broadcast_to(b, np.shape(a))
        np.testing.assert_array_equal(b, a)
        numbers = ~np.isnan(a)  # a nan's sign is not IEEE's to say
        np.testing.assert_array_equal(np.signbit(b)[numbers], np.signbit(a)[numbers])


def test_share_keeps_the_product_that_makes_a_float_of_a_boolean():
    """relu' prints as 1.0*(x > 0): without the 1.0 the gradient would be booleans."""
    lines = ["lam = 1.0", "d = lam * (1.0 * (x > 0))", "e = 1.0 * x", "return (d, e)"]
    out = share(lines, keep={"x", "d", "e"}, floats={"x"})
    d, _ = _run(out, ["x"], [np.array([-1.0, 2.0])])
    assert d.dtype == np.float64 and list(d) == [0.0, 1.0]
    assert "e = x" in out  # a float argument times 1.0 is itself


@settings(max_examples=25, deadline=None)
@given(matrix_graphs(), st.integers(0, 2**32 - 1))
def test_compiled_hvps_of_random_matrix_graphs_are_the_solvers(g, seed):
    """Whatever the optimiser and the printer did to a random matrix graph's program,
    its value, gradient and H v are those of the solver's sweeps (g.solve, g.hvp, which
    the checkers hold to differences), on NumPy and JAX."""
    rng = np.random.default_rng(seed)
    sizes = {"X": (4, 3), "W": (3, 3), "b": (1, 3)}
    at = {s: rng.normal(size=sizes[s.name]) * 0.5 for s in (*g.inputs, *g.constants)}
    v = {x: rng.normal(size=sizes[x.name]) for x in g.inputs}
    solution = g.solve(at)
    want = g.hvp(at, v)
    kw = {s.name: value for s, value in at.items()}
    kw.update({f"v_{x.name}": v[x] for x in g.inputs})
    backends = ["numpy"]
    try:
        import jax  # noqa: F401

        backends.append("jax")
    except ImportError:
        pass
    for backend in backends:
        value, grad, hv = g.compile(hvp=True, backend=backend)(**kw)
        assert value == pytest.approx(float(np.asarray(solution.output)), rel=1e-10, abs=1e-12)
        for x, gx, hx in zip(g.inputs, grad, hv):
            scale = 1 + np.max(np.abs(want[x]))
            np.testing.assert_allclose(gx, solution.gradient[x], rtol=1e-9, atol=1e-11 * scale)
            np.testing.assert_allclose(hx, want[x], rtol=1e-8, atol=1e-10 * scale)
