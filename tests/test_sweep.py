"""One sweep for every system: every kind of condition solves itself (``sweep``), and
solving and second order run the one loop, once per sweep, over explicit nodes,
implicit blocks and recurrences alike."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import adjoint
from adjoint.examples import lecture_dag, two_layer_net
from adjoint.system import second_order as second_order_module
from adjoint.system import solve as solve_module


def _implicit():
    g = adjoint.Graph()
    x = g.input("x")
    y = g.implicit("y", "y**3 + y - x")
    g.define("f", sp.sin(y) * x)
    return g, {x: 1.3}


def _recurrence():
    g = adjoint.Graph()
    a, x0 = g.input("a"), g.input("x0")
    u = g.sequence("u", steps=6)
    z = g.recurrence("z", step="a*sin(z) + u", init=x0, steps=6, cost="z**2")
    g.define("J", z.cost + z.final**2)
    return g, {a: 0.7, x0: 0.3, u: np.linspace(-0.5, 0.5, 6)}


GRAPHS = {"lecture": lecture_dag, "two-layer": two_layer_net, "implicit": _implicit}
GRAPHS["recurrence"] = _recurrence


@pytest.mark.parametrize("build", GRAPHS.values(), ids=GRAPHS.keys())
def test_every_condition_of_every_system_solves_itself(build):
    g, _ = build()
    kkt, so = g.stationarity(), g.second_order()
    systems = [
        kkt.forward_conditions,
        kkt.backward_conditions,
        so.tangent_conditions,
        so.backward_conditions,
    ]
    kinds = {type(c).__name__ for system in systems for c in system}
    assert all(callable(getattr(c, "sweep", None)) for system in systems for c in system), kinds


@pytest.mark.parametrize("build", GRAPHS.values(), ids=GRAPHS.keys())
def test_solving_and_second_order_run_the_one_loop_once_per_sweep(build, monkeypatch):
    g, at = build()
    calls = []
    real = solve_module.sweep

    def counted(conditions, env, state):
        calls.append(len(conditions))
        return real(conditions, env, state)

    monkeypatch.setattr(solve_module, "sweep", counted)
    monkeypatch.setattr(second_order_module, "sweep", counted)
    g.solve(at)
    kkt = g.stationarity()
    assert calls == [len(kkt.forward_conditions), len(kkt.backward_conditions)]
    calls.clear()
    direction = {x: np.ones(np.shape(at[x])) if np.ndim(at[x]) else 1.0 for x in g.inputs}
    g.hvp(at, direction)
    so = g.second_order()
    # Step 1 and Step 2 again, then the tangent and the second-order adjoint sweeps
    assert calls[-2:] == [len(so.tangent_conditions), len(so.backward_conditions)]
    assert len(calls) == 4


@pytest.mark.parametrize("build", [lecture_dag, two_layer_net], ids=["lecture", "two-layer"])
def test_each_edge_is_one_contribution_read_by_step_2_the_tangent_and_second_order(build):
    # one object per edge j -> i: Step 2 sums it into lambda_j, the tangent of z_i sums
    # it with zdot_j, the second-order adjoint of z_j differentiates it
    g, _ = build()
    kkt, so = g.stationarity(), second_order_module.second_order(g)
    step2 = [t for c in kkt.backward_conditions for t in c.contributions]
    tangent = [t for c in so.tangent_conditions for t in c.contributions]
    second = [t for c in so.backward_conditions for t in c.adjoint.contributions]
    edges = sum(1 for z in g.defined for r in g.node(z).reads if r not in g.constants)
    assert len(step2) == edges
    assert {id(t) for t in tangent} == {id(t) for t in step2} == {id(t) for t in second}
    assert all(isinstance(c, adjoint.system.conditions.Condition) for c in so.conditions())
    assert all(isinstance(c, adjoint.system.conditions.Condition) for c in kkt.conditions())


def test_a_tangent_of_a_node_reading_constants_sums_only_the_moving_edges():
    g = adjoint.Graph()
    x, c = g.input("x"), g.constant("c")
    g.define("f", sp.sin(x) * c**2 + x * c)
    (t,) = second_order_module.second_order(g).tangent_conditions
    assert [e.node for e in t.contributions] == [x]
    got = g.tangent({x: 0.4, c: 1.5}, {x: 2.0}).derivative
    assert got == pytest.approx((np.cos(0.4) * 1.5**2 + 1.5) * 2.0, rel=1e-14)


def test_a_system_refuses_a_role_it_has_not_by_name():
    g, _ = lecture_dag()
    kkt, so = g.stationarity(), second_order_module.second_order(g)
    assert kkt.conditions("adjoint") == kkt.conditions(adjoint.Role.ADJOINT)
    assert len(so.conditions("hvp")) == len(g.inputs)
    for system, role in ((kkt, "tangent"), (so, "forward"), (kkt, "nonsense"), (kkt, 3)):
        with pytest.raises(adjoint.AdjointError, match="roles are"):
            system.conditions(role)
