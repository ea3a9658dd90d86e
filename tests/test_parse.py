"""Text is parsed into sympy without running it as Python."""

import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

import adjoint
from adjoint import ParseError, parse

x, y = sp.symbols("x y", real=True)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("sin(x*y) + x**2", sp.sin(x * y) + x**2),
        ("x^2 - 3*y", x**2 - 3 * y),
        ("-x + +y", -x + y),
        ("1.5e-3 * x", sp.Float("1.5e-3") * x),
        ("exp(-x**2/2) / sqrt(2*pi)", sp.exp(-(x**2) / 2) / sp.sqrt(2 * sp.pi)),
        ("max(x, 0) + relu(y) + Abs(x)", sp.Max(x, 0) + sp.Max(0, y) + sp.Abs(x)),
        ("sigmoid(x)", 1 / (1 + sp.exp(-x))),
        ("atan2(y, x) + ln(x) + E", sp.atan2(y, x) + sp.log(x) + sp.E),
        ("  x ", x),
    ],
)
def test_parses_arithmetic_and_elementary_functions(text, expected):
    assert parse(text, symbols=[x, y]) == expected


def test_unknown_names_become_real_symbols_without_a_symbol_list():
    e = parse("a*b + a")
    assert {s.name for s in e.free_symbols} == {"a", "b"}
    assert all(s.is_real for s in e.free_symbols)


@pytest.mark.parametrize(
    "text, word",
    [
        ("__import__('os').system('echo hacked')", "__import__"),
        ("x.__class__", "attribute"),
        ("(lambda: 1)()", "lambda"),
        ("'abc'", "literal"),
        ("[x, y]", "list"),
        ("x if y else 1", "conditional"),
        ("exec('1')", "exec"),
        ("eval", "eval"),
        ("sin", "function"),
        ("z + 1", "unknown symbol 'z'"),
        ("_x", "underscore"),
        ("x < y", "comparison"),
        ("sin(x, y)", "sin()"),
        ("sin(x=1)", "positional"),
        ("9**9**9", "too large"),
        ("(" * 500 + "x" + ")" * 500, "deeper"),
        ("x" + "+x" * 20_000, "limit"),
        ("x +", "syntax"),
        ("x; import os", "syntax"),
        ("True", "literal"),
    ],
)
def test_rejects_anything_but_arithmetic(text, word):
    with pytest.raises(ParseError) as info:
        parse(text, symbols=[x, y])
    assert word in str(info.value)


def test_long_flat_sums_do_not_hit_the_recursion_limit():
    e = parse("+".join(["x"] * 1500), symbols=[x])
    assert e == 1500 * x


@given(st.text(max_size=60))
def test_any_text_gives_an_expression_or_a_parse_error(text):
    try:
        result = parse(text, symbols=[x, y])
    except ParseError:
        return
    assert isinstance(result, sp.Expr)


@given(st.text(alphabet="xy0123456789.+-*/^()sincoexpg, ", max_size=40))
def test_arithmetic_looking_text_gives_an_expression_or_a_parse_error(text):
    try:
        result = parse(text, symbols=[x, y])
    except ParseError:
        return
    assert isinstance(result, sp.Expr)


def test_text_is_accepted_wherever_an_expression_is():
    g = adjoint.Graph()
    g.input("x")
    g.input("y")
    z = g.define("z", "sin(x*y) + x^2")
    assert g.expr(z) == sp.sin(x * y) + x**2
    h = adjoint.Graph.from_expr("sin(x*y) + x^2")
    assert [s.name for s in h.inputs] == ["x", "y"]
    assert adjoint.grad("x*y", ["x", "y"], at={"x": 2.0, "y": 3.0}) == {x: 3.0, y: 2.0}


def test_matrix_text_transposes_and_products():
    A, B = sp.MatrixSymbol("A", 2, 3), sp.MatrixSymbol("B", 2, 3)
    assert parse("A.T @ B", symbols=[A, B]) == A.T * B
    with pytest.raises(ParseError, match="not a matrix"):
        parse("x.T", symbols=[x])
    with pytest.raises(ParseError, match="attribute"):
        parse("A.real", symbols=[A])
    with pytest.raises(ParseError):
        parse("A @ B", symbols=[A, B])  # 2x3 @ 2x3: the shapes do not fit
