"""The checkers call a right answer right and a wrong one wrong.

`check_gradient`, `check_hvp` and `taylor_test` judge against differences, which lose
digits at a critical point, beside a pole, across inputs of different scales and on
linear functions; there they must say "agrees" (or "inconclusive", with why), never
"wrong". Each case below was called wrong before the checkers bounded their own error.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

import adjoint

x, y, n, s = sp.symbols("x y n s")

RIGHT_BUT_HARD = [
    pytest.param(x**3 - 3 * x, {x: 1.0}, id="critical-point"),
    pytest.param(n * sp.exp(-y), {n: 1e4, y: 1.0}, id="different-scales"),
    pytest.param(3 * x + 10**6 * y, {x: 1.0, y: 2.0}, id="linear"),
    pytest.param(sp.log(s), {s: 1e-6}, id="near-a-pole"),
    pytest.param((x - 2) ** 2 + (y + x - 1) ** 2, {x: 2.0, y: -1.0}, id="least-squares-optimum"),
]


@pytest.mark.parametrize(("expr", "at"), RIGHT_BUT_HARD)
def test_a_right_gradient_is_never_called_wrong(expr, at):
    report = adjoint.check_gradient(adjoint.Graph.from_expr(expr), at)
    assert report.ok, report
    assert not report.wrong


@pytest.mark.parametrize(("expr", "at"), RIGHT_BUT_HARD)
def test_a_right_hessian_vector_product_is_never_called_wrong(expr, at):
    report = adjoint.check_hvp(adjoint.Graph.from_expr(expr), at)
    assert report.ok, report


@pytest.mark.parametrize(
    ("expr", "at"), [*RIGHT_BUT_HARD[1:4], pytest.param(sp.sin(x) * y, {x: 0.3, y: 2.0})]
)
def test_a_slightly_wrong_gradient_is_still_wrong(monkeypatch, expr, at):
    """Stricter than the code: 1e-4 off in one input, with the other one large."""
    g = adjoint.Graph.from_expr(expr)
    monkeypatch.setattr(
        adjoint.coursework.checks,
        "solve",
        _perturbed(adjoint.coursework.checks.solve, g.inputs[0], 1e-4),
    )
    report = adjoint.check_gradient(g, at)
    assert report.wrong and not report.ok, report
    assert "DISAGREES" in repr(report)


def _perturbed(solve, node, amount):
    def wrong(graph, values=None, **kwargs):
        sol = solve(graph, values, **kwargs)
        bad = {**sol.adjoints, node: sol.adjoints[node] * (1 + amount) + amount}
        return type(sol)(graph, dict(sol.values), bad, sol.symbolic)

    return wrong


def test_a_gradient_at_a_critical_point_that_is_not_zero_is_wrong(monkeypatch):
    g = adjoint.Graph.from_expr(x**3 - 3 * x)
    monkeypatch.setattr(
        adjoint.coursework.checks,
        "solve",
        _perturbed(adjoint.coursework.checks.solve, g.inputs[0], 1e-3),
    )
    report = adjoint.check_gradient(g, {x: 1.0})
    assert report.wrong, report


def test_where_no_step_resolves_the_derivative_the_verdict_is_inconclusive_not_wrong():
    """A function noisy at the 1e-3 level has no derivative that differences can find:
    the estimates jump as the step shrinks, and the verdict says so and why."""
    rng = np.random.default_rng(1)
    reference = adjoint.coursework.checks.differences(
        lambda h: 2.0 * h + 1e-3 * rng.standard_normal()
    )
    assert not reference.resolved
    error, verdict, why = adjoint.coursework.checks.judge(5.0, reference, 1e-6)
    assert verdict == "inconclusive" and "do not settle" in why
    report = adjoint.GradientCheck((error,), 1e-6, (verdict,), (why,))
    assert report.inconclusive and not report.ok and not report.wrong
    assert "INCONCLUSIVE" in repr(report) and "DISAGREES" not in repr(report)


def test_differences_bound_their_own_error():
    """The bound covers the true error of the extrapolated difference."""
    for f, df, t0 in [
        (np.sin, np.cos, 0.7),
        (np.exp, np.exp, 3.0),
        (np.log, lambda t: 1 / t, 1e-3),
    ]:
        d = adjoint.coursework.checks.differences(lambda h, f=f, t0=t0: f(t0 + h * t0))
        assert abs(d.value - df(t0) * t0) <= 2 * d.bound + 1e-15, (f, d)


# -- the Taylor test at rounding level -------------------------------------------


def _seven_sines():
    g = adjoint.Graph()
    x0, x1 = g.input("x0"), g.input("x1")
    zs = [
        g.define("z1", sp.log(x0**2 + 1)),
        g.define("z2", sp.sin(x0)),
        g.define("z3", sp.sin(x0)),
        g.define("z4", sp.cos(x0)),
        g.define("z5", sp.sin(x0)),
        g.define("z6", sp.tanh(x0)),
        g.define("z7", sp.atan(x0)),
    ]
    g.define("f", sum(zs))
    return g, {x0: 0.0, x1: 0.0}


def test_the_second_order_taylor_test_ignores_remainders_at_rounding_level():
    """The issue's reproducer: remainders reach 1e-16, whose rates are noise."""
    g, at = _seven_sines()
    report = adjoint.taylor_test(g, at, order=2, steps=9, seed=7)
    assert report.ok, report
    assert len(report.resolved) < len(report.rates)
    assert adjoint.check_hvp(g, at).ok


def test_a_taylor_test_with_too_few_resolved_remainders_says_so():
    report = adjoint.TaylorTest((0.1, 0.05, 0.025), (1e-11, 1e-17, 2e-17), 1, (1.0, 1.0, 1.0))
    assert not report.ok
    assert "too few remainders" in report.reason


def test_a_taylor_test_entirely_at_rounding_level_is_exact():
    report = adjoint.taylor_test(adjoint.Graph.from_expr(3 * x + 10**6 * y), {x: 1.0, y: 2.0})
    assert report.ok and "exact to rounding" in report.reason


def test_a_wrong_gradient_fails_the_taylor_test_even_with_rounding_filtered(monkeypatch):
    g = adjoint.Graph.from_expr(sp.sin(x) * y)
    monkeypatch.setattr(
        adjoint.coursework.checks, "solve", _perturbed(adjoint.coursework.checks.solve, x, 1e-3)
    )
    report = adjoint.taylor_test(g, {x: 0.3, y: 2.0})
    assert not report.ok, report


# -- the suite itself ------------------------------------------------------------


def test_under_ci_hypothesis_draws_the_same_examples_every_run():
    """CI's result must not depend on the draw: derandomized, no database, a deadline,
    and no explain phase (which traced a failing example for 20 minutes)."""
    code = (
        "import sys; sys.path.insert(0, 'tests'); import conftest; "
        "from hypothesis import settings, Phase; s = settings.default; "
        "assert s.derandomize and s.database is None and s.deadline is not None, s; "
        "assert Phase.explain not in s.phases, s.phases; print('ci profile')"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "CI": "true"}
    env.pop("HYPOTHESIS_PROFILE", None)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0 and "ci profile" in out.stdout, out.stderr


def test_a_taylor_test_through_a_nan_never_passes():
    report = adjoint.TaylorTest((0.1, 0.05), (float("nan"), float("nan")), 1, (1.0, 1.0))
    assert not report.ok and "not a number" in report.reason


def test_a_hanging_test_fails_instead_of_stalling_the_run(pytestconfig):
    """pytest-timeout stops any test after the configured seconds, with its stack."""
    assert pytestconfig.pluginmanager.hasplugin("timeout")
    assert 0 < float(pytestconfig.getini("timeout")) <= 600


def test_a_noisy_function_never_lets_a_wrong_derivative_agree():
    """Unsettled differences have a large bound; it must not excuse a wrong answer."""
    rng = np.random.default_rng(2)
    reference = adjoint.coursework.checks.differences(
        lambda h: 2.0 * h + 1e-3 * rng.standard_normal()
    )
    assert not reference.resolved
    for wrong in (3.0, 2.5, -2.0):
        assert adjoint.coursework.checks.judge(wrong, reference, 1e-6)[1] != "agrees"


def test_a_large_constant_does_not_hide_a_wrong_small_slope(monkeypatch):
    """f = 1e6 + 1e-3 x: rounding of f bounds the differences near 1e-9, far below a
    slope off by a third."""
    g = adjoint.Graph.from_expr(10**6 + sp.Rational(1, 1000) * x * y)
    solve = adjoint.coursework.checks.solve

    def a_third_off(graph, values=None, **kwargs):
        sol = solve(graph, values, **kwargs)
        bad = {**sol.adjoints, x: sol.adjoints[x] * 1.3}
        return type(sol)(graph, dict(sol.values), bad, sol.symbolic)

    assert adjoint.check_gradient(g, {x: 1.0, y: 2.0}).ok
    monkeypatch.setattr(adjoint.coursework.checks, "solve", a_third_off)
    report = adjoint.check_gradient(g, {x: 1.0, y: 2.0})
    assert report.wrong, report


def test_check_hvp_at_a_subnormal_point_is_no_false_alarm():
    """A direction scaled by |x| = 5e-324 cannot move x at all: the differences were 0
    and a right H v (-cos(x) v) was reported wrong (found by Hypothesis)."""
    g = adjoint.Graph()
    x = g.input("x")
    g.define("z", sp.cos(x))
    for seed in range(3):
        report = adjoint.check_hvp(g, {x: 5e-324}, seed=seed)
        assert report.ok, report
