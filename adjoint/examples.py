"""The lecture's examples, defined once for the docs, tests, notebooks and CLI.

Each function returns a fresh :class:`~adjoint.Graph` and a point to solve it at.
"""

from __future__ import annotations

import sympy as sp

from .graph import Graph

__all__ = ["EXAMPLES", "fan_out", "lecture_dag", "warm_up"]


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


EXAMPLES = {"warm-up": warm_up, "dag": lecture_dag, "fan-out": fan_out}
