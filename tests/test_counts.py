"""Linear cost, checked through counts (deterministic), never through timings."""

import sympy as sp
from hypothesis import given
from strategies import dags

import adjoint
from adjoint.operations import partials
from adjoint.system import lagrangian


def _edges(g):
    return sum(len(g.parents(z)) for z in g.defined)


@given(dags(max_nodes=12))
def test_one_term_per_edge_and_one_forward_term_per_node(g):
    kkt = g.stationarity()
    assert sum(len(c.contributions) for c in kkt.backward_conditions) == _edges(g)
    assert [c.unknown for c in kkt.forward_conditions] == list(g.defined)
    assert len(kkt) == len(g.defined) * 2 + len(g.inputs)


@given(dags(max_nodes=12))
def test_solving_evaluates_each_condition_and_contribution_once(g):
    calls = []
    originals = {
        cls: cls.solve if cls is lagrangian.ForwardCondition else cls.value
        for cls in (lagrangian.ForwardCondition, lagrangian.Contribution)
    }

    def counting(cls):
        return lambda obj, env: calls.append(obj) or originals[cls](obj, env)

    lagrangian.ForwardCondition.solve = counting(lagrangian.ForwardCondition)
    lagrangian.Contribution.value = counting(lagrangian.Contribution)
    try:
        g.solve({x: 0.5 for x in g.inputs})
    finally:
        lagrangian.ForwardCondition.solve = originals[lagrangian.ForwardCondition]
        lagrangian.Contribution.value = originals[lagrangian.Contribution]
    assert len(calls) == len(g.defined) + _edges(g)
    assert len(set(map(id, calls))) == len(calls)


def _derivations(monkeypatch, build) -> int:
    """How many times sympy differentiates while ``build()``'s graph is solved."""
    import sympy

    calls = []
    original = sympy.diff
    monkeypatch.setattr(partials, "_OPERATIONS", {})
    monkeypatch.setattr(sympy, "diff", lambda *a, **k: calls.append(a) or original(*a, **k))
    g, point = build()
    g.solve(point)
    monkeypatch.setattr(sympy, "diff", original)
    return len(calls)


def _chain(n):
    # A chain that repeats three operations.
    g = adjoint.Graph()
    z = g.input("x")
    y = g.input("y")
    for k in range(n):
        z = g.define(f"z{k}", [sp.sin(z), z * y, z**2 + y][k % 3])
    return g, {"x": 0.3, "y": 0.2}


def _wide(n):
    # One node that reads n inputs: a sum of n squares.
    g = adjoint.Graph()
    xs = [g.input(f"x{k}") for k in range(n)]
    g.define("f", sp.Add(*(x**2 for x in xs)))
    return g, {x: 1.0 for x in xs}


def test_derivations_do_not_grow_with_the_graph(monkeypatch):
    # Each kind of operation is differentiated once per argument, however long the
    # chain or however many summands a node has.
    assert _derivations(monkeypatch, lambda: _chain(300)) == _derivations(
        monkeypatch, lambda: _chain(900)
    )
    assert _derivations(monkeypatch, lambda: _wide(50)) == _derivations(
        monkeypatch, lambda: _wide(400)
    )


def test_each_partial_of_a_wide_node_reads_only_its_own_arguments():
    g, point = _wide(300)
    g.solve(point)
    for c in g.stationarity().conditions("gradient"):
        (t,) = c.contributions
        _, needs = t.op.numeric_partial_fn(t.k)
        assert len(needs) == 1  # d(sum of x_k**2)/dx_k = 2 x_k: x_k alone


def test_a_chain_deeper_than_the_recursion_limit_goes_through_every_step():
    import sys

    depth = sys.getrecursionlimit() + 200  # past the limit is what matters
    g = adjoint.Graph()
    z = g.input("x")
    for k in range(depth):
        z = g.define(f"z{k}", sp.tanh(z) + 0.1 if k % 2 else sp.sin(z) * z)
    kkt = g.stationarity()
    assert len(kkt.adjoint) == depth
    sol = g.solve({"x": 0.3})
    value, (grad,) = g.compile()(0.3)
    assert value == sol.output and grad == sol.gradient["x"]
    assert len(repr(kkt).splitlines()) == 2 * depth + 4
    assert g.source().count("\n") > 2 * depth
    assert len(g._repr_latex_()) > depth
    assert str(g.explain()).count("lambda_") > depth


def test_verify_is_linear_in_the_depth_of_a_graph(monkeypatch):
    """A chain of sin(z)*z + x nodes: verify took 0.1 s at depth 1, 6 s at 3 and a minute
    at 4 (each level doubles the composed expression). It now evaluates each
    constraint a bounded number of times per node that reads it."""
    from adjoint.system.lagrangian import ForwardCondition

    calls = {"n": 0}
    solve = ForwardCondition.solve

    def counted(self, env):
        calls["n"] += 1
        return solve(self, env)

    monkeypatch.setattr(ForwardCondition, "solve", counted)
    per_node = {}
    for depth in (50, 200):
        g = adjoint.Graph()
        x = g.input("x")
        z = x
        for i in range(depth):
            z = g.define(f"z{i + 1}", sp.sin(z) * z + x)
        calls["n"] = 0
        assert g.verify().ok
        per_node[depth] = calls["n"] / depth
    assert per_node[200] <= 1.1 * per_node[50], per_node
