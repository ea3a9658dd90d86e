"""Depth, width, threads and copies: deep chains past the recursion limit, a node
read by thousands, graphs pickled, copied and solved in threads."""

import copy
import pickle
import sys
import threading

import numpy as np
import pytest
import sympy as sp

import adjoint
from adjoint import AdjointError


def test_symbolic_solving_of_a_deep_chain():
    g = adjoint.Graph()
    z = g.input("x")
    for k in range(10_000):
        z = g.define(f"z{k}", z + 1)
    sol = g.solve()
    x = g.inputs[0]
    assert sol.output == x + 10_000 and sol.gradient[x] == 1


def test_symbolic_solving_past_the_recursion_limit_says_so_and_verify_works():
    # The composed expressions of a deep chain of sines cannot be built by sympy,
    # whose simplifications recurse through them: a clear error, not a RecursionError.
    depth = sys.getrecursionlimit() // 2
    g = adjoint.Graph()
    z = g.input("x")
    for k in range(depth):
        z = g.define(f"z{k}", sp.sin(z))
    with pytest.raises(AdjointError, match="deeper than sympy"):
        g.solve()
    assert g.verify(points=1).ok


def test_grad_of_a_deep_expression():
    x = sp.Symbol("x", real=True)
    e = x
    for _ in range(3000):
        e = sp.sin(e, evaluate=False)  # sympy's own simplification would recurse
    value = adjoint.grad(e, x, at={x: 0.1})
    expected = 1.0
    v = 0.1
    for _ in range(3000):
        expected *= np.cos(v)
        v = np.sin(v)
    assert value == pytest.approx(expected, rel=1e-10)


def test_stationarity_leaves_the_garbage_collector_alone(monkeypatch):
    # Switching it off and on again is global: it would switch it on under another
    # thread that had switched it off meanwhile.
    import gc

    def touched():
        pytest.fail("the garbage collector was switched")

    monkeypatch.setattr(gc, "disable", touched)
    monkeypatch.setattr(gc, "enable", touched)
    g, point = adjoint.examples.random_dag(50)
    g.stationarity()
    g.solve(point)


def test_graphs_and_solutions_pickle_and_copy():
    g, point = adjoint.examples.lecture_dag()
    g.compile()
    sol = g.solve(point)
    for clone in (pickle.loads(pickle.dumps(g)), copy.deepcopy(g), copy.copy(g), g.copy()):
        assert clone.solve(point).gradient == pytest.approx(dict(sol.gradient))
    for clone in (pickle.loads(pickle.dumps(sol)), copy.copy(sol), copy.deepcopy(sol)):
        assert dict(clone.gradient) == dict(sol.gradient) and clone.output == sol.output


def test_a_copy_is_independent_of_its_original():
    g, _ = adjoint.examples.lecture_dag()
    clone = copy.copy(g)
    clone.define("f", clone.lookup("z2") ** 2)
    assert "f" not in g and len(g) == 4
    assert g.output.name == "z2" and clone.output.name == "f"


def test_graphs_solve_alike_in_threads():
    results = {}

    def work(k):
        g, point = adjoint.examples.random_dag(40, seed=k)
        results[k] = (g.solve(point).gradient, g)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, (gradient, _) in results.items():
        g, point = adjoint.examples.random_dag(40, seed=k)
        assert dict(g.solve(point).gradient) == pytest.approx(dict(gradient))


def test_a_program_for_some_inputs_keeps_what_it_still_reads():
    g = adjoint.Graph()
    x, y = g.input("x"), g.input("y")
    a = g.define("a", sp.sin(x))
    g.define("f", x / (a**2 + 1))
    value, (gy,) = g.compile(wrt=[y])(1.0, 2.0)
    assert value == pytest.approx(1 / (np.sin(1) ** 2 + 1)) and gy == 0.0


def test_an_input_read_by_thousands_of_nodes_compiles():
    g = adjoint.Graph()
    x = g.input("x")
    parts = [g.define(f"z{k}", sp.sin(x + k)) for k in range(3000)]
    g.define("f", sp.Add(*parts))
    _, (grad,) = g.compile()(0.5)
    assert grad == pytest.approx(sum(np.cos(0.5 + k) for k in range(3000)), rel=1e-9)


def test_compiling_what_has_no_numeric_form_or_a_bad_wrt_is_the_packages_error():
    g = adjoint.Graph()
    x = g.input("x")
    g.define("f", sp.floor(x) + x)
    with pytest.raises(AdjointError, match="numeric implementation"):
        g.compile()
    with pytest.raises(AdjointError, match="wrt"):
        g.compile(wrt=5)


def test_verify_of_a_chain_that_reads_its_input_at_every_level():
    g = adjoint.Graph()
    x = g.input("x")
    z = x
    for k in range(50):
        z = g.define(f"z{k}", sp.sin(z) * 0.5 + x * 0.001)
    assert g.verify(points=1).ok
