"""Optimal control as grad L = 0 read the other way (the lecture's Remark 3): the
multipliers of the dynamics are the costates, dL/du_t = 0 is Pontryagin's condition.

References: the discrete Riccati recursion (lambda_t = 2 P_t x_t for the cost
sum x^T x + u^T u + x_N^T x_N), the optimum of the same linear quadratic problem as
one least-squares system in the controls (the dynamics stacked by hand), and
differences of re-optimised costs for the shadow prices.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from sympy.calculus.euler import euler_equations

import adjoint

A0 = np.array([[1.0, 0.1], [0.0, 1.0]])
B0 = np.array([[0.0], [0.1]])
START = np.array([[1.0], [0.5]])


def lq(N, disturbed=False):
    g = adjoint.Graph()
    A, B = g.input("A", shape=(2, 2)), g.input("B", shape=(2, 1))
    x0 = g.input("x0", shape=(2, 1))
    u = g.sequence("u", steps=N, shape=(1, 1))
    step = "A*x + B*u"
    e = None
    if disturbed:
        e = g.sequence("e", steps=N, shape=(2, 1))
        step += " + e"
    x = g.recurrence("x", step=step, init=x0, steps=N, shape=(2, 1), cost="x.T*x + u.T*u")
    g.define("J", x.cost + x.final.T * x.final)
    at = {A: A0, B: B0, x0: START, u: np.zeros((N, 1, 1))}
    if disturbed:
        at[e] = np.zeros((N, 2, 1))
    return g, at, u, x, e


def riccati(N):
    P = [None] * (N + 1)
    P[N] = np.eye(2)
    for t in range(N - 1, -1, -1):
        K = np.linalg.solve(np.eye(1) + B0.T @ P[t + 1] @ B0, B0.T @ P[t + 1] @ A0)
        P[t] = np.eye(2) + A0.T @ P[t + 1] @ A0 - A0.T @ P[t + 1] @ B0 @ K
    return P


def stacked_optimum(N):
    """The controls minimising the cost, as one least-squares problem: x = F x0 + G u."""
    F = [np.linalg.matrix_power(A0, t) for t in range(N + 1)]
    G = np.zeros((2 * (N + 1), N))
    for t in range(1, N + 1):
        for s in range(t):
            G[2 * t : 2 * t + 2, s] = (np.linalg.matrix_power(A0, t - 1 - s) @ B0)[:, 0]
    free = np.vstack([f @ START for f in F])[:, 0]
    # minimise |free + G u|^2 + |u|^2
    M = np.vstack([G, np.eye(N)])
    rhs = np.concatenate([-free, np.zeros(N)])
    return np.linalg.lstsq(M, rhs, rcond=None)[0]


def test_newton_solves_linear_quadratic_control_in_one_step():
    N = 15
    g, at, u, _x, _ = lq(N)
    best = g.minimize("J", over=[u], at=at)
    assert best.converged and best.iterations == 1
    assert best.residual <= 1e-12
    np.testing.assert_allclose(best.at[u][:, 0, 0], stacked_optimum(N), rtol=1e-10, atol=1e-12)


def test_the_costates_at_the_optimum_are_twice_the_riccati_matrices_times_the_state():
    """The double integrator over N = 50 steps: the controls are Riccati's feedback
    ``u_t = -K_t x_t`` and the costates ``2 P_t x_t``, to 1e-10."""
    N = 50
    g, at, u, x, _ = lq(N)
    best = g.minimize("J", over=[u], at=at)
    sol = best.solution
    assert best.residual <= 1e-10 * max(1.0, np.abs(sol.output).max())
    P = riccati(N)
    states, costates = sol.values[x], sol.adjoints[x]
    for t in range(N + 1):
        np.testing.assert_allclose(costates[t], 2 * P[t] @ states[t], rtol=1e-10, atol=1e-12)
    for t in range(N):
        K = np.linalg.solve(np.eye(1) + B0.T @ P[t + 1] @ B0, B0.T @ P[t + 1] @ A0)
        np.testing.assert_allclose(best.at[u][t], -K @ states[t], rtol=1e-10, atol=1e-12)
    value = np.asarray(sol.output).item()
    assert value == pytest.approx((START.T @ P[0] @ START).item(), rel=1e-12)


def test_the_costates_are_shadow_prices_of_the_dynamics():
    """Adding e_t to step t changes the optimal cost by lambda_{t+1} e_t, to first
    order: by the gradient, and by optimising again."""
    N = 8
    g, at, u, x, e = lq(N, disturbed=True)
    best = g.minimize("J", over=[u], at=at)
    sol = best.solution
    for t in range(N):
        np.testing.assert_allclose(sol.gradient[e][t], sol.adjoints[x][t + 1], rtol=1e-13)
    t, h = 3, 1e-5
    costs = []
    for sign in (1, -1):
        moved = {**best.at, e: best.at[e].copy()}
        moved[e][t, 1, 0] += sign * h
        costs.append(np.asarray(g.minimize("J", over=[u], at=moved).solution.output).item())
    assert (costs[0] - costs[1]) / (2 * h) == pytest.approx(sol.adjoints[x][t + 1][1, 0], rel=1e-7)


def test_gradient_descent_reaches_the_same_optimum():
    N = 6
    g, at, u, *_ = lq(N)
    slow = g.minimize("J", over=[u], at=at, method="gradient", rate=0.5, tolerance=1e-9)
    assert slow.converged and slow.iterations > 1
    np.testing.assert_allclose(slow.at[u][:, 0, 0], stacked_optimum(N), rtol=1e-6, atol=1e-8)
    assert all(b <= a + 1e-12 for a, b in zip(slow.values, slow.values[1:]))


def test_a_long_run_shows_a_progress_bar_and_a_short_one_does_not(capsys):
    N = 6
    g, at, u, *_ = lq(N)
    g.minimize("J", over=[u], at=at, method="gradient", rate=0.5, iterations=40)
    assert capsys.readouterr().err == ""  # under two seconds: no bar by default
    best = g.minimize(
        "J", over=[u], at=at, method="gradient", rate=0.5, iterations=40, progress=True
    )
    err = capsys.readouterr().err
    last = err.rstrip("\n").split("\r")[-1]
    assert err.endswith("\n") and last.startswith("minimize [")
    assert f"{best.iterations}/40" in last and f"{best.values[-1]:.6g}" in last
    g.minimize("J", over=[u], at=at, method="gradient", rate=0.5, iterations=5, progress=False)
    assert capsys.readouterr().err == ""


def test_newton_controls_a_damped_pendulum():
    dt, N = 0.05, 200
    g = adjoint.Graph()
    x0 = g.input("x0", shape=(2, 1))
    xs = sp.MatrixSymbol("x", 2, 1)
    th, om = xs[0, 0], xs[1, 0]
    u = g.sequence("u", steps=N)
    step = sp.Matrix([[th + dt * om], [om + dt * (-sp.sin(th) - om / 10 + u)]])
    x = g.recurrence(xs, step=step, init=x0, steps=N, shape=(2, 1), cost=(th**2 + u**2 / 10) * dt)
    g.define("J", x.cost + 10 * (x.final[0, 0] ** 2 + x.final[1, 0] ** 2))
    best = g.minimize("J", over=[u], at={x0: np.array([[1.0], [0.0]]), u: np.zeros(N)})
    assert best.converged and best.residual <= 1e-8
    assert best.values[-1] < 0.2 * best.values[0]
    # dH/du_t = 0 with H_t = (th^2 + u^2/10) dt + lambda_{t+1}^T f: u_t = -5 lambda_{t+1}[1]
    lam = best.solution.adjoints[x]
    # dL/du_t = dt (u_t / 5 + lambda_{t+1}[1]), so the relation holds to 5 |dL/du| / dt
    np.testing.assert_allclose(best.at[u], -5 * lam[1:, 1, 0], rtol=0, atol=5 * 1e-8 / dt)


def test_bad_requests_are_refused():
    g, at, u, _x, _ = lq(3)
    with pytest.raises(adjoint.AdjointError, match="not the graph's output"):
        g.minimize("x_cost", over=[u], at=at)
    with pytest.raises(adjoint.AdjointError, match="only inputs"):
        g.minimize("J", over=["x_final"], at=at)
    with pytest.raises(adjoint.AdjointError, match="method must be"):
        g.minimize("J", over=[u], at=at, method="bfgs")
    h = adjoint.Graph()
    y = h.input("y")
    h.define("f", "log(y) + y**2")
    with pytest.raises(adjoint.AdjointError, match="not a number at the starting point"):
        h.minimize("f", over=[y], at={y: -1.0})


def test_the_conditions_are_the_derivatives_of_the_hamiltonian():
    """lambda_t = dH_t/dz_t and dL/du_t = dH_t/du_t, with H_t = lambda_C l +
    lambda_{t+1} f: sympy's diff of the printed Hamiltonian against the conditions."""
    T = 5
    g = adjoint.Graph()
    g.input("a")
    z0 = g.input("z0")
    u = g.sequence("u", steps=T)
    z = g.recurrence("z", step="a*sin(z) + u*z", init=z0, steps=T, cost="z**2 + u**2")
    g.define("J", z.cost + z.final**2)
    kkt = g.stationarity()
    costate = next(c for c in kkt.backward_conditions if hasattr(c, "hamiltonian"))
    H = costate.hamiltonian
    t = sp.Symbol("t", integer=True, nonnegative=True)
    zt, ut = sp.IndexedBase("z")[t], sp.IndexedBase("u")[t]
    assert sp.simplify(sp.diff(H, zt) - costate.equations[1].rhs) == 0
    control = next(c for c in kkt.conditions("gradient") if c.wrt == u)
    assert sp.simplify(sp.diff(H, ut) - control.equations[0].rhs) == 0
    assert "H_t(z) = " in str(kkt)


def test_the_scalar_riccati_recursion_follows_from_the_printed_conditions():
    """Eliminate u_t and lambda_t from the conditions of grad L = 0 as the package
    prints them (the costate recursion and dL/du_t = 0), with lambda_t = 2 p_t x_t: what
    remains is the textbook Riccati recursion."""
    g = adjoint.Graph()
    a, b, q, r, x0 = (g.input(n) for n in ("a", "b", "q", "r", "x0"))
    u = g.sequence("u", steps=10)
    x = g.recurrence("x", step="a*x + b*u", init=x0, steps=10, cost="q*x**2 + r*u**2")
    g.define("J", x.cost + x.final**2)
    kkt = g.stationarity()
    costate = next(c for c in kkt.backward_conditions if hasattr(c, "hamiltonian"))
    control = next(c for c in kkt.conditions("gradient") if c.wrt == u)
    t = sp.Symbol("t", integer=True, nonnegative=True)
    xt, ut = sp.IndexedBase("x")[t], sp.IndexedBase("u")[t]
    lam_next = sp.IndexedBase("lambda_x")[t + 1]
    lam_cost = g.multiplier(x.cost)
    p, p_next = sp.symbols("p_t p_next", real=True)
    conditions = {lam_cost: 1}  # dJ/dC = 1
    # dL/du_t = 0, with lambda_{t+1} = 2 p_{t+1} x_{t+1} and x_{t+1} = a x_t + b u_t
    stationary = control.equations[0].rhs.xreplace(conditions)
    stationary = stationary.xreplace({lam_next: 2 * p_next * (a * xt + b * ut)})
    u_opt = sp.solve(stationary, ut)[0]
    # lambda_t = 2 p_t x_t in the costate recursion
    rhs = costate.equations[1].rhs.xreplace(conditions)
    rhs = rhs.xreplace({lam_next: 2 * p_next * (a * xt + b * ut)}).xreplace({ut: u_opt})
    p_t = sp.solve(sp.Eq(2 * p * xt, rhs), p)[0]
    textbook = q + a**2 * p_next - (a * b * p_next) ** 2 / (r + b**2 * p_next)
    assert sp.simplify(p_t - textbook) == 0


def _euler(h_value, T_end=1.0):
    """x' = -a x + x^2/4 (explicit Euler, step h), cost int x^2 dt + x(T)^2: the costate
    lambda_0 of the discrete problem."""
    steps = round(T_end / h_value)
    g = adjoint.Graph()
    a, h, x0 = g.input("a"), g.input("h"), g.input("x0")
    x = g.recurrence("x", step="x + h*(-a*x + x**2/4)", init=x0, steps=steps, cost="h*x**2")
    g.define("J", x.cost + x.final**2)
    return g, g.solve({a: 1.0, h: h_value, x0: 1.0})


def test_the_costate_recursion_of_an_euler_step_is_the_adjoint_ode_in_the_limit():
    """(lambda_t - lambda_{t+1}) / h from the printed recursion is f_x lambda + l_x: the
    adjoint equation -lambdadot = f_x^T lambda + l_x, and the discrete costates converge
    to the continuous ones at the scheme's order (1)."""
    g, _ = _euler(0.1)
    costate = next(c for c in g.stationarity().backward_conditions if hasattr(c, "hamiltonian"))
    t = sp.Symbol("t", integer=True, nonnegative=True)
    lam_t, lam_next = sp.IndexedBase("lambda_x")[t], sp.IndexedBase("lambda_x")[t + 1]
    a, h = sp.Symbol("a", real=True), sp.Symbol("h", real=True)
    xt, lam = sp.IndexedBase("x")[t], sp.Symbol("lambda")
    rhs = costate.equations[1].rhs.xreplace({g.multiplier("x_cost"): 1})
    derivative = sp.expand((rhs - lam_next) / h).xreplace({lam_next: lam})
    f, stage = -a * xt + xt**2 / 4, xt**2
    assert sp.simplify(derivative - (sp.diff(f, xt) * lam + sp.diff(stage, xt))) == 0
    assert costate.equations[1].lhs == lam_t

    # the continuous costate at t = 0, by a fine RK4 sweep forward then backward
    def rk4(fun, y, s, ds):
        k1 = fun(s, y)
        k2 = fun(s + ds / 2, y + ds / 2 * k1)
        k3 = fun(s + ds / 2, y + ds / 2 * k2)
        k4 = fun(s + ds, y + ds * k3)
        return y + ds / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    n, ds = 4000, 1.0 / 4000
    xs = [1.0]
    for k in range(n):
        xs.append(rk4(lambda s, y: -y + y**2 / 4, xs[-1], k * ds, ds))
    lam_c = 2 * xs[-1]
    for k in range(n, 0, -1):  # -lambda' = (-1 + x/2) lambda + 2x, backwards in time
        x_mid = (xs[k] + xs[k - 1]) / 2
        lam_c = rk4(lambda s, y, xm=x_mid: (-1 + xm / 2) * y + 2 * xm, lam_c, 0.0, ds)
    errors = [abs(_euler(step)[1].adjoints["x"][0] - lam_c) for step in (0.02, 0.01, 0.005)]
    rates = [np.log2(errors[k] / errors[k + 1]) for k in range(2)]
    assert all(0.85 < r < 1.15 for r in rates), (errors, rates)


def test_the_continuous_adjoint_equation_follows_by_parts_and_matches_the_printed_limit():
    """The continuous Lagrangian int (l - lambda (x' - f)) dt + phi(x(T)), integrated by
    parts, gives -lambda' = f_x lambda + l_x and lambda(T) = phi'(x(T)) (sympy's
    Euler-Lagrange equations); the package's printed recursion divided by h is the
    same right side, and its terminal condition the same."""
    s, a = sp.Symbol("s", real=True), sp.Symbol("a", real=True)
    x, lam = sp.Function("x")(s), sp.Function("lambda")(s)
    f, stage = -a * x + x**2 / 4, x**2

    # integration by parts, checked on functions sympy integrates exactly
    X, Lam = sp.exp(-s) * (1 + s), sp.cos(s) + s**2
    by_parts = (
        (Lam * X).subs(s, 1) - (Lam * X).subs(s, 0) - sp.integrate(sp.diff(Lam, s) * X, (s, 0, 1))
    )
    assert sp.simplify(sp.integrate(Lam * sp.diff(X, s), (s, 0, 1)) - by_parts) == 0

    # after the parts: int (l + lambda f + lambda' x) dt - [lambda x] + phi(x(T))
    (euler,) = euler_equations(stage + lam * f + sp.diff(lam, s) * x, [x], s)
    minus_lamdot = sp.solve(euler.lhs - euler.rhs, sp.diff(lam, s))[0] * -1
    y, m = sp.symbols("y m", real=True)
    continuous = sp.expand(minus_lamdot.subs({x: y, lam: m}))

    g, _ = _euler(0.1)
    costate = next(c for c in g.stationarity().backward_conditions if hasattr(c, "hamiltonian"))
    t = sp.Symbol("t", integer=True, nonnegative=True)
    lam_next, xt = sp.IndexedBase("lambda_x")[t + 1], sp.IndexedBase("x")[t]
    h = sp.Symbol("h", real=True)
    rhs = costate.equations[1].rhs.xreplace({g.multiplier("x_cost"): 1})
    discrete = sp.expand(((rhs - lam_next) / h).xreplace({lam_next: m, xt: y}))
    assert sp.simplify(discrete - continuous) == 0

    # the boundary term: d/dx(T) of phi(x(T)) - lambda(T) x(T) = 0 gives lambda(T) = 2 x(T)
    xT, lamT = sp.symbols("x_T lambda_T", real=True)
    (terminal,) = sp.solve(sp.diff(xT**2 - lamT * xT, xT), lamT)
    assert terminal == 2 * xT
    assert str(costate.equations[0]) == "lambda_x[T] = lambda_x_final"
    final = next(c for c in g.stationarity().backward_conditions if c.wrt == g.lookup("x_final"))
    assert final.rhs.xreplace({g.multiplier("J"): 1}) == 2 * g.lookup("x_final")


def test_sign_conventions_against_casadi():
    """The lecture's costate lambda_t = dJ/dx_t is the negative of CasADi's multiplier of
    the same constraint: Opti writes x_{t+1} - (A x_t + B u_t) = 0 and L = J + mu^T g,
    the lecture L = J - lambda^T (x_{t+1} - f)."""
    ca = pytest.importorskip("casadi")
    N = 10
    g, at, u, x, _ = lq(N)
    ours = g.minimize("J", over=[u], at=at).solution.adjoints[x]
    opti = ca.Opti()
    X, U = opti.variable(2, N + 1), opti.variable(1, N)
    cost, dynamics = 0, []
    for t in range(N):
        cost += ca.sumsqr(X[:, t]) + ca.sumsqr(U[:, t])
        dynamics.append(X[:, t + 1] == A0 @ X[:, t] + B0 @ U[:, t])
        opti.subject_to(dynamics[-1])
    start = X[:, 0] == START[:, 0]
    opti.subject_to(start)
    opti.minimize(cost + ca.sumsqr(X[:, N]))
    opti.solver("ipopt", {"print_time": False}, {"print_level": 0, "sb": "yes"})
    solved = opti.solve()
    for t in range(N):
        dual = np.array(solved.value(opti.dual(dynamics[t]))).reshape(2, 1)
        np.testing.assert_allclose(dual, -ours[t + 1], rtol=1e-6, atol=1e-8)
    dual = np.array(solved.value(opti.dual(start))).reshape(2, 1)
    np.testing.assert_allclose(dual, -ours[0], rtol=1e-6, atol=1e-8)


def test_the_controls_start_at_zero_when_not_given():
    """API.md's call gives the dynamics' data only: the controls start at zero."""
    N = 6
    g, at, u, *_ = lq(N)
    data = {k: v for k, v in at.items() if k != u}
    best = g.minimize("J", over=[u], at=data)
    np.testing.assert_allclose(best.at[u][:, 0, 0], stacked_optimum(N), rtol=1e-10, atol=1e-12)


# -- grading a student's Pontryagin conditions -----------------------------------------


def _lq_answers():
    return {
        "J": "eye(1)",
        "x_cost": "Lambda_J",
        "x_final": "x_final*Lambda_J + x_final*Lambda_J.T",
        "Lambda_x[T]": "Lambda_x_final",
        "Lambda_x[t]": "2*x[t]*Lambda_x_cost + A.T*Lambda_x[t + 1]",
        "A": "Sum(Lambda_x[t + 1]*x[t].T, (t, 0, T - 1))",
        "B": "Sum(Lambda_x[t + 1]*u[t].T, (t, 0, T - 1))",
        "x0": "Lambda_x[0]",
        "Lambda_u[t]": "2*u[t]*Lambda_x_cost + B.T*Lambda_x[t + 1]",
    }


def _lq_graph(controls):
    g = adjoint.Graph()
    g.input("A", shape=(2, 2)), g.input("B", shape=(2, controls))
    x0 = g.input("x0", shape=(2, 1))
    g.sequence("u", steps=5, shape=(controls, 1))
    x = g.recurrence("x", step="A*x + B*u", init=x0, steps=5, shape=(2, 1), cost="x.T*x + u.T*u")
    g.define("J", x.cost + x.final.T * x.final)
    return g


@pytest.mark.parametrize(
    ("key", "formula", "mistake"),
    [
        # the Hamiltonian with lambda_t where lambda_{t+1} belongs
        ("Lambda_u[t]", "2*u[t]*Lambda_x_cost + B.T*Lambda_x[t]", "time-index"),
        ("Lambda_x[t]", "2*x[t]*Lambda_x_cost + A.T*Lambda_x[t]", "time-index"),
        # CasADi's sign: the multiplier of x_{t+1} - f is -lambda
        ("Lambda_x[t]", "-2*x[t]*Lambda_x_cost - A.T*Lambda_x[t + 1]", "sign"),
        ("Lambda_u[t]", "2*u[t]*Lambda_x_cost + Lambda_x[t + 1]", "missing-factor"),
        ("Lambda_u[t]", "2*u[t]*Lambda_x_cost + B*Lambda_x[t + 1]", "transpose"),
    ],
)
def test_pontryagin_mistakes_are_named(key, formula, mistake):
    g = _lq_graph(2)  # B is 2 x 2: a missing B^T still gives a 2 x 1 matrix
    report = adjoint.check_adjoints(g, {**_lq_answers(), key: formula}, seed=2)
    (wrong,) = report.wrong
    assert wrong.mistake == mistake, wrong.message
    if mistake == "sign":
        assert "sign convention" in wrong.message and "opti.dual" in wrong.message
    if mistake == "missing-factor":
        assert "leaves out B" in wrong.message


def test_a_missing_b_transpose_that_breaks_the_shapes_is_named():
    g = _lq_graph(1)
    answers = {**_lq_answers(), "Lambda_u[t]": "2*u[t]*Lambda_x_cost + Lambda_x[t + 1]"}
    report = adjoint.check_adjoints(g, answers, seed=2)
    (unread,) = report.unparseable
    assert unread.mistake == "missing-factor" and "leaves out B" in unread.message
    assert adjoint.check_adjoints(g, _lq_answers(), seed=2).ok


RICCATI = (
    "eye(2) + A.T*P[t + 1]*A - A.T*P[t + 1]*B*inverse(eye({m}) + B.T*P[t + 1]*B)*B.T*P[t + 1]*A"
)


@pytest.mark.parametrize("controls", [1, 2])
def test_the_textbook_riccati_step_is_graded_right_against_grad_l(controls):
    """The grader's reference is derived numerically from the package's conditions
    (dL/du_t = 0 solved for the control, then the costate recursion, with lambda =
    2 P x); the textbook formula, written independently here, must pass."""
    g = _lq_graph(controls)
    report = adjoint.check_adjoints(g, {"P[t]": RICCATI.format(m=controls)}, seed=4)
    (graded,) = [r for r in report.grades if str(r.node) == "P[t]"]
    assert graded.status == "correct", graded.message


@pytest.mark.parametrize(
    ("change", "mistake"),
    [
        (lambda f: f.replace("P[t + 1]", "P[t]"), "time-index"),
        (lambda f: f.replace("B.T", "#").replace("B", "B.T").replace("#", "B"), "transpose"),
        (lambda f: f.replace(" - A.T", " + A.T"), "other"),
        (lambda f: f.replace("eye(2) + A.T", "A.T"), "other"),  # Q left out
    ],
)
def test_riccati_mistakes_are_named(change, mistake):
    g = _lq_graph(2)
    report = adjoint.check_adjoints(g, {"P[t]": change(RICCATI.format(m=2))}, seed=4)
    (graded,) = [r for r in report.grades if str(r.node) == "P[t]"]
    assert graded.status == "wrong" and graded.mistake == mistake, graded.message


def test_the_riccati_step_is_refused_without_a_control():
    g = adjoint.Graph()
    g.input("a")
    z = g.recurrence("z", step="a*z", init="a", steps=3)
    g.define("J", z.final**2)
    with pytest.raises(adjoint.AdjointError, match="one control"):
        adjoint.check_adjoints(g, {"P[t]": "a*P[t + 1]*a"})
