"""g.verify(): Theorem 16.1 checked node by node by the chain-rule route."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from strategies import dags

import adjoint
from adjoint.examples import EXAMPLES
from adjoint.operations import partials, primitives


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_lecture_examples_verify(name):
    g, point = EXAMPLES[name]()
    report = g.verify()
    assert report.ok
    assert [c.node for c in report.checks] == list(g.nodes)
    # scalar graphs symbolically; matrix graphs by differences along random directions
    expected = "differences" if name == "two-layer" else "symbolic"
    assert {c.method for c in report.checks} == {expected}
    assert g.verify(at=point).ok


def test_a_wrong_matrix_adjoint_is_caught(monkeypatch):
    from adjoint.operations import matrices

    # Claim 16.2 with a sign error on the left factor: -Lambda B^T.
    def wrong(expr, cot):
        coeff, (a, b) = expr.as_coeff_matrices()
        return [(a, -coeff * cot * b.T), (b, coeff * a.T * cot)]

    g, point = EXAMPLES["two-layer"]()
    monkeypatch.setitem(matrices.RULES, sp.MatMul, wrong)
    report = g.verify(at=point)
    assert not report.ok
    # the wrong rule is met first in f = Trace(R^T R), which makes Lambda_R wrong (0):
    # checked as the proof's induction runs, the failure is named where it is made;
    # the nodes before R are consistent with it, and report.ok is False all the same
    assert {c.node.name for c in report.failed} == {"R"}
    np.testing.assert_allclose(g.solve(point).adjoints["R"], 0.0)


@given(dags(max_nodes=5))
def test_random_graphs_verify(g):
    assert g.verify(points=1).ok


def test_a_wrong_local_partial_is_caught_at_the_node_that_reads_it(monkeypatch):
    # Break the solver, not the check: every derivative of tanh comes out doubled.
    g = adjoint.Graph()
    x = g.input("x")
    a = g.define("a", sp.tanh(x))
    b = g.define("b", a * x)
    g.define("c", sp.sin(b))
    original = partials.Operation.partial

    def doubled(op, k):
        d = original(op, k)
        return 2 * d if op.template.has(sp.tanh) else d

    monkeypatch.setattr(partials, "_OPERATIONS", {})
    monkeypatch.setattr(partials.Operation, "partial", doubled)
    # Numbers use tanh' declared in terms of tanh's own value: break that too.
    monkeypatch.setitem(primitives.OUTPUT_DERIVATIVES, sp.tanh, lambda t: 2 * (1 - t**2))
    for report in (g.verify(), g.verify(at={x: 0.4})):
        assert not report.ok
        assert [c.node for c in report.failed] == [x]
        assert "FAIL" in repr(report)


def test_large_composed_expressions_are_checked_by_differences(monkeypatch):
    from adjoint.coursework import checks

    monkeypatch.setattr(checks, "SYMBOLIC_LIMIT", 3)
    g, point = EXAMPLES["dag"]()
    report = g.verify(at=point)
    assert report.ok
    assert "differences" in {c.method for c in report.checks}
