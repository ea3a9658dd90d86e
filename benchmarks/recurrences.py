"""Rolled recurrences: time and memory of the reverse sweep, stored against checkpointed,
side by side in one run.

1. A scalar recurrence z_{t+1} = a sin(z_t) + u_t with a stage cost, T = 10^6 (``--steps``):
   ``g.solve`` storing every state against ``checkpoints=1000`` (the binomial schedule),
   as a ratio of times and of peak memory (tracemalloc), with the schedule's counts and
   the gradients compared.
2. A vector state (d = 16, an RNN step tanh(W h + U x_t)), T = 10^4: the same.

Run: python benchmarks/recurrences.py [--steps 1000000]
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10**6)
    args = parser.parse_args()
    scalar(args.steps)
    vector()
