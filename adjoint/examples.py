"""The lecture's examples, defined once for the docs, tests, notebooks and CLI.

Each function returns a fresh :class:`~adjoint.Graph` and a point to solve it at.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from .api import Graph
from .operations.matrices import frobenius2

__all__ = [
    "EXAMPLES",
    "fan_out",
    "lecture_dag",
    "random_constraints",
    "random_dag",
    "two_layer_net",
    "warm_up",
]


def warm_up() -> tuple[Graph, dict]:
    """Section 16.1: ``min_x f(g(x))`` as ``min f(z) s.t. z = g(x)``.

    Here ``g(x) = x**2`` and ``f(z) = (z - 1)**2``, whose stationary points are
    ``x = 0`` and ``x = +-1``.
    """
    g = Graph()
    x = g.input("x")
    z = g.define("z", x**2)
    g.define("f", (z - 1) ** 2)
    return g, {x: 1.5}


def lecture_dag() -> tuple[Graph, dict]:
    """Section 16.2: a small DAG with fan-out, ``z2 = sin(x y) + x``."""
    g = Graph()
    x, y = g.input("x"), g.input("y")
    z1 = g.define("z1", x * y)
    g.define("z2", sp.sin(z1) + x)
    return g, {x: 1.5, y: -2.0}


def fan_out() -> tuple[Graph, dict]:
    """The fan-out trap: ``a = x; b = a + a; c = b * b``, so dc/dx = 8x, not 4x.

    Both summands of ``b`` read ``a``: its multiplier must collect both.
    """
    g = Graph()
    x = g.input("x")
    a = g.define("a", x)
    b = g.define("b", sp.Add(a, a, evaluate=False))
    g.define("c", b * b)
    return g, {x: 0.75}


def two_layer_net(n: int = 8, d: int = 3, seed: int = 0) -> tuple[Graph, dict]:
    """Section 16.4: the two-layer network ``f(W1, W2) = ||sigma(X W1) W2 - y||^2``.

    Shapes are symbolic (``X`` is n x d, ``W1`` d x d, ``W2`` and ``y`` have one
    column), sigma is tanh, and ``X``, ``y`` are data (constants). The point holds
    ``n`` random rows, labels from a planted network, and small random weights.
    """
    g = Graph()
    n_, d_ = sp.symbols("n d", integer=True, positive=True)
    X = g.constant("X", shape=(n_, d_))
    y = g.constant("y", shape=(n_, 1))
    W1 = g.input("W1", shape=(d_, d_))
    W2 = g.input("W2", shape=(d_, 1))
    H = g.define("H", X * W1)
    A = g.define("A", H.applyfunc(sp.tanh))
    R = g.define("R", A * W2 - y)
    g.define("f", frobenius2(R))
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((n, d))
    labels = np.tanh(data @ rng.standard_normal((d, d))) @ rng.standard_normal((d, 1))
    point = {
        X: data,
        y: labels,
        W1: 0.5 * rng.standard_normal((d, d)),
        W2: 0.5 * rng.standard_normal((d, 1)),
    }
    return g, point


_UNARY = [sp.sin, sp.cos, sp.tanh, sp.exp, lambda a: a**2, lambda a: 1 / (1 + a**2)]
_BINARY = [lambda a, b: a * b, lambda a, b: a + b, lambda a, b: a - b, lambda a, b: sp.sin(a) * b]


def random_constraints(n: int, n_inputs: int = 4, seed: int = 0):
    """The symbols and right-hand sides of a random DAG of ``n`` nodes.

    Returns ``(inputs, [(z_k, f_k), ...])``. Parents are mostly recent nodes (depth)
    and sometimes any earlier node (fan-out and long edges). For benchmarks.
    """
    import random

    rng = random.Random(seed)
    inputs = [sp.Symbol(f"x{k}", real=True) for k in range(n_inputs)]
    nodes = list(inputs)

    def parent():
        if rng.random() < 0.8:
            return nodes[max(0, len(nodes) - 1 - rng.randrange(8))]
        return rng.choice(nodes)

    constraints = []
    for k in range(n):
        if rng.random() < 0.5:
            f = rng.choice(_UNARY)(parent())
        else:
            f = rng.choice(_BINARY)(parent(), parent())
        z = sp.Symbol(f"z{k}", real=True)
        constraints.append((z, f))
        nodes.append(z)
    return inputs, constraints


def random_dag(n: int, n_inputs: int = 4, seed: int = 0) -> tuple[Graph, dict]:
    """A random graph of ``n`` elementary constraints (see :func:`random_constraints`)."""
    inputs, constraints = random_constraints(n, n_inputs, seed)
    g = Graph()
    for x in inputs:
        g.input(x)
    for z, f in constraints:
        g.define(z, f)
    return g, {x: 0.1 * (k + 1) for k, x in enumerate(inputs)}


EXAMPLES = {
    "warm-up": warm_up,
    "dag": lecture_dag,
    "fan-out": fan_out,
    "two-layer": two_layer_net,
}
