"""Memory: what the package adds to a graph, against the user's own right-hand sides.

Builds a random DAG's sympy right-hand sides, then measures with tracemalloc what
each step adds on top: the Graph (define), grad L = 0 (stationarity), a numeric
solution, and the adjoint equations as sympy expressions (built only when asked
for). Prints each as a ratio to the right-hand sides' own memory.

Run: python benchmarks/memory.py [--nodes 100000]
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc

import adjoint
from adjoint.examples import random_constraints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    args = parser.parse_args()
    adjoint.examples.random_dag(200)[0].stationarity()  # warm the operation cache
    gc.collect()
    tracemalloc.start()
    inputs, constraints = random_constraints(args.nodes, 4, seed=0)
    rhs = tracemalloc.get_traced_memory()[0]
    steps = []

    def step(name, fn):
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        gc.collect()
        steps.append((name, tracemalloc.get_traced_memory()[0] - before))
        return result

    def build():
        g = adjoint.Graph()
        for x in inputs:
            g.input(x)
        for z, f in constraints:
            g.define(z, f)
        return g

    g = step("graph (define)", build)
    kkt = step("grad L = 0 (stationarity)", g.stationarity)
    step("numeric solution", lambda: g.solve({x: 0.1 for x in inputs}))
    package = sum(size for _, size in steps)
    step("adjoint equations as sympy (on request)", lambda: kkt.adjoint)
    tracemalloc.stop()
    print(
        f"{args.nodes} nodes; the user's right-hand sides: {rhs / 2**20:.1f} MiB "
        f"({rhs / args.nodes:.0f} bytes a node)"
    )
    for name, size in steps:
        print(f"  {name:42s} {size / 2**20:8.1f} MiB  {size / rhs:5.2f} x the right-hand sides")
    print(
        f"  {'graph + stationarity + solution':42s} {package / 2**20:8.1f} MiB  "
        f"{package / rhs:5.2f} x (target <= 3)"
    )


if __name__ == "__main__":
    main()
