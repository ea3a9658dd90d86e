"""The multi-layer perceptron with biases and softmax cross-entropy, compiled, against
hand-written NumPy backprop.

    H = X W1 + 1 b1^T,  A = tanh(H),  Z = A W2 + 1 b2^T,  f = cross_entropy(Y, Z)

with X of 4096 x 256, W1 256 x 256, W2 256 x 10, in float64. Prints, measured side by
side in one run (best of interleaved repeats, and the median), the compiled value and
gradient against the hand-written backprop as a ratio, and checks that the compiled
log-sum-exp is finite at logits of 1000.

Run: python benchmarks/mlp.py
"""

from __future__ import annotations

import statistics
import time
import warnings

import numpy as np
import sympy as sp

import adjoint
from adjoint import functions as fn

N, D, H, K = 4096, 256, 256, 10


def mlp_graph() -> adjoint.Graph:
    n, d, h, k = sp.symbols("n d h k", integer=True, positive=True)
    g = adjoint.Graph()
    X, Y = g.constant("X", shape=(n, d)), g.constant("Y", shape=(n, k))
    W1, b1 = g.input("W1", shape=(d, h)), g.input("b1", shape=(1, h))
    W2, b2 = g.input("W2", shape=(h, k)), g.input("b2", shape=(1, k))
    # H as its own node, as in the lecture: its multiplier is computed once and read by
    # both W1 and b1 (written inside tanh(.), the generated program forms it twice).
    H = g.define("H", X * W1 + fn.repeat_rows(b1, n))
    A = g.define("A", fn.tanh(H))
    Z = g.define("Z", A * W2 + fn.repeat_rows(b2, n))
    g.define("f", fn.cross_entropy(Y, Z))
    return g


def by_hand(X, Y, W1, b1, W2, b2):
    """The backprop a student writes in NumPy, with the max-shift in the softmax."""
    A = np.tanh(X @ W1 + b1)
    Z = A @ W2 + b2
    m = Z.max(axis=1, keepdims=True)
    E = np.exp(Z - m)
    s = E.sum(axis=1, keepdims=True)
    f = np.sum(Y.sum(axis=1, keepdims=True) * (m + np.log(s))) - np.sum(Y * Z)
    dZ = E / s * Y.sum(axis=1, keepdims=True) - Y
    dH = (dZ @ W2.T) * (1 - A * A)
    return f, (X.T @ dH, dH.sum(axis=0, keepdims=True), A.T @ dZ, dZ.sum(axis=0, keepdims=True))


def data(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "X": rng.normal(size=(N, D)),
        "Y": np.eye(K)[rng.integers(0, K, N)],
        "W1": rng.normal(size=(D, H)) / np.sqrt(D),
        "b1": rng.normal(size=(1, H)) * 0.1,
        "W2": rng.normal(size=(H, K)) / np.sqrt(H),
        "b2": rng.normal(size=(1, K)) * 0.1,
    }


def timings(fns: dict, repeats: int = 21) -> dict:
    """Every time of each function, the functions interleaved so that load on the
    machine falls on all of them alike."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            t = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t)
    return times


def main() -> None:
    g = mlp_graph()
    compiled = g.compile()
    args = data()
    value, grads = compiled(**args)
    hand_value, hand_grads = by_hand(**args)
    assert abs(value - hand_value) <= 1e-9 * abs(hand_value)
    for a, b in zip(grads, hand_grads):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)

    t = timings({"hand": lambda: by_hand(**args), "compiled": lambda: compiled(**args)})
    best = {k: min(v) for k, v in t.items()}
    median = {k: statistics.median(v) for k, v in t.items()}
    print(f"MLP with biases and softmax cross-entropy, n = {N}, {D} -> {H} -> {K}, float64")
    print(
        f"   hand-written NumPy backprop   best {best['hand'] * 1e3:7.1f} ms   "
        f"median {median['hand'] * 1e3:7.1f} ms"
    )
    print(
        f"   compiled value and gradient   best {best['compiled'] * 1e3:7.1f} ms   "
        f"median {median['compiled'] * 1e3:7.1f} ms"
    )
    print(
        f"   ratio compiled / hand         best {best['compiled'] / best['hand']:.2f}   "
        f"median {median['compiled'] / median['hand']:.2f}   (target <= 1.15)"
    )

    big = dict(args, W2=args["W2"] * 0, b2=np.full((1, K), 1000.0))
    big["b2"][0, 0] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow would be a warning: make it fail
        value, grads = compiled(**big)
    finite = np.isfinite(value) and all(np.all(np.isfinite(gr)) for gr in grads)
    print(f"   logits of 1000: loss {value:.6g}, all finite: {finite}")


if __name__ == "__main__":
    main()
