"""Cost of deriving and solving grad L = 0 on random DAGs, against writing them down.

For each size N, builds a random DAG of N nodes through the public API and prints,
side by side in one run:

* rhs: building the N sympy right-hand sides f_i (the user's own work);
* define, stationarity, solve: the package's work, and their total;
* the ratio total / rhs, microseconds per node, and the scaling exponent of the
  total between consecutive sizes (1 is linear).

Run: python benchmarks/scaling.py [--sizes 1000 10000 100000] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import time

from sympy.core.cache import clear_cache

import adjoint
from adjoint.examples import random_constraints


def measure(n: int, seed: int) -> dict:
    # sympy caches what it built before; a rerun would find its right-hand sides there
    clear_cache()
    t0 = time.perf_counter()
    inputs, rhs = random_constraints(n, 4, seed)
    t1 = time.perf_counter()
    g = adjoint.Graph()
    for x in inputs:
        g.input(x)
    for z, f in rhs:
        g.define(z, f)
    t2 = time.perf_counter()
    g.stationarity()
    t3 = time.perf_counter()
    sol = g.solve({x: 0.1 * (k + 1) for k, x in enumerate(inputs)})
    t4 = time.perf_counter()
    assert all(math.isfinite(v) or math.isnan(v) for v in sol.gradient.values())
    return {
        "n": n,
        "rhs": t1 - t0,
        "define": t2 - t1,
        "stationarity": t3 - t2,
        "solve": t4 - t3,
        "total": t4 - t1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    measure(200, args.seed)  # warm the caches of operations and sympy
    header = (
        f"{'N':>7} {'rhs s':>8} {'define':>8} {'station.':>8} {'solve':>8} "
        f"{'total':>8} {'total/rhs':>9} {'us/node':>8} {'exponent':>8}"
    )
    print(header)
    previous = None
    results = []
    for n in args.sizes:
        # small sizes are noisy on a shared machine: the best of a few runs
        runs = [measure(n, args.seed) for _ in range(3 if n <= 10_000 else 1)]
        r = {key: min(run[key] for run in runs) for key in runs[0]}
        exponent = ""
        if previous is not None:
            exponent = (
                f"{math.log(r['total'] / previous['total']) / math.log(n / previous['n']):.2f}"
            )
        print(
            f"{n:>7} {r['rhs']:>8.2f} {r['define']:>8.2f} {r['stationarity']:>8.2f} "
            f"{r['solve']:>8.2f} {r['total']:>8.2f} {r['total'] / r['rhs']:>9.2f} "
            f"{1e6 * r['total'] / n:>8.0f} {exponent:>8}"
        )
        previous = r
        results.append(r)
    if len(results) > 1:
        xs = [math.log(r["n"]) for r in results]
        for key in ("rhs", "total"):
            ys = [math.log(r[key]) for r in results]
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            slope = sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum(
                (a - mx) ** 2 for a in xs
            )
            print(f"least-squares scaling exponent over all sizes, {key}: {slope:.2f}")


if __name__ == "__main__":
    main()
