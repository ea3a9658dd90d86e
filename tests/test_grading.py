"""Checking gradients and grading hand-derived adjoints."""

import json

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from strategies import dags

import adjoint
from adjoint import check_adjoints, check_gradient, dot_product_test, taylor_test
from adjoint.examples import fan_out, lecture_dag, two_layer_net, warm_up


def _right_answers(g):
    """The correct multipliers as a student derives them, independently of the package's
    conditions: lambda_j = [j = n] + sum over the readers i of lambda_i times sympy's
    derivative of f_i by z_j. Scalar graphs only."""
    answers = {}
    for j in g.nodes:
        total = sp.Integer(int(j == g.output))
        for i in g.children(j):
            total += g.multiplier(i) * sp.diff(g.expr(i), j)
        answers[j] = total
    return answers


# -- check_gradient, taylor_test, dot_product_test ------------------------------


@pytest.mark.parametrize("example", [warm_up, lecture_dag, fan_out, two_layer_net])
def test_checks_pass_on_the_lectures_examples(example):
    g, point = example()
    assert check_gradient(g, point).ok
    assert taylor_test(g, point).ok
    assert all(err < 1e-6 for err in dot_product_test(g, point).values())


def _with_wrong_partial(monkeypatch, factor):
    from adjoint import partials

    original = partials.Operation.partial
    monkeypatch.setattr(partials, "_OPERATIONS", {})
    monkeypatch.setattr(
        partials.Operation,
        "partial",
        lambda op, k: factor * original(op, k) if op.template.has(sp.sin) else original(op, k),
    )


def test_a_wrong_gradient_fails_both_checks(monkeypatch):
    g, point = lecture_dag()
    _with_wrong_partial(monkeypatch, 1.1)
    report = check_gradient(g, point)
    assert not report.ok and report.max_rel_error > 1e-3
    taylor = taylor_test(g, point)
    assert not taylor.ok
    assert abs(taylor.rates[-1] - 1) < 0.2  # an O(h) remainder: rate 1


def test_dot_product_test_catches_a_wrong_matrix_rule(monkeypatch):
    from adjoint import matrices

    g, point = two_layer_net()

    def wrong(expr, cot):  # Claim 16.2 with the transpose of B forgotten, square B only
        coeff, (a, b) = expr.as_coeff_matrices()
        return [(a, coeff * cot * b), (b, coeff * a.T * cot)]

    monkeypatch.setitem(matrices.RULES, sp.MatMul, wrong)
    errors = dot_product_test(g, point)
    H, W1 = g.node("H").symbol, g.node("W1").symbol
    assert errors[(H, W1)] < 1e-6  # X W1: the right factor's rule is intact
    assert max(errors.values()) > 1e-3  # Trace(R^T R): the left factor's is not


# -- custom elementary operations ------------------------------------------------


def test_custom_operation_in_graphs_latex_and_compiled_code():
    cube = adjoint.elementary("cube", numeric=lambda v: v**3, partials=[lambda v: 3 * v**2])
    x = sp.Symbol("x", real=True)
    g = adjoint.Graph.from_expr(cube(sp.sin(x)))
    assert g.solve({x: 0.4}).gradient[x] == pytest.approx(3 * np.sin(0.4) ** 2 * np.cos(0.4))
    _, (grad,) = g.compile()(np.array([0.4, 0.5]))
    assert grad[1] == pytest.approx(3 * np.sin(0.5) ** 2 * np.cos(0.5))
    assert r"\operatorname{cube}" in sp.latex(g.expr(g.output))
    assert check_gradient(g, {x: 0.4}).ok


def test_a_students_wrong_partial_is_caught_by_check_gradient():
    wrong = adjoint.elementary("mysin", numeric=np.sin, partials=[lambda v: -sp.cos(v)])
    x = sp.Symbol("x", real=True)
    g = adjoint.Graph.from_expr(wrong(x) * x)
    assert not check_gradient(g, {x: 0.7}).ok


def test_elementary_rejects_bad_definitions():
    with pytest.raises(adjoint.AdjointError):
        adjoint.elementary("not a name", numeric=np.sin, partials=[sp.cos])
    with pytest.raises(adjoint.AdjointError):
        adjoint.elementary("f2", numeric=np.sin, partials=[])


# -- check_adjoints ---------------------------------------------------------------


@given(dags(max_nodes=6))
def test_right_answers_derived_by_hand_grade_as_right(g):
    grading = check_adjoints(g, _right_answers(g), points=1)
    assert grading.ok and not grading.missing and grading.score == 1.0


def test_right_answers_in_other_forms_are_accepted():
    g = adjoint.Graph()
    x = g.input("x")
    t = g.define("t", sp.tanh(x))
    g.define("f", t**2)
    lt = g.multiplier(t)
    # 1 - t**2 is tanh'(x) once Step 1 holds; 2*t is lambda_t with lambda_f = 1 put in
    grading = check_adjoints(g, {"f": 1, t: 2 * t, x: lt * (1 - t**2)})
    assert grading.ok, grading
    wrong = check_adjoints(g, {"f": 1, t: 2 * t, x: lt * (1 + t**2)})
    assert [w.node for w in wrong.wrong] == [x]


@pytest.mark.parametrize(
    "mistake, word",
    [
        ({"c": 2}, "must be 1"),
        ({"b": "-2*lambda_c*b"}, "sign"),
        ({"a": "lambda_b"}, "differs"),  # b = a + a: the 2 forgotten
    ],
)
def test_common_mistakes_are_named(mistake, word):
    g, _ = fan_out()
    answers = {**_right_answers(g), **mistake}
    grading = check_adjoints(g, answers)
    (wrong,) = grading.wrong
    assert wrong.node.name == next(iter(mistake))
    assert word in wrong.message
    assert wrong.point  # where the two differ


def test_a_missing_fan_out_term_is_named_and_blame_stays_local():
    g, _ = lecture_dag()
    x, y = g.inputs
    z1, z2 = g.defined
    l1, l2 = g.multiplier(z1), g.multiplier(z2)
    # lambda_x forgets the direct read of x by z2, and lambda_z1 is also wrong:
    # lambda_x is still judged with the right lambda_z1, so only its own error shows.
    grading = check_adjoints(g, {z2: 1, z1: l2 * sp.sin(z1), x: l1 * y, y: l1 * x})
    assert [w.node for w in grading.wrong] == [z1, x]
    assert "misses the contribution of z2" in grading.wrong[1].message


def test_a_wrong_transpose_in_a_matrix_adjoint():
    g, _ = two_layer_net()
    # Written by hand from Claim 16.2 and the element-wise rule; text where it can say it.
    A = g.node("A").symbol
    ones = sp.OneMatrix(*A.shape)
    answers = {
        "f": "1",
        "R": "2*lambda_f*R",
        "A": "Lambda_R @ W2.T",
        "W2": "A.T @ Lambda_R",
        "H": sp.HadamardProduct(g.multiplier(A), ones - sp.HadamardPower(A, 2)),
        "W1": "X.T @ Lambda_H",
    }
    assert check_adjoints(g, answers).ok
    answers["A"] = "Lambda_R @ W2"  # Claim 16.2 without B^T
    grading = check_adjoints(g, answers)
    (wrong,) = grading.wrong
    assert wrong.node.name == "A" and "transpose" in wrong.message


def test_missing_submissions_are_reported_but_not_wrong():
    g, _ = lecture_dag()
    grading = check_adjoints(g, {"z2": 1})
    assert grading.ok and len(grading.missing) == 3 and grading.score == 0.25


def test_json_for_autograders():
    g, _ = fan_out()
    grading = check_adjoints(g, {**_right_answers(g), "c": 2})
    data = json.loads(grading.to_json())
    assert data["ok"] is False
    assert [n["status"] for n in data["nodes"]] == ["wrong", "correct", "correct", "correct"]
    assert data["nodes"][0]["point"]


@pytest.mark.parametrize(
    "submission, error",
    [
        ({"nowhere": 1}, adjoint.UnknownSymbolError),
        ({"a": "__import__('os')"}, adjoint.ParseError),
        ({"a": [1]}, adjoint.ExpressionError),
    ],
)
def test_bad_submissions(submission, error):
    g, _ = fan_out()
    with pytest.raises(error):
        check_adjoints(g, submission)
