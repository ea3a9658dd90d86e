"""Traces of products in generated code, against the NumPy one-liner.

Prints, measured side by side in one run (best of interleaved repeats), as ratios
to the hand-written ``numpy.sum``:

1. ``frobenius2(A) = Trace(A.T*A)`` with A 2000 x 500, compiled (value alone),
   against ``np.sum(A*A)``;
2. ``Trace(B.T*Z)`` with B, Z 20000 x 100, compiled, against ``np.sum(B*Z)``.

Each also shows the trace of the formed product, ``np.trace(A.T @ A)``, which
is what the generated code computed before traces were reduced. The compiled
figures include the call's argument checks. Target: compiled / np.sum <= 1.5.

Run: python benchmarks/reductions.py
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from compiled import best

import adjoint
from adjoint.operations.matrices import frobenius2


def frobenius(rng) -> None:
    g = adjoint.Graph()
    A = g.input("A", shape=(2000, 500))
    g.define("f", frobenius2(A))
    f = g.compile(gradient=False)
    a = rng.normal(size=(2000, 500))
    assert np.isclose(f(a), np.sum(a * a), rtol=1e-12)
    t = best(
        {
            "np.sum(A*A)": lambda: np.sum(a * a),
            "compiled": lambda: f(a),
            "np.trace(A.T @ A)": lambda: np.trace(a.T @ a),
        },
        repeats=25,
    )
    _report("1. frobenius2(A), A 2000 x 500", t, "np.sum(A*A)")


def frobenius_product(rng) -> None:
    g = adjoint.Graph()
    B, Z = g.input("B", shape=(20000, 100)), g.constant("Z", shape=(20000, 100))
    g.define("f", sp.Trace(B.T * Z))
    f = g.compile(gradient=False)
    b, z = rng.normal(size=(20000, 100)), rng.normal(size=(20000, 100))
    assert np.isclose(f(b, z), np.sum(b * z), rtol=1e-12)
    t = best(
        {
            "np.sum(B*Z)": lambda: np.sum(b * z),
            "compiled": lambda: f(b, z),
            "np.trace(B.T @ Z)": lambda: np.trace(b.T @ z),
        },
        repeats=25,
    )
    _report("2. Trace(B.T*Z), B and Z 20000 x 100", t, "np.sum(B*Z)")


def _report(title: str, t: dict, reference: str) -> None:
    print(title)
    for name, seconds in t.items():
        ratio = seconds / t[reference]
        print(f"   {name:20s}{1e3 * seconds:8.2f} ms   ratio to {reference}: {ratio:.2f}")
    print("   (target: compiled <= 1.5)")


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    frobenius(rng)
    frobenius_product(rng)
