"""Text says everything the package prints: every expression the package writes as
text (conditions, answer keys, explanations) reads back with `adjoint.parse` as the
same expression, matrix ones included, so a student can submit what the package
prints, and a grader can grade it from text.
"""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from strategies import dags, matrix_graphs

import adjoint
from adjoint import functions as fn
from adjoint.core.display import text
from adjoint.examples import two_layer_net
from adjoint.operations.primitives import undefined_at_zero

_D = sp.Dummy("d", real=True)


def canonical(e):
    """``e`` with display-transparent kink marks dropped and every bound variable the
    same, so that two readings of one text compare equal."""
    e = e.replace(lambda a: isinstance(a, undefined_at_zero), lambda a: a.args[0])
    return e.replace(
        lambda a: isinstance(a, sp.Lambda),
        lambda a: sp.Lambda(_D, a.expr.xreplace({a.variables[0]: _D})),
    )


def symbols_of(g):
    return [*g.nodes, *g.constants, *(g.multiplier(z) for z in g.nodes), *g.dims]


def assert_reads_back(g, expr):
    written = text(expr)
    read = adjoint.parse(written, symbols=symbols_of(g))
    a, b = canonical(read), canonical(expr)
    assert a == b or sp.simplify(a - b) == 0, (written, read, expr)


def every_condition(g):
    kkt = g.stationarity()
    return [c.rhs for c in (*kkt.forward_conditions, *kkt.backward_conditions)]


@settings(max_examples=30)
@given(dags(max_nodes=6))
def test_every_condition_of_a_random_graph_reads_back(g):
    for rhs in every_condition(g):
        assert_reads_back(g, rhs)


@settings(max_examples=25)
@given(matrix_graphs())
def test_every_condition_of_a_random_matrix_graph_reads_back(g):
    for rhs in every_condition(g):
        assert_reads_back(g, rhs)


def test_the_two_layer_nets_answer_key_reads_back():
    g, _ = two_layer_net()
    for rhs in every_condition(g):
        assert_reads_back(g, rhs)
    assert text(g.stationarity().conditions("adjoint")[3].rhs) == "tanh'.(H) .* Lambda_A"


def test_user_operations_and_the_vocabulary_are_text():
    wave = adjoint.elementary("wave_text", np.sin, [sp.cos])
    x, y = sp.symbols("x y", real=True)
    assert adjoint.parse("wave_text(x) + softplus(y)", symbols=[x, y]) == wave(x) + fn.softplus(y)
    g = adjoint.Graph.from_expr("softplus(x) * sigmoid(x)")  # was refused / four nodes
    assert len(g.defined) == 3
    assert g.solve({"x": 0.5}).gradient["x"] == pytest.approx(
        float(sp.diff(sp.log(1 + sp.exp(x)) / (1 + sp.exp(-x)), x).subs(x, 0.5)), rel=1e-12
    )


@pytest.mark.parametrize(
    ("written", "words"),
    [
        ("A .* B", ["element-wise product", "2 x 3", "3 x 2"]),
        ("x % y", ["% is not an operator", ".*"]),
        ("frob.(A)", ["'frob' is not a function"]),
        ("row_sums.(A)", ["not a function of one number"]),
        ("(d -> d**2, 3).(A)", ["one variable"]),
        ("(A)[0]", ["(M)[i, j]"]),
        ("logsumexp(A, axis=x)", ["axis=<integer>"]),
        ("_ew_sin(x)", ["leading underscore", "not allowed"]),
    ],
)
def test_the_texts_own_syntax_is_refused_clearly_when_misused(written, words):
    A = sp.MatrixSymbol("A", 2, 3)
    B = sp.MatrixSymbol("B", 3, 2)
    x, y = sp.symbols("x y", real=True)
    with pytest.raises(adjoint.ParseError) as err:
        adjoint.parse(written, symbols=[A, B, x, y])
    for w in words:
        assert w in str(err.value), str(err.value)


def test_a_float_before_a_product_is_still_a_float():
    x = sp.Symbol("x", real=True)
    assert adjoint.parse("2.*x", symbols=[x]) == 2.0 * x
    assert (
        adjoint.parse("x2.*x", symbols=[x, sp.Symbol("x2", real=True)])
        == sp.Symbol("x2", real=True) * x
    )


def test_messages_quote_the_text_as_written():
    H = sp.MatrixSymbol("H", 2, 3)
    W = sp.MatrixSymbol("W", 3, 3)
    with pytest.raises(adjoint.ParseError) as err:
        adjoint.parse("tanh.(H) .* W", symbols=[H, W])
    assert "tanh.(H) .* W" in str(err.value) and "_ew_" not in str(err.value)


def test_conditions_print_as_the_package_writes_them_not_as_sympys_internals(katex):
    """kkt.adjoint printed Lambda(_d, 1 - tanh(_d)**2).(H) and HadamardProduct(...)."""
    from test_latex import check

    g, _ = two_layer_net()
    for equations in (g.stationarity().adjoint, g.second_order().adjoint):
        shown = repr(equations)
        assert "Lambda(_d" not in shown and "HadamardProduct" not in shown, shown
        assert "Eq(" not in shown
    key = g.stationarity().adjoint[3]
    assert str(key) == "Lambda_H = tanh'.(H) .* Lambda_A"
    assert key == sp.Eq(key.lhs, key.rhs, evaluate=False)  # still sympy's Eq
    assert sp.latex(key) == r"\Lambda_{H} = \tanh'_{\circ}\left(H\right) \circ \Lambda_{A}"
    items = [
        (str(e), sp.latex(e), True)
        for e in [*g.stationarity().equations, *g.second_order().adjoint]
    ]
    check(katex, items)
