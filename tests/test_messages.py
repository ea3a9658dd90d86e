"""What a student reads: the point stated, the seed written once, the right array
blamed for a shape, a duplicate name said right, a solution indexed by its nodes."""

import math
import re

import numpy as np
import pytest
import sympy as sp

import adjoint
from adjoint.cli import demo
from adjoint.core.errors import DuplicateNameError, ShapeError
from adjoint.examples import lecture_dag, two_layer_net, warm_up


def test_demo_and_explain_state_the_point():
    out = demo()
    assert "at x = 1.5" in out
    assert "at x = 1.5, y = -2" in str(lecture_dag()[0].explain(lecture_dag()[1]))
    assert "at " not in str(lecture_dag()[0].explain()).split("\n")[0]  # symbolic: no point


def test_the_seed_is_written_once():
    out = demo()
    assert not re.search(r"lambda_\w+ = 1 = 1\b", out)
    g, at = warm_up()
    lines = str(g.explain(at)).splitlines()
    assert "  lambda_f = 1" in lines


@pytest.mark.parametrize(
    ("first", "second", "what"),
    [("define", "input", "a defined node"), ("input", "input", "an input")],
)
def test_duplicate_name_message_reads_right(first, second, what):
    g = adjoint.Graph()
    a = g.input("a")
    if first == "define":
        g.define("b", a + 1)
    else:
        g.input("b")
    with pytest.raises(DuplicateNameError) as info:
        g.input("b")
    assert f"already declared (as {what})" in str(info.value)


def test_duplicate_constant_message():
    g = adjoint.Graph()
    g.constant("c")
    with pytest.raises(DuplicateNameError, match=r"as a constant\)"):
        g.input("c")


def test_wrong_shape_blames_the_array_that_disagrees():
    g, point = two_layer_net(n=5, d=3)
    W1 = g.lookup("W1")
    bad = {**point, W1: np.ones((4, 4))}
    with pytest.raises(ShapeError) as info:
        g.solve(bad)
    message = str(info.value)
    assert info.value.node == W1
    assert message.startswith("W1 ")
    # every binding it conflicts with: d = 3 from X and from W2
    assert "X" in message and "W2" in message and "d = 3" in message


def test_wrong_shape_blames_the_same_array_in_compiled_programs():
    g, point = two_layer_net(n=5, d=3)
    f = g.compile()
    bad = {k.name: v for k, v in point.items()}
    bad["W1"] = np.ones((4, 4))
    with pytest.raises(ShapeError) as info:
        f(**bad)
    assert str(info.value).startswith("W1 ") and "W2" in str(info.value)


def test_a_tie_names_each_side():
    g = adjoint.Graph()
    n = sp.Symbol("n", integer=True, positive=True)
    A = g.input("A", shape=(n, 1))
    B = g.input("B", shape=(n, 1))
    g.define("f", adjoint.frobenius2(A + B))
    with pytest.raises(ShapeError) as info:
        g.solve({A: np.ones((2, 1)), B: np.ones((3, 1))})
    message = str(info.value)
    assert "n = 2" in message and "n = 3" in message


def test_agreeing_shapes_still_bind():
    g, point = two_layer_net(n=5, d=3)
    sol = g.solve(point)
    assert np.shape(sol.gradient["W1"]) == (3, 3)


def test_solution_indexed_by_a_node_is_its_value():
    g, at = lecture_dag()
    sol = g.solve(at)
    z1 = g.lookup("z1")
    assert sol[z1] == pytest.approx(1.5 * -2.0)  # z1 = x y, by hand
    assert sol["x"] == 1.5 and sol[sp.Symbol("x")] == 1.5
    assert sol["z2"] == pytest.approx(1.5 + math.sin(-3.0))
    with pytest.raises(KeyError, match="not a node"):
        sol["nope"]


def test_solution_is_not_a_sequence():
    g, at = lecture_dag()
    sol = g.solve(at)
    assert "z1" in sol and "nope" not in sol
    with pytest.raises(TypeError):
        list(sol)


def test_one_array_that_disagrees_with_itself():
    g = adjoint.Graph()
    n = sp.Symbol("n", integer=True, positive=True)
    A = g.input("A", shape=(n, n))
    g.define("f", adjoint.frobenius2(A))
    with pytest.raises(ShapeError, match="n cannot be both 2 and 3"):
        g.solve({A: np.ones((2, 3))})
    with pytest.raises(ShapeError, match="n cannot be both 2 and 3"):
        g.compile()(np.ones((2, 3)))
