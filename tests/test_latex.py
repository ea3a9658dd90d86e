"""Every piece of LaTeX the package emits is accepted by a real renderer (KaTeX, strict).

Maths is rendered by KaTeX through node (see rendering.py); the prose of a LaTeX
document (titles and notes) is rendered as ``\\text{...}`` and checked for LaTeX's
text-mode specials by rendering.text_errors, which is stricter than KaTeX's
``\\text``. Maths must also be ASCII: KaTeX takes a Greek letter typed as itself, but
pdflatex does not.
"""

import keyword
import re
import unicodedata

import numpy as np
import pytest
import rendering
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from strategies import dags

import adjoint
from adjoint.cli import main
from adjoint.core.display import float_latex, latex, number_latex
from adjoint.examples import EXAMPLES, fan_out, lecture_dag, two_layer_net, warm_up


def check(katex, items):
    """Render ``(label, source, display)`` items in one batch; fail with every error."""
    errors = katex.errors([(src, display) for _, src, display in items])
    bad = [f"{label}: {err}\n    {src[:300]}" for (label, src, _), err in zip(items, errors) if err]
    bad += [f"{label}: non-ASCII\n    {src[:300]}" for label, src, _ in items if not src.isascii()]
    assert not bad, f"{len(bad)} of {len(items)} pieces of LaTeX do not render:\n" + "\n".join(bad)


def repr_latex(label, obj):
    return [(label, *rendering.from_repr_latex(obj._repr_latex_()))]


def markdown(label, md):
    return [(label, src, display) for src, display in rendering.from_markdown(md)]


def latex_document(label, tex):
    """The display maths of a LaTeX body; its prose as ``\\text{...}`` and its inline
    maths; and a failure for each text-mode special the prose leaves bare."""
    maths, prose = rendering.from_latex_document(tex)
    items = [(label, src, display) for src, display in maths]
    for part in prose:
        errors, inline = rendering.text_errors(part)
        assert not errors, f"{label}: {part!r} is not LaTeX text: {errors}"
        items.append((f"{label} prose", rf"\text{{{part}}}", False))
        items += [(f"{label} prose", src, display) for src, display in inline]
    return items


def explanation(label, e):
    return markdown(f"{label} explain markdown", e.to_markdown()) + latex_document(
        f"{label} explain latex", e.to_latex()
    )


def everything(g, point, symbolic=True):
    """Every piece of LaTeX the package shows for ``g``: its rich displays, the
    Lagrangian, the derivation, the trace table and the adjoint system."""
    items = repr_latex("graph", g) + repr_latex("stationarity", g.stationarity())
    items += repr_latex("solution", g.solve(point))
    items.append(("lagrangian", latex(g.lagrangian()), True))
    items += explanation("numeric", g.explain(point))
    scalar = all(g.node(z).shape is None for z in g.nodes + g.constants)
    if scalar:
        items += markdown("trace", g.trace(point)._repr_markdown_())
        items += repr_latex("adjoint system at a point", g.adjoint_system(point))
    if symbolic:
        items += repr_latex("symbolic solution", g.solve())
        items += repr_latex("solution in the lecture's terms", g.solve(expand=False))
        items += explanation("symbolic", g.explain())
        if scalar:
            items += repr_latex("adjoint system", g.adjoint_system())
    return items


# -- the checker can fail ----------------------------------------------------------


def test_katex_rejects_what_latex_rejects(katex):
    bad = [r"x_", r"\frac{1}", r"\text{a_b}", r"\text{50% off}", r"\paragraph{x}", r"\foo"]
    bad += [r"\text{α}", r"\begin{aligned} a \end{array}", r"\left( x"]
    assert all(katex.errors(bad)), list(zip(bad, katex.errors(bad)))
    good = [r"\lambda_{z_{1}}", r"\Lambda_{H}", r"\tanh_{\circ}\left(H\right)", r"\text{a\_b}"]
    assert katex.errors(good) == [None] * len(good)
    assert katex.version == rendering.KATEX_VERSION


@pytest.mark.parametrize(
    "text, bad",
    [
        ("z_i = f_i(z_alpha(i))", "'_'"),
        ("dL/dz_j", "'_'"),
        ("x^2", "'^'"),
        ("a & b", "'&'"),
        ("50%", "'%'"),
        ("#1", "'#'"),
        ("a~b", "'~'"),
        ("a < b", "'<'"),
        ("a | b", "'|'"),
        ("{a", "unclosed"),
        ("a}", "unbalanced"),
        ("$x", "unclosed"),
        (r"\textbf{a}", r"\textbf"),
        ("λ", "non-ASCII"),
    ],
)
def test_text_errors_names_each_special(text, bad):
    errors, _ = rendering.text_errors(text)
    assert errors and bad in " ".join(errors)


def test_text_errors_passes_escapes_and_inline_maths():
    text = r"a\_b \& 50\% \# \{x\} \textasciitilde{} \texttt{g.verify()} and $z_i = f_i$"
    errors, maths = rendering.text_errors(text)
    assert errors == [] and maths == [("z_i = f_i", False)]


# -- what the package emits --------------------------------------------------------


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_the_lecture_examples_render(katex, name):
    g, point = EXAMPLES[name]()
    check(katex, everything(g, point))


@pytest.mark.parametrize(
    "expr",
    [
        "sin(x*y) + x*y",
        "exp(-x**2)/(1 + y**2)",
        "sqrt(x**2 + 1)*atan2(y, x)",
        "log(1 + exp(x)) - Abs(y)",
        "Max(x, y) + tanh(x)*cos(y)",
        "x**y + 1/(x - y)",
    ],
)
def test_graphs_from_expressions_render(katex, expr):
    g = adjoint.Graph.from_expr(adjoint.parse(expr))
    check(katex, everything(g, {s: 0.7 + 0.2 * k for k, s in enumerate(g.inputs)}))


@given(dags(max_nodes=6))
def test_random_graphs_render(katex, g):
    check(katex, everything(g, {x: 0.3 for x in g.inputs}, symbolic=False))


@pytest.mark.parametrize("fmt", ["latex", "markdown"])
@pytest.mark.parametrize("at", [None, "x=1.5,y=-2"])
def test_the_command_line_output_renders(katex, capsys, fmt, at):
    argv = ["explain", "sin(x*y) + x**2", "--format", fmt] + (["--at", at] if at else [])
    assert main(argv) == 0
    out = capsys.readouterr().out
    items = latex_document("cli", out) if fmt == "latex" else markdown("cli", out)
    assert len(items) > 10
    check(katex, items)


def test_latex_prose_is_latex_text_with_its_maths_typeset():
    """The known failure: bare underscores in the notes and titles of to_latex."""
    g, point = fan_out()
    tex = g.explain(point).to_latex()
    assert r"constraints $z_i = f_i(z_{\alpha(i)})$, one per node." in tex
    assert r"\paragraph{Theorem 16.1: $\lambda_j = \partial z_n / \partial z_j$}" in tex
    _, prose = rendering.from_latex_document(tex)
    assert len(prose) >= 10 and all(rendering.text_errors(p)[0] == [] for p in prose)
    md = g.explain(point).to_markdown()
    assert md.startswith("### Backpropagation, step by step, for the output $c = b^{2}$")


def test_a_long_graph_names_the_checks_as_code(katex):
    g, point = adjoint.examples.random_dag(70)
    e = g.explain(point)
    assert r"run \texttt{g.verify()} or \texttt{adjoint.check\_gradient(g, at)}" in e.to_latex()
    assert "run `g.verify()` or `adjoint.check_gradient(g, at)`" in e.to_markdown()
    check(katex, latex_document("long", e.to_latex()))


# -- names -------------------------------------------------------------------------


def named_graph(a, b, c, out="f_out"):
    g = adjoint.Graph()
    x, y, z = g.input(a), g.input(b), g.input(c)
    h = g.define(f"{a}_h", x * sp.sin(y) + z)
    g.define(out, h**2 + x)
    return g, {x: 0.5, y: 1.0, z: 2.0}


@pytest.mark.parametrize(
    "names",
    [
        ("W_1", "z10", "x_0_1"),
        ("alpha", "beta", "Gamma"),
        ("omega_max", "rho_t1", "nu"),
        ("x__2", "y_", "q"),
        ("xhat", "Omega", "Alpha"),  # Lambda prints as a multiplier does: refused
        ("θ", "é", "中"),  # identifiers too, so accepted as names
    ],
)
def test_node_names_render(katex, names):
    g, point = named_graph(*names)
    check(katex, everything(g, point))


@given(
    st.lists(
        st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,5}|[^\W\d]\w{0,3}", fullmatch=True).filter(
            lambda s: (
                s.isidentifier()
                and not keyword.iskeyword(s)
                and not s.startswith(("lambda_", "Lambda_", "_"))
                and unicodedata.normalize("NFKC", s) == s
            )
        ),
        min_size=3,
        max_size=3,
        unique=True,
    ).filter(lambda names: names[0] + "_h" not in names and "out" not in names)
)
def test_any_name_renders_with_its_multiplier(katex, names):
    g, point = named_graph(*names, out="out")
    items = [(str(z), latex(z), True) for z in g.nodes]
    items += [(f"multiplier of {z}", latex(g.multiplier(z)), True) for z in g.nodes]
    items += latex_document("explain", g.explain(point).to_latex())
    check(katex, items)
    for z in g.nodes:  # a multiplier shows its node's own symbol
        assert latex(g.multiplier(z)) == rf"\lambda_{{{latex(z)}}}"


def test_multiplier_symbols():
    g, _ = lecture_dag()
    assert latex(g.multiplier(g.defined[0])) == r"\lambda_{z_{1}}"
    tl, _ = two_layer_net()
    assert latex(tl.multiplier(tl.defined[0])) == r"\Lambda_{H}"


def test_symbols_with_latex_specials_in_their_names_render(katex):
    """Graphs refuse such names; any other sympy expression shown (a student's formula)
    may hold them, and they are shown, never read as markup."""
    names = ["x%", "a b", "x{1}", "#", "&", r"\alpha", "x~y", "x$", "_q", "^"]
    items = []
    for name in names:
        with pytest.raises(adjoint.AdjointError):
            adjoint.Graph().input(sp.Symbol(name))
        items.append((name, latex(sp.Symbol(name) ** 2 + 1), True))
    check(katex, items)
    assert latex(sp.Symbol("x%")) == r"x\%" and latex(sp.Symbol("é_1")) == r"\acute{e}_{1}"


# -- matrices, element-wise maps, user operations, numbers ---------------------------


def test_matrix_graph_with_an_elementwise_map_renders(katex):
    n = sp.Symbol("n", integer=True, positive=True)
    g = adjoint.Graph()
    X = g.input("X_0", shape=(n, 2))
    W = g.input("W", shape=(2, 2))
    H = g.define("H_1", X * W)
    A = g.define("A", H.applyfunc(lambda t: t**2 + 1))
    g.define("f", adjoint.frobenius2(A))
    rng = np.random.default_rng(0)
    point = {X: rng.standard_normal((4, 2)), W: rng.standard_normal((2, 2))}
    items = everything(g, point)
    assert any(r"\mapsto" in src for _, src, _ in items)
    check(katex, items)


def test_a_user_operation_renders(katex):
    op = adjoint.elementary("softclip", np.tanh, [lambda a: 1 - sp.tanh(a) ** 2])
    g = adjoint.Graph()
    x = g.input("x")
    g.define("f", op(x) * 2)
    check(katex, everything(g, {x: 0.3}))


def test_numbers_are_typeset_as_numbers(katex):
    assert float_latex(1.5e-7) == r"1.5 \times 10^{-7}"
    assert float_latex(-2.5e20) == r"-2.5 \times 10^{20}"
    assert float_latex(0.25) == "0.25" and float_latex(float("nan")) == r"\text{nan}"
    assert number_latex(np.ones((3, 2))) == r"3 \times 2\ \text{array},\ \|\cdot\| = 2.449"
    g, _ = warm_up()
    big = g.explain({g.inputs[0]: 1e6})  # z = x**2 = 10^12
    items = explanation("big", big) + repr_latex("big", g.solve({g.inputs[0]: 1e6}))
    assert any(r"10^{12}" in src for _, src, _ in items)
    check(katex, items)
    values = [float("inf"), -float("inf"), float("nan"), 1e-300, 123456789.0]
    check(katex, [(repr(v), float_latex(v), True) for v in values])


@pytest.mark.parametrize("build", [two_layer_net, lecture_dag])
def test_the_trace_table_keeps_its_columns(katex, build):
    g, point = build()
    md = g.trace(point)._repr_markdown_()
    rows = md.splitlines()
    cells = [len(re.split(r"(?<!\\)\|", row)) for row in rows]
    assert cells == [7] * len(rows)  # five cells between six bars
    check(katex, markdown("trace", md))


@pytest.mark.parametrize(
    ("expr", "at"), [("log(x) + x", -1.0), ("Abs(x) + x", 0.0), ("sqrt(x)*y", -2.0)]
)
def test_undefined_nodes_and_kinks_render(katex, expr, at):
    g = adjoint.Graph.from_expr(adjoint.parse(expr))
    point = {s: at for s in g.inputs}
    sol = g.solve(point)
    assert sol.undefined or sol.kinks
    check(katex, everything(g, point, symbolic=False))


def test_the_adjoint_system_over_matrix_entries_renders(katex):
    g, point = two_layer_net(n=2, d=2)
    check(katex, repr_latex("entry-wise adjoint system", g.adjoint_system(point)))


def test_graphs_with_implicit_nodes_render(katex):
    g = adjoint.Graph()
    x, a = g.input("x"), g.input("a")
    u, v = g.implicit(["u", "v"], ["u - a*cos(v) - x", "v - sin(u*a)/2"])
    y = g.implicit("y", "y**3 + y - u")
    g.define("f", u**2 * v + y)
    point = {x: 0.3, a: 0.7}
    items = repr_latex("graph", g) + repr_latex("stationarity", g.stationarity())
    items += repr_latex("solution", g.solve(point))
    items.append(("lagrangian", latex(g.lagrangian()), True))
    items += repr_latex("second order", g.second_order())
    items += explanation("numeric", g.explain(point, direction={x: 1.0, a: -0.5}))
    items += explanation("symbolic", g.explain())
    items += repr_latex("symbolic solution", g.solve())
    items += repr_latex("solution in the lecture's terms", g.solve(expand=False))
    check(katex, items)
