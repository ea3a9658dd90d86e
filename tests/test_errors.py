"""Bad input: a named AdjointError (a ValueError), and the graph left as it was."""

import numpy as np
import pytest
import sympy as sp

import adjoint
from adjoint import (
    AdjointError,
    BadValueError,
    CycleError,
    DuplicateNameError,
    ExpressionError,
    MissingValueError,
    ParseError,
    UnknownSymbolError,
)


def make():
    g = adjoint.Graph()
    x, y = g.input("x"), g.input("y")
    c = g.constant("c")
    z1 = g.define("z1", c * x * y)
    g.define("z2", sp.sin(z1) + x)
    return g


def snapshot(g):
    return (
        g.nodes,
        g.constants,
        g.output,
        {z: g.expr(z) for z in g.defined},
        {z: g.children(z) for z in g.nodes},
        str(g.lagrangian()),
    )


def test_every_error_is_a_value_error():
    for cls in (
        BadValueError,
        CycleError,
        DuplicateNameError,
        ExpressionError,
        MissingValueError,
        ParseError,
        UnknownSymbolError,
        adjoint.ShapeError,
    ):
        assert issubclass(cls, AdjointError) and issubclass(cls, ValueError)


BAD_CALLS = [
    # (what the user does, the error class, a word the message must contain)
    (lambda g: g.define("z3", sp.Symbol("q") * 2), UnknownSymbolError, "q"),
    (lambda g: g.define("z1", sp.Symbol("x") + 1), DuplicateNameError, "z1"),
    (lambda g: g.input("x"), DuplicateNameError, "x"),
    (lambda g: g.constant("z2"), DuplicateNameError, "z2"),
    (lambda g: g.define("z3", sp.Symbol("z3") + 1), CycleError, "z3"),
    (lambda g: g.define("z3", [1, 2]), ExpressionError, "z3"),
    (lambda g: g.define("z3", lambda x: x), ExpressionError, "z3"),
    (lambda g: g.define("z3", sp.Eq(sp.Symbol("x"), 1)), ExpressionError, "z3"),
    (lambda g: g.define("z3", sp.Symbol("x") + sp.I), ExpressionError, "real"),
    (lambda g: g.define("z3", "x +* 2"), ParseError, "z3"),
    (lambda g: g.define("z3", "__import__('os').system('true')"), ParseError, "__import__"),
    (lambda g: g.define("z3", "x.__class__"), ParseError, "attribute"),
    (lambda g: g.define("z3", "sin(w)"), ParseError, "w"),
    (lambda g: g.define("3z", sp.Symbol("x")), AdjointError, "3z"),
    (lambda g: g.define("lambda_x", sp.Symbol("x")), AdjointError, "multiplier"),
    (lambda g: g.define(7, sp.Symbol("x")), AdjointError, "name"),
    (lambda g: g.set_output("x"), AdjointError, "x"),
    (lambda g: g.set_output("nowhere"), UnknownSymbolError, "nowhere"),
    (lambda g: g.parents("nowhere"), UnknownSymbolError, "nowhere"),
    (lambda g: g.multiplier("c"), AdjointError, "constant"),
    (lambda g: g.input("W", shape=(2, -1)), adjoint.ShapeError, "W"),
    (lambda g: g.input("W", shape=(2,)), adjoint.ShapeError, "W"),
    (lambda g: g.solve({"x": 1.0, "c": 2.0}), MissingValueError, "y"),
    (lambda g: g.solve({"x": 1.0, "y": 2.0}), MissingValueError, "c"),
    (lambda g: g.solve({"x": "1.5", "y": 2.0, "c": 1.0}), BadValueError, "x"),
    (lambda g: g.solve({"x": 1 + 2j, "y": 2.0, "c": 1.0}), BadValueError, "x"),
    (lambda g: g.solve({"x": float("nan"), "y": 2.0, "c": 1.0}), BadValueError, "x"),
    (lambda g: g.solve({"x": np.ones(3), "y": 2.0, "c": 1.0}), BadValueError, "x"),
    (lambda g: g.solve({"x": True, "y": 2.0, "c": 1.0}), BadValueError, "x"),
    (lambda g: g.solve({"x": 10**400, "y": 2.0, "c": 1.0}), BadValueError, "finite"),
    (lambda g: g.solve({"x": sp.Symbol("t"), "y": 2.0, "c": 1.0}), BadValueError, "x"),
    (lambda g: g.solve({"x": 1.0, "y": 2.0, "c": 1.0, "q": 0.0}), UnknownSymbolError, "q"),
    (lambda g: g.solve({"x": 1.0, "y": 2.0, "c": 1.0, "z1": 0.0}), BadValueError, "z1"),
    (lambda g: g.solve([1.0, 2.0]), BadValueError, "dict"),
    (lambda g: g.verify(at={"x": 1.0}), MissingValueError, "y"),
]


@pytest.mark.parametrize("call, error, word", BAD_CALLS)
def test_bad_input_raises_a_named_error_and_changes_nothing(call, error, word):
    g = make()
    before = snapshot(g)
    with pytest.raises(error) as info:
        call(g)
    assert word in str(info.value)
    assert snapshot(g) == before


def test_error_names_the_node_programmatically():
    g = make()
    with pytest.raises(UnknownSymbolError) as info:
        g.define("z3", sp.Symbol("q"))
    assert info.value.node == sp.Symbol("z3", real=True)
    with pytest.raises(MissingValueError) as info:
        g.solve({"x": 1.0, "c": 1.0})
    assert info.value.node.name == "y"


def test_from_equations_errors():
    x, a, b = sp.symbols("x a b", real=True)
    with pytest.raises(DuplicateNameError):
        adjoint.Graph.from_equations([sp.Eq(a, x), sp.Eq(a, x**2)], inputs=[x])
    with pytest.raises(DuplicateNameError):
        adjoint.Graph.from_equations([sp.Eq(x, a), sp.Eq(a, 1)], inputs=[x])
    with pytest.raises(UnknownSymbolError, match="q"):
        adjoint.Graph.from_equations([sp.Eq(a, sp.Symbol("q"))], inputs=[x])
    with pytest.raises(CycleError):
        adjoint.Graph.from_equations([sp.Eq(a, b), sp.Eq(b, a + x)], inputs=[x])
    with pytest.raises(ExpressionError):
        adjoint.Graph.from_equations([sp.Eq(a + 1, x)], inputs=[x])
    with pytest.raises(ExpressionError):
        adjoint.Graph.from_equations(["a == x"], inputs=[x])
    with pytest.raises(AdjointError, match="output"):
        adjoint.Graph.from_equations([sp.Eq(a, x), sp.Eq(b, x)], inputs=[x])


def test_from_expr_errors():
    x, y = sp.symbols("x y", real=True)
    with pytest.raises(UnknownSymbolError, match="y"):
        adjoint.Graph.from_expr(x * y, inputs=[x])
    with pytest.raises(ParseError):
        adjoint.Graph.from_expr("open('f')", inputs=[x])
    with pytest.raises(ExpressionError):
        adjoint.Graph.from_expr(None)


def test_empty_graph_has_no_output():
    with pytest.raises(AdjointError, match="define"):
        _ = adjoint.Graph().output


@pytest.mark.parametrize(
    "call",
    [
        lambda: adjoint.Graph.from_equations(5, inputs=[]),
        lambda: adjoint.Graph.from_equations([], inputs=5),
        lambda: adjoint.Graph.from_expr("x", inputs=5),
        lambda: adjoint.grad("x**2", 5),
        lambda: adjoint.parse("x", symbols=5),
        lambda: adjoint.check_adjoints(make(), 5),
        lambda: make().trace(None),
        lambda: make().compile()(None, 1.0, 1.0),
    ],
)
def test_arguments_of_the_wrong_kind_get_the_packages_error(call):
    with pytest.raises(AdjointError):
        call()
