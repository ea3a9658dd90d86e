"""Matrix nodes: the adjoint rule table, Claim 16.2 and the two-layer network."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

import adjoint
from adjoint.examples import two_layer_net
from adjoint.operations.matrices import RULES, pullback

A = sp.MatrixSymbol("A", 2, 3)
B = sp.MatrixSymbol("B", 3, 2)
C = sp.MatrixSymbol("C", 2, 3)
S = sp.MatrixSymbol("S", 3, 3)
S2 = sp.MatrixSymbol("S2", 2, 2)  # the expansion of an inverse's square is slow at 3 x 3
s = sp.Symbol("s", real=True)

# For each rule, expressions F and the node to pull back to. Every class in the rule
# table must appear here: a rule without an example fails the coverage test below.
RULE_EXAMPLES = {
    sp.MatAdd: [(A + C, A), (A + 2 * C, C)],
    sp.MatMul: [(A * B, A), (A * B, B), (2 * A * B * A, A), (s * A * B, s), (A * S * S, S)],
    sp.Transpose: [(A.T, A), (A.T * C, C)],
    sp.HadamardProduct: [(sp.HadamardProduct(A, C), A), (sp.HadamardProduct(A, C, A), A)],
    sp.HadamardPower: [(sp.HadamardPower(A, 3), A)],
    sp.matrices.expressions.applyfunc.ElementwiseApplyFunction: [
        (A.applyfunc(sp.tanh), A),
        ((A * B).applyfunc(lambda t: 1 / (1 + sp.exp(-t))), B),
    ],
    sp.Trace: [(sp.Trace(S), S), (sp.Trace(A.T * A), A), (sp.Trace(S) ** 2 + s, S)],
    sp.Inverse: [(sp.Inverse(S2), S2)],
    sp.MatPow: [(S**3, S), (A * S * S, S), (sp.MatPow(S2, -2), S2)],
    sp.Determinant: [(sp.Determinant(S), S), (sp.Determinant(A * B) * s, B)],
}

from adjoint import functions as fn  # noqa: E402 - the vocabulary's rules, after the core's

r = sp.MatrixSymbol("r", 1, 3)
c = sp.MatrixSymbol("c", 2, 1)
RULE_EXAMPLES[sp.matrices.expressions.applyfunc.ElementwiseApplyFunction] += [
    (fn.sigmoid(A), A),
    (fn.relu(A * B), B),
    (fn.softplus(A), A),
]
RULE_EXAMPLES.update(
    {
        fn.RowRepeat: [
            (fn.repeat_rows(r, 2), r),
            (sp.HadamardProduct(A, fn.repeat_rows(c.T * A, 2)), A),
        ],
        fn.ColumnRepeat: [
            (fn.repeat_columns(c, 3), c),
            (sp.HadamardProduct(A, fn.repeat_columns(c, 3)), c),
        ],
        fn.RowSums: [(fn.row_sums(A), A), (fn.row_sums(fn.sigmoid(A)), A)],
        fn.ColumnSums: [(fn.column_sums(A), A), (fn.column_sums(A * S), S)],
        fn.LogSumExp: [(fn.logsumexp(A, 1), A), (fn.logsumexp(A, 0), A)],
        fn.Softmax: [(fn.softmax(A, 1), A), (fn.softmax(A, 0), A)],
        sp.matrices.expressions.matexpr.MatrixElement: [
            (A[1, 2] * s + A[0, 0] ** 2, A),
            ((r * B * c)[0, 0], B),
        ],
        fn.Entry: [
            (fn.scalar(r * B * c) ** 2, B),
            (fn.entry(A * B, 1, 0) * fn.entry(A, 0, 2), A),
        ],
    }
)


def _explicit(expr):
    mats = {m: m.as_explicit() for m in expr.atoms(sp.MatrixSymbol)}
    return expr.xreplace(mats).doit()


def _entries(m):
    return [m[i, j] for i in range(m.rows) for j in range(m.cols)]


def _point(rng, *exprs):
    """Random values in [0.5, 1.5] for every matrix entry and scalar symbol, drawn in a
    fixed order (a set's order changes with Python's hash seed); 2 more on the diagonal
    of a square matrix, so that inverses are well conditioned."""
    atoms = set()
    for e in exprs:
        atoms |= e.atoms(sp.matrices.expressions.matexpr.MatrixElement)
        atoms |= {a for a in e.atoms(sp.Symbol)}
    point = {}
    for a in sorted(atoms, key=sp.default_sort_key):
        value = rng.uniform(0.5, 1.5)
        if isinstance(a, sp.matrices.expressions.matexpr.MatrixElement):
            M, i, j = a.args
            if M.shape[0] == M.shape[1] and i == j:
                value += 2.0
        point[a] = sp.Float(value)
    return point


def test_every_rule_has_an_example():
    assert set(RULES) <= set(RULE_EXAMPLES)


@pytest.mark.parametrize(
    "cls, F, Z",
    [(cls, F, Z) for cls, cases in RULE_EXAMPLES.items() for F, Z in cases],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_rule_matches_the_element_wise_expansion(cls, F, Z):
    # The lecture's proof of Claim 16.2, for every rule: with phi = sum_ij Lambda_ij F_ij
    # written entry by entry, the pullback to Z is d phi / d Z_pq.
    assert any(isinstance(e, cls) for e in sp.preorder_traversal(F))
    if isinstance(F, sp.MatrixExpr):
        lam = sp.MatrixSymbol("Lambda", *F.shape)
        phi = sum(a * b for a, b in zip(_entries(lam.as_explicit()), _entries(_explicit(F))))
    else:
        lam = sp.Symbol("lam", real=True)
        phi = lam * _explicit(F)
    pulled = pullback(F, lam, Z)
    point = _point(np.random.default_rng(1), phi, _explicit(pulled))
    if isinstance(Z, sp.MatrixSymbol):
        expected = [sp.diff(phi, e) for e in _entries(Z.as_explicit())]
        got = _entries(_explicit(pulled)) if isinstance(pulled, sp.MatrixExpr) else None
        assert got is not None and len(got) == len(expected)
    else:
        expected, got = [sp.diff(phi, Z)], [_explicit(pulled)]
    for e, g in zip(expected, got):
        assert float(e.xreplace(point)) == pytest.approx(float(g.xreplace(point)), rel=1e-10)


def test_a_class_without_a_rule_is_named():
    K = sp.kronecker_product(S, S)
    with pytest.raises(adjoint.AdjointError, match="KroneckerProduct"):
        pullback(K, sp.MatrixSymbol("L", *K.shape), S)


def test_claim_16_2_derived_by_the_package():
    # C = A B with symbolic shapes: Lambda_A = Lambda_C B^T and Lambda_B = A^T Lambda_C.
    m, n, d = sp.symbols("m n d", integer=True, positive=True)
    g = adjoint.Graph()
    A_ = g.input("A", shape=(m, n))
    B_ = g.input("B", shape=(n, d))
    C_ = g.define("C", A_ * B_)
    g.define("f", adjoint.frobenius2(C_))
    lam_C = g.multiplier(C_)
    assert lam_C.shape == (m, d)
    gradient = {c.wrt: c.rhs for c in g.stationarity().conditions("gradient")}
    assert gradient[A_] == lam_C * B_.T
    assert gradient[B_] == A_.T * lam_C
    assert sp.latex(lam_C) == r"\Lambda_{C}"


def test_sympy_agrees_where_its_matrix_calculus_is_right():
    for F, Z in [(A * B, A), (A * B, B), (A.T * C, C), (A + C, A)]:
        lam = sp.MatrixSymbol("L", *F.shape)
        ours = pullback(F, lam, Z)
        theirs = sp.diff(sp.Trace(lam.T * F), Z)
        assert sp.simplify(_explicit(ours) - _explicit(theirs)) == sp.zeros(*Z.shape)


def _loss(X, y, W1, W2):
    return float(np.sum((np.tanh(X @ W1) @ W2 - y) ** 2))


def _fd(fn, W, h=1e-6):
    G = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        E = np.zeros_like(W)
        E[idx] = h
        G[idx] = (fn(W + E) - fn(W - E)) / (2 * h)
    return G


@given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**16))
def test_two_layer_gradient_matches_central_differences(n, d, seed):
    g, point = two_layer_net(n=n, d=d, seed=seed)
    X, y, W1, W2 = (point[g.node(name).symbol] for name in ("X", "y", "W1", "W2"))
    sol = g.solve(point)
    assert sol.output == pytest.approx(_loss(X, y, W1, W2), rel=1e-12)
    G1 = _fd(lambda w: _loss(X, y, w, W2), W1)
    G2 = _fd(lambda w: _loss(X, y, W1, w), W2)
    scale = max(1.0, np.max(np.abs(G1)), np.max(np.abs(G2)))
    assert np.max(np.abs(sol.gradient["W1"] - G1)) / scale < 1e-6
    assert np.max(np.abs(sol.gradient["W2"] - G2)) / scale < 1e-6
    assert sol.gradient["W1"].shape == (d, d)


def test_stationarity_is_the_literal_derivative_of_the_frobenius_lagrangian():
    # At tiny concrete shapes, L is expanded entry by entry and differentiated by
    # each entry of each node; that must be the matrix-form residual, entry by entry.
    g, _ = two_layer_net()
    sizes = {d: 2 for d in g._dims.values()}
    L = g.lagrangian().xreplace(sizes)
    L = _explicit(L.xreplace({m: m.xreplace(sizes) for m in L.atoms(sp.MatrixSymbol)}))
    rng = np.random.default_rng(0)
    for c in g.stationarity().conditions():
        residual = c.residual.xreplace(sizes)
        residual = residual.xreplace(
            {m: m.xreplace(sizes) for m in residual.atoms(sp.MatrixSymbol)}
        )
        wrt = c.wrt.xreplace(sizes) if isinstance(c.wrt, sp.MatrixSymbol) else c.wrt
        if isinstance(wrt, sp.MatrixSymbol):
            pairs = zip(_entries(wrt.as_explicit()), _entries(_explicit(residual)))
        else:
            pairs = [(wrt, _explicit(residual))]
        for entry, res in pairs:
            lhs = sp.diff(L, entry)
            point = _point(rng, lhs, res)
            assert float(lhs.xreplace(point)) == pytest.approx(float(res.xreplace(point)))


def test_symbolic_solve_gives_matrix_expressions():
    g, _ = two_layer_net()
    sym = g.solve()
    X, W1, W2 = (g.node(n).symbol for n in ("X", "W1", "W2"))
    assert isinstance(sym.gradient[W1], sp.MatrixExpr)
    assert sym.gradient[W1].shape == W1.shape
    assert sym.gradient[W2].shape == W2.shape
    assert sym.gradient[W1].has(X.T)


def test_gradient_descent_on_the_two_layer_net_lowers_the_loss_tenfold():
    g, point = two_layer_net(n=300, d=4, seed=3)
    W1, W2 = g.inputs
    values = dict(point)
    first = g.solve(values).output
    for _ in range(400):
        sol = g.solve(values)
        values[W1] = values[W1] - 0.5 / 300 * sol.gradient[W1]
        values[W2] = values[W2] - 0.5 / 300 * sol.gradient[W2]
    assert g.solve(values).output < first / 10


def test_scalar_and_matrix_nodes_mixed():
    g = adjoint.Graph()
    t = g.input("t")
    M = g.input("M", shape=(2, 2))
    P = g.define("P", t * M)
    q = g.define("q", adjoint.sum_entries(P) + sp.sin(t))
    g.define("f", q**2 + sp.Trace(P.T * M))
    t0, M0 = 0.7, np.array([[1.0, 2.0], [-0.5, 0.25]])

    def f(t, M):
        q = np.sum(t * M) + np.sin(t)
        return q**2 + np.trace((t * M).T @ M)

    sol = g.solve({t: t0, M: M0})
    h = 1e-6
    assert sol.gradient[t] == pytest.approx((f(t0 + h, M0) - f(t0 - h, M0)) / (2 * h), rel=1e-7)
    np.testing.assert_allclose(sol.gradient[M], _fd(lambda m: f(t0, m), M0), rtol=1e-6)
    assert g.verify().ok


@pytest.mark.parametrize(
    "values, error, words",
    [
        ({"X": np.ones((4, 3)), "y": np.ones((5, 1))}, adjoint.ShapeError, ["y", "n x 1", "4"]),
        ({"X": np.ones((4, 3)), "y": np.ones(4)}, adjoint.ShapeError, ["y", "(4,)", "column"]),
        ({"X": np.ones((4, 3, 1)), "y": np.ones((4, 1))}, adjoint.ShapeError, ["X"]),
        ({"X": 1.0, "y": np.ones((4, 1))}, adjoint.ShapeError, ["X"]),
        ({"X": [["a"]], "y": np.ones((4, 1))}, adjoint.BadValueError, ["X"]),
        ({"X": np.full((4, 3), np.inf), "y": np.ones((4, 1))}, adjoint.BadValueError, ["X"]),
    ],
)
def test_shape_errors_name_the_node_and_both_shapes(values, error, words):
    g, point = two_layer_net()
    W1, W2 = g.inputs
    with pytest.raises(error) as info:
        g.solve({**values, "W1": point[W1], "W2": point[W2]})
    for word in words:
        assert word in str(info.value)


def test_matrix_output_and_explicit_matrices_are_errors():
    g = adjoint.Graph()
    M = g.input("M", shape=(2, 2))
    g.define("N", M * M)
    with pytest.raises(adjoint.ShapeError, match="scalar"):
        g.stationarity()
    with pytest.raises(adjoint.ExpressionError, match="explicit"):
        g.define("E", sp.Matrix([[1, 2]]))
    with pytest.raises(adjoint.ShapeError):
        g.define(sp.MatrixSymbol("Q", 3, 3), M * M)
    with pytest.raises(adjoint.ShapeError):
        g.define("q", sp.Trace(sp.MatrixSymbol("M", 3, 3)))


@pytest.mark.parametrize(
    "fn, numpy_fn, numpy_derivative",
    [
        (sp.exp, np.exp, np.exp),
        (
            lambda t: 1 / (1 + sp.exp(-t)),
            lambda v: 1 / (1 + np.exp(-v)),
            lambda v: np.exp(-v) / (1 + np.exp(-v)) ** 2,
        ),
        (lambda t: sp.Max(t, 0), lambda v: np.maximum(v, 0), lambda v: (v > 0) * 1.0),
        (lambda t: sp.log(1 + t**2), lambda v: np.log(1 + v**2), lambda v: 2 * v / (1 + v**2)),
    ],
    ids=["exp", "sigmoid", "relu", "log1p-square"],
)
def test_element_wise_functions(fn, numpy_fn, numpy_derivative):
    g = adjoint.Graph()
    M = g.input("M", shape=(2, 3))
    F = g.define("F", M.applyfunc(fn))
    g.define("f", adjoint.sum_entries(F))
    M0 = np.array([[0.5, -1.0, 2.0], [-0.25, 1.5, -2.0]])
    sol = g.solve({M: M0})
    assert sol.output == pytest.approx(np.sum(numpy_fn(M0)))
    np.testing.assert_allclose(sol.gradient[M], numpy_derivative(M0), rtol=1e-12)


def test_max_at_an_exact_zero_takes_the_convention_entry_by_entry_or_nan_when_asked():
    g = adjoint.Graph()
    M = g.input("M", shape=(1, 2))
    F = g.define("F", M.applyfunc(lambda t: sp.Max(t, 0)))
    g.define("f", adjoint.sum_entries(F))
    sol = g.solve({M: np.array([[0.0, 3.0]])})
    assert list(sol.gradient[M][0]) == [0.5, 1.0]  # Heaviside(0) = 1/2, as jnp.maximum
    assert sol.kinks[0].entries == ((0, 0),)
    grad = g.solve({M: np.array([[0.0, 3.0]])}, kinks="nan").gradient[M]
    assert np.isnan(grad[0, 0]) and grad[0, 1] == 1.0
    assert "nan" not in str(g.stationarity())  # the marker does not clutter the display


def test_from_expr_splits_the_two_layer_loss_and_shares_the_residual():
    g0, point = two_layer_net()
    X, y, W1, W2 = (g0.node(name).symbol for name in ("X", "y", "W1", "W2"))
    R = (X * W1).applyfunc(sp.tanh) * W2 - y
    g = adjoint.Graph.from_expr(adjoint.frobenius2(R), inputs=[W1, W2], constants=[X, y])
    (residual,) = [z for z in g.defined if len(g.children(z)) == 2]  # R read by R^T and R^T R
    assert residual.shape == (y.shape[0], 1)
    a, b = g.solve(point), g0.solve(point)
    for w in (W1, W2):
        np.testing.assert_allclose(a.gradient[w], b.gradient[w], rtol=1e-12)


def test_from_equations_with_matrix_nodes_in_any_order():
    n, d = sp.symbols("n d", integer=True, positive=True)
    X, W, H = sp.MatrixSymbol("X", n, d), sp.MatrixSymbol("W", d, d), sp.MatrixSymbol("H", n, d)
    f = sp.Symbol("f", real=True)
    g = adjoint.Graph.from_equations(
        [sp.Eq(f, adjoint.frobenius2(H)), sp.Eq(H, X * W)], inputs=[W], constants=[X]
    )
    assert g.defined == (H, f)
    assert {c.wrt: c.rhs for c in g.stationarity().conditions("gradient")}[W] == (
        X.T * g.multiplier(H)
    )


def test_a_one_by_one_output_is_minimised_as_its_entry():
    """x.T*A*x is a 1 x 1 matrix: the output it names is its entry (the Matrix
    Cookbook: d(x^T A x)/dx = (A + A^T) x, d/dA = x x^T)."""
    g = adjoint.Graph()
    x, A = g.input("x", shape=(3, 1)), g.input("A", shape=(3, 3))
    g.define("J", x.T * A * x)
    rng = np.random.default_rng(0)
    at = {x: rng.normal(size=(3, 1)), A: rng.normal(size=(3, 3))}
    sol = g.solve(at)
    np.testing.assert_allclose(sol.gradient[x], (at[A] + at[A].T) @ at[x], rtol=1e-13)
    np.testing.assert_allclose(sol.gradient[A], at[x] @ at[x].T, rtol=1e-13)
    value, (dx, dA) = g.compile()(x=at[x], A=at[A])
    assert np.asarray(value).item() == pytest.approx((at[x].T @ at[A] @ at[x]).item(), rel=1e-13)
    np.testing.assert_allclose(dx, sol.gradient[x], rtol=1e-13)
    np.testing.assert_allclose(dA, sol.gradient[A], rtol=1e-13)
    grading = adjoint.check_adjoints(g, {"J": "1", "x": "(A + A.T)*x", "A": "x*x.T"}, seed=0)
    assert grading.ok, grading
    wrong = adjoint.check_adjoints(g, {"J": "1", "x": "A*x", "A": "x*x.T"}, seed=0)
    assert [str(w.node) for w in wrong.wrong] == ["x"]
