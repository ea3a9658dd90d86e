"""Every elementary function, differentiated as a real function of real nodes."""

import math

import pytest
import sympy as sp
from reference import central_difference, evaluate, relative_error

import adjoint

x, y = sp.symbols("x y", real=True)

# (f, a point where it is smooth)
SMOOTH = [
    (sp.sin(x), 0.7),
    (sp.cos(x), 0.7),
    (sp.tan(x), 0.7),
    (sp.cot(x), 0.7),
    (sp.sec(x), 0.7),
    (sp.csc(x), 0.7),
    (sp.asin(x), 0.3),
    (sp.acos(x), 0.3),
    (sp.atan(x), 0.3),
    (sp.acot(x), 0.3),
    (sp.asec(x), 1.7),
    (sp.acsc(x), 1.7),
    (sp.sinh(x), 0.7),
    (sp.cosh(x), 0.7),
    (sp.tanh(x), 0.7),
    (sp.coth(x), 0.7),
    (sp.sech(x), 0.7),
    (sp.csch(x), 0.7),
    (sp.asinh(x), 0.7),
    (sp.acosh(x), 1.7),
    (sp.atanh(x), 0.3),
    (sp.acoth(x), 1.7),
    (sp.asech(x), 0.3),
    (sp.acsch(x), 0.7),
    (sp.exp(x), 0.7),
    (sp.log(x), 0.7),
    (sp.sqrt(x), 0.7),
    (sp.cbrt(x), 0.7),
    (x**-3, 0.7),
    (x ** sp.Rational(3, 2), 0.7),
    (x**x, 0.7),
    (2**x, 0.7),
    (sp.erf(x), 0.7),
    (sp.erfc(x), 0.7),
    (sp.gamma(x), 0.7),
    (sp.loggamma(x), 0.7),
    (sp.LambertW(x), 0.7),
    (sp.besselj(1, x), 0.7),
    (sp.Abs(x), -0.7),
    (sp.sign(x), 0.7),
    (sp.Heaviside(x), -0.7),
    (sp.Max(x, 0), 0.7),
    (sp.Min(x, 0), 0.7),
    (sp.Piecewise((x**2, x > 0), (sp.sin(x), True)), -0.7),
]


@pytest.mark.parametrize("f, at", SMOOTH, ids=[str(f) for f, _ in SMOOTH])
def test_derivative_of_each_function_matches_sympy_and_differences(f, at):
    g = adjoint.Graph.from_expr(f, inputs=[x])
    sol = g.solve({x: at})
    assert relative_error(sol.output, evaluate(f, {x: at})) < 1e-12
    assert relative_error(sol.gradient[x], evaluate(sp.diff(f, x), {x: at})) < 1e-9
    fn = sp.lambdify([x], f, "mpmath")
    fd = central_difference(lambda v: float(fn(v[0])), __import__("numpy").array([at]))[0]
    assert relative_error(sol.gradient[x], fd) < 1e-6


@pytest.mark.parametrize(
    "f", [x**y, sp.atan2(y, x), sp.Max(x, y, 1), sp.Min(x * y, x), sp.Abs(x - y) * x]
)
def test_functions_of_two_nodes(f):
    g = adjoint.Graph.from_expr(f, inputs=[x, y])
    point = {x: 1.3, y: 0.4}
    sol = g.solve(point)
    for s in (x, y):
        assert relative_error(sol.gradient[s], evaluate(sp.diff(f, s), point)) < 1e-9


@pytest.mark.parametrize(
    "f, kink",
    [
        (sp.Abs(x), 0.0),
        (sp.Max(x, 1), 1.0),
        (sp.Min(x, 2 * x), 0.0),
        (sp.Heaviside(x), 0.0),
        (sp.sign(x), 0.0),
        (sp.Abs(x) * x**2 + sp.Max(x, 0.5), 0.5),
    ],
)
def test_no_silent_number_where_the_derivative_does_not_exist(f, kink):
    g = adjoint.Graph.from_expr(f, inputs=[x])
    assert math.isnan(g.solve({x: kink}).gradient[x])
    assert math.isfinite(g.solve({x: kink + 0.25}).gradient[x])


def test_a_sign_that_is_part_of_f_is_not_mistaken_for_a_kink():
    # d/dx (x sign(y)) = sign(y), which is 0 at y = 0: a real value, not a kink.
    g = adjoint.Graph.from_expr(x * sp.sign(y), inputs=[x, y])
    assert g.solve({x: 2.0, y: 0.0}).gradient[x] == 0.0


def test_symbolic_exponent_and_rational_powers():
    a = sp.Symbol("a", real=True)
    g = adjoint.Graph.from_expr(x**a, inputs=[x, a])
    sym = g.solve().gradient
    assert sp.simplify(sym[x] - a * x ** (a - 1)) == 0
    assert sp.simplify(sym[a] - x**a * sp.log(x)) == 0


def test_outside_the_domain_gives_nan_not_a_complex_number():
    g = adjoint.Graph.from_expr(sp.log(x) + sp.sqrt(x), inputs=[x])
    sol = g.solve({x: -1.0})
    assert math.isnan(sol.output) and math.isnan(sol.gradient[x])


def test_undefined_function_solves_symbolically_and_errs_numerically():
    f = sp.Function("f")
    g = adjoint.Graph.from_expr(f(x**2), inputs=[x])
    grad = g.solve().gradient[x]
    assert grad.has(sp.Derivative) or grad.has(sp.Subs)
    with pytest.raises(adjoint.AdjointError, match="numerically"):
        g.solve({x: 1.0})
