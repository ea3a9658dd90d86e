"""Solving grad L = 0: the multipliers are the derivatives (Theorem 16.1)."""

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from reference import central_difference, composed, d_output_d, evaluate, relative_error
from strategies import dags, points

import adjoint
from adjoint.examples import fan_out, lecture_dag, warm_up


@given(st.data())
def test_every_multiplier_is_the_derivative_of_the_output(data):
    g = data.draw(dags())
    point = data.draw(points(g))
    sol = g.solve(point)
    at = dict(sol.values)
    for z in g.nodes:
        expected = evaluate(d_output_d(g, z), at)
        assert relative_error(sol.adjoints[z], expected) < 1e-9, z


@given(st.data())
def test_gradient_matches_sympy_and_central_differences(data):
    g = data.draw(dags())
    point = data.draw(points(g))
    sol = g.solve(point)
    f = composed(g)[g.output]
    for x in g.inputs:
        assert relative_error(sol.gradient[x], evaluate(sp.diff(f, x), point)) < 1e-9
    fn = sp.lambdify(g.inputs, f, "numpy")
    x0 = np.array([point[x] for x in g.inputs])
    fd = central_difference(lambda v: fn(*v), x0)
    for x, expected in zip(g.inputs, fd):
        assert relative_error(sol.gradient[x], expected) < 1e-6
    assert relative_error(sol.output, evaluate(f, point)) < 1e-12


@given(st.data())
def test_symbolic_solution_is_the_derivative_of_the_composed_function(data):
    g = data.draw(dags(max_nodes=5))
    sym = g.solve()
    f = composed(g)[g.output]
    assert sp.simplify(sym.output - f) == 0
    point = data.draw(points(g))
    for x in g.inputs:
        assert (
            relative_error(evaluate(sym.gradient[x], point), evaluate(sp.diff(f, x), point)) < 1e-9
        )


def test_fan_out_trap_collects_every_path():
    # a = x; b = a + a; c = b*b: dc/dx = 8x. Forgetting that b reads a twice gives 4x.
    g, _ = fan_out()
    x = g.inputs[0]
    for value in (-1.25, 0.5, 3.0):
        assert g.solve({x: value}).gradient[x] == pytest.approx(8 * value)
    assert sp.simplify(g.solve().gradient[x] - 8 * x) == 0


def test_warm_up_equations_4():
    # min f(g(x)): lambda = f'(z) (4b), z = g(x) (4c), and 0 = lambda g'(x) (4a)
    # holds exactly at the stationary points of f(g(x)) = (x**2 - 1)**2.
    g, _ = warm_up()
    x, z = g.inputs[0], g.defined[0]
    sym = g.solve()
    assert sp.expand(sym.adjoints[z] - 2 * (x**2 - 1)) == 0  # lambda_z = f'(g(x))
    assert sp.expand(sym.values[z] - x**2) == 0
    stationary = sp.solve(sym.gradient[x], x)
    assert sorted(stationary) == [-1, 0, 1]
    for root in stationary:
        assert g.solve({x: float(root)}).gradient[x] == 0.0


def test_lecture_dag_by_hand():
    g, point = lecture_dag()
    x, y = g.inputs
    sol = g.solve(point)
    assert sol.gradient[x] == pytest.approx(1 + (-2.0) * math.cos(-3.0))
    assert sol.gradient[y] == pytest.approx(1.5 * math.cos(-3.0))
    assert list(sol.gradient) == [x, y]
    assert sol.adjoints[g.output] == 1.0
    assert sol.output == pytest.approx(math.sin(-3.0) + 1.5)


def test_solution_is_frozen_and_holds_floats():
    g, point = lecture_dag()
    sol = g.solve(point)
    assert all(type(v) is float for v in [*sol.values.values(), *sol.adjoints.values()])
    with pytest.raises(AttributeError):
        sol.output = 3.0
    with pytest.raises(TypeError):
        sol.gradient[g.inputs[0]] = 0.0
    g.define("later", g.output * 2)  # changing the graph does not change the solution
    assert g.output not in sol.values
    assert sol.values["z1"] == sol.values[g.defined[0]]  # names work as keys


def test_output_need_not_be_last():
    g = adjoint.Graph()
    x = g.input("x")
    a = g.define("a", x**3)
    g.define("b", sp.sin(a))  # downstream of the output: no influence on it
    g.set_output(a)
    sol = g.solve({x: 2.0})
    assert sol.gradient[x] == pytest.approx(12.0)
    assert sol.adjoints["b"] == 0.0


def test_unreachable_input_has_zero_gradient():
    g = adjoint.Graph()
    x, y = g.input("x"), g.input("y")
    g.define("f", x**2)
    assert g.solve({x: 1.0, y: 5.0}).gradient[y] == 0.0
    assert g.solve().gradient[y] == 0


def test_constants_are_data_without_gradient():
    g = adjoint.Graph()
    x = g.input("x")
    c = g.constant("c")
    g.define("f", c * x**2)
    sol = g.solve({x: 3.0, c: 0.5})
    assert dict(sol.gradient) == {x: pytest.approx(3.0)}
    assert c not in sol.adjoints and sol.values[c] == 0.5
    assert g.parents("f") == (x,)
    with pytest.raises(adjoint.AdjointError, match="constant"):
        g.multiplier(c)


def test_grad_symbolic_and_numeric():
    x, y = sp.symbols("x y", real=True)
    assert adjoint.grad(sp.sin(x * y), [x, y]) == {x: y * sp.cos(x * y), y: x * sp.cos(x * y)}
    numeric = adjoint.grad(sp.sin(x * y), [x, y], at={x: 1.0, y: 2.0})
    assert numeric[x] == pytest.approx(2 * math.cos(2.0))
    assert adjoint.grad("x**3", "x", at={"x": 2.0}) == pytest.approx(12.0)
    # a free symbol not differentiated is a constant: a partial derivative
    a = sp.Symbol("a", real=True)
    assert sp.simplify(adjoint.grad(a * x**2, x) - 2 * a * x) == 0


def test_users_own_non_real_symbols_are_differentiated_as_real():
    x = sp.Symbol("x")  # no assumptions
    g = adjoint.Graph()
    g.input(x)
    g.define("f", sp.Abs(x) * x)
    grad = g.solve().gradient[x]
    assert not grad.has(sp.re, sp.im, sp.Derivative)
    assert g.solve({x: -2.0}).gradient[x] == pytest.approx(4.0)
