"""The generated program against the forward pass alone and hand-written backprop.

Prints, measured side by side in one run (best of several interleaved repeats):

1. a random scalar DAG of 2000 nodes on 10^5 points: compiled value and gradient,
   as a ratio to the compiled value alone (Baur and Strassen: a small constant);
2. the two-layer net ||tanh(X W1) W2 - y||^2 with X of 1024 x 256 in float64:
   hand-written NumPy backprop, the compiled program, ``jax.jit(jax.value_and_grad)``
   of the same loss and ``compile(backend="jax")`` (with JAX arrays, and with NumPy
   arrays that go to the device on each call), as ratios to the hand-written
   backprop and to JAX's (HIPS autograd and PyTorch too when importable);
3. the time to compile a 10^4-node graph.

Run: python benchmarks/compiled.py
"""

from __future__ import annotations

import time

import numpy as np

from adjoint import Graph
from adjoint.examples import random_dag, two_layer_net


def best(fns: dict, repeats: int = 7, number: int = 1) -> dict:
    """The best time of each function (per call, over ``number`` calls in a row), the
    functions interleaved so that load on the machine falls on all of them alike."""
    times = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(number):
                fn()
            times[name] = min(times[name], (time.perf_counter() - t) / number)
    return times


def scalar_dag() -> None:
    g, _ = random_dag(2000, seed=1)
    rng = np.random.default_rng(0)
    points = [rng.uniform(-1, 1, 100_000) for _ in g.inputs]
    both, value = g.compile(), g.compile(gradient=False)
    t = best({"value": lambda: value(*points), "both": lambda: both(*points)}, repeats=5)
    print("1. random DAG, 2000 nodes, 10^5 points")
    print(f"   value alone           {t['value']:8.3f} s")
    print(
        f"   value and gradient    {t['both']:8.3f} s   ratio {t['both'] / t['value']:.2f} "
        "(target <= 3)"
    )


def two_layer() -> None:
    g, point = two_layer_net(n=1024, d=256, seed=0)
    args = {s.name: v for s, v in point.items()}
    X, y, W1, W2 = args["X"], args["y"], args["W1"], args["W2"]
    compiled = g.compile()

    def by_hand():
        H = X @ W1
        A = np.tanh(H)
        R = A @ W2 - y
        f = float(np.sum(R * R))
        lam_R = 2 * R
        lam_A = lam_R @ W2.T
        lam_H = lam_A * (1 - A * A)
        return f, (X.T @ lam_H, A.T @ lam_R)

    fns = {"by hand (NumPy)": by_hand, "adjoint": lambda: compiled(**args)}
    fns.update(_jax(g, args))
    fns.update(_others(X, y, W1, W2))
    expected, (h1, _) = by_hand()
    for name in ("adjoint", "adjoint, backend=jax"):
        if name in fns:
            value, (g1, _) = fns[name]()
            assert abs(value - expected) <= 1e-9 * abs(expected) and np.allclose(g1, h1)
    t = best(fns, repeats=30)
    print("2. two-layer net, X 1024 x 256, float64")
    hand, jax_time = t["by hand (NumPy)"], t.get("JAX jit(value_and_grad)")
    for name, seconds in t.items():
        line = f"   {name:32s}{1e3 * seconds:8.2f} ms   / by hand {seconds / hand:5.2f}"
        if jax_time:
            line += f"   / JAX {seconds / jax_time:5.2f}"
        print(line)
    print("   (targets: adjoint / by hand <= 1.15; adjoint, backend=jax / JAX <= 1.15)")


def _jax(g, args) -> dict:
    """jax.jit(jax.value_and_grad) of the same loss, and compile(backend="jax"): both
    given JAX arrays (float64, made once) and, for ours, NumPy arrays too."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return {}
    with jax.enable_x64(True):  # for these arrays and calls only
        jargs = {k: jnp.asarray(v) for k, v in args.items()}
        step = jax.jit(
            jax.value_and_grad(
                lambda W1, W2, X, y: jnp.sum((jnp.tanh(X @ W1) @ W2 - y) ** 2), argnums=(0, 1)
            )
        )
        W1, W2, X, y = (jargs[k] for k in ("W1", "W2", "X", "y"))
        jax.block_until_ready(step(W1, W2, X, y))  # compile once, outside the timing

    def reference():
        with jax.enable_x64(True):
            return jax.block_until_ready(step(W1, W2, X, y))

    ours = g.compile(backend="jax")
    ours(**jargs)  # compile once, outside the timing
    return {
        "JAX jit(value_and_grad)": reference,
        "adjoint, backend=jax": lambda: ours(**jargs),
        "adjoint, backend=jax (NumPy in)": lambda: ours(**args),
    }


def _others(X, y, W1, W2) -> dict:
    fns = {}
    try:
        import autograd.numpy as anp
        from autograd import value_and_grad

        loss = value_and_grad(lambda w: anp.sum((anp.tanh(X @ w[0]) @ w[1] - y) ** 2))
        fns["HIPS autograd"] = lambda: loss((W1, W2))
    except ImportError:
        pass
    try:
        import torch

        tX, ty = torch.tensor(X), torch.tensor(y)
        tW1 = torch.tensor(W1, requires_grad=True)
        tW2 = torch.tensor(W2, requires_grad=True)

        def torch_step():
            tW1.grad = tW2.grad = None
            loss = ((torch.tanh(tX @ tW1) @ tW2 - ty) ** 2).sum()
            loss.backward()
            return loss

        fns["PyTorch (CPU)"] = torch_step
    except ImportError:
        pass
    return fns


def compile_time() -> None:
    g, _ = random_dag(10_000, seed=2)
    g.stationarity()
    t = time.perf_counter()
    g.compile()
    seconds = time.perf_counter() - t
    print(f"3. compiling a 10^4-node graph: {seconds:.2f} s (target <= 2)")


def one_point() -> None:
    """A compiled scalar function called with Python floats, one point per call, against
    a hand-written NumPy function of the same formula (both sweeps)."""
    g = Graph.from_expr("sin(x*y) + x**2")
    f = g.compile()

    def by_hand(x, y):
        z = x * y
        return np.sin(z) + x**2, (np.cos(z) * y + 2 * x, np.cos(z) * x)

    calls = 20_000

    def many(fn):
        return lambda: [fn(1.5, -2.0) for _ in range(calls)]

    t = best({"compiled": many(f), "by hand": many(by_hand)}, repeats=5)
    per = {k: v / calls * 1e6 for k, v in t.items()}
    print("4. sin(x*y) + x**2 and its gradient, one point per call, Python floats")
    print(
        f"   compiled {per['compiled']:.2f} us, by hand {per['by hand']:.2f} us per call: "
        f"x{per['compiled'] / per['by hand']:.1f} (target 5)"
    )


if __name__ == "__main__":
    scalar_dag()
    two_layer()
    compile_time()
    one_point()
