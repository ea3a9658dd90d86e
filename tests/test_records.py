"""Every result as plain data: ``to_dict()`` gives what ``json.dumps(...,
allow_nan=False)`` writes, with the numbers of the result (not a text of them)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import sympy as sp

import adjoint
from adjoint.core.records import plain


def _json(obj) -> dict:
    data = obj.to_dict()
    return json.loads(json.dumps(data, allow_nan=False))


def test_a_solution_holds_its_numbers_and_says_what_is_undefined():
    g = adjoint.Graph.from_expr("log(x) + x*y")
    sol = g.solve({"x": 2.0, "y": -1.5})
    data = _json(sol)
    assert data["output"] == pytest.approx(float(sol.output), rel=0, abs=0)
    assert data["gradient"] == {"x": sol.gradient["x"], "y": sol.gradient["y"]}
    assert set(data["values"]) == {"x", "y", *(str(z) for z in g.defined)}
    bad = _json(g.solve({"x": -1.0, "y": 1.0}))
    assert bad["output"] == "nan" and bad["gradient"]["x"] == "nan" and bad["undefined"]


def test_matrix_and_recurrence_results_are_nested_lists():
    g = adjoint.Graph()
    A, x = g.input("A", shape=(2, 2)), g.input("x", shape=(2, 1))
    g.define("f", sp.Trace(x.T * A * x))
    sol = g.solve({A: np.eye(2), x: np.array([[1.0], [2.0]])})
    assert _json(sol)["gradient"]["A"] == np.asarray(sol.gradient[A]).tolist()
    h = adjoint.Graph()
    a = h.input("a")
    z = h.recurrence("z", step="a*z", init="a", steps=4, cost="z**2")
    h.define("J", z.cost)
    saved = h.solve({a: 0.5}, checkpoints=2)
    data = _json(saved)
    assert data["schedule"]["forward_steps"] == saved.schedule.forward_steps
    assert len(_json(h.solve({a: 0.5}))["values"]["z"]) == 5  # z_0 .. z_T
    assert _json(adjoint.schedule(10, 3))["counts"]["stored_peak"] <= 3


def test_checks_tangents_hvps_minimisation_grading_and_traces():
    g = adjoint.Graph.from_expr("sin(x*y) + x**2")
    at = {"x": 1.5, "y": -2.0}
    assert _json(adjoint.check_gradient(g, at))["ok"] is True
    assert _json(adjoint.check_hvp(g, at))["ok"] is True
    taylor = _json(adjoint.taylor_test(g, at))
    assert len(taylor["rates"]) == len(taylor["steps"]) - 1
    assert _json(g.verify(at))["ok"] is True
    hv = g.hvp(at, {"x": 1.0, "y": 0.0})
    assert _json(hv) == {"x": float(hv["x"]), "y": float(hv["y"])}
    assert _json(g.tangent(at, {"x": 1.0, "y": 0.0}))["derivative"] == pytest.approx(
        float(g.solve(at).gradient["x"])
    )
    quadratic = adjoint.Graph.from_expr("(x - 3)**2")
    best = adjoint.minimize(quadratic, quadratic.output, over=["x"], at={"x": 0.0})
    assert _json(best)["at"]["x"] == 3.0 and _json(best)["converged"] is True
    grading = adjoint.check_adjoints(g, {"x": "0"}, seed=0)
    assert _json(grading) == json.loads(grading.to_json())
    rows = _json(g.trace(at))["rows"]
    assert rows[0]["sweep"] == "forward" and isinstance(rows[0]["value"], float)


def test_an_implicit_block_reports_as_data():
    g = adjoint.Graph()
    x = g.input("x")
    g.implicit("y", "y**3 + y - x")
    g.define("f", "y**2")
    (block,) = _json(g.solve({x: 2.0}))["blocks"]
    assert block["method"] == "newton" and block["iterations"] >= 1


def test_plain_never_writes_a_number_json_cannot_read():
    data = plain({"a": [np.inf, -np.inf, np.nan, 1.5], sp.Symbol("x"): sp.Rational(1, 2)})
    assert data == {"a": ["inf", "-inf", "nan", 1.5], "x": 0.5}
    assert json.dumps(data, allow_nan=False)
    assert plain(sp.Symbol("x") + 1) == "x + 1" and plain(np.int64(3)) == 3
    assert math.isnan(float(plain(np.float32("nan"))))


def test_a_graded_point_with_a_non_finite_entry_still_writes_as_json():
    from adjoint.coursework.grading import AdjointGrade

    grade = AdjointGrade(
        sp.Symbol("x"), "wrong", "m", sp.S(0), None, {"W": np.array([[1.0, np.nan]]), "a": 2.0}
    )
    data = json.loads(json.dumps(grade.to_dict(), allow_nan=False))
    assert data["point"] == {"W": [[1.0, "nan"]], "a": 2.0}
