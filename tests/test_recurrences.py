"""Rolled recurrences: the costates of the method of adjoints, derived once with the
index t, solved by one loop in reverse, with every state stored or with the binomial
(revolve) schedule.

The references are independent routes: the same computation unrolled into an explicit
graph of T nodes, central differences of a hand-written NumPy loop, and the schedule
counts of the `checkpoint-schedules` package and of Griewank's closed form.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import adjoint
from adjoint.system.recurrences import actions, minimal_advances

STEPS = {
    "a*sin(z) + u": lambda z, a, u: a * sp.sin(z) + u,
    "tanh(a*z + u)": lambda z, a, u: sp.tanh(a * z + u),
    "z + a*z*(1 - z)/4 + u*t/10": None,  # reads the step index
}


def scalar_graph(T, step="a*sin(z) + u", cost="(z - d)**2"):
    g = adjoint.Graph()
    a, x0 = g.input("a"), g.input("x0")
    u = g.sequence("u", steps=T)
    d = g.sequence("d", steps=T, constant=True)
    z = g.recurrence("z", step=step, init=x0, steps=T, cost=cost)
    g.define("J", z.cost + z.final**2)
    return g, a, x0, u, d, z


def unrolled(T, at, step="a*sin(z) + u"):
    """The same function with one explicit node per step."""
    h = adjoint.Graph()
    a, x0 = h.input("a"), h.input("x0")
    us = [h.input(f"u{t}") for t in range(T)]
    zs, cost = [x0], 0
    for t in range(T):
        cost = cost + (zs[-1] - float(at["d"][t])) ** 2
        expr = sp.sympify(step, locals={"a": a, "z": zs[-1], "u": us[t], "t": sp.Integer(t)})
        zs.append(h.define(f"z{t + 1}", expr))
    h.define("J", cost + zs[-1] ** 2)
    values = {a: at["a"], x0: at["x0"], **{us[t]: float(at["u"][t]) for t in range(T)}}
    return h.solve(values), a, x0, us, zs, h


@settings(max_examples=30)
@given(
    T=st.integers(1, 7),
    step=st.sampled_from(sorted(STEPS)),
    seed=st.integers(0, 2**16),
)
def test_a_recurrence_equals_its_unrolled_graph(T, step, seed):
    rng = np.random.default_rng(seed)
    g, a, x0, u, _d, z = scalar_graph(T, step)
    at = {"a": rng.uniform(-1, 1), "x0": rng.uniform(-1, 1), "u": rng.normal(size=T)}
    at["d"] = rng.normal(size=T)
    sol = g.solve(at)
    ref, A, X0, us, zs, _ = unrolled(T, at, step)
    assert sol.output == pytest.approx(ref.output, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(sol.values[z], [ref.values[s] for s in zs], rtol=1e-12, atol=1e-14)
    # the costates are the multipliers of the unrolled nodes: lambda_t = dJ/dz_t
    costates = [ref.adjoints[s] for s in zs]
    np.testing.assert_allclose(sol.adjoints[z], costates, rtol=1e-10, atol=1e-12)
    assert sol.gradient[a] == pytest.approx(ref.gradient[A], rel=1e-10, abs=1e-12)
    assert sol.gradient[x0] == pytest.approx(ref.gradient[X0], rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(
        sol.gradient[u], [ref.gradient[s] for s in us], rtol=1e-10, atol=1e-12
    )


@settings(max_examples=30)
@given(T=st.integers(1, 40), checkpoints=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_checkpointing_gives_the_same_gradient(T, checkpoints, seed):
    rng = np.random.default_rng(seed)
    g, a, x0, u, d, z = scalar_graph(T)
    at = {a: rng.uniform(-1, 1), x0: 0.3, u: rng.normal(size=T), d: rng.normal(size=T)}
    stored, saved = g.solve(at), g.solve(at, checkpoints=checkpoints)
    assert saved.output == stored.output
    assert saved.gradient[a] == pytest.approx(stored.gradient[a], rel=1e-13, abs=1e-15)
    np.testing.assert_allclose(saved.gradient[u], stored.gradient[u], rtol=1e-13, atol=1e-15)
    assert saved.gradient[x0] == pytest.approx(stored.gradient[x0], rel=1e-13, abs=1e-15)
    counts = saved.schedule
    assert counts.stored_peak <= checkpoints
    assert counts.reverse_steps == T
    assert counts.forward_steps == minimal_advances(T, checkpoints) + 1
    # under a schedule the solution keeps z_T and lambda_0
    assert saved.values[z] == stored.values[z][-1]
    assert saved.adjoints[z] == pytest.approx(stored.adjoints[z][0], rel=1e-13)


@pytest.mark.parametrize(
    ("T", "s"),
    [(T, s) for T in (1, 2, 5, 10, 37, 100) for s in (1, 2, 3, 5, 10, 64)]
    + [(1000, s) for s in (2, 3, 5, 10)],  # the oracle is slow with many snapshots
)
def test_the_schedule_matches_checkpoint_schedules_and_the_closed_form(T, s):
    """Our reverse step reads z_t directly; revolve's tapes the step t -> t+1 and then
    reverses it. So our advances are its untaped forward steps, plus the last step of
    the first sweep (to z_T), which it tapes."""
    revolve = pytest.importorskip("checkpoint_schedules")
    if s >= T:
        expected = T - 1
    else:
        untaped = 0
        for action in revolve.Revolve(T, s):
            name = type(action).__name__
            if name == "Forward" and not action.write_adj_deps:
                untaped += action.n1 - action.n0
            if name == "EndReverse":
                break
        expected = untaped
    assert minimal_advances(T, s) == expected
    counts = adjoint.schedule(T, s).counts
    assert counts.forward_steps == expected + 1
    assert counts.stored_peak <= s
    # every step is reversed once, last first, from its own state
    reversed_, current, stored = [], None, {}
    for a in actions(T, s):
        if a[0] == "snapshot":
            stored[a[1]] = a[1]
        elif a[0] == "free":
            del stored[a[1]]
        elif a[0] == "restore":
            current = stored[a[1]]
        elif a[0] == "advance":
            assert current == a[1]
            current = a[2]
        elif a[0] == "reverse":
            assert current == a[1]
            reversed_.append(a[1])
    assert reversed_ == list(range(T - 1, -1, -1))


def test_a_million_steps_with_a_thousand_snapshots_is_the_binomial_count():
    # Griewank and Walther: r T - beta(s + 1, r - 1), with r = 3 here
    assert minimal_advances(10**6, 1000) == 2_497_497


def test_the_derivation_does_not_grow_with_the_number_of_steps(monkeypatch):
    import adjoint.system.recurrences as recurrences

    calls = []
    original = recurrences._pullback

    def counting(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(recurrences, "_pullback", counting)
    printed = []
    for T in (10, 10**6):
        g, *_ = scalar_graph(T)
        calls.clear()
        printed.append(str(g.stationarity()))
        counted = len(calls)
    assert printed[0] == printed[1]  # T is a symbol in the conditions, never unrolled
    assert counted == len(calls) and counted < 20
    assert "lambda_z[t] = " in printed[0] and "a*cos(z[t])*lambda_z[t + 1]" in printed[0]
    assert "lambda_z[T] = lambda_z_final" in printed[0]
    assert "lambda_a = Sum(sin(z[t])*lambda_z[t + 1], (t, 0, T - 1))" in printed[0]


def test_the_conditions_render(katex):
    import rendering

    items = []
    for g in (scalar_graph(5)[0], lqr(3)[0]):
        for shown in (g.stationarity(), g.second_order(), g.solve(_point(g))):
            items.append(rendering.from_repr_latex(shown._repr_latex_()))
        for e in (g.explain(), g.explain(_point(g))):
            items += rendering.from_markdown(e.to_markdown())
            maths, prose = rendering.from_latex_document(e.to_latex())
            items += maths
            for part in prose:
                errors, inline = rendering.text_errors(part)
                assert not errors, part
                items += [(rf"\text{{{part}}}", False), *inline]
    assert katex.errors(items) == [None] * len(items)


def test_explain_derives_the_costate_recursion_once_and_checks_the_gradient():
    g, a, x0, u, d, z = scalar_graph(6)
    at = {a: 0.9, x0: 0.1, u: np.linspace(-1, 1, 6), d: np.zeros(6)}
    page = str(g.explain(at))
    sol = g.solve(at)
    assert "subject to z[t + 1] = a*sin(z[t]) + u[t]" in page
    assert "lambda_z[T] = lambda_z_final" in page
    assert "lambda_z[t] = lambda_z_cost*(-2*d[t] + 2*z[t]) + a*cos(z[t])*lambda_z[t + 1]" in page
    assert "lambda_a = Sum(sin(z[t])*lambda_z[t + 1], (t, 0, T - 1))" in page
    assert f"lambda_z[0] = {sol.adjoints[z][0]:.6g}" in page
    assert (
        f"lambda_a = Sum(sin(z[t])*lambda_z[t + 1], (t, 0, T - 1)) = {sol.gradient[a]:.6g}" in page
    )
    assert "ok   gradient of J against central differences" in page
    html = g.explain(at).to_html()
    assert "<math" in html and "in reverse" in html
    # a wrong multiplier would be caught: the check is central differences, not Step 2
    with pytest.raises(adjoint.AdjointError, match="recurrences"):
        g.explain(at, direction={a: 1.0, x0: 0.0, u: np.zeros(6)})


def _point(g):
    rng = np.random.default_rng(0)
    point = {}
    for s in (*g.inputs, *g.constants):
        node = g.node(s)
        shape = () if node.shape is None else tuple(int(d) for d in node.shape)
        size = shape if node.steps is None else (node.steps, *shape)
        point[s] = rng.normal(size=size) if size else float(rng.normal())
    return point


# -- matrix states -------------------------------------------------------------------


def lqr(N):
    g = adjoint.Graph()
    A, B = g.input("A", shape=(2, 2)), g.input("B", shape=(2, 1))
    x0 = g.input("x0", shape=(2, 1))
    u = g.sequence("u", steps=N, shape=(1, 1))
    x = g.recurrence("x", step="A*x + B*u", init=x0, steps=N, shape=(2, 1), cost="x.T*x + u.T*u")
    g.define("J", x.cost + x.final.T * x.final)
    return g, A, B, x0, u, x


def test_linear_dynamics_equal_the_unrolled_matrix_graph():
    N = 4
    g, A, B, x0, u, x = lqr(N)
    rng = np.random.default_rng(3)
    at = {A: np.eye(2) + 0.1 * rng.normal(size=(2, 2)), B: rng.normal(size=(2, 1))}
    at.update({x0: rng.normal(size=(2, 1)), u: rng.normal(size=(N, 1, 1))})
    sol = g.solve(at)
    h = adjoint.Graph()
    A2, B2 = h.input("A", shape=(2, 2)), h.input("B", shape=(2, 1))
    xs = [h.input("x0", shape=(2, 1))]
    us = [h.input(f"u{t}", shape=(1, 1)) for t in range(N)]
    cost = sp.ZeroMatrix(1, 1)
    for t in range(N):
        cost = cost + xs[-1].T * xs[-1] + us[t].T * us[t]
        xs.append(h.define(f"x{t + 1}", A2 * xs[-1] + B2 * us[t]))
    h.define("J", sp.Trace(cost + xs[-1].T * xs[-1]))
    ref = h.solve({A2: at[A], B2: at[B], xs[0]: at[x0], **{us[t]: at[u][t] for t in range(N)}})
    assert float(np.asarray(sol.output).item()) == pytest.approx(ref.output, rel=1e-12)
    np.testing.assert_allclose(sol.gradient[A], ref.gradient[A2], rtol=1e-11)
    np.testing.assert_allclose(sol.gradient[B], ref.gradient[B2], rtol=1e-11)
    np.testing.assert_allclose(sol.gradient[x0], ref.gradient[xs[0]], rtol=1e-11)
    np.testing.assert_allclose(sol.gradient[u], [ref.gradient[s] for s in us], rtol=1e-11)
    np.testing.assert_allclose(sol.adjoints[x], [ref.adjoints[s] for s in xs], rtol=1e-11)


def test_a_pendulum_written_entry_by_entry_matches_differences_of_a_numpy_loop():
    dt, N = 0.05, 30
    g = adjoint.Graph()
    x0 = g.input("x0", shape=(2, 1))
    xs = sp.MatrixSymbol("x", 2, 1)
    th, om = xs[0, 0], xs[1, 0]
    u = g.sequence("u", steps=N)
    step = sp.Matrix([[th + dt * om], [om + dt * (-sp.sin(th) - om / 10 + u)]])
    x = g.recurrence(xs, step=step, init=x0, steps=N, shape=(2, 1), cost=(th**2 + u**2 / 10) * dt)
    g.define("J", x.cost + 10 * (x.final[0, 0] ** 2 + x.final[1, 0] ** 2))

    def J(start, controls):
        q, w, total = start[0, 0], start[1, 0], 0.0
        for t in range(N):
            total += (q**2 + controls[t] ** 2 / 10) * dt
            q, w = q + dt * w, w + dt * (-np.sin(q) - w / 10 + controls[t])
        return total + 10 * (q**2 + w**2)

    rng = np.random.default_rng(4)
    start, controls = np.array([[1.0], [0.0]]), 0.1 * rng.normal(size=N)
    sol = g.solve({x0: start, u: controls})
    assert sol.output == pytest.approx(J(start, controls), rel=1e-13)
    h = 1e-6
    for t in (0, 7, N - 1):
        e = np.zeros(N)
        e[t] = h
        fd = (J(start, controls + e) - J(start, controls - e)) / (2 * h)
        assert sol.gradient[u][t] == pytest.approx(fd, rel=1e-6)
    saved = g.solve({x0: start, u: controls}, checkpoints=3)
    np.testing.assert_allclose(saved.gradient[u], sol.gradient[u], rtol=1e-13)


# -- refusals ------------------------------------------------------------------------


def test_bad_recurrences_are_refused_naming_the_fix():
    g, a, x0, u, d, z = scalar_graph(5)
    with pytest.raises(adjoint.ShapeError, match="has 5 steps"):
        g.solve({a: 0.5, x0: 0.1, u: np.zeros(4), d: np.zeros(5)})
    with pytest.raises(adjoint.ExpressionError, match="reads the sequence u"):
        g.define("bad", "u + 1")
    with pytest.raises(adjoint.ExpressionError, match="z_final or z_cost"):
        g.define("bad", z.state + 1)
    with pytest.raises(adjoint.AdjointError, match="solved at a point"):
        g.solve()
    with pytest.raises(adjoint.AdjointError, match=r"g\.hvp\(at, direction\)"):
        g.compile(hvp=True)
    with pytest.raises(adjoint.AdjointError, match="checkpoints must be a positive"):
        g.compile(checkpoints=0)
    with pytest.raises(adjoint.ShapeError, match="has recurrences, whose values are not sep"):
        g.compile()(a=np.array([0.1, 0.2]), x0=0.1, u=np.zeros(5), d=np.zeros(5))
    with pytest.raises(adjoint.ShapeError, match="has 5 steps"):
        g.compile()(a=0.5, x0=0.1, u=np.zeros(4), d=np.zeros(5))
    with pytest.raises(adjoint.AdjointError, match="checkpoints must be a positive"):
        g.solve({a: 0.5, x0: 0.1, u: np.zeros(5), d: np.zeros(5)}, checkpoints=0)
    h = adjoint.Graph()
    h.input("a")
    with pytest.raises(adjoint.AdjointError, match="steps of z must be a positive integer"):
        h.recurrence("z", step="a*z", init="a", steps=0)
    h.sequence("v", steps=3)
    with pytest.raises(adjoint.ShapeError, match="sequence v has 3"):
        h.recurrence("z", step="a*z + v", init="a", steps=4)
    with pytest.raises(adjoint.ShapeError, match="step of y is 2 x 1"):
        h.recurrence("y", step=sp.Matrix([[1], [2]]), init="a", steps=3)
    with pytest.raises(adjoint.AdjointError, match="unknown symbol 'later'"):
        h.recurrence("w", step="a*w + later", init="a", steps=3)
    assert "z" not in h and "y" not in h and "w" not in h
    n = sp.Symbol("n", integer=True, positive=True)
    h.input("W", shape=(n, n))
    with pytest.raises(adjoint.ShapeError, match="numbers for the shape of the state h"):
        h.recurrence("h", step="W*h", init=sp.ZeroMatrix(n, 1), steps=3, shape=(n, 1))
    assert "h" not in h


def test_the_schedule_picture_labels_its_axes_and_shows_every_reverse_step():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = adjoint.schedule(12, 3).draw()
    try:
        assert ax.get_xlabel() and ax.get_ylabel()
        reverse = [line for line in ax.lines if line.get_marker() == "o"]
        assert sorted(int(line.get_ydata()[0]) for line in reverse) == list(range(12))
    finally:
        plt.close(ax.figure)


def test_several_recurrences_read_each_other_and_explicit_nodes():
    T = 4
    g = adjoint.Graph()
    a = g.input("a")
    g.define("c", "2*a")
    p = g.recurrence("p", step="c*p/2 + 1", init="a", steps=T)
    q = g.recurrence("q", step="sin(q) + p_final*t", init=p.final, steps=T, cost="q**2")
    g.define("J", q.cost + q.final)

    def J(a):
        pv = a
        for _ in range(T):
            pv = a * pv + 1
        qv, total = pv, 0.0
        for t in range(T):
            total += qv**2
            qv = np.sin(qv) + pv * t
        return total + qv

    sol = g.solve({a: 0.3})
    assert sol.output == pytest.approx(J(0.3), rel=1e-14)
    h = 1e-6
    assert sol.gradient[a] == pytest.approx((J(0.3 + h) - J(0.3 - h)) / (2 * h), rel=1e-7)
    assert set(sol.schedule) == {p.state, q.state}


# -- second order ----------------------------------------------------------------------


@settings(max_examples=15)
@given(T=st.integers(1, 6), step=st.sampled_from(sorted(STEPS)), seed=st.integers(0, 2**16))
def test_the_hessian_vector_product_equals_the_unrolled_graphs(T, step, seed):
    rng = np.random.default_rng(seed)
    g, a, x0, u, _d, _z = scalar_graph(T, step)
    at = {"a": rng.uniform(-1, 1), "x0": rng.uniform(-1, 1), "u": rng.normal(size=T)}
    at["d"] = rng.normal(size=T)
    v = {"a": rng.normal(), "x0": rng.normal(), "u": rng.normal(size=T)}
    got = g.hvp(at, v)
    graph = _unrolled_graph(T, at, step)
    A, X0, *us = graph.inputs
    point = {A: at["a"], X0: at["x0"], **{us[t]: float(at["u"][t]) for t in range(T)}}
    direction = {A: v["a"], X0: v["x0"], **{us[t]: float(v["u"][t]) for t in range(T)}}
    expected = graph.hvp(point, direction)
    assert got[a] == pytest.approx(expected[A], rel=1e-9, abs=1e-11)
    assert got[x0] == pytest.approx(expected[X0], rel=1e-9, abs=1e-11)
    np.testing.assert_allclose(got[u], [expected[s] for s in us], rtol=1e-9, atol=1e-11)


def _unrolled_graph(T, at, step):
    h = adjoint.Graph()
    a, x0 = h.input("a"), h.input("x0")
    us = [h.input(f"u{t}") for t in range(T)]
    zs, cost = [x0], 0
    for t in range(T):
        cost = cost + (zs[-1] - float(at["d"][t])) ** 2
        expr = sp.sympify(step, locals={"a": a, "z": zs[-1], "u": us[t], "t": sp.Integer(t)})
        zs.append(h.define(f"z{t + 1}", expr))
    h.define("J", cost + zs[-1] ** 2)
    return h


def test_the_hessian_of_linear_quadratic_control_is_constant_and_symmetric():
    N = 3
    g, A, B, x0, u, _x = lqr(N)
    rng = np.random.default_rng(5)
    at = {A: np.eye(2) + 0.1 * rng.normal(size=(2, 2)), B: rng.normal(size=(2, 1))}
    at.update({x0: rng.normal(size=(2, 1)), u: rng.normal(size=(N, 1, 1))})
    H = g.hessian(at)
    np.testing.assert_allclose(H, H.T, atol=1e-12)
    # along the controls only: the quadratic's Hessian does not depend on u
    direction = {A: np.zeros((2, 2)), B: np.zeros((2, 1)), x0: np.zeros((2, 1))}
    direction[u] = rng.normal(size=(N, 1, 1))
    one = g.hvp(at, direction)[u]
    other = g.hvp({**at, u: rng.normal(size=(N, 1, 1))}, direction)[u]
    np.testing.assert_allclose(one, other, rtol=1e-12)
    h = 1e-6
    up = g.solve({**at, u: at[u] + h * direction[u]}).gradient[u]
    down = g.solve({**at, u: at[u] - h * direction[u]}).gradient[u]
    np.testing.assert_allclose(one, (up - down) / (2 * h), rtol=1e-7)


def test_a_parameter_named_like_the_loops_own_symbols_changes_no_hessian():
    """The second-order loop's tangent of lambda_{t+1} was a symbol named
    dot_lambda_z_next: a parameter of that name was taken for it (HVP off by 100%)."""
    T = 4
    g = adjoint.Graph()
    a, x0 = g.input("dot_lambda_z_next"), g.input("x0")
    u = g.sequence("u", steps=T)
    g.recurrence("z", step="dot_lambda_z_next*sin(z) + u", init=x0, steps=T, cost="z**2")
    g.define("J", "z_cost + z_final**2")
    at = {a: 0.9, x0: 0.3, u: np.array([0.1, -0.2, 0.3, 0.05])}
    assert adjoint.check_hvp(g, at).ok
    assert adjoint.check_gradient(g, at).ok


@settings(max_examples=20, deadline=None)
@given(T=st.integers(1, 12), checkpoints=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_a_checkpointed_hessian_vector_product_is_the_stored_one(T, checkpoints, seed):
    """Forward over reverse on the binomial schedule: the state and its tangent stored
    together at most s at a time, the costate and its tangent in one reverse loop."""
    from adjoint.system import recurrences

    runs = []
    forward = recurrences.forward

    def recorded(*args, **kwargs):
        out = forward(*args, **kwargs)
        runs.append(out[2])
        return out

    rng = np.random.default_rng(seed)
    g, a, x0, u, d, _ = scalar_graph(T, "tanh(a*z + u)")
    at = {a: rng.uniform(-1, 1), x0: 0.2, u: rng.normal(size=T), d: rng.normal(size=T)}
    v = {a: rng.normal(), x0: rng.normal(), u: rng.normal(size=T)}
    stored = g.hvp(at, v)
    recurrences.forward = recorded
    try:
        saved = g.hvp(at, v, checkpoints=checkpoints)
    finally:
        recurrences.forward = forward
    for x in (a, x0, u):
        np.testing.assert_allclose(saved[x], stored[x], rtol=1e-13, atol=1e-15)
    assert len(runs) == 2  # the first-order solve, then the state with its tangent
    for run in runs:
        assert run.counts.stored_peak <= checkpoints
        assert run.counts.forward_steps == minimal_advances(T, checkpoints) + 1
        assert run.counts.reverse_steps == T


def test_a_checkpointed_hvp_of_linear_quadratic_control_is_the_stored_one():
    g, A, B, x0, u, _ = lqr(6)
    rng = np.random.default_rng(8)
    at = {A: np.eye(2) + 0.1 * rng.normal(size=(2, 2)), B: rng.normal(size=(2, 1))}
    at.update({x0: rng.normal(size=(2, 1)), u: rng.normal(size=(6, 1, 1))})
    v = {A: rng.normal(size=(2, 2)), B: rng.normal(size=(2, 1))}
    v.update({x0: rng.normal(size=(2, 1)), u: rng.normal(size=(6, 1, 1))})
    stored = g.hvp(at, v)
    for s in (1, 2, 4):
        saved = g.hvp(at, v, checkpoints=s)
        for x in (A, B, x0, u):
            np.testing.assert_allclose(saved[x], stored[x], rtol=1e-13, atol=1e-14)
    with pytest.raises(adjoint.AdjointError, match="checkpoints must be a positive"):
        g.hvp(at, v, checkpoints=0)


# -- compiled programs: one loop per recurrence, never unrolled --------------------------


BACKENDS = ["numpy", "jax"]


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=12, deadline=None)
@given(
    T=st.integers(1, 9),
    checkpoints=st.one_of(st.none(), st.integers(1, 4)),
    step=st.sampled_from(sorted(STEPS)),
    seed=st.integers(0, 2**16),
)
def test_a_compiled_recurrence_equals_the_compiled_unrolled_graph(
    backend, T, checkpoints, step, seed
):
    """The reference is the explicit graph of T nodes, compiled: straight-line code."""
    rng = np.random.default_rng(seed)
    g, *_ = scalar_graph(T, step)
    at = {"a": rng.uniform(-1, 1), "x0": rng.uniform(-1, 1), "u": rng.normal(size=T)}
    at["d"] = rng.normal(size=T)
    value, (ga, gx0, gu) = g.compile(backend=backend, checkpoints=checkpoints)(**at)
    ref, A, X0, us, _, h = unrolled(T, at, step)
    f = h.compile(backend=backend)
    rvalue, rgrad = f(**{s.name: ref.values[s] for s in h.inputs})
    grads = dict(zip(h.inputs, rgrad))
    assert value == pytest.approx(rvalue, rel=1e-12, abs=1e-12)
    assert ga == pytest.approx(grads[A], rel=1e-10, abs=1e-12)
    assert gx0 == pytest.approx(grads[X0], rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(gu, [grads[s] for s in us], rtol=1e-10, atol=1e-12)


def test_the_program_is_a_loop_whatever_the_number_of_steps():
    short, long = scalar_graph(3)[0].source(), scalar_graph(10**5)[0].source()
    assert len(long.splitlines()) == len(short.splitlines())
    assert "for " not in long  # the loop is the runtime's, reading the printed step
    assert "_recurrence(" in long and "_recurrence_reverse(" in long
    # data (the constant sequence d) gets no gradient, so no array of T parts
    assert "_part_z_d" not in long and "_part_z_u" in long


@pytest.mark.parametrize("checkpoints", [None, 1, 3, 7])
def test_the_compiled_numpy_program_takes_the_binomial_schedule(monkeypatch, checkpoints):
    """Counted in the program's own loops: step evaluations, and states stored at once."""
    from adjoint.operations import checkpointing

    T, calls, runs = 40, [0], []
    forward, reverse = checkpointing.forward, checkpointing.reverse

    def counting(step):
        def wrapped(z, t):
            calls[0] += 1
            return step(z, t)

        return wrapped

    def forward_counted(step, *args):
        out = forward(counting(step), *args)
        runs.append(out[2])
        return out

    monkeypatch.setattr(checkpointing, "forward", forward_counted)
    monkeypatch.setattr(
        checkpointing, "reverse", lambda step, *args, **kw: reverse(counting(step), *args, **kw)
    )
    g, a, x0, u, d, _ = scalar_graph(T)
    at = {a: 0.7, x0: 0.2, u: np.linspace(-1, 1, T), d: np.zeros(T)}
    value, grads = g.compile(checkpoints=checkpoints)(0.7, 0.2, at[u], at[d])
    sol = g.solve(at)
    assert value == pytest.approx(sol.output, rel=1e-14)
    np.testing.assert_allclose(grads[2], sol.gradient[u], rtol=1e-12)
    expected = T if checkpoints is None else minimal_advances(T, checkpoints) + 1
    assert calls[0] == expected
    counts = runs[0].counts
    assert counts.forward_steps == expected and counts.reverse_steps == T
    if checkpoints is not None:
        assert counts.stored_peak <= checkpoints


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("checkpoints", [None, 3])
def test_compiled_linear_dynamics_equal_the_unrolled_matrix_graph(backend, checkpoints):
    N = 7
    g, A, B, x0, u, _ = lqr(N)
    rng = np.random.default_rng(5)
    at = {A: np.eye(2) + 0.1 * rng.normal(size=(2, 2)), B: rng.normal(size=(2, 1))}
    at.update({x0: rng.normal(size=(2, 1)), u: rng.normal(size=(N, 1, 1))})
    value, grads = g.compile(backend=backend, checkpoints=checkpoints)(
        **{s.name: v for s, v in at.items()}
    )
    h = adjoint.Graph()
    A2, B2 = h.input("A", shape=(2, 2)), h.input("B", shape=(2, 1))
    xs = [h.input("x0", shape=(2, 1))]
    us = [h.input(f"u{t}", shape=(1, 1)) for t in range(N)]
    cost = sp.ZeroMatrix(1, 1)
    for t in range(N):
        cost = cost + xs[-1].T * xs[-1] + us[t].T * us[t]
        xs.append(h.define(f"x{t + 1}", A2 * xs[-1] + B2 * us[t]))
    h.define("J", sp.Trace(cost + xs[-1].T * xs[-1]))
    rvalue, rgrads = h.compile(backend=backend)(at[A], at[B], at[x0], *(at[u][t] for t in range(N)))
    assert np.shape(grads[3]) == (N, 1, 1)
    assert float(np.asarray(value).item()) == pytest.approx(rvalue, rel=1e-12)
    for k in range(3):
        assert np.shape(grads[k]) == np.shape(rgrads[k])
        np.testing.assert_allclose(grads[k], rgrads[k], rtol=1e-11)
    np.testing.assert_allclose(grads[3], rgrads[3:], rtol=1e-11)


@pytest.mark.parametrize("checkpoints", [None, 4])
def test_the_jax_program_equals_jax_grad_of_its_own_scan(checkpoints):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    T = 30
    g, *_ = scalar_graph(T, step="tanh(a*z + u)")
    rng = np.random.default_rng(1)
    at = {"a": 0.7, "x0": 0.3, "u": rng.normal(size=T), "d": rng.normal(size=T)}

    def J(a, x0, u, d):
        def body(z, ud):
            return jnp.tanh(a * z + ud[0]), (z - ud[1]) ** 2

        zT, costs = jax.lax.scan(body, x0, (u, d))
        return jnp.sum(costs) + zT**2

    with jax.enable_x64(True):
        ref = jax.value_and_grad(J, argnums=(0, 1, 2))(at["a"], at["x0"], at["u"], at["d"])
    value, grads = g.compile(backend="jax", checkpoints=checkpoints)(**at)
    assert value == pytest.approx(float(ref[0]), rel=1e-13)
    for mine, theirs in zip(grads, ref[1]):
        np.testing.assert_allclose(mine, np.asarray(theirs), rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_chained_recurrences_match_differences(backend):
    T = 4
    g = adjoint.Graph()
    g.input("a")
    g.define("c", "2*a")
    p = g.recurrence("p", step="c*p/2 + 1", init="a", steps=T)
    q = g.recurrence("q", step="sin(q) + p_final*t", init=p.final, steps=T, cost="q**2")
    g.define("J", q.cost + q.final)

    def J(a):
        pv = a
        for _ in range(T):
            pv = a * pv + 1
        qv, total = pv, 0.0
        for t in range(T):
            total += qv**2
            qv = np.sin(qv) + pv * t
        return total + qv

    for checkpoints in (None, 2):
        value, (grad,) = g.compile(backend=backend, checkpoints=checkpoints)(0.3)
        assert value == pytest.approx(J(0.3), rel=1e-13)
        h = 1e-6
        assert grad == pytest.approx((J(0.3 + h) - J(0.3 - h)) / (2 * h), rel=1e-7)


# -- grading a student's costate recursion (BPTT) ------------------------------------


def _bptt_answers(step="a*sin(z) + u"):
    """The right answers, derived here by sympy's diff of the step (an independent
    route): lambda_z[t] = (df/dz) lambda_z[t + 1] + lambda_C dl/dz, and so on."""
    z, a, u, t, lam, cost = sp.symbols("z a u t lam lam_C", real=True)
    f = sp.sympify(step, locals={"z": z, "a": a, "u": u, "t": t})
    at = {z: sp.Symbol("z[t]"), u: sp.Symbol("u[t]"), lam: sp.Symbol("lambda_z[t + 1]")}

    def text(e):
        return str(e.xreplace(at)).replace("lam_C", "lambda_z_cost")

    return {
        "J": "1",
        "z_cost": "lambda_J",
        "z_final": "2*lambda_J*z_final",
        "lambda_z[T]": "lambda_z_final",
        "lambda_z[t]": text(sp.diff(f, z) * lam + cost * sp.diff((z - sp.Symbol("d[t]")) ** 2, z)),
        "a": f"Sum({text(sp.diff(f, a) * lam)}, (t, 0, T - 1))",
        "x0": "lambda_z[0]",
        "lambda_u[t]": text(sp.diff(f, u) * lam),
    }


@pytest.mark.parametrize("step", sorted(STEPS))
def test_a_right_costate_recursion_is_graded_right(step):
    g, *_ = scalar_graph(6, step)
    report = adjoint.check_adjoints(g, _bptt_answers(step), seed=3)
    assert report.ok, report
    assert len(report.grades) == 8


def test_a_recursion_that_reuses_the_next_state_is_right():
    """tanh' = 1 - tanh^2 = 1 - z[t + 1]^2 on the trajectory: graded on trajectories,
    not on independent values, it is right."""
    g, *_ = scalar_graph(6, "tanh(a*z + u)")
    answers = _bptt_answers("tanh(a*z + u)")
    answers["lambda_z[t]"] = "a*(1 - z[t + 1]**2)*lambda_z[t + 1] + 2*lambda_z_cost*(z[t] - d[t])"
    assert adjoint.check_adjoints(g, answers, seed=4).ok


@pytest.mark.parametrize(
    ("key", "formula", "mistake"),
    [
        ("lambda_z[t]", "a*cos(z[t])*lambda_z[t] + 2*lambda_z_cost*(z[t] - d[t])", "time-index"),
        ("lambda_u[t]", "lambda_z[t]", "time-index"),
        ("a", "sin(z[t])*lambda_z[t + 1]", "missing-sum"),
        ("a", "sin(z[t])", "missing-sum"),
        ("lambda_z[T]", "0", "terminal"),
        ("lambda_z[T]", "lambda_z[t + 1]", "terminal"),
        ("lambda_z[t]", "-a*cos(z[t])*lambda_z[t + 1] - 2*lambda_z_cost*(z[t] - d[t])", "sign"),
        ("lambda_z[t]", "a*cos(z[t])*lambda_z[t + 1]", "other"),
        ("lambda_z[t]", "a*cos(z[t - 1])*lambda_z[t] + 2*lambda_z_cost*(z[t] - d[t])", None),
    ],
)
def test_bptt_mistakes_are_named(key, formula, mistake):
    g, *_ = scalar_graph(6)
    answers = {**_bptt_answers(), key: formula}
    report = adjoint.check_adjoints(g, answers, seed=5)
    (wrong,) = report.wrong
    assert str(wrong.node) == key or f"lambda_{wrong.node}[t]" == key or str(wrong.node) == key
    if mistake is not None:
        assert wrong.mistake == mistake, wrong.message
    else:  # z[t - 1] at t = 0: a step that does not exist
        assert "does not exist" in wrong.message
    assert json.loads(report.to_json())  # the report serialises, StepKey and all


def test_a_forgotten_terminal_condition_is_named_and_bad_text_is_refused():
    g, *_ = scalar_graph(6)
    answers = _bptt_answers()
    del answers["lambda_z[T]"]
    answers["x0"] = "lambda_z"  # the costate without its step
    report = adjoint.check_adjoints(g, answers, seed=6)
    (missing,) = report.missing
    assert "terminal condition" in missing.message and "lambda_z_final" in missing.message
    (unread,) = report.unparseable
    assert "changes with the step" in unread.message
    with pytest.raises(adjoint.AdjointError, match="no costate"):
        adjoint.check_adjoints(g, {"lambda_q[t]": "0"})
    # text the evaluator cannot take is a verdict with a reason, never a crash
    answers = {**_bptt_answers(), "a": "Sum(Sum(z[t], (t, 0, T - 1)), (t, 0, T - 1))"}
    (unread,) = adjoint.check_adjoints(g, answers, seed=6).unparseable
    assert "one at a time" in unread.message


def test_matrix_bptt_names_a_missing_transpose():
    g, *_ = lqr(5)
    right = {
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
    assert adjoint.check_adjoints(g, right, seed=7).ok
    wrong = {
        **right,
        "Lambda_x[t]": "2*x[t]*Lambda_x_cost + A*Lambda_x[t + 1]",
        "A": "Sum(x[t]*Lambda_x[t + 1].T, (t, 0, T - 1))",
    }
    report = adjoint.check_adjoints(g, wrong, seed=7)
    assert {str(w.node): w.mistake for w in report.wrong} == {
        "Lambda_x[t]": "transpose",
        "A": "transpose",
    }


def test_costates_spelled_with_greek_letters_and_spaces_are_read():
    """λ_z[t] is lambda_z[t], as λ_z3 is lambda_z3; a key may have spaces inside its
    brackets; a bare λ_z is refused, as a bare lambda_z is."""
    g, *_ = scalar_graph(5)
    answers = _bptt_answers()
    answers["λ_z[ t ]"] = answers.pop("lambda_z[t]").replace("lambda_z", "λ_z")
    assert adjoint.check_adjoints(g, answers, seed=0).ok
    answers = {**_bptt_answers(), "lambda_z[t]": "a*cos(z[t])*λ_z + 1"}
    (unread,) = adjoint.check_adjoints(g, answers, seed=0).unparseable
    assert "changes with the step" in unread.message
