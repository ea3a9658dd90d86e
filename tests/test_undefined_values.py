"""Values where a function is undefined or assumed: nan is never passed over,
kinks and jumps are marked, assumptions are checked, and where the value is not a
number every derivative says so."""

import json

import numpy as np
import pytest
import sympy as sp

import adjoint
from adjoint import AdjointError, BadValueError
from adjoint.cli import main


def test_assumptions_are_checked_against_the_values():
    g = adjoint.Graph()
    x = g.input(sp.Symbol("x", positive=True))
    g.define("f", sp.Abs(x) + sp.sqrt(x**2))  # sympy made it 2*x, trusting x > 0
    with pytest.raises(BadValueError, match="positive"):
        g.solve({x: -2.0})
    with pytest.raises(BadValueError, match="positive"):
        g.compile()(-2.0)
    assert g.solve({x: 2.0}).gradient[x] == 2.0


def test_integer_assumptions_are_checked_against_the_values():
    g = adjoint.Graph()
    k = g.input(sp.Symbol("k", integer=True))
    x = g.input("x")
    g.define("f", sp.sin(sp.pi * k) + x)  # sympy made sin(pi k) = 0
    with pytest.raises(BadValueError, match="integer"):
        g.solve({k: 0.5, x: 1.0})


def test_a_defined_node_may_not_carry_assumptions_its_constraint_cannot_promise():
    g = adjoint.Graph()
    x = g.input("x")
    with pytest.raises(AdjointError, match="positive"):
        g.define(sp.Symbol("z", positive=True), x - 5)
    assert len(g) == 1


@pytest.mark.parametrize(
    "bad", [np.nan, np.inf, True, "1.0", 10**400, 1 + 2j, None, [1.0, np.nan], np.array([True])]
)
def test_compiled_programs_refuse_what_solving_refuses(bad):
    g = adjoint.Graph()
    x = g.input("x")
    g.define("f", x**2)
    with pytest.raises(BadValueError):
        g.solve({x: bad})
    with pytest.raises(BadValueError):
        g.compile()(bad)


def test_no_finite_gradient_through_a_nan():
    g = adjoint.Graph()
    x = g.input("x")
    z = g.define("z", sp.log(x))
    g.define("f", z + x)
    sol = g.solve({x: -1.0})
    assert np.isnan(sol.output)
    assert np.isnan(sol.gradient[x])
    assert z in sol.undefined and "domain" in sol.undefined[z]
    assert "domain" in repr(sol)
    value, (grad,) = g.compile()(np.array([-1.0, 2.0]))
    assert np.isnan(value[0]) and np.isnan(grad[0])
    assert grad[1] == pytest.approx(1.5)


def test_a_kink_is_marked_in_the_solution():
    g = adjoint.Graph()
    x = g.input("x")
    g.define("f", sp.Abs(x))
    sol = g.solve({x: 0.0})
    assert sol.gradient[x] == 0.0 and [k.node.name for k in sol.kinks] == ["f"]
    assert "kink" in repr(sol)
    sol = g.solve({x: 0.0}, kinks="nan")
    assert np.isnan(sol.gradient[x]) and x in sol.undefined


def test_determinants_solve_and_compile():
    g = adjoint.Graph()
    X = g.input("X", shape=(3, 3))
    g.define("f", sp.log(sp.Determinant(X)))
    rng = np.random.default_rng(1)
    A = rng.normal(size=(3, 3)) + 3 * np.eye(3)
    sol = g.solve({X: A})
    np.testing.assert_allclose(sol.gradient[X], np.linalg.inv(A).T, rtol=1e-10)  # Cookbook (57)
    _, (grad,) = g.compile()(A)
    np.testing.assert_allclose(grad, np.linalg.inv(A).T, rtol=1e-10)


def test_a_singular_inverse_names_the_node():
    g = adjoint.Graph()
    X = g.input("X", shape=(2, 2))
    Y = g.define("Y", sp.Inverse(X))
    g.define("f", sp.Trace(Y))
    with pytest.raises(AdjointError, match="Y") as info:
        g.solve({X: np.zeros((2, 2))})
    assert "singular" in str(info.value)


def test_explain_json_is_json_even_at_a_nan(capsys):
    assert main(["explain", "log(x) + x", "--at", "x=-1", "--format", "json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert data["result"]["gradient"]["x"] is None


def test_verify_never_passes_over_a_nan_and_says_why():
    g = adjoint.Graph()
    x = g.input("x")
    z = g.define("z", sp.log(x))
    g.define("f", z + x)
    report = g.verify(at={x: -1.0})
    assert not report.ok and {c.method for c in report.checks} == {"undefined"}
    assert "cannot be checked" in repr(report) and "FAIL" not in repr(report)
    assert g.verify(at={x: 2.0}).ok


def test_a_wrong_custom_partial_fails_verify_and_check_gradient_even_when_small():
    sq = adjoint.elementary("sq_wrong", numeric=lambda a: a**2, partials=[lambda a: 4 * a])
    g = adjoint.Graph()
    x, y = g.input("x"), g.input("y")
    g.define("f", 1e7 * x + sq(y))
    at = {x: 1.0, y: 1.0}
    assert not g.verify().ok
    assert not adjoint.check_gradient(g, at=at).ok


@pytest.mark.parametrize(
    "build, at",
    [
        (lambda x: sp.Piecewise((x + 1, x > 0), (x, True)), 0.0),
        (lambda x: sp.Piecewise((2 * x, x > 0), (x, True)), 0.0),
        (lambda x: sp.atan2(0 * x + sp.Symbol("a", real=True), x), None),
    ],
    ids=["jump", "kink", "atan2 cut"],
)
def test_piecewise_jumps_and_kinks_are_marked(build, at):
    g = adjoint.Graph()
    x = g.input("x")
    if at is None:  # atan2(a, x) across its cut a = 0, x < 0
        a = g.input("a")
        g.define("f", sp.atan2(a, x))
        point = {x: -1.0, a: 0.0}
    else:
        g.define("f", build(x))
        point = {x: at}
    assert g.solve(point).kinks  # the convention is taken, and said
    sol = g.solve(point, kinks="nan")
    assert all(np.isnan(v) for v in sol.gradient.values())
    assert sol.undefined


def test_a_value_computed_through_a_nan_condition_is_nan():
    g = adjoint.Graph()
    x = g.input("x")
    z = g.define("z", sp.log(x))
    g.define("f", sp.Piecewise((z, z > 0), (x**2, True)))
    sol = g.solve({x: -1.0})
    assert np.isnan(sol.output) and np.isnan(sol.gradient[x])
    value, (grad,) = g.compile()(-1.0)
    assert np.isnan(value) and np.isnan(grad)


def test_a_kink_in_a_node_the_output_does_not_read_changes_nothing():
    g = adjoint.Graph()
    x = g.input("x")
    g.define("d", sp.Abs(x))
    g.define("f", x**2)
    sol = g.solve({x: 0.0})
    assert sol.gradient[x] == 0.0 and not sol.undefined
    assert g.compile()(0.0)[1][0] == 0.0


def test_where_the_function_is_undefined_every_gradient_entry_is_nan_alike():
    g = adjoint.Graph()
    x, y = g.input("x"), g.input("y")
    g.define("f", sp.log(x))  # f does not read y
    sol = g.solve({x: -1.0, y: 2.0})
    _, compiled = g.compile()(-1.0, 2.0)
    assert all(np.isnan(v) for v in sol.gradient.values())
    assert all(np.isnan(v) for v in compiled)


def test_a_nan_value_is_named_as_such():
    g = adjoint.Graph()
    x = g.input("x")
    g.define("f", x**2)
    with pytest.raises(BadValueError) as info:
        g.solve({x: float("nan")})
    assert "1.8e308" not in str(info.value) and "nan" in str(info.value)


def test_explain_says_a_number_once():
    g = adjoint.Graph.from_expr("sin(x*y) + x**2")
    text = str(g.explain({"x": 1.5, "y": -2.0}, direction={"x": 1.0, "y": 0.0}))
    assert " = 0 = 0" not in text and " = 1 = 1" not in text


def test_second_order_at_a_domain_edge_is_nan_not_a_crash():
    x, y = sp.symbols("x y", real=True)
    g = adjoint.Graph.from_expr(1 / x + y, inputs=[x, y])
    hv = g.hvp({x: 0.0, y: 1.0}, {x: 1.0, y: 1.0})
    assert not np.isfinite(hv[x])
