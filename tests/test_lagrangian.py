"""The Lagrangian (equation 6) and its stationarity conditions grad L = 0."""

import sympy as sp
from hypothesis import given
from strategies import dags

import adjoint
from adjoint.examples import fan_out, lecture_dag, warm_up


def _same(a, b) -> bool:
    d = sp.expand(a - b)
    return d == 0 or sp.simplify(d) == 0


@given(dags(max_nodes=6))
def test_each_condition_is_the_literal_derivative_of_the_lagrangian(g):
    L = g.lagrangian()
    kkt = g.stationarity()
    for c in kkt.conditions():
        assert _same(sp.diff(L, c.wrt), c.residual), (c.wrt, c.residual)
    # and nothing else: L has no other variables than the z's and lambda's
    wrts = {c.wrt for c in kkt.conditions()}
    assert L.free_symbols <= wrts | {g.multiplier(z) for z in g.nodes} | set(g.nodes)


@given(dags(max_nodes=6))
def test_conditions_are_solved_for_their_own_unknown(g):
    kkt = g.stationarity()
    for c in kkt.conditions():
        assert c.eq.lhs == c.unknown
        assert not c.rhs.has(c.unknown)
        if c.role != "gradient":  # linear in the unknown with coefficient -1
            assert sp.diff(c.residual, c.unknown) == -1


@given(dags(max_nodes=6))
def test_conditions_come_in_solving_order(g):
    kkt = g.stationarity()
    assert [e.lhs for e in kkt.forward] == list(g.defined)
    assert [e.lhs for e in kkt.adjoint] == [g.multiplier(z) for z in reversed(g.defined)]
    assert kkt.adjoint[0] == sp.Eq(g.multiplier(g.output), 1)
    assert [e.lhs for e in kkt.gradient] == [g.multiplier(x) for x in g.inputs]
    # Step 2 is triangular: lambda_j reads only multipliers already solved for.
    known = set()
    for c in kkt.conditions("adjoint"):
        lams = {s for s in c.rhs.free_symbols if isinstance(s, adjoint.Multiplier)}
        assert lams <= known
        known.add(c.unknown)


def test_lagrangian_is_equation_6():
    g, _ = lecture_dag()
    x, y = g.inputs
    z1, z2 = g.defined
    l1, l2 = g.multiplier(z1), g.multiplier(z2)
    expected = z2 - l1 * (z1 - x * y) - l2 * (z2 - (sp.sin(z1) + x))
    assert sp.expand(g.lagrangian() - expected) == 0


def test_warm_up_conditions_are_equations_4():
    g, _ = warm_up()
    x = g.inputs[0]
    z, f = g.defined
    lz, lf = g.multiplier(z), g.multiplier(f)
    kkt = g.stationarity()
    assert kkt.forward == [sp.Eq(z, x**2), sp.Eq(f, (z - 1) ** 2)]  # (4c)
    assert kkt.adjoint[0] == sp.Eq(lf, 1)
    assert _same(kkt.adjoint[1].rhs, lf * 2 * (z - 1))  # (4b): lambda = f'(z)
    assert _same(kkt.gradient[0].rhs, lz * 2 * x)  # (4a): lambda g'(x)


def test_fan_out_condition_counts_both_reads():
    g, _ = fan_out()
    a, b, _c = g.defined
    cond = {c.unknown: c for c in g.stationarity().conditions("adjoint")}
    assert cond[g.multiplier(a)].rhs == 2 * g.multiplier(b)


def test_multipliers_render_as_lambda_with_the_node_as_subscript():
    g = adjoint.Graph()
    x = g.input("x")
    z = g.define("z_1", x**2)
    assert sp.latex(g.multiplier(z)) == r"\lambda_{z_{1}}"
    assert sp.latex(g.multiplier(x)) == r"\lambda_{x}"
    assert str(g.multiplier(z)) == "lambda_z_1"
    assert r"\lambda_{z_{1}}" in sp.latex(g.lagrangian())
    assert g.multiplier(z).is_real


def test_stationarity_is_cached_and_refreshed_when_the_graph_changes():
    g, _ = lecture_dag()
    kkt = g.stationarity()
    assert g.stationarity() is kkt
    g.define("z3", g.output**2)
    assert g.stationarity() is not kkt
    assert len(kkt.forward) == 2  # the old object is unchanged
    assert len(g.stationarity().forward) == 3


def test_each_operation_is_differentiated_once(monkeypatch):
    # sin(z) appears at every level: its partial is derived once, then instantiated.
    from adjoint.operations import partials

    g = adjoint.Graph()
    z = g.input("x")
    for k in range(50):
        z = g.define(f"s{k}", sp.sin(z))
    derived = []
    original = partials.Operation.partial
    monkeypatch.setattr(partials, "_OPERATIONS", {})
    monkeypatch.setattr(
        partials.Operation,
        "partial",
        lambda op, k: derived.append((op, k)) or original(op, k),
    )
    kkt = g.stationarity()
    assert kkt.equations  # every condition's right-hand side, instantiated
    assert len(partials._OPERATIONS) == 1
    (op,) = partials._OPERATIONS.values()
    assert list(op._partials) == [0]
    assert len(derived) == 50  # one instantiation per edge, one derivation in all
    assert kkt.adjoint[1].rhs == g.multiplier(g.defined[-1]) * sp.cos(g.defined[-2])
