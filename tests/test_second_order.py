"""Second order from the same Lagrangian: tangents, Hessian-vector products, Hessians.

Every check goes through an independent route: sympy's diff and hessian of the
composed expression (tests/reference.py), or central differences of the gradient.
"""

import math
import time

import numpy as np
import pytest
import rendering
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import composed, evaluate
from strategies import dags, points
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
from sympy.matrices.expressions.matexpr import MatrixElement

import adjoint
from adjoint import functions as fn
from adjoint.examples import two_layer_net
from adjoint.operations.matrices import RULES, TANGENTS, tangent
from adjoint.operations.numeric import numeric_function, watch_kinks
from adjoint.operations.partials import operation
from adjoint.operations.primitives import undefined_at_zero


def _direction(g, draw_values):
    return dict(zip(g.inputs, draw_values))


def _sympy_hessian(g):
    return sp.hessian(composed(g)[g.output], g.inputs)


@given(data=st.data())
def test_tangent_is_the_derivative_of_the_composed_expression_along_v(data):
    g = data.draw(dags(max_inputs=3, max_nodes=8))
    at = data.draw(points(g))
    v = {x: data.draw(st.floats(-1, 1)) for x in g.inputs}
    t = g.tangent(at, v)
    env = composed(g)
    for z in g.defined:
        expected = sum(sp.diff(env[z], x) * v[x] for x in g.inputs)
        want = evaluate(sp.sympify(expected), at)
        assert t.tangents[z] == pytest.approx(want, rel=1e-8, abs=1e-9), z
    assert t.derivative == t.tangents[g.output]


@settings(max_examples=20)
@given(data=st.data())
def test_hvp_is_sympys_hessian_times_v_on_small_graphs(data):
    g = data.draw(dags(max_inputs=3, max_nodes=5))
    at = data.draw(points(g))
    v = {x: data.draw(st.floats(-1, 1)) for x in g.inputs}
    hv = g.hvp(at, v)
    H = _sympy_hessian(g)
    assert list(hv) == list(g.inputs)
    for r, x in enumerate(g.inputs):
        want = evaluate(sum(H[r, c] * v[y] for c, y in enumerate(g.inputs)), at)
        assert hv[x] == pytest.approx(want, rel=1e-7, abs=1e-8), x


@given(data=st.data())
def test_hvp_matches_differences_of_the_gradient(data):
    g = data.draw(dags(max_inputs=3, max_nodes=14))
    at = data.draw(points(g))
    report = adjoint.check_hvp(g, at, seed=data.draw(st.integers(0, 99)))
    assert report.ok, report


@settings(max_examples=10)
@given(g=dags(max_inputs=2, max_nodes=4))
def test_the_symbolic_hessian_is_sympys(g):
    got = g.hessian()
    want = _sympy_hessian(g)
    assert got.shape == want.shape
    # equal as functions: at random points to high precision (simplify may not decide)
    rng = np.random.default_rng(0)
    for _ in range(3):
        at = {x: float(rng.uniform(-1.5, 1.5)) for x in g.inputs}
        for i in range(got.rows):
            for j in range(got.cols):
                assert evaluate(got[i, j], at) == pytest.approx(
                    evaluate(want[i, j], at), rel=1e-9, abs=1e-10
                )


def test_the_symbolic_hessian_of_the_readme_example():
    g = adjoint.Graph()
    x, y = g.input("x"), g.input("y")
    z1 = g.define("z1", x * y)
    g.define("z2", sp.sin(z1) + x**2 * y)
    want = sp.hessian(sp.sin(x * y) + x**2 * y, (x, y))
    assert sp.simplify(g.hessian() - want) == sp.zeros(2, 2)


@settings(max_examples=15)
@given(data=st.data())
def test_the_numeric_hessian_is_sympys_and_symmetric(data):
    g = data.draw(dags(max_inputs=3, max_nodes=6))
    at = data.draw(points(g))
    H = g.hessian(at)
    want = _sympy_hessian(g)
    n = len(g.inputs)
    assert H.shape == (n, n)
    expected = np.array([[evaluate(want[i, j], at) for j in range(n)] for i in range(n)])
    np.testing.assert_allclose(H, expected, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(H, H.T, rtol=1e-9, atol=1e-12)


@given(data=st.data())
def test_second_order_taylor_remainders_shrink_like_h_cubed(data):
    g = data.draw(dags(max_inputs=3, max_nodes=10))
    at = data.draw(points(g, -1.0, 1.0))
    seed = data.draw(st.integers(0, 99))
    report = adjoint.taylor_test(g, at, order=2, steps=9, seed=seed)
    assert not report.wrong, report
    if not report.inconclusive:
        # h**3 and h**4 terms can cancel at large h; the rate is 3 once h**3 dominates
        assert report.ok or min(report.rates[-3:]) > 2.8, report


def test_a_taylor_test_with_no_rate_to_measure_is_inconclusive_not_wrong():
    """Found by Hypothesis's random profile: an expansion this close to exact (a
    remainder of 3e-12 at h = 0.1, the next ones at rounding level) leaves no rate to
    measure; that is inconclusive, not a wrong Hessian."""
    g = adjoint.Graph()
    x0 = g.input("x0")
    z1, z2 = g.define("z1", 3 * x0), g.define("z2", x0 * sp.sin(x0))
    z3, z4 = g.define("z3", z1 + z2), g.define("z4", x0 * z1 + z1)
    z5 = g.define("z5", sp.log(sp.exp(z2) + 1))
    z6, z7 = g.define("z6", sp.tanh(z5)), g.define("z7", z2 * z5 + z5)
    z9 = g.define("z9", sp.sin(x0) / (z7**2 + 1))
    g.define("f", z3 + z4 + z6 + z9)
    report = adjoint.taylor_test(g, {x0: -0.7372724689783374}, order=2, steps=9, seed=7)
    assert not report.ok and report.inconclusive and not report.wrong, report
    assert "inconclusive" in report.reason
    wrong = adjoint.TaylorTest((0.1, 0.05, 0.025), (1e-2, 2.5e-3, 6.25e-4), order=2)
    assert wrong.wrong and not wrong.inconclusive


def test_a_wrong_hessian_fails_the_second_order_taylor_test():
    """The check is stricter than the code: a remainder without the h**2 term (what a
    zero Hessian would give) shrinks at rate 2, which order=2 refuses."""
    report = adjoint.TaylorTest((0.1, 0.05, 0.025), (1e-2, 2.5e-3, 6.25e-4), order=2)
    assert not report.ok
    assert adjoint.TaylorTest((0.1, 0.05, 0.025), (1e-3, 1.25e-4, 1.5625e-5), order=2).ok


def test_the_conditions_are_assembled_from_local_partials():
    g = adjoint.Graph()
    x, y = g.input("x"), g.input("y")
    z1 = g.define("z1", x * y)
    z2 = g.define("z2", sp.sin(z1) + x)
    so = g.second_order()
    zd = {s.name: s for eq in so.tangent for s in eq.free_symbols}
    lam = {z: g.multiplier(z) for z in g.nodes}
    zdot_x, zdot_y, zdot_z1 = zd["zdot_x"], zd["zdot_y"], zd["zdot_z1"]
    assert [eq.lhs.name for eq in so.tangent] == ["zdot_z1", "zdot_z2"]
    assert sp.expand(so.tangent[0].rhs - (y * zdot_x + x * zdot_y)) == 0
    assert sp.expand(so.tangent[1].rhs - (sp.cos(z1) * zdot_z1 + zdot_x)) == 0
    assert [eq.lhs.name for eq in so.adjoint] == ["lambdadot_z2", "lambdadot_z1"]
    assert so.adjoint[0].rhs == 0  # lambda_z2 = 1 does not move
    ld = {s.name: s for eq in so.adjoint + so.hvp for s in eq.free_symbols}
    want = ld["lambdadot_z2"] * sp.cos(z1) - lam[z2] * sp.sin(z1) * zdot_z1
    assert sp.expand(so.adjoint[1].rhs - want) == 0
    assert [eq.lhs.name for eq in so.hvp] == ["lambdadot_x", "lambdadot_y"]
    hvp_x = ld["lambdadot_z1"] * y + lam[z1] * zdot_y + ld["lambdadot_z2"]
    assert sp.expand(so.hvp[0].rhs - hvp_x) == 0
    assert "tangent" in repr(so) and "lambdadot_x" in repr(so)


def test_second_partials_are_derived_once_per_kind_and_split_over_sums():
    a, b = sp.symbols("a b", real=True)
    op = operation(sp.sin(a) * b, [a, b])
    assert op.second_partial(0, 1) is op.second_partial(1, 0)
    p, q = sp.symbols("p q", real=True)
    assert operation(sp.sin(p) * q, [p, q]) is op
    xs = sp.symbols("x0:300", real=True)
    big = operation(sum(x**2 for x in xs), list(xs))
    assert big.second_partial(5, 5) == 2
    assert big.second_partial(5, 6) == 0


@pytest.mark.parametrize(
    ("expr", "kink"),
    [("abs(x)", 0.0), ("max(x, 0)", 0.0), ("relu(x)", 0.0), ("max(x, y)", 0.5)],
)
def test_the_second_derivative_at_a_kink_is_the_convention_or_nan_when_asked(expr, kink):
    g = adjoint.Graph.from_expr(expr)
    at = {x.name: (kink if x.name == "x" else 0.5) for x in g.inputs}
    v = {x: 1.0 for x in g.inputs}
    assert g.hvp(at, v)[g.inputs[0]] == 0.0  # as JAX gives it
    assert math.isnan(g.hvp(at, v, kinks="nan")[g.inputs[0]])
    away = {k: val + (0.3 if k == "x" else 0.0) for k, val in at.items()}
    assert g.hvp(away, v)[g.inputs[0]] == 0.0


def test_a_node_outside_its_domain_has_no_second_derivative():
    g = adjoint.Graph.from_expr("log(x) + y^2")
    hv = g.hvp({"x": -1.0, "y": 2.0}, {"x": 1.0, "y": 1.0})
    assert math.isnan(hv[g.inputs[0]])


def test_constants_do_not_move_along_the_direction():
    g = adjoint.Graph()
    x, c = g.input("x"), g.constant("c")
    g.define("z", c * x**3)
    assert g.hvp({x: 2.0, c: 5.0}, {x: 1.0})[x] == pytest.approx(6 * 5.0 * 2.0)
    assert g.hessian({x: 2.0, c: 5.0}) == pytest.approx(np.array([[60.0]]))
    with pytest.raises(adjoint.AdjointError, match="not an input"):
        g.hvp({x: 2.0, c: 5.0}, {x: 1.0, c: 1.0})


@pytest.mark.parametrize(
    ("direction", "message"),
    [
        ({"x": 1.0}, "no value for y"),
        ({"x": 1.0, "y": 1.0, "w": 2.0}, "not a node"),
        ({"x": 1.0, "y": "a"}, "the direction of y"),  # not the value of y at the point
        ({"x": 1.0, "y": float("nan")}, "the direction of y"),
        ([1.0, 2.0], "dict"),
    ],
)
def test_a_bad_direction_is_refused_clearly(direction, message):
    g = adjoint.Graph.from_expr("sin(x*y)")
    for call in (g.tangent, g.hvp):
        with pytest.raises(adjoint.AdjointError, match=message):
            call({"x": 1.0, "y": 2.0}, direction)


A = sp.MatrixSymbol("A", 2, 3)
B = sp.MatrixSymbol("B", 3, 2)
C = sp.MatrixSymbol("C", 2, 3)
S = sp.MatrixSymbol("S", 3, 3)
s_ = sp.Symbol("s", real=True)

# For each tangent rule, expressions F: every class in the table must appear here (a
# rule without an example fails the coverage test), each checked against differences.
TANGENT_EXAMPLES = {
    sp.MatAdd: [A + C, A + 2 * C],
    sp.MatMul: [A * B, 2 * A * B * A, s_ * A * B, A * S * S],
    sp.Transpose: [A.T, A.T * C],
    sp.HadamardProduct: [sp.HadamardProduct(A, C), sp.HadamardProduct(A, C, A)],
    sp.HadamardPower: [sp.HadamardPower(A, 3)],
    ElementwiseApplyFunction: [
        A.applyfunc(sp.tanh),
        (A * B).applyfunc(lambda t: 1 / (1 + sp.exp(-t))),
        A.applyfunc(sp.Abs),
    ],
    sp.Trace: [sp.Trace(S), sp.Trace(A.T * A), sp.Trace(S) ** 2 + s_],
    sp.Inverse: [sp.Inverse(S), sp.Inverse(S) * S.T],
    sp.MatPow: [S**3, A * S * S, sp.MatPow(S, -2), sp.Trace(sp.MatPow(S, -3))],
    sp.Determinant: [sp.Determinant(S), sp.Determinant(A * B) * s_],
    undefined_at_zero: [undefined_at_zero(s_**3, s_ - 5) * A],
    # the matrix calculus after the lecture (adjoint.functions)
    fn.RowRepeat: [fn.repeat_rows(sp.MatrixSymbol("b", 1, 3), 2)],
    fn.ColumnRepeat: [fn.repeat_columns(sp.MatrixSymbol("c", 2, 1), 3)],
    fn.RowSums: [fn.RowSums(sp.HadamardProduct(A, A))],
    fn.ColumnSums: [fn.ColumnSums(A * S)],
    fn.LogSumExp: [fn.LogSumExp(A, 1), fn.LogSumExp(A * S, 0)],
    fn.Softmax: [fn.Softmax(A, 1), fn.Softmax(A, 0)],
    fn.Entry: [fn.Entry(A * S, 1, 2) * A],
    MatrixElement: [A[0, 1] * C],
}


def test_every_tangent_rule_has_an_example():
    assert set(TANGENTS) <= set(TANGENT_EXAMPLES)
    assert set(RULES) <= set(TANGENTS)  # a tangent beside every pullback


@pytest.mark.parametrize(
    ("cls", "F"),
    [(cls, F) for cls, cases in TANGENT_EXAMPLES.items() for F in cases],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_tangent_rule_matches_central_differences(cls, F):
    assert any(isinstance(e, cls) for e in sp.preorder_traversal(F))
    rng = np.random.default_rng(3)
    atoms = sorted({a for a in F.atoms(sp.MatrixSymbol, sp.Symbol) if a.free_symbols}, key=str)
    point = {
        a: (rng.uniform(0.5, 1.5, a.shape) + (3 * np.eye(3) if a == S else 0))
        if isinstance(a, sp.MatrixSymbol)
        else rng.uniform(0.5, 1.5)
        for a in atoms
    }
    direction = {a: rng.standard_normal(np.shape(point[a])) for a in atoms}
    dots = {
        a: sp.MatrixSymbol(f"d{a.name}", *a.shape)
        if isinstance(a, sp.MatrixSymbol)
        else sp.Symbol(f"d{a.name}", real=True)
        for a in atoms
    }
    dF = tangent(F, dots)
    value = numeric_function(atoms, F)
    slope = numeric_function([*atoms, *dots.values()], dF)
    h = 1e-6
    up = value(*(point[a] + h * direction[a] for a in atoms))
    down = value(*(point[a] - h * direction[a] for a in atoms))
    want = (np.asarray(up) - np.asarray(down)) / (2 * h)
    got = np.broadcast_to(
        slope(*(point[a] for a in atoms), *(direction[a] for a in atoms)), np.shape(want)
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_the_tangent_of_a_kinked_entry_is_nan_there_when_asked():
    dA = sp.MatrixSymbol("dA", 2, 3)
    fn = numeric_function([A, dA], tangent(A.applyfunc(sp.Abs), {A: dA}))
    at = np.array([[0.0, 1.0, -1.0], [2.0, -2.0, 0.5]])
    assert fn(at, np.ones((2, 3)))[0, 0] == 0.0  # sign(0) = 0
    with watch_kinks(nan=True) as kinks:
        out = fn(at, np.ones((2, 3)))
    assert np.isnan(out[0, 0]) and np.all(np.isfinite(out.ravel()[1:]))
    assert [np.argwhere(mask).tolist() for _, mask in kinks.met] == [[[0, 0]]]


@settings(max_examples=8)
@given(n=st.integers(1, 6), d=st.integers(1, 4), seed=st.integers(0, 99))
def test_the_two_layer_nets_hvp_matches_differences_of_the_gradient(n, d, seed):
    g, point = two_layer_net(n=n, d=d, seed=seed)
    report = adjoint.check_hvp(g, point, seed=seed)
    assert report.ok, report
    rng = np.random.default_rng(seed)
    v = {x: rng.standard_normal(np.shape(point[x])) for x in g.inputs}
    f = g.compile(hvp=True)
    args = {s.name: value for s, value in point.items()}
    _, _, hv = f(**args, **{f"v_{x.name}": v[x] for x in g.inputs})
    want = g.hvp(point, v)  # itself checked against differences just above
    for x, got in zip(g.inputs, hv):
        np.testing.assert_allclose(got, want[x], rtol=1e-10, atol=1e-12)


def test_matrix_graphs_with_inverses_determinants_and_powers():
    g = adjoint.Graph()
    X = g.input("X", shape=(3, 3))
    c = g.input("c")
    Y = g.define("Y", sp.Inverse(X) * X.T + c * sp.HadamardPower(X, 2))
    g.define("f", sp.Trace(Y * Y) + sp.log(sp.Determinant(X * X.T)) + c**2 * sp.Trace(X**3))
    rng = np.random.default_rng(0)
    at = {X: rng.uniform(-1, 1, (3, 3)) + 3 * np.eye(3), c: 0.7}
    assert adjoint.check_hvp(g, at, directions=4).ok
    # the Hessian over the entries (row-major), column by column the HVP of a unit vector
    H = g.hessian(at)
    assert H.shape == (10, 10)
    v = {X: np.arange(9.0).reshape(3, 3) / 9, c: -0.4}
    hv = g.hvp(at, v)
    flat = np.concatenate([np.ravel(v[X]), [v[c]]])
    np.testing.assert_allclose(H @ flat, np.concatenate([np.ravel(hv[X]), [hv[c]]]), rtol=1e-9)
    with pytest.raises(adjoint.AdjointError, match="scalar inputs"):
        g.hessian()


def test_the_second_order_conditions_render(katex):
    g = adjoint.Graph.from_expr("tanh(x*y) + exp(-x^2) * y + abs(y)")
    src, display = rendering.from_repr_latex(g.second_order()._repr_latex_())
    assert katex.errors([(src, display)]) == [None], src
    assert r"\dot{\lambda}" in src and r"\dot{x}" in src
    net, _ = two_layer_net(n=3, d=2)
    src, display = rendering.from_repr_latex(net.second_order()._repr_latex_())
    assert katex.errors([(src, display)]) == [None], src
    assert r"\dot{\Lambda}_{W_{1}}" in src


@settings(max_examples=20)
@given(data=st.data())
def test_the_compiled_hvp_is_sympys_hessian_times_v(data):
    g = data.draw(dags(max_inputs=3, max_nodes=6))
    at = data.draw(points(g))
    v = {x: data.draw(st.floats(-1, 1)) for x in g.inputs}
    f = g.compile(hvp=True)
    value, gradient, hv = f(*(at[x] for x in g.inputs), *(v[x] for x in g.inputs))
    env = composed(g)
    H = _sympy_hessian(g)
    assert float(value) == pytest.approx(evaluate(env[g.output], at), rel=1e-9, abs=1e-12)
    for r, x in enumerate(g.inputs):
        want = evaluate(sum(H[r, c] * v[y] for c, y in enumerate(g.inputs)), at)
        assert float(hv[r]) == pytest.approx(want, rel=1e-7, abs=1e-8), x
        slope = evaluate(sp.diff(env[g.output], x), at)
        assert float(gradient[r]) == pytest.approx(slope, rel=1e-7, abs=1e-8), x


def test_the_compiled_hvp_takes_the_direction_by_name_and_broadcasts_over_points():
    g = adjoint.Graph.from_expr("sin(x*y) + x^3")
    f = g.compile(hvp=True)
    xs = np.array([0.5, 1.5, -1.0])
    _, _, hv = f(x=xs, y=-2.0, v_x=1.0, v_y=0.5)
    x, y = sp.symbols("x y", real=True)
    H = sp.hessian(sp.sin(x * y) + x**3, (x, y))
    for k, xk in enumerate(xs):
        want = np.array(H.subs({x: xk, y: -2.0}), dtype=float) @ [1.0, 0.5]
        np.testing.assert_allclose([hv[0][k], hv[1][k]], want, rtol=1e-12)
    assert hv[0].shape == (3,) and hv[1].shape == (3,)
    with pytest.raises(adjoint.AdjointError, match="v_y"):
        f(x=1.0, y=2.0, v_x=1.0)
    with pytest.raises(adjoint.AdjointError, match="hvp=True"):
        g.compile(hvp=True, gradient=False)
    assert "def f_and_gradient(x, y):" in g.source()  # the first-order program as it was


def test_the_compiled_hvp_is_nan_at_a_kink_when_asked_and_outside_the_domain():
    g = adjoint.Graph.from_expr("abs(x) + log(y)")
    f = g.compile(hvp=True, kinks="nan")
    _, _, hv = f(x=np.array([0.0, 1.0]), y=np.array([1.0, -1.0]), v_x=1.0, v_y=1.0)
    assert math.isnan(hv[0][0]) and math.isnan(hv[0][1]) and math.isnan(hv[1][1])
    _, _, hv = g.compile(hvp=True)(x=np.array([0.0, 1.0]), y=np.array([1.0, 1.0]), v_x=1.0, v_y=1.0)
    assert hv[0][0] == 0.0  # the convention
    _, _, hv = f(x=1.0, y=2.0, v_x=1.0, v_y=1.0)
    assert float(hv[0]) == 0.0 and float(hv[1]) == pytest.approx(-0.25)


def test_an_argument_named_like_a_direction_is_refused_by_the_hvp_program():
    g = adjoint.Graph()
    x, c = g.input("x"), g.constant("v_x")
    g.define("f", c * x**2)
    with pytest.raises(adjoint.AdjointError, match="rename the node v_x"):
        g.compile(hvp=True)
    h = adjoint.Graph()
    x = h.input("x")
    h.define("v_x", x**2)  # a computed node is no argument: no clash
    assert h.compile(hvp=True)(x=3.0, v_x=1.0)[2][0] == pytest.approx(2.0)


def test_explain_with_a_direction_shows_both_sweeps_and_renders(katex):
    g = adjoint.Graph.from_expr("sin(x*y) + x^2")
    at, v = {"x": 1.5, "y": -2.0}, {"x": 1.0, "y": 0.5}
    e = g.explain(at, direction=v)
    plain = str(e)
    assert "Tangent sweep" in plain and "Second-order adjoint sweep" in plain
    x, y = sp.symbols("x y", real=True)
    want = np.array(sp.hessian(sp.sin(x * y) + x**2, (x, y)).subs({x: 1.5, y: -2.0}), dtype=float)
    hv = want @ [1.0, 0.5]
    assert "lambdadot_x = " in plain and f"{hv[0]:.6g}" in plain and f"{hv[1]:.6g}" in plain
    items = rendering.from_markdown(e.to_markdown())
    errors = katex.errors(items)
    assert errors == [None] * len(items), [(s, err) for (s, _), err in zip(items, errors) if err]
    with pytest.raises(adjoint.AdjointError, match="needs a point"):
        g.explain(direction=v)


def test_the_cli_explains_the_second_order(capsys):
    from adjoint.cli import main

    assert main(["explain", "x*exp(y)", "--at", "x=2,y=0", "--direction", "x=1,y=1"]) == 0
    assert "Second-order adjoint sweep" in capsys.readouterr().out
    args = ["explain", "x*exp(y)", "--at", "x=2,y=0", "--direction", "x=1,y=1"]
    assert main([*args, "--format", "json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    # H of x e^y at (2, 0) is [[0, 1], [1, 2]]: H (1, 1) = (1, 3)
    assert data["result"]["hvp"] == {"x": pytest.approx(1.0), "y": pytest.approx(3.0)}
    assert main(["explain", "x*exp(y)", "--direction", "x=1,y=1"]) == 2
    assert "--direction needs --at" in capsys.readouterr().err
    assert main(["explain", "x*exp(y)", "--at", "x=2,y=0", "--direction", "x"]) == 2
    assert "--direction expects" in capsys.readouterr().err


def test_check_hvp_catches_a_slightly_wrong_product(monkeypatch):
    import adjoint.coursework.checks as checks

    g = adjoint.Graph.from_expr("sin(x*y) + x^3")
    at = {"x": 0.3, "y": -0.2}
    assert adjoint.check_hvp(g, at).ok
    right = checks.hvp
    monkeypatch.setattr(
        checks, "hvp", lambda *a: {x: 1.0001 * h + 1e-7 for x, h in right(*a).items()}
    )
    assert not adjoint.check_hvp(g, at).ok
    monkeypatch.setattr(checks, "hvp", lambda *a: {x: 0.0 for x in right(*a)})
    report = adjoint.taylor_test(g, at, order=2)
    assert not report.ok, report


def test_a_node_reading_thousands_costs_the_pairs_inside_its_summands():
    xs = sp.symbols("x0:2000", real=True)
    op = operation(sp.Add(*(x**2 for x in xs), xs[0] * xs[1]), list(xs))
    assert op.coupled(0) == (0, 1) and op.coupled(7) == (7,)
    g = adjoint.Graph()
    inputs = [g.input(x) for x in xs[:300]]
    g.define("f", sp.Add(*(sp.sin(x) * x for x in inputs)))
    at = {x: 0.01 * k for k, x in enumerate(inputs)}
    t0 = time.perf_counter()
    hv = g.hvp(at, {x: 1.0 for x in inputs})
    assert time.perf_counter() - t0 < 5.0
    for k, x in enumerate(inputs[:5]):
        a = 0.01 * k
        assert hv[x] == pytest.approx(2 * math.cos(a) - a * math.sin(a))


def test_a_direction_may_point_where_its_input_may_not_go():
    """A positive input's direction may be negative (a tangent, not a value): the
    assumption holds the point, not the direction."""
    x = sp.Symbol("x", positive=True)
    f = sp.log(x) * x
    g = adjoint.Graph.from_expr(f, inputs=[x])
    second = float(sp.diff(f, x, 2).subs(x, 2.0))
    assert g.hvp({x: 2.0}, {x: -1.0})[x] == pytest.approx(-second)
    assert g.tangent({x: 2.0}, {x: -1.0}).derivative == pytest.approx(-(math.log(2.0) + 1))
    assert g.compile(hvp=True)(2.0, -1.0)[2][0] == pytest.approx(-second)
    with pytest.raises(adjoint.BadValueError, match="positive"):
        g.hvp({x: -2.0}, {x: 1.0})  # the point still keeps it


def test_a_direction_of_the_wrong_shape_is_refused():
    g, point = two_layer_net(n=3, d=2)
    v = {x: np.ones(np.shape(point[x])) for x in g.inputs}
    W1 = g.inputs[0]
    with pytest.raises(adjoint.ShapeError, match=f"direction of {W1}"):
        g.hvp(point, {**v, W1: np.ones((5, 5))})
    with pytest.raises(adjoint.ShapeError, match=f"the direction of {W1} is a") as raised:
        g.hvp(point, {**v, W1: np.ones(5)})  # not a matrix at all
    assert raised.value.node == W1
    with pytest.raises(adjoint.BadValueError, match=f"direction of {W1}.* not finite"):
        g.tangent(point, {**v, W1: np.full(np.shape(point[W1]), np.inf)})


def test_a_sum_times_a_matrix_is_evaluated_as_a_product():
    """(a + b) X printed as ``a + b * X`` gave f = 20 here instead of 18, in Step 1 and
    in compiled code; the second order met it as (3 c**2 + 6 c d) X.T**2."""
    g = adjoint.Graph()
    X, a, b = g.input("X", shape=(2, 2)), g.input("a"), g.input("b")
    Y = g.define("Y", (a + b) * X)
    g.define("f", sp.Trace(Y.T * Y))
    at = {X: np.eye(2), a: 1.0, b: 2.0}
    assert g.solve(at).output == pytest.approx(18.0)
    assert g.compile()(X=np.eye(2), a=1.0, b=2.0)[0] == pytest.approx(18.0)


def test_conditions_of_second_order_print_as_equations():
    """SecondAdjointCondition.__repr__ sat after a return, dead: they printed as bare
    objects."""
    g = adjoint.Graph.from_expr("sin(x*y)")
    so = g.second_order()
    for c in (*so.tangent_conditions, *so.backward_conditions):
        assert repr(c).startswith(("TangentCondition(", "SecondAdjointCondition(")), repr(c)
        assert str(c.unknown) in repr(c)


def test_the_hessian_of_a_function_of_a_matrix_is_jaxs_over_the_entries():
    """g.hessian refused matrix inputs (naming the internal zdot_w). It now gives the
    Hessian over the entries, row-major, and equals jax.hessian."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    g = adjoint.Graph()
    W = g.input("W", shape=(5, 10))
    b = g.input("b")
    X = g.constant("X", shape=(3, 5))
    H = g.define("H", X * W)
    g.define("f", adjoint.sum_entries(H.applyfunc(sp.tanh)) * b + b**2)
    rng = np.random.default_rng(3)
    at = {W: rng.normal(size=(5, 10)) * 0.3, b: 0.7, X: rng.normal(size=(3, 5))}
    ours = g.hessian(at)

    def f(theta):
        w, bb = theta[:50].reshape(5, 10), theta[50]
        return jnp.sum(jnp.tanh(at[X] @ w)) * bb + bb**2

    with jax.enable_x64(True):
        theta = jnp.concatenate([jnp.ravel(at[W]), jnp.array([at[b]])])
        theirs = np.asarray(jax.hessian(f)(theta))
    assert ours.shape == (51, 51)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    with pytest.raises(adjoint.AdjointError, match="give a point"):
        g.hessian()


@pytest.mark.parametrize("fn", ["sigmoid", "tanh", "exp"])
def test_a_compiled_hvp_computes_an_elementwise_layer_once(fn):
    """f' and f'' written with f's stored value (sigmoid' = s (1 - s), its derivative
    s (1 - s)(1 - 2 s)): the tangent and second-order statements read the node, so the
    layer's argument X w is formed once, in Step 1."""
    g = adjoint.Graph()
    g.constant("X", shape=(6, 3)), g.input("w", shape=(3, 1))
    g.define("p", f"{fn}.(X*w)")
    g.define("f", "sum_entries(p .* p)")
    f = g.compile(hvp=True)
    assert f.source.count("(X @ w)") == 1, f.source
    assert "_dot_f =" not in f.source  # the output's tangent: read by no statement
    rng = np.random.default_rng(0)
    Xv, wv, vv = rng.normal(size=(6, 3)), 0.3 * rng.normal(size=(3, 1)), rng.normal(size=(3, 1))
    _, _, (hv,) = f(w=wv, X=Xv, v_w=vv)
    h = 1e-6
    up = f(w=wv + h * vv, X=Xv, v_w=vv)[1][0]
    down = f(w=wv - h * vv, X=Xv, v_w=vv)[1][0]
    np.testing.assert_allclose(hv, (up - down) / (2 * h), rtol=1e-6, atol=1e-8)


def _matrix_and_scalar_graph():
    g = adjoint.Graph()
    W = g.input("W", shape=(4, 3))
    b = g.input("b")
    X = g.constant("X", shape=(2, 4))
    g.define("H", "tanh.(X*W)")
    g.define("f", "sum_entries(H .* H)*b + b**3")
    rng = np.random.default_rng(5)
    at = {W: rng.normal(size=(4, 3)) * 0.5, b: 0.7, X: rng.normal(size=(2, 4))}
    return g, W, b, X, at


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_compiled_hvp_takes_a_batch_of_directions(backend):
    """H V in one call: directions stacked along a first axis give the products
    stacked alike, each equal to the Hessian (over the entries, row-major) times it."""
    if backend == "jax":
        pytest.importorskip("jax")
    g, W, b, X, at = _matrix_and_scalar_graph()
    H = g.hessian(at)
    rng = np.random.default_rng(6)
    V, vb = rng.normal(size=(5, 4, 3)), rng.normal(size=5)
    c = g.compile(hvp=True, backend=backend)
    value, grad, (HW, Hb) = c(W=at[W], b=at[b], X=at[X], v_W=V, v_b=vb)
    assert HW.shape == (5, 4, 3) and Hb.shape == (5,)
    want = H @ np.concatenate([V.reshape(5, 12), vb[:, None]], axis=1).T
    np.testing.assert_allclose(HW.reshape(5, 12), want[:12].T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Hb, want[12], rtol=1e-12, atol=1e-12)
    one = c(W=at[W], b=at[b], X=at[X], v_W=V[2], v_b=vb[2])
    assert value == pytest.approx(one[0], rel=1e-14)
    np.testing.assert_allclose(grad[0], one[1][0], rtol=1e-14)
    np.testing.assert_allclose(HW[2], one[2][0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_a_batch_of_directions_is_checked_as_a_whole(backend):
    if backend == "jax":
        pytest.importorskip("jax")
    g, W, b, X, at = _matrix_and_scalar_graph()
    c = g.compile(hvp=True, backend=backend)
    V = np.ones((3, 4, 3))
    with pytest.raises(adjoint.AdjointError, match="v_b"):  # one stacked, one not
        c(W=at[W], b=at[b], X=at[X], v_W=V, v_b=1.0)
    with pytest.raises(adjoint.AdjointError, match="differ in number"):
        c(W=at[W], b=at[b], X=at[X], v_W=V, v_b=np.ones(2))
    with pytest.raises(adjoint.AdjointError, match="empty"):
        c(W=at[W], b=at[b], X=at[X], v_W=V[:0], v_b=np.ones(0))
    bad = V.copy()
    bad[2, 1, 1] = np.nan  # the last direction: checked too, not only the first
    with pytest.raises(adjoint.AdjointError, match="not finite"):
        c(W=at[W], b=at[b], X=at[X], v_W=bad, v_b=np.ones(3))


def test_stacked_directions_run_the_forward_sweep_once_on_numpy():
    """What reads no direction (the forward sweep, Step 2, the gradient) runs once for
    k stacked directions, not once per direction: counted on a user's operation."""
    calls = []

    def numeric(t):
        calls.append(1)
        return np.sin(t)

    wave = adjoint.elementary("wave_stacked", numeric, [sp.cos])
    g = adjoint.Graph()
    W = g.input("W", shape=(2, 2))
    b = g.input("b")
    g.define("s", wave(b))
    g.define("f", sp.Symbol("s", real=True) * adjoint.sum_entries(W.applyfunc(sp.tanh)))
    c = g.compile(hvp=True)
    rng = np.random.default_rng(2)
    at, V, vb = rng.normal(size=(2, 2)), rng.normal(size=(5, 2, 2)), rng.normal(size=5)
    calls.clear()
    _, _, (HW, Hb) = c(W=at, b=0.4, v_W=V, v_b=vb)
    assert len(calls) == 1
    H = g.hessian({W: at, b: 0.4})
    want = H @ np.concatenate([V.reshape(5, 4), vb[:, None]], axis=1).T
    np.testing.assert_allclose(HW.reshape(5, 4), want[:4].T, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(Hb, want[4], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_stacked_directions_with_a_one_by_one_output(backend):
    """A 1 x 1 matrix output (x.T*x) with stacked directions: the products, and the
    value, as one call per direction gives them."""
    if backend == "jax":
        pytest.importorskip("jax")
    g = adjoint.Graph()
    x = g.input("x", shape=(3, 1))
    A = g.constant("A", shape=(3, 3))
    g.define("f", x.T * A * x)
    rng = np.random.default_rng(4)
    at, M, V = rng.normal(size=(3, 1)), rng.normal(size=(3, 3)), rng.normal(size=(4, 3, 1))
    c = g.compile(hvp=True, backend=backend)
    value, _, (hx,) = c(x=at, A=M, v_x=V)
    for k in range(4):  # (A + A^T) v
        np.testing.assert_allclose(hx[k], (M + M.T) @ V[k], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(value).reshape(()), (at.T @ M @ at).item(), rtol=1e-13)
