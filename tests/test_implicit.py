"""Implicit constraints: nodes defined by residuals, alone, in blocks and as matrices.

Every gradient is checked against a route that does not go through the adjoint solve
of the implicit node: sympy's ``idiff``, closed forms (the inverse function, Kepler's
equation, ``A^{-1} b``), central differences of a hand-written solver, or the same
graph with the node written explicitly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import dags, points

import adjoint
from adjoint.system.implicit import ConvergenceError


def cubic():
    g = adjoint.Graph()
    x = g.input("x")
    y = g.implicit("y", "y**3 + y - x")
    return g, x, y


def test_the_cubic_gives_the_inverse_function_derivative():
    g, x, y = cubic()
    sol = g.solve({x: 2.0})
    assert sol[y] == pytest.approx(1.0, abs=1e-14)  # 1 + 1 - 2 = 0
    assert sol.gradient[x] == pytest.approx(1 / (3 * 1.0**2 + 1), rel=1e-14)
    assert sol.blocks[0].nodes == (y,) and sol.blocks[0].residual < 1e-14


@pytest.mark.parametrize(
    "residual",
    ["y**3 + y - x", "y - x*cos(y)/2 - 1", "exp(y) + y - x**2", "y**5 + x*y + x - 3"],
)
def test_the_symbolic_gradient_equals_sympy_idiff(residual):
    g = adjoint.Graph()
    x = g.input("x")
    y = g.implicit("y", residual)
    got = g.solve().gradient[x]
    expected = sp.idiff(sp.sympify(residual, locals={"x": x, "y": y}), y, x)
    assert sp.simplify(got - expected) == 0


def test_kepler_matches_its_closed_form_derivatives():
    g = adjoint.Graph()
    M, e = g.input("M"), g.input("e")
    E = g.implicit("E", "E - e*sin(E) - M", guess="M")
    g.define("f", E)
    sol = g.solve({M: 1.2, e: 0.6})
    E0 = sol[E]
    assert E0 - 0.6 * math.sin(E0) == pytest.approx(1.2, abs=1e-14)
    assert sol.gradient[M] == pytest.approx(1 / (1 - 0.6 * math.cos(E0)), rel=1e-13)
    assert sol.gradient[e] == pytest.approx(math.sin(E0) / (1 - 0.6 * math.cos(E0)), rel=1e-13)


def test_the_multiplier_is_the_price_of_the_residual():
    """lambda_y = d z_n / d eps when the residual is loosened to r_y = eps."""
    g = adjoint.Graph()
    x = g.input("x")
    y = g.implicit("y", "y**3 + y - x")
    g.define("f", sp.sin(y) * x)
    at = {x: 0.7}
    sol = g.solve(at)
    eps = 1e-6
    env = {x: 0.7}
    up = adjoint.system.solve.forward_sweep(g, env, {y: eps})[g.output]
    down = adjoint.system.solve.forward_sweep(g, env, {y: -eps})[g.output]
    assert (up - down) / (2 * eps) == pytest.approx(sol.adjoints[y], rel=1e-7)


def _block_graph():
    g = adjoint.Graph()
    x = g.input("x")
    u, v = g.implicit(["u", "v"], ["u - cos(v) - x", "v - sin(u)/2"])
    g.define("f", u**2 + v)
    return g, x, u, v


def _block_by_hand(x):
    """The block solved by fixed-point iteration (a contraction here), not Newton."""
    u, v = 1.0, 0.0
    for _ in range(200):
        u, v = math.cos(v) + x, math.sin(u) / 2
    return u**2 + v


def test_a_block_gradient_equals_differences_of_a_hand_written_solver():
    g, x, _u, _v = _block_graph()
    sol = g.solve({x: 0.3})
    h = 1e-5
    fd = (_block_by_hand(0.3 + h) - _block_by_hand(0.3 - h)) / (2 * h)
    assert sol.output == pytest.approx(_block_by_hand(0.3), rel=1e-13)
    assert sol.gradient[x] == pytest.approx(fd, rel=1e-8)


def test_a_block_symbolic_gradient_agrees_with_the_numeric_one():
    g, x, u, v = _block_graph()
    sol = g.solve({x: 0.3})
    symbolic = g.solve().gradient[x]
    value = float(symbolic.subs({u: sol[u], v: sol[v]}))
    assert value == pytest.approx(sol.gradient[x], rel=1e-12)


def test_the_conditions_are_the_derivatives_of_the_lagrangian():
    """Each condition of an implicit block is dL/dz_j (rhs - lhs) or dL/dlambda_i."""
    g, x, _u, _v = _block_graph()
    L = g.lagrangian()
    kkt = g.stationarity()
    block = next(c for c in kkt.backward_conditions if getattr(c, "implicit", False))
    for z, eq in zip(block.nodes, block.equations):
        assert sp.simplify(eq.rhs - eq.lhs - sp.diff(L, z)) == 0
    forward = next(c for c in kkt.forward_conditions if getattr(c, "implicit", False))
    for lam, eq in zip(forward.wrt, forward.equations):
        assert sp.simplify(-eq.lhs - sp.diff(L, lam)) == 0
    gradient = kkt.conditions("gradient")[0]
    assert sp.simplify(gradient.rhs - sp.diff(L, x)) == 0


def test_stationarity_prints_the_residual_form():
    g, _x, _u, _v = _block_graph()
    printed = str(g.stationarity())
    assert "u - x - cos(v) = 0   [Newton's method]" in printed
    assert "lambda_u - lambda_v*cos(u)/2 = 2*lambda_f*u   [solve with (dr/dz)^T]" in printed
    assert "lambda_x = lambda_u" in printed


def test_implicit_latex_renders(katex):
    g, *_ = _block_graph()
    src, display = __import__("rendering").from_repr_latex(g.stationarity()._repr_latex_())
    assert katex.errors([(src, display)]) == [None]


# -- matrix nodes ------------------------------------------------------------


def _linear_system(n=5, seed=0):
    g = adjoint.Graph()
    A, b = g.input("A", shape=(n, n)), g.input("b", shape=(n, 1))
    s = sp.MatrixSymbol("s", n, 1)
    s = g.implicit(s, A * s - b)
    g.define("f", sp.Trace(s.T * s))
    rng = np.random.default_rng(seed)
    at = {A: rng.normal(size=(n, n)) + n * np.eye(n), b: rng.normal(size=(n, 1))}
    return g, A, b, s, at


def test_a_linear_solve_node_has_the_closed_form_gradients():
    g, A, b, s, at = _linear_system()
    sol = g.solve(at)
    s0 = np.linalg.solve(at[A], at[b])
    lam = np.linalg.solve(at[A].T, 2 * s0)  # d(s^T s)/db = A^{-T} 2 s
    np.testing.assert_allclose(sol[s], s0, rtol=1e-12)
    np.testing.assert_allclose(sol.gradient[b], lam, rtol=1e-12)
    np.testing.assert_allclose(sol.gradient[A], -lam @ s0.T, rtol=1e-12)
    assert sol.blocks[0].method == "linear solve"


def test_a_linear_solve_node_factorises_once_for_both_sweeps(monkeypatch):
    import adjoint.operations.runtime as runtime

    calls = []
    original = runtime.lu_factor

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(runtime, "lu_factor", counting)
    g, _A, _b, _s, at = _linear_system(n=7)
    sol = g.solve(at)
    assert calls == [(7, 7)]
    assert sol.blocks[0].factorizations == 1


def test_a_fixed_point_gradient_equals_differences_of_iterating_it():
    w = 4
    rng = np.random.default_rng(1)
    Wv, xv = 0.4 * rng.normal(size=(w, w)), rng.normal(size=(w, 1))
    g = adjoint.Graph()
    W, x = g.input("W", shape=(w, w)), g.input("x", shape=(w, 1))
    z = g.implicit("z", "z - tanh.(W*z + x)", shape=(w, 1))
    g.define("f", sp.Trace(z.T * z))
    sol = g.solve({W: Wv, x: xv})

    def iterate(Wm, xm):
        zz = np.zeros((w, 1))
        for _ in range(300):
            zz = np.tanh(Wm @ zz + xm)
        return float((zz.T @ zz)[0, 0])

    h = 1e-6
    for k in range(w):
        e = np.zeros((w, 1))
        e[k] = h
        fd = (iterate(Wv, xv + e) - iterate(Wv, xv - e)) / (2 * h)
        assert sol.gradient[x][k, 0] == pytest.approx(fd, rel=1e-6, abs=1e-9)
    E = np.zeros((w, w))
    E[1, 2] = h
    fd = (iterate(Wv + E, xv) - iterate(Wv - E, xv)) / (2 * h)
    assert sol.gradient[W][1, 2] == pytest.approx(fd, rel=1e-6, abs=1e-9)


# -- from equations ------------------------------------------------------------


def test_a_cycle_among_equations_becomes_a_block_with_implicit_true():
    x, u, v = sp.symbols("x u v", real=True)
    eqs = [sp.Eq(u, sp.cos(v) + x), sp.Eq(v, sp.sin(u) / 2), "f = u**2 + v"]
    with pytest.raises(adjoint.CycleError, match="implicit=True"):
        adjoint.Graph.from_equations(eqs, inputs=[x])
    g = adjoint.Graph.from_equations(eqs, inputs=[x], implicit=True)
    assert g.blocks == ((g.lookup("u"), g.lookup("v")),)
    reference, *_ = _block_graph()
    assert g.solve({x: 0.3}).gradient[x] == pytest.approx(
        reference.solve({x: 0.3}).gradient[x], rel=1e-13
    )


def test_a_self_reading_equation_becomes_an_implicit_node():
    g = adjoint.Graph.from_equations(["y = cos(y) + x", "f = y**2"], inputs=["x"], implicit=True)
    sol = g.solve({"x": 0.0})
    y = sol["y"]  # the Dottie number
    assert y == pytest.approx(0.7390851332151607, rel=1e-14)
    assert sol.gradient["x"] == pytest.approx(2 * y / (1 + math.sin(y)), rel=1e-13)


# -- refusals -------------------------------------------------------------------


def test_newton_that_does_not_converge_is_an_error_naming_the_block():
    g = adjoint.Graph()
    x = g.input("x")
    g.implicit("y", "y**2 + 1 + x**2", guess=1.0)  # no real root
    with pytest.raises(ConvergenceError, match=r"block \(y\).*residual"):
        g.solve({x: 0.5})


def test_a_singular_jacobian_at_the_solution_is_an_error():
    g = adjoint.Graph()
    x = g.input("x")
    g.implicit("y", "y**2 - x")
    with pytest.raises(ConvergenceError, match="singular at the solution"):
        g.solve({x: 0.0})


def test_a_backward_solve_too_ill_conditioned_to_trust_is_an_error():
    g = adjoint.Graph()
    x = g.input("x")
    g.implicit(["u", "v"], ["u + v - x", "u + (1 + 1e-13)*v - 1"])  # cond(dr/dz) ~ 4e13
    g.define("f", "u**2 + v")
    with pytest.raises(ConvergenceError, match=r"backward solve of the implicit block \(u, v\)"):
        g.solve({x: 0.5})


def test_a_nan_residual_is_an_error():
    g = adjoint.Graph()
    x = g.input("x")
    g.implicit("y", "log(y) - x", guess=-1.0)
    with pytest.raises(ConvergenceError, match="not a number"):
        g.solve({x: 0.5})


def test_a_residual_that_does_not_read_its_node_is_refused_and_changes_nothing():
    g = adjoint.Graph()
    g.input("x")
    before = len(g)
    with pytest.raises(adjoint.AdjointError, match="reads no unknown"):
        g.implicit("y", "x**2 - 1")
    with pytest.raises(adjoint.AdjointError, match="no residual reads v"):
        g.implicit(["u", "v"], ["u - x", "u + x"])
    with pytest.raises(adjoint.ShapeError, match="residual has the shape"):
        g.implicit("s", "x", shape=(2, 1))
    assert len(g) == before and "y" not in g and "u" not in g


@pytest.mark.parametrize(
    "call",
    [
        lambda g, at: g.compile(hvp=True),
        lambda g, at: g.trace(at),
        lambda g, at: g.adjoint_system(at),
    ],
)
def test_what_does_not_handle_implicit_nodes_yet_says_so(call):
    g, x, y = cubic()
    g.define("f", y**2)
    with pytest.raises(adjoint.AdjointError, match=r"does not handle implicit nodes yet \(y\)"):
        call(g, {x: 2.0})


def test_the_checkers_run_through_implicit_nodes_and_catch_a_wrong_one():
    g, x, y = cubic()
    g.define("f", sp.exp(y) * x)
    at = {x: 2.0}
    assert adjoint.check_gradient(g, at).ok
    assert adjoint.taylor_test(g, at).ok


def test_explain_derives_the_block_from_the_residuals():
    g, x, _u, _v = _block_graph()
    text = str(g.explain({x: 0.3}))
    assert "subject to u - x - cos(v) = 0" in text
    assert "lambda_u - lambda_v*cos(u)/2 = 2*lambda_f*u" in text
    assert "solved together with (dr/dz)^T" in text
    assert "lambda_j = d z_n / d eps_j, the price of constraint j" in text
    assert "FAIL" not in text


# -- grading ----------------------------------------------------------------------

_DET = "(1 + sin(v)*cos(u)/2)"


@pytest.mark.parametrize(
    ("u", "v", "status", "mistake"),
    [
        # (dr/dz)^T lambda = rhs, solved by hand (Cramer's rule)
        (
            f"(2*u*lambda_f + cos(u)/2*lambda_f)/{_DET}",
            f"lambda_f*(1 - 2*u*sin(v))/{_DET}",
            "correct",
            None,
        ),
        # dr/dz lambda = rhs: the transpose forgotten
        (
            f"(2*u*lambda_f - sin(v)*lambda_f)/{_DET}",
            f"lambda_f*(1 + u*cos(u))/{_DET}",
            "wrong",
            "transpose",
        ),
        # the right side alone: the coefficient forgotten
        ("2*u*lambda_f", "lambda_f", "wrong", "coefficient"),
    ],
)
def test_a_students_block_adjoint_is_graded_per_node(u, v, status, mistake):
    g, *_ = _block_graph()
    grading = adjoint.check_adjoints(g, {"f": "1", "u": u, "v": v, "x": "lambda_u"}, seed=3)
    by_node = {str(grade.node): grade for grade in grading.grades}
    assert by_node["x"].status == "correct" and by_node["f"].status == "correct"
    for node in ("u", "v"):
        assert by_node[node].status == status
        assert by_node[node].mistake == mistake


def test_an_inverse_written_where_a_solve_belongs_is_right():
    g, *_ = _linear_system(n=3)
    answers = {"f": "1", "s": "A.T**-1*(2*lambda_f*s)", "A": "-Lambda_s*s.T", "b": "Lambda_s"}
    grading = adjoint.check_adjoints(g, answers, seed=0)
    assert grading.ok, grading
    wrong = adjoint.check_adjoints(g, {**answers, "s": "A**-1*(2*lambda_f*s)"}, seed=0)
    grade = next(x for x in wrong.grades if str(x.node) == "s")
    assert grade.status == "wrong" and grade.mistake == "transpose"


# -- generated code ----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_the_compiled_block_agrees_with_the_solver_over_arrays_of_points(backend):
    g = adjoint.Graph()
    x, a = g.input("x"), g.input("a")
    g.implicit(["u", "v"], ["u - a*cos(v) - x", "v - sin(u*a)/2"], guess=[0.5, "x"])
    g.define("f", "u**2*v + exp(v)")
    f = g.compile(backend=backend)
    xs = np.linspace(-1.0, 1.0, 7)
    value, (dx, da) = f(x=xs, a=0.7)
    for k, xv in enumerate(xs):
        sol = g.solve({x: xv, a: 0.7})
        assert value[k] == pytest.approx(sol.output, rel=1e-12)
        assert dx[k] == pytest.approx(sol.gradient[x], rel=1e-10)
        assert da[k] == pytest.approx(sol.gradient[a], rel=1e-10)
    source = g.source(backend=backend)
    assert "_newton(" in source and "_solve_transposed(" in source


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_a_compiled_point_without_a_root_is_nan_and_the_others_are_numbers(backend):
    g = adjoint.Graph()
    g.input("x")
    g.implicit("y", "y**2 - x", guess=1.0)  # no real root for x < 0
    g.define("f", "y")
    value, (dx,) = g.compile(backend=backend)(x=np.array([4.0, -1.0, 9.0]))
    assert value[0] == pytest.approx(2.0) and value[2] == pytest.approx(3.0)
    assert np.isnan(value[1]) and np.isnan(dx[1])
    assert dx[0] == pytest.approx(0.25) and dx[2] == pytest.approx(1 / 6)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("kind", ["fixed point", "linear solve"])
def test_compiled_matrix_nodes_agree_with_the_closed_forms(kind, backend):
    n = 4
    rng = np.random.default_rng(7)
    if kind == "linear solve":
        g, A, b, _s, at = _linear_system(n=n, seed=3)
        value, (dA, db) = g.compile(backend=backend)(A=at[A], b=at[b])
        s0 = np.linalg.solve(at[A], at[b])
        lam = np.linalg.solve(at[A].T, 2 * s0)
        assert value == pytest.approx(float(np.sum(s0**2)), rel=1e-12)
        np.testing.assert_allclose(db, lam, rtol=1e-12)
        np.testing.assert_allclose(dA, -lam @ s0.T, rtol=1e-12)
        return
    g = adjoint.Graph()
    W, x = g.input("W", shape=(n, n)), g.input("x", shape=(n, 1))
    g.implicit("z", "z - tanh.(W*z + x)", shape=(n, 1))
    g.define("f", "Trace(z.T*z)")
    at = {W: 0.3 * rng.normal(size=(n, n)), x: rng.normal(size=(n, 1))}
    _value, (dW, dx) = g.compile(backend=backend)(W=at[W], x=at[x])
    sol = g.solve(at)
    np.testing.assert_allclose(dx, sol.gradient[x], rtol=1e-10)
    np.testing.assert_allclose(dW, sol.gradient[W], rtol=1e-10)


# -- second order ----------------------------------------------------------------


def test_the_hessian_of_the_cubic_is_its_closed_form():
    """y^3 + y = x: y' = 1/(3y^2 + 1), y'' = -6 y y'^3."""
    g, x, y = cubic()
    H = g.hessian({x: 2.0})
    assert H.shape == (1, 1)
    assert H[0, 0] == pytest.approx(-6 * 1.0 / 4**3, rel=1e-13)
    t = g.tangent({x: 2.0}, {x: 1.0})
    assert t.tangents[y] == pytest.approx(0.25, rel=1e-14)


def _gradient_differences(g, at, v, h=1e-5):
    up = g.solve({k: at[k] + h * v[k] for k in at}).gradient
    down = g.solve({k: at[k] - h * v[k] for k in at}).gradient
    return {k: (np.asarray(up[k]) - np.asarray(down[k])) / (2 * h) for k in at}


def test_hvp_through_a_block_equals_differences_of_the_gradient():
    g = adjoint.Graph()
    x, a = g.input("x"), g.input("a")
    u, v = g.implicit(["u", "v"], ["u - a*cos(v) - x", "v - sin(u*a)/2"])
    g.define("f", u**2 * v + sp.exp(v))
    at, direction = {x: 0.3, a: 0.7}, {x: 0.4, a: -1.1}
    got = g.hvp(at, direction)
    fd = _gradient_differences(g, at, direction)
    for k in at:
        assert got[k] == pytest.approx(fd[k], rel=1e-7, abs=1e-9)
    H = g.hessian(at)
    np.testing.assert_allclose(H, H.T, rtol=1e-12)


@pytest.mark.parametrize("kind", ["fixed point", "linear solve"])
def test_hvp_through_a_matrix_node_equals_differences_of_the_gradient(kind):
    n = 3
    rng = np.random.default_rng(4)
    g = adjoint.Graph()
    if kind == "fixed point":
        W, b = g.input("W", shape=(n, n)), g.input("b", shape=(n, 1))
        z = g.implicit("z", "z - tanh.(W*z + b)", shape=(n, 1))
        at = {W: 0.4 * rng.normal(size=(n, n)), b: rng.normal(size=(n, 1))}
    else:
        W, b = g.input("A", shape=(n, n)), g.input("b", shape=(n, 1))
        z = sp.MatrixSymbol("s", n, 1)
        z = g.implicit(z, W * z - b)
        at = {W: rng.normal(size=(n, n)) + 3 * np.eye(n), b: rng.normal(size=(n, 1))}
    g.define("f", sp.Trace(z.T * z))
    direction = {W: rng.normal(size=(n, n)), b: rng.normal(size=(n, 1))}
    got = g.hvp(at, direction)
    fd = _gradient_differences(g, at, direction)
    for k in at:
        np.testing.assert_allclose(got[k], fd[k], rtol=1e-6, atol=1e-8)


def test_verify_checks_every_multiplier_as_the_price_of_its_constraint(monkeypatch):
    g, x, u, v = _block_graph()
    report = g.verify({x: 0.3})
    assert report.ok and {c.method for c in report.checks} == {"price"}
    assert "price of its constraint" in repr(report)
    import adjoint.system.implicit as implicit

    solve = implicit.ImplicitAdjoint.solve

    def off(self, *args, **kwargs):  # a backward solve 1e-4 off
        return tuple(value * (1 + 1e-4) for value in solve(self, *args, **kwargs))

    monkeypatch.setattr(implicit.ImplicitAdjoint, "solve", off)
    g, x, u, v = _block_graph()
    report = g.verify({x: 0.3})
    assert not report.ok
    assert {c.node for c in report.failed} == {x, u, v}


# -- random graphs ----------------------------------------------------------------


@settings(max_examples=25)
@given(data=st.data())
def test_random_graphs_with_implicit_nodes_equal_their_explicit_twins(data):
    """Replace some nodes z = e by residuals k (z - e) + (z - e)**3 (one real root, z = e):
    the values and the gradient are those of the explicit graph."""
    g = data.draw(dags(max_inputs=3, max_nodes=6))
    at = data.draw(points(g))
    twin = adjoint.Graph()
    for x in g.inputs:
        twin.input(x)
    for z in g.defined:
        e = g.expr(z)
        if data.draw(st.booleans()):
            k = data.draw(st.sampled_from([sp.Rational(1, 2), 1, 3]))
            twin.implicit(z, k * (z - e) + (z - e) ** 3)
        else:
            twin.define(z, e)
    expected = g.solve(at)
    got = twin.solve(at)
    value, gradient = twin.compile()(**{x.name: at[x] for x in g.inputs})
    assert value == pytest.approx(expected.output, rel=1e-9, abs=1e-12)
    for x, dx in zip(g.inputs, gradient):
        assert dx == pytest.approx(expected.gradient[x], rel=1e-8, abs=1e-10)
    for z in g.nodes:
        assert got[z] == pytest.approx(expected[z], rel=1e-9, abs=1e-12)
    for x in g.inputs:
        assert got.gradient[x] == pytest.approx(expected.gradient[x], rel=1e-8, abs=1e-10)
    direction = {x: 1.0 - 0.5 * k for k, x in enumerate(g.inputs)}
    hv, expected_hv = twin.hvp(at, direction), g.hvp(at, direction)
    for x in g.inputs:
        assert hv[x] == pytest.approx(expected_hv[x], rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_a_node_named_like_the_programs_own_variables_changes_no_gradient(backend):
    """The generated Newton loop names its unit matrix itself: a node called ``unit``
    must stay the user's node (it was taken for the unit matrix)."""
    g = adjoint.Graph()
    unit, W = g.input("unit", shape=(2, 1)), g.input("W", shape=(2, 2))
    g.implicit("z", "z - tanh.(W*z + unit)", shape=(2, 1))
    g.define("f", "Trace(z.T*z)")
    at = {unit: np.array([[0.3], [-0.2]]), W: np.array([[0.3, 0.1], [-0.2, 0.4]])}
    _, (d_unit, d_W) = g.compile(backend=backend)(unit=at[unit], W=at[W])
    sol = g.solve(at)
    np.testing.assert_allclose(d_unit, sol.gradient[unit], rtol=1e-10)
    np.testing.assert_allclose(d_W, sol.gradient[W], rtol=1e-10)


def test_a_node_named_like_the_residuals_own_symbol_changes_no_gradient():
    """The residual's value had a symbol named residual_<node>: a node of that name was
    taken for it, and the gradient came out wrong (0.21 off)."""
    g = adjoint.Graph()
    r, W = g.input("residual_s", shape=(2, 1)), g.input("W", shape=(2, 2))
    g.implicit("s", "s - tanh.(W*s + residual_s)", shape=(2, 1))
    g.define("f", "Trace(s.T*s)")
    at = {r: np.array([[0.3], [-0.2]]), W: np.array([[0.3, 0.1], [-0.2, 0.4]])}
    assert adjoint.check_gradient(g, at).ok


def test_a_residual_read_by_many_nodes_is_not_evaluated_once_per_edge(monkeypatch):
    """Step 2 reads -lambda_y dr/dx_k for each of the 200 inputs: each partial, not the
    residual again for each (that was 200 evaluations of a 201-argument residual)."""
    from adjoint.operations.partials import Operation

    g = adjoint.Graph()
    xs = [g.input(f"x{k}") for k in range(200)]
    y = sp.Symbol("y", real=True)
    y = g.implicit("y", y**3 + y - sp.Add(*(x**2 for x in xs)))
    g.define("f", y * 2)
    at = {x: 0.05 for x in xs}
    calls = []
    original = Operation.value

    def counting(self, *args, **kwargs):
        calls.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Operation, "value", counting)
    sol = g.solve(at)
    assert len(calls) < 60  # Newton's residuals, not one per edge
    dy = 1 / (3 * sol[y] ** 2 + 1)
    assert sol.gradient[xs[7]] == pytest.approx(2 * dy * 2 * 0.05, rel=1e-12)


def test_a_subnormal_right_side_is_no_false_alarm():
    """dz/dy = -sin(y) at y = 5e-324 is subnormal: the backward solve's relative residual
    was measured on subnormal numbers, came out 1, and a right answer was refused."""
    g = adjoint.Graph()
    x = g.input("x")
    g.implicit("y", "3*(y - sin(x))")
    g.define("f", "cos(y)")
    twin = adjoint.Graph()
    x2 = twin.input("x")
    twin.define("y", "sin(x)")
    twin.define("f", "cos(y)")
    sol = g.solve({x: 5e-324})
    # equal to the rounding of subnormal numbers (-5e-324 / 3 rounds to -0)
    assert sol.gradient[x] == pytest.approx(twin.solve({x2: 5e-324}).gradient[x2], abs=1e-320)
    assert sol.blocks[0].backward_residual <= 1e-15


def test_the_hessian_through_an_explicit_reader_of_an_implicit_node_is_the_gradients_derivative():
    # the tangent of f sums its edge from the block node y: the index of edges must
    # find it among the block's contributions
    g = adjoint.Graph()
    x, c = g.input("x"), g.input("c")
    g.implicit("y", "y**3 + y - x")
    g.define("u", "sin(y)*x")  # read by f: its tangent enters f's second-order terms
    g.define("f", "u**2*c + y**2")
    point = np.array([1.3, 0.7])

    def gradient(p):
        s = g.solve({x: p[0], c: p[1]})
        return np.array([s.gradient[x], s.gradient[c]])

    h = 1e-5
    columns = [(gradient(point + h * e) - gradient(point - h * e)) / (2 * h) for e in np.eye(2)]
    np.testing.assert_allclose(
        g.hessian({x: 1.3, c: 0.7}), np.column_stack(columns), rtol=1e-8, atol=1e-9
    )
