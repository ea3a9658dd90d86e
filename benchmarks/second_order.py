"""Second order: the cost of the Hessian-vector product, side by side in one run.

1. A random scalar DAG of 2000 nodes on 10^5 points: the compiled value, gradient
   and Hessian-vector product (``compile(hvp=True)``) as a ratio to the compiled
   value and gradient (target <= 3.0, aim 2.5), checked against central differences
   of the compiled gradient.
2. Symbolic: declare + ``second_order()`` + a numeric ``hvp`` on random DAGs of
   10^3 .. 3x10^4 nodes, as a ratio to building the sympy right-hand sides (target
   <= 3), with the scaling exponent between sizes (target <= 1.15).

3. The two-layer net ||tanh(X W1) W2 - y||^2, X 1024 x 256, float64: the compiled
   HVP against a hand-written NumPy Pearlmutter R-op (checked by differences of its
   gradient), and ``compile(backend="jax", hvp=True)`` against ``jax.jit`` of
   ``jax.jvp`` over ``jax.grad`` (targets: within 1.15x of each).
4. Logistic regression, X 1000 x 50, its loss written on the probabilities and on the
   logits: the compiled HVP against a hand-written R-op (called with the data, and
   with the data bound) and against JAX (targets 1.5x and 1.2x).
5. The 51 x 51 Hessian of a function of a 5 x 10 matrix: ``g.hessian`` against
   ``jax.hessian`` (target 3x), the batched ``compile(hvp=True)`` against ``jax.jit``.

Run: python benchmarks/second_order.py [--sizes 1000 10000 30000]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from compiled import best
from sympy.core.cache import clear_cache

import adjoint
from adjoint.examples import random_constraints, random_dag


def scalar_dag() -> None:
    g, _ = random_dag(2000, seed=1)
    rng = np.random.default_rng(0)
    points = [rng.uniform(-1, 1, 100_000) for _ in g.inputs]
    direction = [rng.standard_normal() for _ in g.inputs]
    t0 = time.perf_counter()
    both, second = g.compile(), g.compile(hvp=True)
    built = time.perf_counter() - t0
    # the Hessian-vector product against central differences of the compiled gradient
    h = 1e-6
    up = both(*(p + h * v for p, v in zip(points, direction)))[1]
    down = both(*(p - h * v for p, v in zip(points, direction)))[1]
    hv = second(*points, *direction)[2]
    worst = 0.0
    for a, b, c in zip(hv, up, down):
        diff = (b - c) / (2 * h)
        ok = np.isfinite(a) & np.isfinite(diff)
        worst = max(
            worst, float(np.max(np.abs(a[ok] - diff[ok]) / np.maximum(1, np.abs(diff[ok]))))
        )
    t = best({"both": lambda: both(*points), "hvp": lambda: second(*points, *direction)}, repeats=5)
    print(f"1. random DAG, 2000 nodes, 10^5 points (compiling both programs: {built:.1f} s)")
    print(f"   value and gradient          {t['both']:8.3f} s")
    print(
        f"   value, gradient and HVP     {t['hvp']:8.3f} s   ratio {t['hvp'] / t['both']:.2f} "
        "(target <= 3.0, aim 2.5)"
    )
    print(f"   HVP against differences of the gradient: worst relative error {worst:.1e}")


def measure(n: int, seed: int) -> dict:
    clear_cache()  # sympy would otherwise find the right-hand sides of a rerun cached
    t0 = time.perf_counter()
    inputs, rhs = random_constraints(n, 4, seed)
    t1 = time.perf_counter()
    g = adjoint.Graph()
    for x in inputs:
        g.input(x)
    for z, f in rhs:
        g.define(z, f)
    g.second_order()
    at = {x: 0.1 * (k + 1) for k, x in enumerate(inputs)}
    hv = g.hvp(at, {x: 1.0 for x in inputs})
    t2 = time.perf_counter()
    assert all(math.isfinite(v) or math.isnan(v) for v in hv.values())
    return {"n": n, "rhs": t1 - t0, "total": t2 - t1}


def symbolic(sizes, seed: int) -> None:
    measure(200, seed)  # warm the caches of operations
    print("2. declare + second_order() + hvp, against building the right-hand sides")
    print(f"   {'N':>7} {'rhs s':>8} {'total s':>8} {'ratio':>6} {'exponent':>8}")
    previous = None
    for n in sizes:
        runs = [measure(n, seed) for _ in range(3 if n <= 10_000 else 1)]
        r = {key: min(run[key] for run in runs) for key in runs[0]}
        exponent = ""
        if previous is not None:
            exponent = (
                f"{math.log(r['total'] / previous['total']) / math.log(n / previous['n']):.2f}"
            )
        print(
            f"   {n:>7} {r['rhs']:>8.2f} {r['total']:>8.2f} {r['total'] / r['rhs']:>6.2f} "
            f"{exponent:>8}"
        )
        previous = r
    print("   (targets: ratio <= 3, exponent <= 1.15)")


def two_layer() -> None:
    from adjoint.examples import two_layer_net

    g, point = two_layer_net(n=1024, d=256, seed=0)
    args = {s.name: v for s, v in point.items()}
    X, y, W1, W2 = args["X"], args["y"], args["W1"], args["W2"]
    rng = np.random.default_rng(1)
    V1, V2 = rng.standard_normal(W1.shape), rng.standard_normal(W2.shape)

    def gradient(W1, W2):
        A = np.tanh(X @ W1)
        R = A @ W2 - y
        lam_H = (2 * R @ W2.T) * (1 - A * A)
        return X.T @ lam_H, A.T @ (2 * R)

    def by_hand():
        # Pearlmutter's R-op: the forward sweep and its tangent, then the backward sweep
        # and its tangent, written out for this network
        H = X @ W1
        A = np.tanh(H)
        dA = 1 - A * A
        R = A @ W2 - y
        H_dot = X @ V1
        A_dot = dA * H_dot
        R_dot = A_dot @ W2 + A @ V2
        lam_R, lam_R_dot = 2 * R, 2 * R_dot
        lam_A = lam_R @ W2.T
        lam_A_dot = lam_R_dot @ W2.T + lam_R @ V2.T
        lam_H = lam_A * dA
        lam_H_dot = lam_A_dot * dA - 2 * A * A_dot * lam_A
        f = float(np.sum(R * R))
        return f, (X.T @ lam_H, A.T @ lam_R), (X.T @ lam_H_dot, A.T @ lam_R_dot + A_dot.T @ lam_R)

    h = 1e-6
    up, down = gradient(W1 + h * V1, W2 + h * V2), gradient(W1 - h * V1, W2 - h * V2)
    _, _, hand_hv = by_hand()
    for got, a, b in zip(hand_hv, up, down):
        assert np.allclose(got, (a - b) / (2 * h), rtol=1e-5, atol=1e-5 * np.max(np.abs(got)))
    compiled = g.compile(hvp=True)
    fns = {
        "by hand R-op (NumPy)": by_hand,
        "adjoint hvp=True": lambda: compiled(**args, v_W1=V1, v_W2=V2),
    }
    _, _, ours = fns["adjoint hvp=True"]()
    for a, b in zip(ours, hand_hv):
        assert np.allclose(a, b, rtol=1e-9, atol=1e-9 * np.max(np.abs(b)))
    fns.update(_jax_hvp(g, args, V1, V2))
    t = best(fns, repeats=15)
    print("3. two-layer net, X 1024 x 256, float64: value, gradient and HVP")
    hand, jax_time = t["by hand R-op (NumPy)"], t.get("JAX jit(jvp(grad))")
    for name, seconds in t.items():
        line = f"   {name:30s}{1e3 * seconds:8.2f} ms   / by hand {seconds / hand:5.2f}"
        if jax_time:
            line += f"   / JAX {seconds / jax_time:5.2f}"
        print(line)
    print("   (targets: adjoint / by hand <= 1.15; adjoint, backend=jax / JAX <= 1.15)")


def _jax_hvp(g, args, V1, V2) -> dict:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return {}
    with jax.enable_x64(True):
        j = {k: jnp.asarray(v) for k, v in args.items()}
        jv1, jv2 = jnp.asarray(V1), jnp.asarray(V2)

        def loss(W1, W2):
            return jnp.sum((jnp.tanh(j["X"] @ W1) @ W2 - j["y"]) ** 2)

        step = jax.jit(lambda w, v: jax.jvp(jax.grad(loss, argnums=(0, 1)), w, v))
        jax.block_until_ready(step((j["W1"], j["W2"]), (jv1, jv2)))

    def reference():
        with jax.enable_x64(True):
            return jax.block_until_ready(step((j["W1"], j["W2"]), (jv1, jv2)))

    ours = g.compile(backend="jax", hvp=True)
    ours(**j, v_W1=jv1, v_W2=jv2)
    return {
        "JAX jit(jvp(grad))": reference,
        "adjoint hvp=True, backend=jax": lambda: ours(**j, v_W1=jv1, v_W2=jv2),
    }


def logistic(n: int = 1000, d: int = 50) -> None:
    """Logistic regression with an L2 term, X n x d: the compiled HVP (NumPy) against a
    hand-written NumPy R-op, and ``backend="jax"`` against ``jax.jit`` of ``jax.jvp``
    over ``jax.grad`` (issue 20's targets: 1.5x and 1.2x). The compiled program returns
    the value as well, so each reference is measured twice: as the issue wrote it
    (gradient and HVP) and returning the value too (what the program returns).

    The loss in two spellings: through the probabilities, ``-sum(y log p + (1 - y)
    log(1 - p))`` with ``p = sigma(X w)``, and on the logits, ``sum(softplus(z) - y z)``
    with ``z = X w`` (the same function, stable where p rounds to 0 or 1: the spelling
    of JAX's and PyTorch's losses). The references compute it as each spelling says."""
    rng = np.random.default_rng(0)
    X, w, v = rng.normal(size=(n, d)), 0.1 * rng.normal(size=(d, 1)), rng.normal(size=(d, 1))
    y = (rng.uniform(size=(n, 1)) < 0.5).astype(float)
    spellings = {
        "probabilities": (
            [("p", "sigmoid.(X*w)")],
            f"-sum_entries(y .* log.(p) + (ones({n}, 1) - y) .* log.(ones({n}, 1) - p))",
            lambda s, z: -np.sum(y * np.log(s) + (1 - y) * np.log(1 - s)),
            "probs",
        ),
        "logits": (
            [("z", "X*w")],
            "sum_entries(softplus.(z) - y .* z)",
            lambda s, z: np.sum(np.logaddexp(0.0, z) - y * z),
            "logits",
        ),
    }
    for name, (nodes, loss, numpy_loss, jax_loss) in spellings.items():
        g = adjoint.Graph()
        g.constant("X", shape=(n, d)), g.constant("y", shape=(n, 1))
        g.input("w", shape=(d, 1))
        for node, expr in nodes:
            g.define(node, expr)
        g.define("f", f"{loss} + sum_entries(w .* w)/2")

        def rop():  # by hand: gradient X^T (s - y) + w, HVP X^T (s (1 - s) X v) + v
            s = 1 / (1 + np.exp(-(X @ w)))
            return X.T @ (s - y) + w, X.T @ (s * (1 - s) * (X @ v)) + v

        def rop_value(numpy_loss=numpy_loss):  # the same, and the loss
            z = X @ w
            s = 1 / (1 + np.exp(-z))
            f = numpy_loss(s, z) + np.sum(w * w) / 2
            return f, X.T @ (s - y) + w, X.T @ (s * (1 - s) * (X @ v)) + v

        ours = g.compile(hvp=True)
        value, (grad,), (hv,) = ours(w=w, X=X, y=y, v_w=v)
        want = rop_value()
        error = max(float(np.max(np.abs(a - b))) for a, b in zip((value, grad, hv), want))
        bound = ours.bind(X=X, y=y)  # the data checked once, as the R-op never checks it
        bound(w, v)
        runs = {
            "adjoint": lambda ours=ours: ours(w=w, X=X, y=y, v_w=v),
            "adjoint, data bound": lambda bound=bound: bound(w, v),
            "by hand": rop,
            "by hand, value": rop_value,
        }
        try:
            import jax
            import jax.numpy as jnp

            def loss_fn(w, X, y, jax_loss=jax_loss):  # the data as arguments, as ours
                z = X @ w
                if jax_loss == "logits":
                    return jnp.sum(jax.nn.softplus(z) - y * z) + jnp.sum(w * w) / 2
                s = jax.nn.sigmoid(z)
                return -jnp.sum(y * jnp.log(s) + (1 - y) * jnp.log(1 - s)) + jnp.sum(w * w) / 2

            with jax.enable_x64(True):
                theirs = jax.jit(
                    lambda w, v, X, y, f=loss_fn: jax.jvp(
                        lambda u: jax.grad(f)(u, X, y), (w,), (v,)
                    )
                )
                valued = jax.jit(
                    lambda w, v, X, y, f=loss_fn: jax.jvp(
                        lambda u: jax.value_and_grad(f)(u, X, y), (w,), (v,)
                    )
                )
                jaxed = g.compile(hvp=True, backend="jax")
                for fn in (theirs, valued):
                    jax.block_until_ready(fn(w, v, X, y))
                jaxed(w=w, X=X, y=y, v_w=v)
                runs["adjoint jax"] = lambda jaxed=jaxed: jaxed(w=w, X=X, y=y, v_w=v)
                held = jaxed.bind(X=X, y=y)  # the data on the device once
                held(w, v)
                runs["adjoint jax, data bound"] = lambda held=held: held(w, v)
                Xd, yd = jax.device_put(X), jax.device_put(y)
                runs["jax, data on the device"] = lambda theirs=theirs, Xd=Xd, yd=yd: (
                    jax.device_get(theirs(w, v, Xd, yd))
                )
                runs["jax"] = lambda theirs=theirs: jax.device_get(theirs(w, v, X, y))
                runs["jax, value"] = lambda valued=valued: jax.device_get(valued(w, v, X, y))
                t = best(runs, repeats=15, number=40)
        except ImportError:
            t = best(runs, repeats=15, number=40)
        print(
            f"4. logistic regression on the {name}, X {n} x {d}: HVP (agrees with the "
            f"R-op to {error:.0e})"
        )
        print(
            f"   compiled (NumPy) / hand-written R-op   {t['adjoint'] / t['by hand']:6.2f} "
            f"(with the value: {t['adjoint'] / t['by hand, value']:.2f}; target 1.5)"
        )
        bound_time = t["adjoint, data bound"]
        print(
            f"   the same, X and y bound (.bind)        {bound_time / t['by hand']:6.2f} "
            f"(with the value: {bound_time / t['by hand, value']:.2f})"
        )
        if "jax" in t:
            print(
                f"   compile(backend='jax') / jax.jvp(grad) {t['adjoint jax'] / t['jax']:6.2f} "
                f"(jvp(value_and_grad): {t['adjoint jax'] / t['jax, value']:.2f}; target 1.2)"
            )
            print(
                "   the same, X and y bound / on the device "
                f"{t['adjoint jax, data bound'] / t['jax, data on the device']:5.2f}"
            )


def hessian_of_a_matrix() -> None:
    """The Hessian of f(W, b) = sum(tanh(X W)^2) b + b^3, W 5 x 10, over the 51
    entries: ``g.hessian(at)`` against ``jax.hessian`` called directly (issue 20:
    at most 3x), and ``compile(hvp=True)`` given the 51 unit directions stacked (one
    call) against ``jax.jit(jax.hessian)``."""
    g = adjoint.Graph()
    W, b = g.input("W", shape=(5, 10)), g.input("b")
    X = g.constant("X", shape=(3, 5))
    g.define("H", "tanh.(X*W)")
    g.define("f", "sum_entries(H .* H)*b + b**3")
    rng = np.random.default_rng(0)
    at = {W: rng.normal(size=(5, 10)) * 0.3, b: 0.7, X: rng.normal(size=(3, 5))}
    eye = np.eye(51)
    V, vb = eye[:, :50].reshape(51, 5, 10), eye[:, 50]
    ours = g.hessian(at)
    runs = {"g.hessian(at)": lambda: g.hessian(at)}
    for backend in ("numpy", "jax"):
        try:
            c = g.compile(hvp=True, backend=backend)
        except adjoint.AdjointError:
            continue
        kw = {"W": at[W], "b": at[b], "X": at[X], "v_W": V, "v_b": vb}
        _, _, (HW, Hb) = c(**kw)
        assert np.allclose(np.concatenate([HW.reshape(51, 50), Hb[:, None]], axis=1), ours)
        runs[f"compile(hvp=True, {backend}), 51 directions"] = lambda c=c, kw=kw: c(**kw)
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        jax = None
    if jax is not None:
        Xj = at[X]

        def f(theta):
            w, bb = theta[:50].reshape(5, 10), theta[50]
            return jnp.sum(jnp.tanh(Xj @ w) ** 2) * bb + bb**3

        theta = np.concatenate([at[W].ravel(), [at[b]]])
        with jax.enable_x64(True):
            theirs = np.asarray(jax.hessian(f)(theta))
            assert np.allclose(theirs, ours, rtol=1e-10, atol=1e-12)
            jitted = jax.jit(jax.hessian(f))
            jitted(theta).block_until_ready()
            runs["jax.hessian (not jitted)"] = lambda: jax.hessian(f)(theta).block_until_ready()
            runs["jax.jit(jax.hessian)"] = lambda: jitted(theta).block_until_ready()
            t = best(runs, repeats=5, number=3)
    else:
        t = best(runs, repeats=5, number=3)
    print("5. the Hessian of a function of a 5 x 10 matrix (and a scalar): 51 x 51")
    for name, seconds in t.items():
        line = f"   {name:44s}{1e3 * seconds:9.2f} ms"
        if "jax.hessian (not jitted)" in t:
            line += f"   / jax.hessian {seconds / t['jax.hessian (not jitted)']:6.2f}"
        if "jax.jit(jax.hessian)" in t:
            line += f"   / jit(hessian) {seconds / t['jax.jit(jax.hessian)']:7.2f}"
        print(line)
    print("   (target: g.hessian / jax.hessian <= 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 30_000])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    scalar_dag()
    symbolic(args.sizes, args.seed)
    two_layer()
    logistic()
    hessian_of_a_matrix()


if __name__ == "__main__":
    main()
