"""The generated source is a complete program: written to a file and run by
Python, NumPy and JAX alike, it gives what the compiled function gives."""

import subprocess
import sys

import numpy as np
import pytest

from adjoint.examples import lecture_dag, two_layer_net


def _run_source(g, tmp_path, call: str, backend="numpy") -> str:
    path = tmp_path / "program.py"
    path.write_text(g.source(backend=backend) + f"\nprint(repr({call}))\n")
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_source_is_a_complete_program(tmp_path):
    g, at = lecture_dag()
    out = _run_source(g, tmp_path, "f_and_gradient(1.5, -2.0)")
    value, (gx, gy) = eval(out, {"np": np})
    sol = g.solve(at)
    assert value == pytest.approx(sol.output, rel=1e-12)
    assert (gx, gy) == pytest.approx((sol.gradient["x"], sol.gradient["y"]), rel=1e-12)


def test_matrix_source_is_a_complete_program(tmp_path):
    g, at = two_layer_net(n=4, d=2)
    names = ("W1", "W2", "X", "y")
    lines = [f"{p} = numpy.array({np.asarray(at[g.lookup(p)]).tolist()!r})" for p in names]
    path = tmp_path / "net.py"
    path.write_text(
        g.source()
        + "\n"
        + "\n".join(lines)
        + "\nvalue, grads = f_and_gradient(W1, W2, X, y)\n"
        + "print(repr([float(value), [g.tolist() for g in grads]]))\n"
    )
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    value, (gw1, gw2) = eval(done.stdout)
    sol = g.solve(at)
    assert value == pytest.approx(sol.output, rel=1e-12)
    np.testing.assert_allclose(gw1, sol.gradient["W1"], rtol=1e-12)
    np.testing.assert_allclose(gw2, sol.gradient["W2"], rtol=1e-12)


def test_jax_source_is_a_complete_program(tmp_path):
    pytest.importorskip("jax")
    g, at = lecture_dag()
    src = g.source(backend="jax")
    assert "import jax" in src
    out = _run_source(
        g,
        tmp_path,
        "[float(v) for v in (lambda r: (r[0], *r[1]))(f_and_gradient(1.5, -2.0))]",
        backend="jax",
    )
    value, gx, gy = eval(out)
    sol = g.solve(at)
    assert value == pytest.approx(sol.output, rel=1e-6)
    assert (gx, gy) == pytest.approx((sol.gradient["x"], sol.gradient["y"]), rel=1e-6)
