"""This checkout against another commit, side by side in one run: the same workloads
timed in alternating subprocesses (old, new, old, new, ...), each importing the
package from its own checkout, and the ratio new / old of the best times.

For a change meant to leave behaviour and speed alone (a refactoring): every ratio
should be within 1.05.

Run: python benchmarks/side_by_side.py REF [--rounds 5]
(REF is checked out into a temporary git worktree, removed afterwards.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: issue 20's logistic regression, its loss on the logits, X 1000 x 50: 200 HVP calls
_LOGISTIC = (
    "import numpy as np, adjoint\n"
    "g = adjoint.Graph()\n"
    "g.constant('X', shape=(1000, 50)), g.constant('y', shape=(1000, 1))\n"
    "g.input('w', shape=(50, 1)); g.define('z', 'X*w')\n"
    "g.define('f', 'sum_entries(softplus.(z) - y .* z) + sum_entries(w .* w)/2')\n"
    "rng = np.random.default_rng(0)\n"
    "X, w = rng.normal(size=(1000, 50)), rng.normal(size=(50, 1))\n"
    "v = rng.normal(size=(50, 1))\n"
    "y = (rng.uniform(size=(1000, 1)) < 0.5).astype(float)\n"
    "f = g.compile(hvp=True, backend={backend!r})\n"
    "def run():\n"
    "    for _ in range(200):\n"
    "        f(w=w, X=X, y=y, v_w=v)\n"
)

#: name -> (setup, timed statement); each runs in a fresh interpreter
WORKLOADS = {
    "define + stationarity + solve, random DAG of 5000 nodes": (
        "import adjoint\nfrom adjoint.examples import random_constraints\n"
        "from sympy.core.cache import clear_cache\n"
        "def run():\n"
        "    clear_cache()\n"
        "    inputs, rhs = random_constraints(5000, 4, 0)\n"
        "    g = adjoint.Graph()\n"
        "    [g.input(x) for x in inputs]\n"
        "    [g.define(z, f) for z, f in rhs]\n"
        "    g.solve({x: 0.1 * (k + 1) for k, x in enumerate(inputs)})\n",
        "run()",
    ),
    "compile a random DAG of 2000 nodes (gradient)": (
        "from adjoint.examples import random_dag\n"
        "def run():\n"
        "    g, _ = random_dag(2000, seed=1)\n"
        "    g.compile()\n",
        "run()",
    ),
    "two-layer net (X 256 x 64): compiled value and gradient, 50 calls": (
        "from adjoint.examples import two_layer_net\n"
        "g, point = two_layer_net(n=256, d=64, seed=0)\n"
        "args = {s.name: v for s, v in point.items()}\n"
        "f = g.compile(); f(**args)\n"
        "def run():\n"
        "    for _ in range(50):\n"
        "        f(**args)\n",
        "run()",
    ),
    "second order: assemble, then 20 Hessian-vector products, random DAG of 300 nodes": (
        "from adjoint.examples import random_dag\n"
        # the flat layout first: an editable install would find adjoint.system in
        # this checkout for an older one that lacks it
        "try:\n"
        "    from adjoint.second_order import hvp\n"
        "except ImportError:\n"
        "    from adjoint.system.second_order import hvp\n"
        "def run():\n"
        "    g, point = random_dag(300, seed=2)\n"
        "    sol = g.solve(point)\n"
        "    for k in range(20):\n"
        "        hvp(g, point, {x: 1.0 + k for x in g.inputs}, solution=sol)\n",
        "run()",
    ),
    "logistic regression on the logits (X 1000 x 50): compiled HVP, 200 calls": (
        _LOGISTIC.format(backend="numpy"),
        "run()",
    ),
    # Noisy beyond what a ratio resolves: a process's time per call falls in one of two
    # levels (cause not found), and identical code measured 0.69 to 1.27 against itself
    "the same, backend='jax' (NumPy arrays in), 200 calls": (
        _LOGISTIC.format(backend="jax"),
        "run()",
    ),
    "g.hessian of a function of a 5 x 10 matrix (51 x 51)": (
        "import numpy as np, sympy as sp, adjoint\n"
        "def run():\n"
        "    g = adjoint.Graph()\n"
        "    W, s = g.input('W', shape=(5, 10)), g.input('s')\n"
        "    H = g.define('H', W.applyfunc(sp.tanh))\n"
        "    g.define('f', s * adjoint.frobenius2(H))\n"
        "    rng = np.random.default_rng(0)\n"
        "    g.hessian({W: rng.normal(size=(5, 10)), s: 0.7})\n",
        "run()",
    ),
    "explain the lecture's DAG at a point, to HTML": (
        "from adjoint.examples import lecture_dag\n"
        "def run():\n"
        "    g, at = lecture_dag()\n"
        "    g.explain(at).to_html()\n",
        "run()",
    ),
    "grade the two-layer net's adjoints from text": (
        "import adjoint\nfrom adjoint.examples import two_layer_net\n"
        "def run():\n"
        "    g, _ = two_layer_net(n=4, d=3, seed=0)\n"
        "    adjoint.check_adjoints(g, {'R': '2*R', 'A': 'Lambda_R*W2.T', "
        "'W1': 'X.T*Lambda_H', 'W2': 'A.T*Lambda_R'})\n",
        "run()",
    ),
}

_TIMER = """
import sys, time
sys.path.insert(0, {path!r})
{setup}
run()  # warm: imports and caches, outside the timing
t = time.perf_counter()
{statement}
print(time.perf_counter() - t)
"""


def time_once(checkout: Path, setup: str, statement: str) -> float:
    code = _TIMER.format(path=str(checkout), setup=setup, statement=statement)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=checkout
    )
    if done.returncode:
        raise RuntimeError(f"the workload failed in {checkout}:\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref", help="the commit to compare with (e.g. a tag or a hash)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="", help="run the workloads whose name has this")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(old), args.ref],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            print(f"new: {ROOT.name} (working tree), old: {args.ref}; best of {args.rounds}")
            for name, (setup, statement) in WORKLOADS.items():
                if args.only not in name:
                    continue
                best = {"old": float("inf"), "new": float("inf")}
                try:
                    for _ in range(args.rounds):
                        for which, path in (("old", old), ("new", ROOT)):
                            best[which] = min(best[which], time_once(path, setup, statement))
                except RuntimeError as failed:  # e.g. a feature the old commit lacks
                    print(f"  {name:66s} not measured: {str(failed).splitlines()[-1]}")
                    continue
                ratio = best["new"] / best["old"]
                print(
                    f"  {name:66s} old {best['old']:7.3f} s  new {best['new']:7.3f} s  "
                    f"new/old {ratio:5.2f}"
                )
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, capture_output=True
            )


if __name__ == "__main__":
    main()
