"""Rolled recurrences: time and memory of the reverse sweep, stored against checkpointed,
side by side in one run.

1. A scalar recurrence z_{t+1} = a sin(z_t) + u_t with a stage cost, T = 10^6 (``--steps``):
   ``g.solve`` storing every state against ``checkpoints=1000`` (the binomial schedule),
   as a ratio of times and of peak memory (tracemalloc), with the schedule's counts and
   the gradients compared.
2. A vector state (d = 16, an RNN step tanh(W h + U x_t)), T = 10^4: the same.
3. The compiled programs on that RNN at T = 10^6 (``--rnn-steps``), s = 1000: NumPy's
   gradient (binomial schedule) as a ratio of its own forward loop (the program
   compiled with gradient=False), its peak memory in states of 16 numbers against
   the s + 2 allowed (store-all would need (T + 1) states, 122 MiB), its forward steps
   against the binomial optimum; JAX's gradient (checkpoints by segments) as a ratio
   of ``jax.grad`` of JAX's own nested square-root checkpointed scan, and the
   gradients against ``jax.grad`` of a plain ``lax.scan``.

Run: python benchmarks/recurrences.py [--steps 1000000] [--rnn-steps 1000000]
"""

from __future__ import annotations

import argparse
import tracemalloc

import numpy as np
from compiled import best

import adjoint


def peak_memory(fn):
    """The peak memory allocated during one call (tracemalloc, which slows it down: the
    times are measured apart)."""
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def compare(title, g, at, checkpoints, params):
    g.solve(at)  # derive and compile the local functions once, outside the timings
    runs = {"stored": lambda: g.solve(at), "saved": lambda: g.solve(at, checkpoints=checkpoints)}
    times = best(runs, repeats=2)
    stored_t, saved_t = times["stored"], times["saved"]
    stored_m, saved_m = peak_memory(runs["stored"]), peak_memory(runs["saved"])
    stored, saved = runs["stored"](), runs["saved"]()
    error = max(
        float(np.max(np.abs(np.asarray(saved.gradient[p]) - np.asarray(stored.gradient[p]))))
        for p in params
    )
    print(title)
    print(f"   every state stored        {stored_t:8.2f} s   peak {stored_m / 2**20:8.1f} MiB")
    print(
        f"   {checkpoints} checkpoints          {saved_t:8.2f} s   peak {saved_m / 2**20:8.1f} MiB"
        f"   (time x{saved_t / stored_t:.2f}, memory x{saved_m / stored_m:.3f})"
    )
    print(f"   schedule: {saved.schedule}")
    print(f"   gradients agree to {error:.1e}")


def scalar(steps: int) -> None:
    g = adjoint.Graph()
    a, x0 = g.input("a"), g.input("x0")
    u = g.sequence("u", steps=steps)
    z = g.recurrence("z", step="a*sin(z) + u", init=x0, steps=steps, cost="z**2")
    g.define("J", z.cost + z.final**2)
    rng = np.random.default_rng(0)
    at = {a: 0.9, x0: 0.1, u: 0.01 * rng.normal(size=steps)}
    compare(f"1. scalar recurrence, T = {steps:,}", g, at, 1000, [a, x0, u])


def vector(steps: int = 10**4, d: int = 16) -> None:
    g = adjoint.Graph()
    W, U = g.input("W", shape=(d, d)), g.input("U", shape=(d, 2))
    h0 = g.constant("h0", shape=(d, 1))
    x = g.sequence("x", steps=steps, shape=(2, 1), constant=True)
    h = g.recurrence("h", step="tanh.(W*h + U*x)", init=h0, steps=steps, shape=(d, 1), cost="h.T*h")
    g.define("J", h.cost)
    rng = np.random.default_rng(1)
    at = {
        W: 0.3 * rng.normal(size=(d, d)) / d**0.5,
        U: rng.normal(size=(d, 2)),
        h0: np.zeros((d, 1)),
        x: rng.normal(size=(steps, 2, 1)),
    }
    compare(f"2. RNN state, d = {d}, T = {steps:,}", g, at, 100, [W, U])


def rnn(steps: int, d: int = 16):
    g = adjoint.Graph()
    g.input("W", shape=(d, d)), g.input("U", shape=(d, 2))
    h0 = g.constant("h0", shape=(d, 1))
    g.sequence("x", steps=steps, shape=(2, 1), constant=True)
    h = g.recurrence("h", step="tanh.(W*h + U*x)", init=h0, steps=steps, shape=(d, 1), cost="h.T*h")
    g.define("J", h.cost)
    rng = np.random.default_rng(1)
    at = {
        "W": 0.3 * rng.normal(size=(d, d)) / d**0.5,
        "U": rng.normal(size=(d, 2)),
        "h0": 0.1 * rng.normal(size=(d, 1)),
        "x": rng.normal(size=(steps, 2, 1)),
    }
    return g, at


def compiled(steps: int, d: int = 16, checkpoints: int = 1000) -> None:
    from adjoint.operations import checkpointing

    g, at = rnn(steps, d)
    print(f"3. compiled RNN, d = {d}, T = {steps:,}, {checkpoints} checkpoints")
    runs = []
    forward = checkpointing.forward

    def recorded(*args, **kwargs):  # the schedule's counts, from the program's own loop
        out = forward(*args, **kwargs)
        runs.append(out[2])
        return out

    checkpointing.forward = recorded
    try:
        gradient = g.compile(checkpoints=checkpoints)
    finally:
        checkpointing.forward = forward
    alone = g.compile(gradient=False)
    times = best({"forward": lambda: alone(**at), "gradient": lambda: gradient(**at)}, 1)
    per_state = d * 8  # a state's numbers; the snapshots live in one array, no headers
    peak = peak_memory(lambda: gradient(**at))
    counts = runs[-1].counts
    optimum = checkpointing.minimal_advances(steps, checkpoints) + 1
    print(f"   NumPy forward loop alone    {times['forward']:8.2f} s")
    print(
        f"   NumPy gradient              {times['gradient']:8.2f} s   "
        f"(x{times['gradient'] / times['forward']:.2f} its forward loop; target 6)"
    )
    store = checkpoints * per_state
    print(
        f"   peak extra memory {peak / 2**10:8.1f} KiB = {peak / per_state:.0f} states of "
        f"{per_state} bytes: the {checkpoints} snapshots ({store / 2**10:.1f} KiB) and "
        f"{(peak - store) / 2**10:.1f} KiB besides (positions, 8 bytes per snapshot; the "
        f"gradients; temporaries); store-all: {(steps + 1) * per_state / 2**20:.0f} MiB"
    )
    print(f"   forward steps {counts.forward_steps:,} (binomial optimum {optimum:,}); {counts}")
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        print("   (JAX not installed: its half is skipped)")
        return
    _, (gW, gU) = gradient(**at)
    mine = g.compile(backend="jax", checkpoints=checkpoints)
    segment = -(-steps // checkpoints)

    def cell(h, x, W, U):
        return jnp.tanh(W @ h + U @ x)

    def plain(W, U, h0, xs):
        def body(h, x):
            return cell(h, x, W, U), jnp.sum(h * h)

        _, costs = jax.lax.scan(body, h0, xs)
        return jnp.sum(costs)

    def nested(W, U, h0, xs):  # sqrt(T) segments, each rematerialised on the way back
        @jax.checkpoint
        def run_segment(h, xseg):
            def body(h, x):
                return cell(h, x, W, U), jnp.sum(h * h)

            h, costs = jax.lax.scan(body, h, xseg)
            return h, jnp.sum(costs)

        _, costs = jax.lax.scan(run_segment, h0, xs.reshape(-1, segment, 2, 1))
        return jnp.sum(costs)

    with jax.enable_x64(True):
        args = [jnp.asarray(at[k]) for k in ("W", "U", "h0", "x")]
        theirs = jax.jit(jax.grad(nested, argnums=(0, 1)))
        reference = jax.jit(jax.grad(plain, argnums=(0, 1)))(*args)
        theirs(*args)[0].block_until_ready()
        mine(**at)
        t = best(
            {
                "nested": lambda: theirs(*args)[0].block_until_ready(),
                "ours": lambda: mine(**at),
            },
            2,
        )
    error = max(
        float(np.max(np.abs(a - np.asarray(b)) / np.max(np.abs(np.asarray(b)))))
        for a, b in zip((gW, gU), reference)
    )
    print(f"   JAX nested sqrt-checkpointed scan, jax.grad   {t['nested']:8.2f} s")
    print(
        f"   JAX compile(checkpoints={checkpoints})           {t['ours']:8.2f} s   "
        f"(x{t['ours'] / t['nested']:.2f}; target 1.5)"
    )
    print(f"   NumPy gradient against jax.grad of lax.scan: {error:.1e} relative")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10**6)
    parser.add_argument("--rnn-steps", type=int, default=10**6)
    args = parser.parse_args()
    scalar(args.steps)
    vector()
    compiled(args.rnn_steps)
