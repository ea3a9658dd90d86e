"""The adjoint method against symbolic and numerical differentiation (Remarks 1 and 4).

1. Symbolic: the chain z_{k+1} = sin(z_k) z_k + x. The two sweeps derive and solve
   grad L = 0 over the graph; sympy.diff differentiates the composed expression,
   whose derivative swells. For depths 5 to 30, prints the time and the operation
   count of each, and stops a method once it takes longer than --limit seconds.
2. Numerical: central differences need 2n evaluations for n inputs, against one
   forward and one backward sweep; and their error depends on the step h, first
   falling (truncation, O(h^2)) then rising (rounding, O(eps/h)).

Run: python benchmarks/compare_differentiation.py [--limit 10] [--plot FILE.png]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import sympy as sp

import adjoint

x = sp.Symbol("x", real=True)


def chain(depth: int) -> adjoint.Graph:
    g = adjoint.Graph()
    z = g.input(x)
    for k in range(depth):
        z = g.define(f"z{k + 1}", sp.sin(z) * z + x)
    return g


def composed(depth: int) -> sp.Expr:
    e = x
    for _ in range(depth):
        e = sp.sin(e) * e + x
    return e


def symbolic(limit: float) -> list[tuple]:
    print("1. symbolic: the chain z_{k+1} = sin(z_k) z_k + x")
    print(
        f"{'depth':>5} {'adjoint s':>10} {'adjoint ops':>12} {'diff s':>10} {'diff ops':>12}"
        f" {'time ratio':>10}"
    )
    rows, diff_alive = [], True
    for depth in range(5, 31, 5):
        t = time.perf_counter()
        g = chain(depth)
        kkt = g.stationarity()
        g.solve({x: 0.3})
        adjoint_s = time.perf_counter() - t
        adjoint_ops = sum(sp.count_ops(c.rhs) for c in kkt.conditions())
        diff_s = diff_ops = None
        if diff_alive:
            t = time.perf_counter()
            d = sp.diff(composed(depth), x)
            diff_s = time.perf_counter() - t
            diff_ops = sp.count_ops(d)
            diff_alive = diff_s < limit
        ratio = "" if diff_s is None else f"{diff_s / adjoint_s:10.1f}"
        print(
            f"{depth:>5} {adjoint_s:>10.4f} {adjoint_ops:>12} "
            f"{'stopped' if diff_s is None else f'{diff_s:.4f}':>10} "
            f"{'' if diff_ops is None else diff_ops:>12} {ratio:>10}"
        )
        rows.append((depth, adjoint_s, adjoint_ops, diff_s, diff_ops))
    return rows


def numerical() -> tuple:
    print("\n2. numerical: central differences, 2n evaluations for n inputs")
    print(f"{'n':>5} {'adjoint s':>10} {'2n evals s':>11} {'ratio':>7}")
    rng = np.random.default_rng(0)
    for n in (1, 10, 100):
        symbols = sp.symbols(f"a0:{n}", real=True)
        expr = sum(sp.sin(s) * symbols[(k + 1) % n] for k, s in enumerate(symbols))
        g = adjoint.Graph.from_expr(expr, inputs=list(symbols))
        both, value = g.compile(), g.compile(gradient=False)
        point = rng.uniform(-1, 1, n)
        t = time.perf_counter()
        for _ in range(20):
            both(*point)
        adjoint_s = (time.perf_counter() - t) / 20
        t = time.perf_counter()
        for _ in range(20):
            for k in range(n):
                e = np.zeros(n)
                e[k] = 1e-6
                value(*(point + e))
                value(*(point - e))
        fd_s = (time.perf_counter() - t) / 20
        print(f"{n:>5} {adjoint_s:>10.2e} {fd_s:>11.2e} {fd_s / adjoint_s:>7.1f}")
    f = chain(8).compile()
    _, (exact,) = f(0.3)
    hs = np.logspace(-12, -1, 23)
    errors = np.array(
        [abs((f(0.3 + h)[0] - f(0.3 - h)[0]) / (2 * h) - exact) / abs(exact) for h in hs]
    )
    best = int(np.argmin(errors))
    print(
        f"   error against step h (chain of depth 8): best {errors[best]:.1e} at "
        f"h = {hs[best]:.0e}; {errors[0]:.1e} at h = 1e-12, {errors[-1]:.1e} at h = 0.1"
    )
    return hs, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--limit",
        type=float,
        default=10.0,
        help="stop sympy.diff once one depth takes longer (seconds)",
    )
    parser.add_argument("--plot", help="save the two plots to this file")
    args = parser.parse_args()
    rows = symbolic(args.limit)
    hs, errors = numerical()
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
        depth = [r[0] for r in rows]
        a.semilogy(depth, [r[2] for r in rows], "o-", label="adjoint conditions")
        done = [r for r in rows if r[4] is not None]
        a.semilogy([r[0] for r in done], [r[4] for r in done], "s-", label="sympy.diff")
        a.set_xlabel("depth")
        a.set_ylabel("operations")
        a.legend()
        b.loglog(hs, errors, "o-")
        b.set_xlabel("step h")
        b.set_ylabel("relative error, central differences")
        fig.tight_layout()
        fig.savefig(args.plot)
        print(f"plots saved to {args.plot}")


if __name__ == "__main__":
    main()
