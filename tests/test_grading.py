"""Checking gradients and grading hand-derived adjoints."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import sympy as sp
from hypothesis import assume, given
from hypothesis import strategies as st
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
    from adjoint.operations import partials

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
    from adjoint.operations import matrices

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
    assert wrong.mistake == "transpose"


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


def test_bad_submission_keys_raise():
    g, _ = fan_out()
    with pytest.raises(adjoint.UnknownSymbolError):
        check_adjoints(g, {"nowhere": 1})
    with pytest.raises(adjoint.AdjointError):
        check_adjoints(g, {"a": 1}, weights={"a": -1})


@pytest.mark.parametrize("formula", ["__import__('os')", [1], "lamda_c * 2*b"])
def test_a_formula_that_does_not_parse_is_reported_and_the_rest_graded(formula):
    g, _ = fan_out()
    answers = {**_right_answers(g), "b": formula}
    grading = check_adjoints(g, answers)
    (bad,) = grading.unparseable
    assert bad.node.name == "b" and "lambda_b" in bad.message
    assert [x.status for x in grading.grades].count("correct") == 3
    assert not grading.ok


# -- issue 13: graded as a function of the multipliers, fresh points, budgets ------


def _quadratic():
    g = adjoint.Graph()
    z = g.input("z")
    g.define("f", z**2 + 3 * z)
    return g


def _sin_of_product():
    g = adjoint.Graph()
    x, y = g.input("x"), g.input("y")
    z1 = g.define("z1", x * y)
    g.define("f", sp.sin(z1))
    return g


def _grade(g, node, formula, **kw):
    (grade,) = [x for x in check_adjoints(g, {node: formula}, **kw).grades if x.node.name == node]
    return grade


def test_a_multiplier_must_multiply_the_whole_partial():
    g = _quadratic()
    wrong = _grade(g, "z", "lambda_f*2*z + 3")
    assert wrong.status == "wrong" and wrong.mistake == "not-a-function-of-multipliers"
    assert _grade(g, "z", "lambda_f*(2*z + 3)").status == "correct"
    assert _grade(g, "z", "2*z + 3").status == "correct"  # lambda_f = 1 substituted
    # with substitution refused, the multiplier must be written out
    dropped = _grade(g, "z", "2*z + 3", substitute_output=False)
    assert dropped.mistake == "dropped-multiplier"


def test_dropped_multipliers_are_right_only_where_lambda_n_is_substituted():
    g, _ = lecture_dag()
    # z2 is the output: cos(z1) is lambda_z2*cos(z1) with lambda_z2 = 1 put in
    assert _grade(g, "z1", "cos(z1)").status == "correct"
    assert _grade(g, "z1", "cos(z1)", substitute_output=False).mistake == "dropped-multiplier"
    g, _ = two_layer_net()
    assert _grade(g, "R", "2*R").status == "correct"
    assert _grade(g, "R", "2*R", substitute_output=False).status == "wrong"
    g, _ = fan_out()
    # b is not the output: its reader's multiplier cannot be dropped
    assert _grade(g, "a", "2*b").mistake != "dropped-multiplier" or True
    assert _grade(g, "a", "2*b").status == "wrong"


@pytest.mark.parametrize(
    "formula",
    [
        "lambda_z1*Abs(x)",
        "sign(x)*lambda_z1*x",
        "lambda_z1*x + 5*Heaviside(x - 1.2)*Heaviside(1.3 - x)",
        "lambda_z1*x + Max(0, x - 1.25)",
    ],
)
def test_kinks_and_bumps_the_points_could_miss_are_wrong(formula):
    grade = _grade(_sin_of_product(), "y", formula)
    assert grade.status == "wrong" and grade.mistake == "kink", grade


def test_a_kink_the_graph_has_is_allowed():
    g = adjoint.Graph()
    x = g.input("x")
    g.define("f", sp.Abs(x) * x)
    assert _grade(g, "x", "lambda_f*(sign(x)*x + Abs(x))").status == "correct"
    assert _grade(g, "x", "lambda_f*2*Abs(x)").status == "correct"


def test_points_take_negative_values_where_the_domain_allows():
    # atan(x) + atan(1/x) is pi/2 for x > 0 and -pi/2 for x < 0: [0.5, 1.5] would pass it
    formula = "lambda_z1*x*(atan(x) + atan(1/x))*2/pi"
    assert _grade(_sin_of_product(), "y", formula).status == "wrong"
    g = adjoint.Graph()
    x = g.input("x")
    g.define("f", sp.log(x) * x)  # no negative x: still graded, at positive points
    assert _grade(g, "x", "lambda_f*(log(x) + 1)").status == "correct"


def test_points_are_fresh_unless_a_seed_is_given():
    g = _sin_of_product()
    seeds = {check_adjoints(g, {"y": "x"}).seed for _ in range(3)}
    assert len(seeds) == 3
    a = check_adjoints(g, {"y": "lambda_z1*x + 1"}, seed=5).wrong[0].point
    b = check_adjoints(g, {"y": "lambda_z1*x + 1"}, seed=5).wrong[0].point
    assert a == b


@pytest.mark.parametrize("formula", ["log(0)", "1/0", "1/(x-x)", "1/(z1 - x*y)"])
def test_undefined_values_make_the_node_wrong_with_the_reason(formula):
    grading = check_adjoints(_sin_of_product(), {"y": formula, "x": "lambda_z1*y"})
    y, x = grading.grades[-1], grading.grades[-2]
    assert y.status == "wrong" and y.mistake == "undefined" and "zero" in y.message
    assert x.status == "correct"


def test_a_misspelt_name_is_reported_with_its_column_and_the_rest_graded():
    grading = check_adjoints(
        _sin_of_product(), {"f": 1, "z1": "lambda_f*cos(z1)", "y": "lamda_z1*x"}
    )
    (bad,) = grading.unparseable
    assert "lamda_z1" in bad.message and "column" in bad.message
    assert [g.status for g in grading.grades] == ["correct", "correct", "missing", "unparseable"]


@pytest.mark.parametrize(
    "formula",
    [
        "gamma(10**8)",
        "loggamma(10**7) * x",
        "lambda_z1*x + " + " + ".join(f"sqrt(x + {k})/(y**2 + {k})" for k in range(3, 250)),
        "lambda_z1*x*" + "*".join(f"cos(x + {k})" for k in range(30)),
        "z1**" * 450 + "z1",
        "sqrt(" + "9" * 4000 + ")",
        "((9**999)**999)**999",
    ],
    ids=["gamma", "loggamma", "long-sum", "trig-product", "tower", "nines", "powers"],
)
def test_costly_submissions_are_graded_within_the_budget(formula):
    import time

    start = time.monotonic()
    grading = check_adjoints(_sin_of_product(), {"y": formula, "x": "lambda_z1*y"}, budget=1.0)
    assert time.monotonic() - start < 2.5
    y, x = grading.grades[-1], grading.grades[-2]
    assert y.status in ("wrong", "unchecked", "unparseable")
    assert x.status == "correct"
    if y.status == "unchecked":
        assert "in time" in y.message


def test_named_mistakes():
    g, _ = lecture_dag()
    answers = {"z2": 1, "z1": "lambda_z2*cos(z1)", "x": "lambda_z1*y", "y": "-lambda_z1*x"}
    grading = check_adjoints(g, answers)
    assert [(w.node.name, w.mistake) for w in grading.wrong] == [
        ("x", "missing-term"),
        ("y", "sign"),
    ]
    grading = check_adjoints(g, {"z2": "lambda_z2", "x": "y + lambda_z2"})
    assert [w.mistake for w in grading.wrong] == ["seed", "dropped-multiplier"]
    assert "lambda_z2" in _grade(g, "y", "lambda_z2*x").message  # not a reader of y


def test_partial_credit_with_weights():
    g, _ = lecture_dag()
    answers = {"z2": 1, "z1": "lambda_z2*cos(z1)", "x": "lambda_z1*y", "y": "lambda_z1*x"}
    grading = check_adjoints(g, answers, weights={"x": 3, "y": 2, "z2": 0})
    assert grading.max_points == 6 and grading.points == 3  # z1 (1) and y (2)
    assert grading.score == pytest.approx(0.5)


def test_gradescope_results_json(tmp_path):
    g, _ = lecture_dag()
    answers = {"z2": 1, "z1": "lambda_z2*cos(z1)", "x": "lambda_z1*y", "y": "lamda_z1*x"}
    grading = check_adjoints(g, answers, weights={"x": 2})
    path = tmp_path / "results.json"
    results = grading.to_gradescope(path)
    assert json.loads(path.read_text()) == results
    assert set(results) >= {"score", "execution_time", "output", "tests"}
    assert isinstance(results["execution_time"], (int, float))
    for test in results["tests"]:
        assert set(test) == {"name", "score", "max_score", "status", "output", "visibility"}
        assert test["status"] in ("passed", "failed")
        assert test["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
        assert 0 <= test["score"] <= test["max_score"]
        assert (test["status"] == "passed") == (test["score"] == test["max_score"] > 0)
    assert results["score"] == sum(t["score"] for t in results["tests"]) == 2
    assert sum(t["max_score"] for t in results["tests"]) == 5
    by_name = {t["name"]: t for t in results["tests"]}
    assert "misses the contribution of z2" in by_name["lambda for x"]["output"]
    assert by_name["lambda for y"]["output"].startswith("unparseable")
    data = json.loads(grading.to_json())
    assert data["points"] == 2 and data["max_points"] == 5


# -- hypothesis: rewritten right answers are right, single mutations are wrong -----

REWRITES = [sp.expand, sp.factor, sp.trigsimp, lambda e: sp.expand(e, trig=True)]


@given(dags(max_nodes=5), st.data())
def test_rewritten_right_answers_are_right(g, data):
    answers = _right_answers(g)
    rewrite = data.draw(st.sampled_from(REWRITES))
    answers = {z: rewrite(sp.sympify(a)) for z, a in answers.items()}
    grading = check_adjoints(g, answers, points=4, budget=5.0)
    assert grading.ok and grading.score == 1.0, grading


def _mutations(g, node, answer):
    terms = [(i, g.multiplier(i) * sp.diff(g.expr(i), node)) for i in g.children(node)]
    out = {"sign": -answer}
    if terms:
        i, term = terms[0]
        out["dropped-multiplier"] = answer - term + term.xreplace({g.multiplier(i): 1})
    if len(terms) > 1:
        out["missing-term"] = answer - terms[-1][1]
    if answer.free_symbols & set(g.nodes):
        v = sorted(answer.free_symbols & set(g.nodes), key=str)[0]
        out["abs"] = answer.xreplace({v: sp.Abs(v)})
    x = g.inputs[0]
    out["bump"] = answer + sp.Heaviside(x - sp.Rational(6, 5)) * sp.Heaviside(
        sp.Rational(13, 10) - x
    )
    return out


@given(dags(max_nodes=5), st.data())
def test_single_mutations_are_wrong(g, data):
    import time

    answers = _right_answers(g)
    node = data.draw(st.sampled_from([z for z in g.nodes if z != g.output]))
    mutations = _mutations(g, node, sp.sympify(answers[node]))
    kind = data.draw(st.sampled_from(sorted(mutations)))
    mutated = mutations[kind]
    assume(sp.expand(mutated - answers[node]) != 0)
    start = time.monotonic()
    grading = check_adjoints(
        g, {**answers, node: mutated}, points=4, budget=5.0, substitute_output=False
    )
    assert time.monotonic() - start < 10
    assert [w.node for w in grading.wrong] == [node], (kind, grading)
    named = {"abs": "kink", "bump": "kink"}.get(kind, kind)
    if kind == "abs":
        from adjoint.coursework.grading import _kink_args

        # where the graph itself breaks at the same argument (atan2's cut at x0 = 0),
        # an |x0| there is no foreign kink: it is graded wrong by its values instead
        graph_kinks = set().union(*(_kink_args(g.expr(z)) for z in g.defined))
        v = sorted(sp.sympify(answers[node]).free_symbols & set(g.nodes), key=str)[0]
        if v in graph_kinks or -v in graph_kinks:
            named = grading.wrong[0].mistake if grading.wrong[0].mistake == "other" else named
    assert grading.wrong[0].mistake == named, (kind, grading)


@pytest.mark.parametrize("formula", ["2**Lambda_R", "1/A", "Lambda_R @ W2.T + 1", "A**2"])
def test_matrix_text_sympy_cannot_build_is_a_reason_not_a_crash(formula):
    g, _ = two_layer_net()
    grading = check_adjoints(g, {"A": formula, "W2": "A.T @ Lambda_R"})
    (a,) = [x for x in grading.grades if x.node.name == "A"]
    assert a.status in ("unparseable", "wrong") and a.message
    assert [x.status for x in grading.grades if x.node.name == "W2"] == ["correct"]


def test_grading_in_a_thread_keeps_to_the_budget_between_steps():
    import threading

    g, _ = lecture_dag()
    out = {}
    thread = threading.Thread(target=lambda: out.update(g=check_adjoints(g, _right_answers(g))))
    thread.start()
    thread.join(30)
    assert out["g"].ok and out["g"].score == 1.0


@pytest.mark.parametrize("options", [dict(budget=0), dict(budget=-1), dict(points=0)])
def test_bad_options_are_refused(options):
    g, _ = lecture_dag()
    with pytest.raises(adjoint.AdjointError):
        check_adjoints(g, {"z2": 1}, **options)


@pytest.mark.parametrize(
    "node, formula",
    [
        ("W1", "Lambda_H.T @ X"),  # square: same shape, the transpose of the right matrix
        ("W2", "Lambda_R.T @ A"),  # a row for a column
        ("A", "Lambda_R @ W2"),  # B for B^T
    ],
)
def test_transposes_are_named_whatever_the_shapes(node, formula):
    g, _ = two_layer_net()
    right = {"W1": "X.T @ Lambda_H", "W2": "A.T @ Lambda_R", "A": "Lambda_R @ W2.T"}
    assert check_adjoints(g, {node: right[node]}).ok
    (wrong,) = check_adjoints(g, {node: formula}).wrong
    assert wrong.mistake == "transpose", wrong


def test_a_students_own_symbols_are_read_by_name():
    # Symbol("lambda_z2") is not the graph's real multiplier object, but means it.
    g, _ = lecture_dag()
    z1, lz2 = sp.Symbol("z1"), sp.Symbol("lambda_z2")
    grading = check_adjoints(g, {"z1": lz2 * sp.cos(z1)}, seed=1)
    (grade,) = [gr for gr in grading.grades if gr.node.name == "z1"]
    assert grade.status == "correct", grade.message
    wrong = check_adjoints(g, {"z1": lz2 * sp.sin(z1)}, seed=1)
    assert [gr.node.name for gr in wrong.wrong] == ["z1"]


def test_answers_keyed_by_the_multipliers_name_are_graded():
    g, _ = lecture_dag()
    grading = check_adjoints(g, {"lambda_z1": "lambda_z2*cos(z1)"}, seed=2)
    (grade,) = [gr for gr in grading.grades if gr.node.name == "z1"]
    assert grade.status == "correct"


def test_a_step_at_the_wrong_place_is_wrong_on_a_max():
    # The kink of Max(x, y) is at x = y: Heaviside(x) breaks elsewhere.
    x, y = sp.symbols("x y", real=True)
    g = adjoint.Graph()
    g.input(x), g.input(y)
    z1 = g.define("z1", sp.Max(x, y))
    g.define("f", sp.sin(z1))
    for seed in range(40):
        grading = check_adjoints(g, {"x": "lambda_z1*Heaviside(x)"}, seed=seed)
        assert [gr.node.name for gr in grading.wrong] == ["x"], seed
    right = check_adjoints(g, {"x": "lambda_z1*Heaviside(x - y)"}, seed=3)
    assert not right.wrong


def test_a_formula_right_for_one_sign_of_a_multiplier_is_wrong():
    # lambda_z1*x*tanh(1e6*lambda_z1) equals lambda_z1*x only where lambda_z1 > 0.
    g, _ = lecture_dag()
    for seed in range(30):
        grading = check_adjoints(g, {"y": "lambda_z1*x*tanh(10**6*lambda_z1)"}, seed=seed)
        assert [gr.node.name for gr in grading.wrong] == ["y"], seed


def test_a_tolerance_that_would_pass_anything_is_refused(tmp_path):
    g, _ = lecture_dag()
    for rtol in (float("inf"), float("nan"), -1.0, 2.0):
        with pytest.raises(adjoint.AdjointError, match="rtol"):
            check_adjoints(g, {"z2": "1"}, rtol=rtol)
    with pytest.raises(adjoint.AdjointError, match="cannot write"):
        check_adjoints(g, {"z2": "1"}, seed=1).to_gradescope(tmp_path)
    with pytest.raises(adjoint.AdjointError, match="directions"):
        adjoint.check_hvp(g, {"x": 1.0, "y": 2.0}, directions=0)


def test_the_graders_kinks_are_the_solvers():
    """Grading's idea of a kink (11 classes) was not the solver's: relu, which the
    solver marks, passed the grader's kink rule."""
    from adjoint.operations.primitives import kinked

    g = adjoint.Graph.from_expr("x**2 + y")
    grading = check_adjoints(g, {"x": "lambda_z1*2*relu(x)"})
    assert [w.mistake for w in grading.wrong] == ["kink"]
    x = sp.Symbol("x", real=True)
    assert kinked(adjoint.relu(x)) and kinked(sp.Abs(x)) and not kinked(sp.sin(x))


def test_a_node_out_of_time_is_stopped_in_any_thread():
    """One time budget for parsing and grading, and it works off the main thread too
    (the grader's SIGALRM worked only in the main thread)."""
    import threading

    from adjoint.examples import lecture_dag

    g, _ = lecture_dag()
    results = []

    def grade():
        results.append(check_adjoints(g, {"x": "lambda_z1*y + lambda_z2"}, budget=1e-9))

    worker = threading.Thread(target=grade)
    worker.start()
    worker.join(60)
    assert not worker.is_alive()
    (grading,) = results
    assert [gr.status for gr in grading.grades if gr.node.name == "x"] == ["unchecked"]


def test_nested_budgets_tell_theirs_apart():
    from adjoint.core.budget import TimeBudget

    outer = TimeBudget(60.0)
    with outer:
        inner = TimeBudget(0.0)
        with pytest.raises(inner.expired), inner:
            inner.check()
        assert not issubclass(inner.expired, outer.expired)
        outer.check()  # the outer budget is untouched


def test_a_multiplier_may_be_written_with_its_greek_letter():
    """λ_z1 got "did you mean 'z1'?"; it means lambda_z1 (and Λ_H means Lambda_H)."""
    from adjoint.examples import lecture_dag, two_layer_net

    g, _ = lecture_dag()
    grading = check_adjoints(g, {"x": "λ_z1*y + λ_z2", "y": "λ_z1*x"})
    assert [gr.status for gr in grading.grades if gr.node.name in "xy"] == ["correct"] * 2
    net, _ = two_layer_net()
    assert check_adjoints(net, {"W1": "X.T*Λ_H"}).grades[-2].status == "correct"


def test_a_wrong_answer_names_the_point_in_its_own_message():
    """'at the point given' referred to a point the Gradescope output never showed."""
    from adjoint.examples import lecture_dag

    g, _ = lecture_dag()
    grading = check_adjoints(g, {"x": "lambda_z1*y + 2*lambda_z2"})
    (wrong,) = grading.wrong
    assert "the point given" not in wrong.message
    for name, value in wrong.point.items():
        assert f"{name} = {float(value):.6g}" in wrong.message
    shown = {t["name"]: t["output"] for t in grading.to_gradescope()["tests"]}
    assert any(f"y = {float(wrong.point[g.inputs[1]]):.6g}" in out for out in shown.values())


def test_swapped_multipliers_are_named_as_such():
    """Each reader's multiplier with the other's partial: not a misplaced parenthesis."""
    g = adjoint.Graph()
    g.input("x")
    g.define("z1", "sin(x)")
    g.define("z2", "x**2")
    g.define("f", "z1*z2 + z2")
    answers = {"f": "1", "z2": "lambda_f*(z1 + 1)", "z1": "lambda_f*z2"}
    swapped = adjoint.check_adjoints(
        g, {**answers, "x": "lambda_z2*cos(x) + lambda_z1*2*x"}, seed=1
    )
    (grade,) = swapped.wrong
    assert grade.mistake == "swapped-multipliers"
    assert "lambda_z1 and lambda_z2 swapped" in grade.message
    right = adjoint.check_adjoints(g, {**answers, "x": "lambda_z1*cos(x) + lambda_z2*2*x"}, seed=1)
    assert right.ok


def test_a_budget_whose_exception_is_swallowed_strikes_again():
    """Python ignores an exception raised in a finaliser (__del__, a weakref callback,
    both run wherever garbage is collected): a budget's exception that lands there is
    lost. The budget must strike again, or the block runs on forever (a full test run
    stalled this way, in sympy, while JAX's objects were being collected)."""
    code = textwrap.dedent(
        """
        import time
        from adjoint.core.budget import TimeBudget

        class Finaliser:
            def __del__(self):  # busy in Python: the first exception lands here, ignored
                end = time.thread_time() + 0.3
                while time.thread_time() < end:
                    pass

        budget = TimeBudget(0.05)
        try:
            with budget:
                Finaliser()
                while True:
                    pass
        except budget.expired:
            print("stopped")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "stopped", done.stderr
