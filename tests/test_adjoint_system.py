"""The lecture's own terms for symbolic solutions, Step 2 as a triangular linear
system (over matrix entries too), and shadow prices of matrix nodes."""

import numpy as np
import pytest
import sympy as sp

import adjoint
from adjoint.core.errors import ShapeError
from adjoint.examples import lecture_dag, two_layer_net

x, y = sp.symbols("x y", real=True)


def _recurrence(depth: int):
    g = adjoint.Graph()
    z = g.input("x")
    a = g.input("a")
    for k in range(depth):
        z = g.define(f"z{k}", a * sp.sin(z) + z**2)
    return g


def _block_by_differences(g, env, reader, node, h=1e-6):
    """d vec(f_i) / d vec(z_j) from the forward constraint alone (central differences)."""
    condition = next(c for c in g.stationarity().forward_conditions if c.unknown == reader)
    base = np.asarray(env[node], dtype=float)
    cols = []
    for k in np.ndindex(*base.shape):
        up, down = base.copy(), base.copy()
        up[k] += h
        down[k] -= h
        f_up = np.ravel(condition.solve({**env, node: up}))
        f_down = np.ravel(condition.solve({**env, node: down}))
        cols.append((f_up - f_down) / (2 * h))
    return np.array(cols).T


def test_lecture_terms_keep_each_multiplier_short():
    g = _recurrence(8)
    terms = g.solve(expand=False)
    expanded = g.solve()
    short = sum(len(str(v)) for v in terms.adjoints.values())
    long = sum(len(str(v)) for v in expanded.adjoints.values())
    assert short < 600 and long > 20 * short, (short, long)
    names = set(g.inputs) | set(g.defined) | {g.multiplier(z) for z in g.nodes}
    for z in g.nodes:
        assert terms.adjoints[z].free_symbols <= names
    for z in g.defined:
        assert terms.values[z] == g.expr(z)  # f_i of its parents, nothing composed
    z3 = g.lookup("z3")
    lam = {g.multiplier(z) for z in g.children(z3)}
    assert terms.adjoints[z3].free_symbols & lam  # read from its readers' multipliers


def test_lecture_terms_evaluate_to_the_gradient():
    """Back-substituting numbers into the lecture's terms gives sympy's own derivative."""
    g = _recurrence(4)
    terms = g.solve(expand=False)
    x, a = g.inputs
    at = {x: 0.3, a: 0.7}
    env = dict(at)
    for z in g.defined:
        env[z] = float(terms.values[z].xreplace(env))
    for z in reversed(g.nodes):
        env[g.multiplier(z)] = float(terms.adjoints[z].xreplace(env))
    composed = g.expr(g.defined[0])
    for before, z in zip(g.defined, g.defined[1:]):
        composed = g.expr(z).xreplace({before: composed})
    for w in (x, a):
        expected = float(sp.diff(composed, w).xreplace(at))
        assert env[g.multiplier(w)] == pytest.approx(expected, rel=1e-12)


def test_lecture_terms_need_no_point():
    g, at = lecture_dag()
    with pytest.raises(adjoint.AdjointError, match="expand=False"):
        g.solve(at, expand=False)


def test_adjoint_system_reads_as_a_triangular_system():
    g, at = lecture_dag()
    for system in (g.adjoint_system(), g.adjoint_system(at)):
        lines = repr(system).splitlines()
        assert lines[0].startswith("Step 2 as a triangular system (I - J^T) lambda = e_n")
        rows = lines[1:]
        assert len(rows) == 4 and all("lambda_" in r for r in rows)
        assert rows[-1].split("]")[0].split() == ["[", "0", "0", "0", "1"]  # lambda_n = 1
        assert sum("=" in r for r in rows) == 1
    assert "-cos(z1)" in repr(g.adjoint_system())
    assert "0.99" in repr(g.adjoint_system(at))  # -cos(-3), by hand


def test_adjoint_system_over_matrix_entries():
    g, at = two_layer_net(n=3, d=2)
    system = g.adjoint_system(at)
    sol = g.solve(at)
    env = {**adjoint.core.values.read_values(g, at), **sol.values}
    sizes = {z: int(np.size(sol.values[z])) for z in g.nodes}
    start = dict(zip(g.nodes, np.cumsum([0, *sizes.values()])))
    J = np.array(system.J.tolist(), dtype=float)
    assert J.shape == (sum(sizes.values()),) * 2 and np.allclose(np.triu(J), 0)
    for i in g.defined:
        for j in g.parents(i):
            block = J[start[i] : start[i] + sizes[i], start[j] : start[j] + sizes[j]]
            np.testing.assert_allclose(
                block, _block_by_differences(g, env, i, j), rtol=1e-6, atol=1e-8
            )
    lam = np.concatenate([np.ravel(sol.adjoints[z]) for z in g.nodes])
    np.testing.assert_allclose(system.dense_solve(), lam, rtol=1e-10, atol=1e-12)
    text = repr(system)
    assert "Lambda_W1[0, 1]" in text and len(text.splitlines()) == 1 + len(lam)


def test_symbolic_adjoint_system_of_matrices_says_what_to_do():
    g, _ = two_layer_net()
    with pytest.raises(ShapeError, match=r"at a point: g.adjoint_system\(at\)"):
        g.adjoint_system()


def test_shadow_prices_of_matrix_nodes():
    g, at = two_layer_net(n=3, d=2)
    sol = g.solve(at)
    prices = g.shadow_prices(at)
    for z in g.nodes:
        price, lam = prices[z]
        assert np.shape(price) == np.shape(sol.values[z])
        np.testing.assert_allclose(price, lam, rtol=1e-4, atol=1e-5)
    W1 = g.lookup("W1")
    # one entry by hand: loosen W1[0, 1] and compare with lambda's entry
    f0 = g.solve(at).output
    bumped = at[W1].copy()
    bumped[0, 1] += 1e-6
    by_hand = (g.solve({**at, W1: bumped}).output - f0) / 1e-6
    assert prices[W1][0][0, 1] == pytest.approx(by_hand, rel=1e-6)
