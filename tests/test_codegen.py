"""The generated program: the same numbers as solving, one readable statement per node."""

import math
import re

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from reference import central_difference, composed
from strategies import dags, points

import adjoint
from adjoint.examples import fan_out, lecture_dag, two_layer_net


@given(st.data())
def test_compiled_program_equals_solving_the_conditions(data):
    g = data.draw(dags())
    point = data.draw(points(g))
    sol = g.solve(point)
    value, gradient = g.compile()(*[point[x] for x in g.inputs])
    assert value == pytest.approx(sol.output, rel=1e-12, abs=1e-12)
    for x, lam in zip(g.inputs, gradient):
        assert lam == pytest.approx(sol.gradient[x], rel=1e-10, abs=1e-12)


@given(st.data())
def test_compiled_program_broadcasts_over_points(data):
    g = data.draw(dags(max_nodes=6))
    n = data.draw(st.integers(1, 5))
    xs = {x: np.array([data.draw(st.floats(-1.5, 1.5)) for _ in range(n)]) for x in g.inputs}
    value, gradient = g.compile()(**{x.name: v for x, v in xs.items()})
    assert np.shape(value) == (n,)
    fn = sp.lambdify(g.inputs, composed(g)[g.output], "numpy")
    for k in range(n):
        x0 = np.array([xs[x][k] for x in g.inputs])
        fd = central_difference(lambda v: fn(*v), x0)
        for j in range(len(g.inputs)):
            assert gradient[j].shape == (n,)
            assert gradient[j][k] == pytest.approx(fd[j], rel=1e-6, abs=1e-6)


def test_source_has_one_statement_per_node_in_the_lectures_names():
    g, _ = lecture_dag()
    src = g.source().split("def f_and_gradient(x, y):\n")[1]
    body = [line.strip() for line in src.splitlines() if not line.strip().startswith(("#", "del "))]
    assert body[:2] == ["z1 = x*y  # z1 = x*y", "z2 = x + numpy.sin(z1)  # z2 = x + sin(z1)"]
    assert body[2].startswith("lam_z2 = 1.0") and body[3].startswith("lam_z1 = lam_z2*")
    assert body[-1] == "return z2, (lam_x, lam_y)"
    assert len(body) == len(g.defined) * 2 + len(g.inputs) + 1


def test_backward_reads_the_stored_value_instead_of_recomputing():
    g = adjoint.Graph()
    x = g.input("x")
    t = g.define("t", sp.tanh(x))
    e = g.define("e", sp.exp(t))
    g.define("f", e + t)
    backward = g.source().split("# Step 2")[1]
    assert "tanh" not in backward and "exp" not in backward
    assert "1 - t**2" in backward
    _value, (grad,) = g.compile()(0.3)
    assert grad == pytest.approx((math.exp(math.tanh(0.3)) + 1) * (1 - math.tanh(0.3) ** 2))


def test_two_layer_net_compiles_to_matrix_products():
    g, point = two_layer_net()
    src = g.source()
    assert "lam_W1 = (X.T @ lam_H)" in src and "lam_W2 = (A.T @ lam_R)" in src
    assert "numpy.tanh(H)" in src and "1 - A**2" in src
    sol = g.solve(point)
    value, (g1, g2) = g.compile()(**{s.name: v for s, v in point.items()})
    assert value == pytest.approx(sol.output)
    np.testing.assert_allclose(g1, sol.gradient["W1"], rtol=1e-12)
    np.testing.assert_allclose(g2, sol.gradient["W2"], rtol=1e-12)


def test_value_only_and_chosen_inputs():
    g, point = lecture_dag()
    x, _y = g.inputs
    assert g.compile(gradient=False)(1.5, -2.0) == pytest.approx(g.solve(point).output)
    assert "lam_" not in g.source(gradient=False)
    _value, (gx,) = g.compile(wrt=[x])(1.5, -2.0)
    assert gx == pytest.approx(g.solve(point).gradient[x])
    assert "lam_y" not in g.source(wrt=[x])


def test_multipliers_nobody_needs_are_not_computed():
    g = adjoint.Graph()
    x, y = g.input("x"), g.input("y")
    a = g.define("a", sp.sin(x))
    b = g.define("b", sp.cos(y))  # only on y's path
    g.define("f", a * b)
    src = g.source(wrt=[x])
    assert "lam_a" in src and "lam_b" not in src and "lam_y" not in src


def test_float32():
    g, _ = lecture_dag()
    value, gradient = g.compile(dtype="float32")(np.float32(1.5), np.float32(-2.0))
    assert np.asarray(value).dtype == np.float32
    assert all(np.asarray(v).dtype == np.float32 for v in gradient)
    assert float(gradient[0]) == pytest.approx(
        g.solve({"x": 1.5, "y": -2.0}).gradient["x"], rel=1e-6
    )


def test_dtype_takes_what_numpy_calls_a_dtype():
    g, _ = lecture_dag()
    want = g.solve({"x": 1.5, "y": -2.0}).gradient["x"]
    for dtype in (np.float32, np.dtype("float32"), "f4"):
        value, gradient = g.compile(dtype=dtype)(1.5, -2.0)
        assert np.asarray(value).dtype == np.float32
        assert float(gradient[0]) == pytest.approx(want, rel=1e-6)
    for dtype in (np.float64, float, "double"):
        assert np.asarray(g.compile(dtype=dtype)(1.5, -2.0)[0]).dtype == np.float64
    for dtype in (np.int64, np.float16, "complex128", "cheese", [1]):
        with pytest.raises(adjoint.AdjointError, match="dtype must be"):
            g.compile(dtype=dtype)


def test_kinks_take_the_convention_in_compiled_code_too_or_nan_when_asked():
    g = adjoint.Graph.from_expr(sp.Abs(sp.Symbol("x", real=True)) + sp.Symbol("x", real=True))
    _, (grad,) = g.compile()(np.array([-1.0, 0.0, 2.0]))
    assert list(grad) == [0.0, 1.0, 2.0]  # sign(0) = 0, as solving takes it
    _, (grad,) = g.compile(kinks="nan")(np.array([-1.0, 0.0, 2.0]))
    assert grad[0] == 0.0 and np.isnan(grad[1]) and grad[2] == 2.0


def test_special_functions_vectorise():
    x = sp.Symbol("x", real=True)
    g = adjoint.Graph.from_expr(sp.erf(x) * sp.loggamma(1 + x**2))
    xs = np.linspace(0.1, 2.0, 5)
    value, (grad,) = g.compile()(xs)
    for k, v in enumerate(xs):
        sol = g.solve({x: float(v)})
        assert value[k] == pytest.approx(sol.output) and grad[k] == pytest.approx(sol.gradient[x])


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
        (lambda f: f([1.0, None], 1.0), adjoint.BadValueError, "x"),
    ],
)
def test_calling_mistakes_get_the_packages_errors(call, error, word):
    g, _ = lecture_dag()
    with pytest.raises(error, match=word):
        call(g.compile())


def test_matrix_shape_mistakes():
    g, point = two_layer_net(n=5, d=3)
    f = g.compile()
    args = {s.name: v for s, v in point.items()}
    with pytest.raises(adjoint.ShapeError, match="y"):
        f(**{**args, "y": np.ones((4, 1))})
    with pytest.raises(adjoint.ShapeError, match="W1"):
        f(**{**args, "W1": np.ones(3)})


def test_calling_mistakes_on_the_short_way_of_matrix_programs():
    """Arrays of their declared shapes skip the general binding; a name given twice,
    missing or unknown still gets the general checks' error, naming it."""
    g = adjoint.Graph()
    A, B = g.input("A", shape=(2, 2)), g.input("B", shape=(2, 1))
    g.define("f", adjoint.sum_entries(A * B))
    f = g.compile()
    a, b = np.eye(2), np.ones((2, 1))
    assert f(a, b)[0] == f(A=a, B=b)[0] == f(a, B=b)[0] == 2.0
    calls = [
        (lambda: f(a, A=a), adjoint.BadValueError, "A is given twice"),
        (lambda: f(a, b, A=a), adjoint.BadValueError, "too many|A is given twice"),
        (lambda: f(a), adjoint.MissingValueError, "no value is given for B"),
        (lambda: f(A=a, C=b), adjoint.MissingValueError, "C is not an input"),
        (lambda: f(a, b.T), adjoint.ShapeError, "B"),
    ]
    for call, error, words in calls:
        with pytest.raises(error, match=words):
            call()


def test_a_bad_direction_is_named_as_it_is_given():
    """compile(hvp=True) takes directions as v_x; an error about one names v_x (and
    nothing internal, such as zdot_x), whichever way the value was checked."""
    g = adjoint.Graph()
    A, b = g.input("A", shape=(2, 2)), g.input("b")
    g.define("f", adjoint.sum_entries(A.applyfunc(sp.sin)) * b)
    f = g.compile(hvp=True)
    a = np.eye(2)
    calls = [
        lambda: f(a, 1.0, np.full((2, 2), np.nan), 1.0),
        lambda: f(a, 1.0, np.ones((2, 2)), float("inf")),
        lambda: f(A=a, b=1.0, v_A=np.ones((3, 2)), v_b=1.0),
        lambda: f(a, 1.0, "up", 1.0),
        lambda: f(a, np.ones(3), np.ones((2, 2)), np.ones(2)),
    ]
    for call in calls:
        with pytest.raises(adjoint.AdjointError) as raised:
            call()
        assert "zdot" not in str(raised.value), str(raised.value)
        assert re.search(r"\bv_[Ab]\b", str(raised.value)), str(raised.value)


def test_fan_out_program():
    g, _ = fan_out()
    _, (grad,) = g.compile()(0.75)
    assert grad == pytest.approx(6.0)


def test_a_deep_chain_compiles_and_runs():
    g = adjoint.Graph()
    z = g.input("x")
    for k in range(3000):
        z = g.define(f"z{k}", sp.sin(z) + 0.5 * z)
    value, (grad,) = g.compile()(0.3)
    assert math.isfinite(value) and grad == pytest.approx(g.solve({"x": 0.3}).gradient["x"])


def test_values_are_freed_after_their_last_use():
    x = sp.Symbol("x", real=True)
    g = adjoint.Graph.from_expr(sp.sin(x**2 + 1) * x)
    src = g.source().split("def f_and_gradient(x):\n")[1]
    code = [line.split("#")[0].strip() for line in src.splitlines()]
    code = [line for line in code if line]
    for k, line in enumerate(code):
        if line.startswith("del "):
            for name in line[4:].split(", "):
                later = " ".join(code[k + 1 :])
                assert not re.search(rf"\b{name}\b", later), name  # never read again
    freed = {n for line in code if line.startswith("del ") for n in line[4:].split(", ")}
    assert {"z1", "z2", "lam_z3"} <= freed and "x" not in freed and "lam_x" not in freed
    assert g.compile()(0.5)[1][0] == pytest.approx(g.solve({x: 0.5}).gradient[x])
    assert g.compile(gradient=False)(0.5) == pytest.approx(math.sin(1.25) * 0.5)


def test_parts_of_a_constraint_that_step_2_needs_are_computed_once():
    g = adjoint.Graph()
    a, b = g.input("a"), g.input("b")
    z = g.define("z", sp.sin(a) * b)
    g.define("f", z**2)
    src = g.source()
    assert src.count("numpy.sin(a)") == 1  # in Step 1, kept for Step 2's lam_b
    assert "lam_b = lam_z*_z_part0" in src
    _, (ga, gb) = g.compile()(0.3, 2.0)
    sol = g.solve({a: 0.3, b: 2.0})
    assert ga == pytest.approx(sol.gradient[a]) and gb == pytest.approx(sol.gradient[b])
    assert "part" not in g.source(gradient=False)  # the value alone needs no parts


def test_a_constant_output_still_broadcasts_over_points():
    g = adjoint.Graph()
    x = g.input("x")
    g.define("f", x - x)
    value, (grad,) = g.compile()(np.array([1.0, 2.0, 3.0]))
    assert value.shape == grad.shape == (3,)


def test_special_functions_at_their_poles_are_nan_not_an_error():
    x = sp.Symbol("x", real=True)
    g = adjoint.Graph.from_expr(sp.gamma(x) + sp.loggamma(x) + sp.polygamma(0, x))
    value, (grad,) = g.compile()(np.array([0.0, -1.0, 0.5]))
    assert np.isnan(value[:2]).all() and np.isnan(grad[:2]).all()
    assert value[2] == pytest.approx(math.gamma(0.5) + math.lgamma(0.5) + float(sp.digamma(0.5)))
    assert math.isnan(g.solve({x: 0.0}).output)
    assert g.compile()(200.0)[0] == math.inf  # beyond float range, as NumPy says it


@pytest.mark.parametrize(
    "entries, ok",
    [
        ([[1e308, 1e308], [1e308, 1e308]], True),  # finite, though their sum overflows
        ([[1e160, -1e160], [1.0, 1.0]], True),  # finite, though their squares overflow
        ([[np.inf, -np.inf], [1.0, 1.0]], False),  # sums to nan
        ([[np.inf, 1.0], [1.0, 1.0]], False),
        ([[1.0, 1.0], [1.0, -np.inf]], False),
        ([[np.nan, 1.0], [1.0, 1.0]], False),
        ([[1.0, 1.0], [-np.nan, 1.0]], False),
    ],
)
def test_matrix_values_must_be_finite_and_large_finite_values_are_accepted(entries, ok):
    g = adjoint.Graph()
    A = g.input("A", shape=(2, 2))
    g.define("f", adjoint.sum_entries(A.applyfunc(sp.atan)))
    compiled, hvp = g.compile(), g.compile(hvp=True)
    ways = (
        lambda a: compiled(a)[0],
        lambda a: hvp(a, np.ones((2, 2)))[0],
        lambda a: g.solve({A: a}).output,
    )
    for a in (np.array(entries), np.array(entries).T):  # contiguous, and a strided view
        for value in ways:
            if ok:
                assert value(a) == pytest.approx(np.sum(np.arctan(a)))
            else:
                with pytest.raises(adjoint.BadValueError, match="not finite"):
                    value(a)


def test_the_compiled_function_reads_its_arguments_without_changing_them():
    g, point = two_layer_net(n=6, d=3)
    args = {s.name: v for s, v in point.items()}
    before = {k: v.copy() for k, v in args.items()}
    g.compile()(**args)
    for k in args:
        np.testing.assert_array_equal(args[k], before[k])


@given(dags(), st.data())
def test_python_floats_take_a_short_way_to_the_same_results(g, data):
    """A scalar program called with Python floats skips binding and broadcasting; it
    must give what the checked way gives (NumPy numbers, nan gradients through a value
    that is not a number), which NumPy scalars still take."""
    f = g.compile()
    values = [
        data.draw(st.floats(-3, 3, allow_nan=False).filter(lambda v: abs(v) > 1e-3))
        for _ in g.inputs
    ]
    quick = f(*values)
    checked = f(*map(np.float64, values))
    assert type(quick[0]) is np.float64 and all(type(d) is np.float64 for d in quick[1])
    np.testing.assert_array_equal(quick[0], checked[0])
    np.testing.assert_array_equal(np.array(quick[1]), np.array(checked[1]))
    assert g.compile(gradient=False)(*values) == quick[0] or math.isnan(quick[0])


def test_python_floats_on_the_short_way_keep_numpy_semantics():
    import warnings

    h = adjoint.Graph.from_expr("log(x) + 1/y")
    f = h.compile()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning escapes either way
        value, grads = f(0.0, 1.0)
        assert value == -np.inf and all(np.isnan(d) for d in grads)
        value, grads = f(2.0, 0.0)
        assert value == np.inf and all(np.isnan(d) for d in grads)
    for bad in (float("nan"), float("inf")):  # not finite: the checked way refuses it
        with pytest.raises(adjoint.AdjointError):
            f(bad, 1.0)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_symbolic_sizes_learn_their_shapes_and_still_refuse_what_is_wrong(backend):
    """Matrices of symbolic sizes (n x d) take the general checks once; arrays of the
    same shapes then take the short way, which refuses what the general checks refuse;
    other shapes take the general checks again (and are bound afresh)."""
    if backend == "jax":
        pytest.importorskip("jax")
    g, point = two_layer_net(n=6, d=3, seed=0)
    c = g.compile(backend=backend)
    args = {s.name: v for s, v in point.items()}
    bound = []
    general = c._bind
    c._bind = lambda a, k: bound.append(1) or general(a, k)
    first = c(**args)
    again = c(**args)
    assert len(bound) == 1  # the second call took the short way
    assert again[0] == first[0] and all(np.array_equal(a, b) for a, b in zip(again[1], first[1]))
    want = g.solve(point)
    assert again[0] == pytest.approx(want.output, rel=1e-12)
    np.testing.assert_allclose(again[1][0], want.gradient[g.lookup("W1")], rtol=1e-12)
    for bad in (np.nan, np.inf, -np.inf):
        X = args["X"].copy()
        X[2, 1] = bad
        with pytest.raises(adjoint.BadValueError, match="not finite"):
            c(**{**args, "X": X})
    g2, point2 = two_layer_net(n=9, d=3, seed=1)  # another n: bound afresh
    args2 = {s.name: v for s, v in point2.items()}
    np.testing.assert_allclose(c(**args2)[0], g2.solve(point2).output, rtol=1e-12)
    with pytest.raises(adjoint.AdjointError):  # X of 9 rows, y of 6: n is not one size
        c(**{**args2, "y": args["y"]})
