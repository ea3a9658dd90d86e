"""Hypothesis strategies for graph-shaped inputs: random DAGs, points and shapes.

The operations are smooth and defined on the whole real line, so central finite
differences are a fair independent check anywhere.
"""

from __future__ import annotations

import sympy as sp
from hypothesis import strategies as st

import adjoint
from adjoint import functions as fn

UNARY = {
    "sin": sp.sin,
    "cos": sp.cos,
    "tanh": sp.tanh,
    "atan": sp.atan,
    "square": lambda a: a**2,
    "cube": lambda a: a**3,
    "gauss": lambda a: sp.exp(-(a**2)),
    "softplus": lambda a: sp.log(1 + sp.exp(a)),
    "sqrt1p": lambda a: sp.sqrt(1 + a**2),
    "log1p": lambda a: sp.log(1 + a**2),
    "sigmoid": lambda a: 1 / (1 + sp.exp(-a)),
    "neg": lambda a: -a,
    "scale": lambda a: sp.Rational(3, 2) * a,
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "ratio": lambda a, b: a / (1 + b**2),
    "sinmul": lambda a, b: sp.sin(a) * b,
    "hypot": lambda a, b: sp.sqrt(1 + a**2 + b**2),
    "atan2": lambda a, b: sp.atan2(a, 2 + sp.tanh(b)),
}
TERNARY = {
    "sum3": lambda a, b, c: a + b + c,
    "fma": lambda a, b, c: a * b + c,
}
OPERATIONS = [
    *((1, f) for f in UNARY.values()),
    *((2, f) for f in BINARY.values()),
    *((3, f) for f in TERNARY.values()),
]


@st.composite
def dags(draw, max_inputs: int = 3, max_nodes: int = 8, min_nodes: int = 1):
    """A random graph with shared nodes (fan-out); the output reads every sink.

    Parents are drawn with a bias towards recent nodes, so graphs are deep as well
    as wide, and a node may be read by many others.
    """
    g = adjoint.Graph()
    n_inputs = draw(st.integers(1, max_inputs))
    nodes = [g.input(f"x{k}") for k in range(n_inputs)]
    n_nodes = draw(st.integers(min_nodes, max_nodes))
    for k in range(n_nodes):
        arity, build = draw(st.sampled_from(OPERATIONS))
        parents = [
            nodes[len(nodes) - 1 - draw(st.integers(0, min(len(nodes) - 1, 3)))]
            if draw(st.booleans())
            else draw(st.sampled_from(nodes))
            for _ in range(arity)
        ]
        nodes.append(g.define(f"z{k + 1}", build(*parents)))
    sinks = [z for z in g.defined if not g.children(z)]
    if len(sinks) > 1:
        g.define("f", sp.Add(*sinks))
    return g


def points(g, low: float = -1.5, high: float = 1.5):
    """A strategy for a value of every input (and constant) of ``g``."""
    value = st.floats(low, high, allow_nan=False, allow_infinity=False)
    keys = list(g.inputs) + list(g.constants)
    return st.fixed_dictionaries({s: value for s in keys})


@st.composite
def matrix_graphs(draw):
    """A random matrix graph over the vocabulary the package prints."""
    n, d = sp.symbols("n d", integer=True, positive=True)
    g = adjoint.Graph()
    X = g.constant("X", shape=(n, d))
    W = g.input("W", shape=(d, d))
    b = g.input("b", shape=(1, d))
    H = g.define("H", X * W + fn.repeat_rows(b, n))
    steps = draw(st.lists(st.sampled_from(range(6)), min_size=1, max_size=4))
    for k, step in enumerate(steps):
        if step == 0:
            H = g.define(f"Z{k}", H.applyfunc(sp.tanh))
        elif step == 1:
            H = g.define(f"Z{k}", fn.sigmoid(H))
        elif step == 2:
            H = g.define(f"Z{k}", fn.relu(H))
        elif step == 3:
            H = g.define(f"Z{k}", sp.HadamardProduct(H, X * W))
        elif step == 4:
            H = g.define(f"Z{k}", fn.softmax(H))
        else:
            H = g.define(f"Z{k}", H * W.T)
    ending = draw(st.sampled_from(["frobenius", "logsumexp", "column_sums", "squares"]))
    if ending == "frobenius":
        g.define("f", adjoint.frobenius2(H))
    elif ending == "logsumexp":
        g.define("f", adjoint.sum_entries(fn.logsumexp(H)))
    elif ending == "column_sums":
        g.define("f", adjoint.sum_entries(fn.column_sums(H) * W))
    else:
        g.define("f", adjoint.sum_entries(H.applyfunc(lambda t: t**2)))
    return g
