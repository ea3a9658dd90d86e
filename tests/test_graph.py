"""Declaring constraint systems: nodes, alpha/beta, networkx, and the constructors."""

import math

import networkx as nx
import pytest
import sympy as sp
from hypothesis import given
from reference import composed
from strategies import dags

import adjoint


def test_declaring_nodes_as_in_the_api():
    g = adjoint.Graph()
    x = g.input("x")
    y = g.input(sp.Symbol("y"))
    z1 = g.define("z1", x * y)
    z2 = g.define(sp.Symbol("z2"), sp.sin(z1) + x)
    assert isinstance(x, sp.Symbol) and x.is_real
    assert y == sp.Symbol("y")  # the user's own symbol is kept
    assert g.nodes == (x, y, z1, z2)
    assert g.inputs == (x, y)
    assert g.output == z2
    assert g.parents(z2) == (x, z1)
    assert g.children(x) == (z1, z2)
    assert g.children(z2) == ()
    assert g.multiplier(z1).name == "lambda_z1"
    assert g.expr("z2") == sp.sin(z1) + x


def test_inputs_come_first_in_nodes_even_when_declared_late():
    g = adjoint.Graph()
    x = g.input("x")
    z = g.define("z", x**2)
    y = g.input("y")
    assert g.nodes == (x, y, z)


def test_set_output():
    g = adjoint.Graph()
    x = g.input("x")
    a = g.define("a", x**2)
    g.define("b", a + 1)
    g.set_output(a)
    assert g.output == a


@given(dags())
def test_networkx_view_has_the_same_structure(g):
    d = g.nx
    assert set(d.nodes) == set(g.nodes)
    assert nx.is_directed_acyclic_graph(d)
    for z in g.nodes:
        assert set(d.predecessors(z)) == set(g.parents(z))
        assert set(d.successors(z)) == set(g.children(z))
    with pytest.raises(nx.NetworkXError):
        d.add_node("intruder")  # frozen: a cached view the user cannot corrupt


@given(dags())
def test_from_equations_reorders_constraints(g):
    eqs = [sp.Eq(z, g.expr(z)) for z in reversed(g.defined)]
    h = adjoint.Graph.from_equations(eqs, inputs=g.inputs)
    assert set(h.defined) == set(g.defined)
    assert h.output == g.output
    position = {z: k for k, z in enumerate(h.nodes)}
    for z in h.defined:
        assert all(position[p] < position[z] for p in h.parents(z))


def test_from_equations_accepts_text_and_pairs():
    x, y, z1, z2 = sp.symbols("x y z1 z2", real=True)
    g = adjoint.Graph.from_equations(["z2 = sin(z1)", (z1, x * y)], inputs=[x, y])
    assert g.defined == (z1, z2)
    assert g.expr(z2) == sp.sin(z1)


def test_from_equations_cycle_names_the_nodes():
    a, b, c, x = sp.symbols("a b c x", real=True)
    eqs = [sp.Eq(a, x + c), sp.Eq(b, sp.sin(a)), sp.Eq(c, b**2)]
    with pytest.raises(adjoint.CycleError) as info:
        adjoint.Graph.from_equations(eqs, inputs=[x])
    assert set(info.value.cycle) == {"a", "b", "c"}
    assert "a -> " in str(info.value)


def test_from_expr_shares_a_common_subexpression():
    x, y = sp.symbols("x y", real=True)
    g = adjoint.Graph.from_expr(sp.sin(x * y) + x * y, inputs=[x, y])
    (product,) = [z for z in g.defined if g.expr(z) == x * y]
    assert len(g.children(product)) == 2
    assert len(g.defined) == 3


def test_from_expr_inputs_default_to_sorted_free_symbols():
    b, a = sp.symbols("b a", real=True)
    g = adjoint.Graph.from_expr(a * sp.exp(b))
    assert g.inputs == (a, b)


def test_from_expr_splits_an_exponential_tree_in_linear_time():
    # e_{k+1} = e_k * e_k + x: as a tree it has 2**60 leaves, as a DAG 2 nodes a level.
    x = sp.Symbol("x", real=True)
    e = x
    for _ in range(60):
        e = sp.Mul(e, e + x, evaluate=False)
    g = adjoint.Graph.from_expr(e, inputs=[x])
    assert len(g.defined) == 120
    assert max(len(g.children(z)) for z in g.defined) <= 2


def test_from_expr_handles_a_chain_deeper_than_the_recursion_limit():
    x = sp.Symbol("x", real=True)
    e = x
    for k in range(3000):  # unevaluated: sympy's own evaluation would recurse
        e = sp.sin(e, evaluate=False) if k % 2 else sp.Add(e, 1, evaluate=False)
    g = adjoint.Graph.from_expr(e, inputs=[x])
    assert len(g.defined) == 3000
    # the chain rule by hand, one level at a time: d/dz sin(z) = cos(z), d/dz (z+1) = 1
    value, derivative = 0.1, 1.0
    for k in range(3000):
        if k % 2:
            value, derivative = math.sin(value), math.cos(value) * derivative
        else:
            value += 1
    assert g.solve({x: 0.1}).gradient[x] == pytest.approx(derivative, rel=1e-12)


@given(dags(max_nodes=6))
def test_from_expr_of_a_composed_graph_gives_the_same_gradient(g):
    f = composed(g)[g.output]
    h = adjoint.Graph.from_expr(f, inputs=g.inputs)
    point = {x: 0.3 + 0.2 * k for k, x in enumerate(g.inputs)}
    a, b = g.solve(point), h.solve(point)
    for x in g.inputs:
        assert a.gradient[x] == pytest.approx(b.gradient[x], rel=1e-9, abs=1e-12)


def test_from_expr_keeps_numbers_and_constant_subexpressions_inline():
    x = sp.Symbol("x", real=True)
    g = adjoint.Graph.from_expr(sp.sqrt(2) * x + sp.pi)
    assert all(g.expr(z).free_symbols for z in g.defined)
    assert g.solve({x: 1.0}).gradient[x] == pytest.approx(2**0.5)


def test_from_expr_of_a_bare_symbol_or_number():
    x = sp.Symbol("x", real=True)
    g = adjoint.Graph.from_expr(x)
    assert g.solve({x: 2.0}).gradient[x] == 1.0
    g = adjoint.Graph.from_expr(sp.Integer(3), inputs=[x])
    assert g.solve({x: 2.0}).gradient[x] == 0.0
