"""The Matrix Cookbook (Petersen and Pedersen, 2012), section 2, as a table.

Each row is an identity ``df/dX = G(X, ...)``: the package differentiates ``f`` (built
as a graph whose input is ``X``) and the result is compared with the Cookbook's closed
form ``G``, written here in NumPy, at random well-conditioned points of random shapes.
The same ``f`` with symbolic sizes gives a gradient in matrix form (no entries, no
sums over indices), which is printed and then evaluated against ``G`` as well.

Equation numbers are those of the 2012 edition. Section 2.4-2.5 numbers were checked
by counting between two anchors (eq. 69 and eq. 119); the determinant and inverse
identities of sections 2.1-2.2 are cited by section, as their numbers could not be
checked here. The Hadamard rows are not in section 2; they follow from eq. 99 entry by
entry and say so.
"""

import numpy as np
import pytest
import sympy as sp

import adjoint
from adjoint.core.display import text
from adjoint.operations.numeric import numeric_function

T = np.transpose
inv = np.linalg.inv
det = np.linalg.det
mp = np.linalg.matrix_power
K = 3  # the power in the power rows


def tr(M):
    return sp.Trace(M)


# (id, the variables' shapes (X first, the input), f, the closed form of df/dX)
COOKBOOK = [
    ("eq99 tr(X)", {"X": "nn"}, lambda X: tr(X), lambda X: np.eye(len(X))),
    ("eq100 tr(XA)", {"X": "mn", "A": "nm"}, lambda X, A: tr(X * A), lambda X, A: A.T),
    (
        "eq101 tr(AXB)",
        {"X": "mn", "A": "km", "B": "nk"},
        lambda X, A, B: tr(A * X * B),
        lambda X, A, B: A.T @ B.T,
    ),
    (
        "eq102 tr(AX^TB)",
        {"X": "mn", "A": "kn", "B": "mk"},
        lambda X, A, B: tr(A * X.T * B),
        lambda X, A, B: B @ A,
    ),
    ("eq103 tr(X^TA)", {"X": "mn", "A": "mn"}, lambda X, A: tr(X.T * A), lambda X, A: A),
    ("eq104 tr(AX^T)", {"X": "mn", "A": "mn"}, lambda X, A: tr(A * X.T), lambda X, A: A),
    ("eq106 tr(X^2)", {"X": "nn"}, lambda X: tr(X * X), lambda X: 2 * X.T),
    (
        "eq107 tr(X^2B)",
        {"X": "nn", "B": "nn"},
        lambda X, B: tr(X * X * B),
        lambda X, B: (X @ B + B @ X).T,
    ),
    (
        "eq108 tr(X^TBX)",
        {"X": "mn", "B": "mm"},
        lambda X, B: tr(X.T * B * X),
        lambda X, B: B @ X + B.T @ X,
    ),
    (
        "eq109 tr(BXX^T)",
        {"X": "mn", "B": "mm"},
        lambda X, B: tr(B * X * X.T),
        lambda X, B: B @ X + B.T @ X,
    ),
    (
        "eq110 tr(XX^TB)",
        {"X": "mn", "B": "mm"},
        lambda X, B: tr(X * X.T * B),
        lambda X, B: B @ X + B.T @ X,
    ),
    (
        "eq111 tr(XBX^T)",
        {"X": "mn", "B": "nn"},
        lambda X, B: tr(X * B * X.T),
        lambda X, B: X @ B.T + X @ B,
    ),
    (
        "eq112 tr(BX^TX)",
        {"X": "mn", "B": "nn"},
        lambda X, B: tr(B * X.T * X),
        lambda X, B: X @ B.T + X @ B,
    ),
    (
        "eq113 tr(X^TXB)",
        {"X": "mn", "B": "nn"},
        lambda X, B: tr(X.T * X * B),
        lambda X, B: X @ B.T + X @ B,
    ),
    (
        "eq114 tr(AXBX)",
        {"X": "mn", "A": "nm", "B": "nm"},
        lambda X, A, B: tr(A * X * B * X),
        lambda X, A, B: A.T @ X.T @ B.T + B.T @ X.T @ A.T,
    ),
    ("eq115 tr(X^TX)", {"X": "mn"}, lambda X: tr(X.T * X), lambda X: 2 * X),
    (
        "eq116 tr(B^TX^TCXB)",
        {"X": "mn", "B": "nk", "C": "mm"},
        lambda X, B, C: tr(B.T * X.T * C * X * B),
        lambda X, B, C: C.T @ X @ B @ B.T + C @ X @ B @ B.T,
    ),
    (
        "eq117 tr(X^TBXC)",
        {"X": "mn", "B": "mm", "C": "nn"},
        lambda X, B, C: tr(X.T * B * X * C),
        lambda X, B, C: B @ X @ C + B.T @ X @ C.T,
    ),
    (
        "eq118 tr(AXBX^TC)",
        {"X": "mn", "A": "km", "B": "nn", "C": "mk"},
        lambda X, A, B, C: tr(A * X * B * X.T * C),
        lambda X, A, B, C: A.T @ C.T @ X @ B.T + C @ A @ X @ B,
    ),
    (
        "eq119 tr((AXB+C)(AXB+C)^T)",
        {"X": "mn", "A": "km", "B": "nk", "C": "kk"},
        lambda X, A, B, C: adjoint.frobenius2(A * X * B + C),
        lambda X, A, B, C: 2 * A.T @ (A @ X @ B + C) @ B.T,
    ),
    ("eq121 tr(X^k)", {"X": "nn"}, lambda X: tr(X**K), lambda X: K * mp(X, K - 1).T),
    (
        "eq122 tr(AX^k)",
        {"X": "nn", "A": "nn"},
        lambda X, A: tr(A * X**K),
        lambda X, A: sum((mp(X, r) @ A @ mp(X, K - r - 1)).T for r in range(K)),
    ),
    (
        "eq124 tr(AX^-1B)",
        {"X": "nn", "A": "kn", "B": "nk"},
        lambda X, A, B: tr(A * X.I * B),
        lambda X, A, B: -inv(X).T @ A.T @ B.T @ inv(X).T,
    ),
    (
        "eq70 a^TXb",
        {"X": "mn", "a": "m1", "b": "n1"},
        lambda X, a, b: tr(a.T * X * b),
        lambda X, a, b: a @ b.T,
    ),
    (
        "eq71 a^TX^Tb",
        {"X": "mn", "a": "n1", "b": "m1"},
        lambda X, a, b: tr(a.T * X.T * b),
        lambda X, a, b: b @ a.T,
    ),
    ("eq72 a^TXa", {"X": "nn", "a": "n1"}, lambda X, a: tr(a.T * X * a), lambda X, a: a @ a.T),
    (
        "eq77 b^TX^TXc",
        {"X": "mn", "b": "n1", "c": "n1"},
        lambda X, b, c: tr(b.T * X.T * X * c),
        lambda X, b, c: X @ (b @ c.T + c @ b.T),
    ),
    (
        "eq78 (Bx+b)^TC(Dx+d)",
        {"x": "n1", "B": "mn", "b": "m1", "C": "mk", "D": "kn", "d": "k1"},
        lambda x, B, b, C, D, d: tr((B * x + b).T * C * (D * x + d)),
        lambda x, B, b, C, D, d: B.T @ C @ (D @ x + d) + D.T @ C.T @ (B @ x + b),
    ),
    (
        "eq81 x^TBx",
        {"x": "n1", "B": "nn"},
        lambda x, B: tr(x.T * B * x),
        lambda x, B: (B + B.T) @ x,
    ),
    (
        "eq82 b^TX^TDXc",
        {"X": "mn", "b": "n1", "c": "n1", "D": "mm"},
        lambda X, b, c, D: tr(b.T * X.T * D * X * c),
        lambda X, b, c, D: D.T @ X @ b @ c.T + D @ X @ c @ b.T,
    ),
    (
        "eq83 (Xb+c)^TD(Xb+c)",
        {"X": "mn", "b": "n1", "c": "m1", "D": "mm"},
        lambda X, b, c, D: tr((X * b + c).T * D * (X * b + c)),
        lambda X, b, c, D: (D + D.T) @ (X @ b + c) @ b.T,
    ),
    (
        "eq91 a^TX^nb",
        {"X": "nn", "a": "n1", "b": "n1"},
        lambda X, a, b: tr(a.T * X**K * b),
        lambda X, a, b: sum(mp(X, r).T @ a @ b.T @ mp(X, K - 1 - r).T for r in range(K)),
    ),
    ("sec2.1.1 det(X)", {"X": "nn"}, lambda X: sp.Determinant(X), lambda X: det(X) * inv(X).T),
    (
        "sec2.1.1 det(AXB)",
        {"X": "nn", "A": "nn", "B": "nn"},
        lambda X, A, B: sp.Determinant(A * X * B),
        lambda X, A, B: det(A @ X @ B) * inv(X).T,
    ),
    ("sec2.1.4 ln det(X)", {"X": "nn"}, lambda X: adjoint.logdet(X), lambda X: inv(X).T),
    (
        "sec2.1.4 det(X^k)",
        {"X": "nn"},
        lambda X: sp.Determinant(X**K),
        lambda X: K * det(mp(X, K)) * inv(X).T,
    ),
    (
        "sec2.2 a^TX^-1b",
        {"X": "nn", "a": "n1", "b": "n1"},
        lambda X, a, b: tr(a.T * X.I * b),
        lambda X, a, b: -inv(X).T @ a @ b.T @ inv(X).T,
    ),
    (
        "sec2.2 det(X^-1)",
        {"X": "nn"},
        lambda X: sp.Determinant(X.I),
        lambda X: -det(inv(X)) * inv(X).T,
    ),
    (
        "sec2.2 tr((X+A)^-1)",
        {"X": "nn", "A": "nn"},
        lambda X, A: tr(sp.Inverse(X + A)),
        lambda X, A: -(inv(X + A) @ inv(X + A)).T,
    ),
    ("sec2.7.1 ||X||_F^2", {"X": "mn"}, lambda X: adjoint.frobenius2(X), lambda X: 2 * X),
    (
        "Hadamard <A, X o X> (eq99 entrywise)",
        {"X": "mn", "A": "mn"},
        lambda X, A: tr(A.T * sp.HadamardProduct(X, X)),
        lambda X, A: 2 * A * X,
    ),
    (
        "Hadamard ||A o X||_F^2 (eq99 entrywise)",
        {"X": "mn", "A": "mn"},
        lambda X, A: adjoint.frobenius2(sp.HadamardProduct(A, X)),
        lambda X, A: 2 * A * A * X,
    ),
]


def _graph(shapes, f, sizes):
    g = adjoint.Graph()
    names = list(shapes)
    syms = [
        (g.input if k == 0 else g.constant)(name, shape=tuple(sizes[c] for c in shape))
        for k, (name, shape) in enumerate(shapes.items())
    ]
    g.define("f", f(*syms))
    return g, dict(zip(names, syms))


def _values(shapes, sizes, seed):
    """Random values; square matrices are shifted to be well conditioned, with det > 0."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape in shapes.items():
        r, c = (sizes[ch] for ch in shape)
        v = rng.uniform(-1, 1, size=(r, c))
        values[name] = v + 2 * r * np.eye(r) if r == c and r > 1 else v
    return values


@pytest.mark.parametrize("name, shapes, f, closed", COOKBOOK, ids=[c[0] for c in COOKBOOK])
@pytest.mark.parametrize("seed", [0, 1])
def test_cookbook_identity_at_random_points_and_shapes(name, shapes, f, closed, seed):
    rng = np.random.default_rng(100 + seed)
    sizes = {c: int(rng.integers(2, 5)) for c in "nmk"} | {"1": 1}
    g, _syms = _graph(shapes, f, sizes)
    values = _values(shapes, sizes, seed)
    wrt = next(iter(shapes))
    expected = closed(*values.values())
    got = g.solve(values).gradient[wrt]
    assert got.shape == values[wrt].shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-11 * np.max(np.abs(expected)))
    _, compiled = g.compile()(**values)
    np.testing.assert_allclose(
        compiled[0], expected, rtol=1e-9, atol=1e-11 * np.max(np.abs(expected))
    )


@pytest.mark.parametrize("name, shapes, f, closed", COOKBOOK, ids=[c[0] for c in COOKBOOK])
def test_cookbook_identity_in_matrix_form_with_symbolic_shapes(name, shapes, f, closed):
    dims = {c: sp.Symbol(c, integer=True, positive=True) for c in "nmk"} | {"1": 1}
    g, syms = _graph(shapes, f, dims)
    wrt = syms[next(iter(shapes))]
    G = g.solve().gradient[wrt]
    assert isinstance(G, sp.MatrixExpr) and G.shape == wrt.shape
    shown = text(G)
    print(f"{name}: d f / d {wrt} = {shown}")
    assert "[" not in shown and not G.has(sp.Sum)  # matrix form: no entries, no index sums
    # the symbolic matrix formula, evaluated, is the Cookbook's closed form
    sizes = {"n": 3, "m": 4, "k": 2, "1": 1}
    values = _values(shapes, sizes, 0)
    args = [*syms.values(), *(dims[c] for c in "nmk")]
    fn = numeric_function(args, G)
    got = fn(*values.values(), *(sizes[c] for c in "nmk"))
    np.testing.assert_allclose(got, closed(*values.values()), rtol=1e-9, atol=1e-12)
