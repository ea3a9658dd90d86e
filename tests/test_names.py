"""Names: any name a user gives (keywords, unicode, code, names Python merges)
gives the right program or an AdjointError; never another node's value, never code
run from a name."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

import adjoint
from adjoint import AdjointError, BadValueError

EVIL = "z\n    __import__('os').system('touch /tmp/adjoint-pwned')\n    #"


_NAME = st.one_of(
    st.text(min_size=1, max_size=8),
    st.sampled_from(["if", "lambda", "None", "sum", "abs", "numpy", "_x", "x y", "a\nb", "é"]),
)


def test_a_name_carrying_code_is_refused_everywhere(tmp_path):
    import os

    marker = "/tmp/adjoint-pwned"
    if os.path.exists(marker):
        os.remove(marker)
    x = sp.Symbol("x", real=True)
    attempts = [
        lambda: adjoint.Graph().input(sp.Symbol(EVIL)),
        lambda: adjoint.Graph().input(EVIL),
        lambda: adjoint.Graph.from_equations([sp.Eq(sp.Symbol(EVIL), x**2)], inputs=[x]),
        lambda: adjoint.Graph.from_expr(sp.Symbol(EVIL) ** 2),
    ]
    for attempt in attempts:
        with pytest.raises(AdjointError):
            attempt()
    g = adjoint.Graph()
    g.input("x")
    with pytest.raises(AdjointError):
        g.define(sp.Symbol(EVIL), x**2)
    assert not os.path.exists(marker)


def test_a_node_named_like_a_temporary_keeps_its_own_value():
    g = adjoint.Graph()
    x = g.input("x")
    h = g.define("h", sp.sin(x) * x)
    h0 = g.define("h_part0", 3 * x)
    g.define("f", h + h0**2)
    sol = g.solve({x: 1.0})
    value, (grad,) = g.compile()(1.0)
    exact = sp.diff(sp.sin(x) * x + (3 * x) ** 2, x).subs(x, 1.0)
    assert grad == pytest.approx(float(exact), rel=1e-12)
    assert sol.gradient[x] == pytest.approx(float(exact), rel=1e-12)
    assert value == pytest.approx(float(sp.sin(1.0) + 9), rel=1e-12)


@pytest.mark.parametrize("name", ["_vectorize", "_real", "_custom", "__x"])
def test_names_with_a_leading_underscore_are_refused(name):
    with pytest.raises(AdjointError, match="underscore"):
        adjoint.Graph().input(name)


@pytest.mark.parametrize("name", ["abs", "numpy", "math", "sum", "print", "f_part0", "lam_x"])
def test_names_that_meet_python_or_the_program_compile_right(name):
    g = adjoint.Graph()
    x = g.input("x")
    y = g.input(name)
    g.define("f", sp.sin(x) * y + y**2)
    value, (gx, gy) = g.compile()(0.5, 2.0)
    assert value == pytest.approx(np.sin(0.5) * 2 + 4)
    assert gx == pytest.approx(np.cos(0.5) * 2) and gy == pytest.approx(np.sin(0.5) + 4)


def test_names_that_python_reads_as_another_name_are_refused():
    # Python reads identifiers in NFKC form: full-width a is a.
    with pytest.raises(AdjointError, match=r"NFKC|reads"):
        adjoint.Graph().input("\uff41")
    with pytest.raises(AdjointError):
        adjoint.Graph().input(sp.Symbol("\u212b"))  # the angstrom sign, read as A-ring


@pytest.mark.parametrize("name", ["lambda_x", "Lambda_H"])
def test_names_of_multipliers_are_refused_for_symbols_too(name):
    with pytest.raises(AdjointError, match="multiplier"):
        adjoint.Graph().input(sp.Symbol(name))


@given(_NAME, _NAME)
def test_any_names_give_the_right_program_or_an_adjoint_error(a, b):
    g = adjoint.Graph()
    try:
        x = g.input(a)
        y = g.input(b)
    except AdjointError:
        return
    g.define("f", x * sp.exp(y))
    value, (gx, gy) = g.compile()(2.0, 0.5)
    assert value == pytest.approx(2 * np.exp(0.5))
    assert gx == pytest.approx(np.exp(0.5)) and gy == pytest.approx(2 * np.exp(0.5))
    for line in g.source().splitlines():
        assert line.isprintable()


def test_a_symbol_with_other_assumptions_is_not_taken_for_a_node():
    g = adjoint.Graph()
    x = g.input("x")
    with pytest.raises(AdjointError, match="positive"):
        g.define("f", sp.Abs(sp.Symbol("x", positive=True)) + x)  # sympy wrote Abs(x) as x
    assert len(g) == 1


def test_elementary_names_that_python_merges_are_refused():
    with pytest.raises(AdjointError, match=r"NFKC|reads"):
        adjoint.elementary("\u210c", numeric=lambda a: a, partials=[lambda a: sp.Integer(1)])


def test_a_value_given_twice_is_refused():
    g = adjoint.Graph()
    x = g.input("x")
    g.define("f", x**2)
    with pytest.raises(BadValueError, match="twice"):
        g.solve({x: 1.0, "x": 2.0})
