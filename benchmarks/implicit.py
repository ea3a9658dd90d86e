"""Implicit nodes: the cost of solving through a residual, side by side in one run.

1. A linear-solve node ``A(theta) s = b`` with a 500 x 500 ``A``: ``g.solve`` (value and
   gradient) against one ``numpy.linalg.solve`` pair on the same matrix, forward and
   transposed (target <= 1.3), checked against the closed form ``A^{-T} 2 s``.
2. A fixed point ``z = tanh(W z + x)`` of width 200: the solve with gradient against
   the forward Newton solve alone (``forward_sweep``, and compiled: target <= 1.5), and
   against NumPy iterating the fixed point to the same accuracy, for scale.
3. The same fixed point compiled with ``backend="jax"`` against ``jax.jit`` of the same
   computation written with ``jax.lax.custom_root`` (target <= 1.3).

Run: python benchmarks/implicit.py
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from compiled import best

import adjoint
from adjoint.system.solve import forward_sweep


def linear_solve(n: int = 500) -> None:
    g = adjoint.Graph()
    A, b = g.input("A", shape=(n, n)), g.input("b", shape=(n, 1))
    s = sp.MatrixSymbol("s", n, 1)
    s = g.implicit(s, A * s - b)
    g.define("f", sp.Trace(s.T * s))
    rng = np.random.default_rng(0)
    Av = rng.normal(size=(n, n)) + n**0.5 * np.eye(n)
    bv = rng.normal(size=(n, 1))
    at = {A: Av, b: bv}
    sol = g.solve(at)
    s0 = np.linalg.solve(Av, bv)
    lam = np.linalg.solve(Av.T, 2 * s0)
    error = np.max(np.abs(sol.gradient[b] - lam)) / np.max(np.abs(lam))

    def pair():
        s1 = np.linalg.solve(Av, bv)
        np.linalg.solve(Av.T, 2 * s1)

    t = best({"numpy": pair, "adjoint": lambda: g.solve(at)}, repeats=7)
    print(f"1. linear-solve node, A {n} x {n}")
    print(f"   numpy.linalg.solve, forward and transposed  {t['numpy'] * 1e3:8.2f} ms")
    print(
        f"   g.solve: value and gradient                  {t['adjoint'] * 1e3:8.2f} ms   "
        f"ratio {t['adjoint'] / t['numpy']:.2f} (target <= 1.3)"
    )
    print(f"   gradient against A^(-T) 2 s: relative error {error:.1e}")


def fixed_point(width: int = 200) -> None:
    g = adjoint.Graph()
    W, x = g.input("W", shape=(width, width)), g.input("x", shape=(width, 1))
    z = g.implicit("z", "z - tanh.(W*z + x)", shape=(width, 1))
    g.define("f", sp.Trace(z.T * z))
    rng = np.random.default_rng(1)
    Wv = 0.5 * rng.normal(size=(width, width)) / width**0.5
    xv = rng.normal(size=(width, 1))
    at = {W: Wv, x: xv}

    def iterate():
        zz = np.zeros((width, 1))
        for _ in range(200):
            new = np.tanh(Wv @ zz + xv)
            if np.max(np.abs(new - zz)) < 1e-12:
                return new
            zz = new
        return zz

    value, both = g.compile(gradient=False), g.compile()
    t = best(
        {
            "forward": lambda: forward_sweep(g, dict(at)),
            "both": lambda: g.solve(at),
            "compiled forward": lambda: value(W=Wv, x=xv),
            "compiled both": lambda: both(W=Wv, x=xv),
            "iterate": iterate,
        },
        repeats=5,
    )
    error = np.max(np.abs(both(W=Wv, x=xv)[1][1] - g.solve(at).gradient[x]))
    print(f"2. fixed point z = tanh(W z + x), width {width}")
    print(f"   NumPy iterating it to 1e-12             {t['iterate'] * 1e3:8.2f} ms")
    print(f"   g.solve: Newton, forward alone          {t['forward'] * 1e3:8.2f} ms")
    print(
        f"   g.solve: value and gradient             {t['both'] * 1e3:8.2f} ms   "
        f"ratio {t['both'] / t['forward']:.2f} to the forward solve"
    )
    print(f"   compiled: Newton, forward alone         {t['compiled forward'] * 1e3:8.2f} ms")
    print(
        f"   compiled: value and gradient            {t['compiled both'] * 1e3:8.2f} ms   "
        f"ratio {t['compiled both'] / t['compiled forward']:.2f} (target <= 1.5)"
    )
    print(f"   compiled gradient against g.solve's: largest difference {error:.1e}")


def fixed_point_jax(width: int = 200) -> None:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    g = adjoint.Graph()
    g.input("W", shape=(width, width))
    g.input("x", shape=(width, 1))
    g.implicit("z", "z - tanh.(W*z + x)", shape=(width, 1))
    g.define("f", "Trace(z.T*z)")
    rng = np.random.default_rng(1)
    Wv = 0.5 * rng.normal(size=(width, width)) / width**0.5
    xv = rng.normal(size=(width, 1))
    ours = g.compile(backend="jax")

    def loss(Wm, xm):
        def residual(z):
            return z - jnp.tanh(Wm @ z + xm)

        def newton(F, z0):
            def body(state):
                z, k = state
                J = jax.jacfwd(lambda u: F(u).ravel())(z).reshape(z.size, z.size)
                return z - jnp.linalg.solve(J, F(z).ravel()).reshape(z.shape), k + 1

            return jax.lax.while_loop(lambda s: s[1] < 8, body, (z0, 0))[0]

        def tangent_solve(G, y):
            J = jax.jacobian(lambda u: G(u).ravel())(y).reshape(y.size, y.size)
            return jnp.linalg.solve(J, y.ravel()).reshape(y.shape)

        z = jax.lax.custom_root(residual, jnp.zeros_like(xm), newton, tangent_solve)
        return jnp.sum(z * z)

    reference = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    Wj, xj = jnp.asarray(Wv), jnp.asarray(xv)
    value, (dW, dx) = ours(W=Wv, x=xv)
    ref_value, (ref_dW, ref_dx) = reference(Wj, xj)
    error = max(
        abs(value - float(ref_value)),
        float(np.max(np.abs(dx - np.asarray(ref_dx)))),
        float(np.max(np.abs(dW - np.asarray(ref_dW)))),
    )

    def run_reference():
        jax.block_until_ready(reference(Wj, xj))

    t = best({"ours": lambda: ours(W=Wv, x=xv), "custom_root": run_reference}, repeats=7)
    print(f"3. the same fixed point, JAX (width {width})")
    print(f"   jax.jit of jax.lax.custom_root + grad    {t['custom_root'] * 1e3:8.2f} ms")
    print(
        f"   compile(backend='jax')                  {t['ours'] * 1e3:8.2f} ms   "
        f"ratio {t['ours'] / t['custom_root']:.2f} (target <= 1.3)"
    )
    print(f"   gradients agree to {error:.1e}")


if __name__ == "__main__":
    linear_solve()
    fixed_point()
    fixed_point_jax()
