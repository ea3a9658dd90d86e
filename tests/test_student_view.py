"""What a student sees (issue 15, second pass): the point stated, the right array
blamed, runnable source, ``sol[x]``, undefined nodes shown, the lecture's own terms
for symbolic solutions, and a self-contained HTML page."""

import math
import re
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
import sympy as sp

import adjoint
from adjoint.cli import demo
from adjoint.errors import DuplicateNameError, ShapeError
from adjoint.examples import lecture_dag, two_layer_net, warm_up

x, y = sp.symbols("x y", real=True)


# -- 1. the point, the seed, the duplicate name --------------------------------------


def test_demo_and_explain_state_the_point():
    out = demo()
    assert "at x = 1.5" in out
    assert "at x = 1.5, y = -2" in str(lecture_dag()[0].explain(lecture_dag()[1]))
    assert "at " not in str(lecture_dag()[0].explain()).split("\n")[0]  # symbolic: no point


def test_the_seed_is_written_once():
    out = demo()
    assert not re.search(r"lambda_\w+ = 1 = 1\b", out)
    g, at = warm_up()
    lines = str(g.explain(at)).splitlines()
    assert "  lambda_f = 1" in lines


@pytest.mark.parametrize(
    ("first", "second", "what"),
    [("define", "input", "a defined node"), ("input", "input", "an input")],
)
def test_duplicate_name_message_reads_right(first, second, what):
    g = adjoint.Graph()
    a = g.input("a")
    if first == "define":
        g.define("b", a + 1)
    else:
        g.input("b")
    with pytest.raises(DuplicateNameError) as info:
        g.input("b")
    assert f"already declared (as {what})" in str(info.value)


def test_duplicate_constant_message():
    g = adjoint.Graph()
    g.constant("c")
    with pytest.raises(DuplicateNameError, match=r"as a constant\)"):
        g.input("c")


# -- 2. the array that disagrees is the one blamed ---------------------------------


def test_wrong_shape_blames_the_array_that_disagrees():
    g, point = two_layer_net(n=5, d=3)
    W1 = g.lookup("W1")
    bad = {**point, W1: np.ones((4, 4))}
    with pytest.raises(ShapeError) as info:
        g.solve(bad)
    message = str(info.value)
    assert info.value.node == W1
    assert message.startswith("W1 ")
    # every binding it conflicts with: d = 3 from X and from W2
    assert "X" in message and "W2" in message and "d = 3" in message


def test_wrong_shape_blames_the_same_array_in_compiled_programs():
    g, point = two_layer_net(n=5, d=3)
    f = g.compile()
    bad = {k.name: v for k, v in point.items()}
    bad["W1"] = np.ones((4, 4))
    with pytest.raises(ShapeError) as info:
        f(**bad)
    assert str(info.value).startswith("W1 ") and "W2" in str(info.value)


def test_a_tie_names_each_side():
    g = adjoint.Graph()
    n = sp.Symbol("n", integer=True, positive=True)
    A = g.input("A", shape=(n, 1))
    B = g.input("B", shape=(n, 1))
    g.define("f", adjoint.frobenius2(A + B))
    with pytest.raises(ShapeError) as info:
        g.solve({A: np.ones((2, 1)), B: np.ones((3, 1))})
    message = str(info.value)
    assert "n = 2" in message and "n = 3" in message


def test_agreeing_shapes_still_bind():
    g, point = two_layer_net(n=5, d=3)
    sol = g.solve(point)
    assert np.shape(sol.gradient["W1"]) == (3, 3)


# -- 4. source() runs as a file -------------------------------------------------------


def _run_source(g, tmp_path, call: str, backend="numpy") -> str:
    path = tmp_path / "program.py"
    path.write_text(g.source(backend=backend) + f"\nprint(repr({call}))\n")
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_source_is_a_complete_program(tmp_path):
    g, at = lecture_dag()
    out = _run_source(g, tmp_path, "f_and_gradient(1.5, -2.0)")
    value, (gx, gy) = eval(out, {"np": np})
    sol = g.solve(at)
    assert value == pytest.approx(sol.output, rel=1e-12)
    assert (gx, gy) == pytest.approx((sol.gradient["x"], sol.gradient["y"]), rel=1e-12)


def test_matrix_source_is_a_complete_program(tmp_path):
    g, at = two_layer_net(n=4, d=2)
    names = ("W1", "W2", "X", "y")
    lines = [f"{p} = numpy.array({np.asarray(at[g.lookup(p)]).tolist()!r})" for p in names]
    path = tmp_path / "net.py"
    path.write_text(
        g.source()
        + "\n"
        + "\n".join(lines)
        + "\nvalue, grads = f_and_gradient(W1, W2, X, y)\n"
        + "print(repr([float(value), [g.tolist() for g in grads]]))\n"
    )
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    value, (gw1, gw2) = eval(done.stdout)
    sol = g.solve(at)
    assert value == pytest.approx(sol.output, rel=1e-12)
    np.testing.assert_allclose(gw1, sol.gradient["W1"], rtol=1e-12)
    np.testing.assert_allclose(gw2, sol.gradient["W2"], rtol=1e-12)


def test_jax_source_is_a_complete_program(tmp_path):
    pytest.importorskip("jax")
    g, at = lecture_dag()
    src = g.source(backend="jax")
    assert "import jax" in src
    out = _run_source(
        g,
        tmp_path,
        "[float(v) for v in (lambda r: (r[0], *r[1]))(f_and_gradient(1.5, -2.0))]",
        backend="jax",
    )
    value, gx, gy = eval(out)
    sol = g.solve(at)
    assert value == pytest.approx(sol.output, rel=1e-6)
    assert (gx, gy) == pytest.approx((sol.gradient["x"], sol.gradient["y"]), rel=1e-6)


# -- 5. sol[x] --------------------------------------------------------------------------


def test_solution_indexed_by_a_node_is_its_value():
    g, at = lecture_dag()
    sol = g.solve(at)
    z1 = g.lookup("z1")
    assert sol[z1] == pytest.approx(1.5 * -2.0)  # z1 = x y, by hand
    assert sol["x"] == 1.5 and sol[sp.Symbol("x")] == 1.5
    assert sol["z2"] == pytest.approx(1.5 + math.sin(-3.0))
    with pytest.raises(KeyError, match="not a node"):
        sol["nope"]


# -- 6. undefined nodes are shown, never checked "ok" ---------------------------------


def test_explain_never_says_ok_over_a_nan():
    g = adjoint.Graph.from_expr(sp.log(x) + x)
    text = str(g.explain({x: -1.0}))
    assert not re.search(r"^\s*ok\b", text, flags=re.M)
    assert "outside the domain" in text
    assert "holds" not in text


def test_verify_fails_where_the_output_is_nan():
    g = adjoint.Graph.from_expr(sp.log(x) + x)
    report = g.verify({x: -1.0})
    assert not any(c.ok for c in report.checks)


def test_explain_names_a_kink():
    g = adjoint.Graph.from_expr(abs(x) + x)
    text = str(g.explain({x: 0.0}))
    assert "kink" in text
    assert not re.search(r"^\s*ok\s+lambda_x", text, flags=re.M)


def test_drawing_marks_undefined_nodes():
    import matplotlib

    matplotlib.use("Agg")
    g = adjoint.Graph.from_expr(sp.log(x) + x)
    sol = g.solve({x: -1.0})
    ax = g.draw(sol)
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "outside the domain" in texts
    hatched = [c for c in ax.collections if c.get_hatch()]
    assert len(hatched) == 1 and len(hatched[0].get_offsets()) == len(sol.undefined)
    import matplotlib.pyplot as plt

    plt.close(ax.figure)
    dot = g.to_dot(sol)
    assert dot.count('style="filled,dashed"') == len(sol.undefined)
    assert "outside the domain" in dot
    fine = g.solve({x: 2.0})
    assert "dashed" not in g.to_dot(fine).split("->")[0]
    ax = g.draw(fine)
    assert not [c for c in ax.collections if c.get_hatch()]
    plt.close(ax.figure)


def test_solution_is_not_a_sequence():
    g, at = lecture_dag()
    sol = g.solve(at)
    assert "z1" in sol and "nope" not in sol
    with pytest.raises(TypeError):
        list(sol)


def test_one_array_that_disagrees_with_itself():
    g = adjoint.Graph()
    n = sp.Symbol("n", integer=True, positive=True)
    A = g.input("A", shape=(n, n))
    g.define("f", adjoint.frobenius2(A))
    with pytest.raises(ShapeError, match="n cannot be both 2 and 3"):
        g.solve({A: np.ones((2, 3))})
    with pytest.raises(ShapeError, match="n cannot be both 2 and 3"):
        g.compile()(np.ones((2, 3)))


# -- 7. symbolic solutions in the lecture's own terms ----------------------------------


def _recurrence(depth: int):
    g = adjoint.Graph()
    z = g.input("x")
    a = g.input("a")
    for k in range(depth):
        z = g.define(f"z{k}", a * sp.sin(z) + z**2)
    return g


def test_lecture_terms_keep_each_multiplier_short():
    g = _recurrence(8)
    terms = g.solve(expand=False)
    expanded = g.solve()
    short = sum(len(str(v)) for v in terms.adjoints.values())
    long = sum(len(str(v)) for v in expanded.adjoints.values())
    assert short < 600 and long > 20 * short, (short, long)
    names = set(g.inputs) | set(g.defined) | {g.multiplier(z) for z in g.nodes}
    for z in g.nodes:
        assert terms.adjoints[z].free_symbols <= names
    for z in g.defined:
        assert terms.values[z] == g.expr(z)  # f_i of its parents, nothing composed
    z3 = g.lookup("z3")
    lam = {g.multiplier(z) for z in g.children(z3)}
    assert terms.adjoints[z3].free_symbols & lam  # read from its readers' multipliers


def test_lecture_terms_evaluate_to_the_gradient():
    """Back-substituting numbers into the lecture's terms gives sympy's own derivative."""
    g = _recurrence(4)
    terms = g.solve(expand=False)
    x, a = g.inputs
    at = {x: 0.3, a: 0.7}
    env = dict(at)
    for z in g.defined:
        env[z] = float(terms.values[z].xreplace(env))
    for z in reversed(g.nodes):
        env[g.multiplier(z)] = float(terms.adjoints[z].xreplace(env))
    composed = g.expr(g.defined[0])
    for before, z in zip(g.defined, g.defined[1:]):
        composed = g.expr(z).xreplace({before: composed})
    for w in (x, a):
        expected = float(sp.diff(composed, w).xreplace(at))
        assert env[g.multiplier(w)] == pytest.approx(expected, rel=1e-12)


def test_lecture_terms_need_no_point():
    g, at = lecture_dag()
    with pytest.raises(adjoint.AdjointError, match="expand=False"):
        g.solve(at, expand=False)


# -- 3. the adjoint system in a terminal, and for matrix nodes -------------------------


def test_adjoint_system_reads_as_a_triangular_system():
    g, at = lecture_dag()
    for system in (g.adjoint_system(), g.adjoint_system(at)):
        lines = repr(system).splitlines()
        assert lines[0].startswith("Step 2 as a triangular system (I - J^T) lambda = e_n")
        rows = lines[1:]
        assert len(rows) == 4 and all("lambda_" in r for r in rows)
        assert rows[-1].split("]")[0].split() == ["[", "0", "0", "0", "1"]  # lambda_n = 1
        assert sum("=" in r for r in rows) == 1
    assert "-cos(z1)" in repr(g.adjoint_system())
    assert "0.99" in repr(g.adjoint_system(at))  # -cos(-3), by hand


def _block_by_differences(g, env, reader, node, h=1e-6):
    """d vec(f_i) / d vec(z_j) from the forward constraint alone (central differences)."""
    condition = next(c for c in g.stationarity().forward_conditions if c.unknown == reader)
    base = np.asarray(env[node], dtype=float)
    cols = []
    for k in np.ndindex(*base.shape):
        up, down = base.copy(), base.copy()
        up[k] += h
        down[k] -= h
        f_up = np.ravel(condition.solve({**env, node: up}))
        f_down = np.ravel(condition.solve({**env, node: down}))
        cols.append((f_up - f_down) / (2 * h))
    return np.array(cols).T


def test_adjoint_system_over_matrix_entries():
    g, at = two_layer_net(n=3, d=2)
    system = g.adjoint_system(at)
    sol = g.solve(at)
    env = {**adjoint.values.read_values(g, at), **sol.values}
    sizes = {z: int(np.size(sol.values[z])) for z in g.nodes}
    start = dict(zip(g.nodes, np.cumsum([0, *sizes.values()])))
    J = np.array(system.J.tolist(), dtype=float)
    assert J.shape == (sum(sizes.values()),) * 2 and np.allclose(np.triu(J), 0)
    for i in g.defined:
        for j in g.parents(i):
            block = J[start[i] : start[i] + sizes[i], start[j] : start[j] + sizes[j]]
            np.testing.assert_allclose(
                block, _block_by_differences(g, env, i, j), rtol=1e-6, atol=1e-8
            )
    lam = np.concatenate([np.ravel(sol.adjoints[z]) for z in g.nodes])
    np.testing.assert_allclose(system.dense_solve(), lam, rtol=1e-10, atol=1e-12)
    text = repr(system)
    assert "Lambda_W1[0, 1]" in text and len(text.splitlines()) == 1 + len(lam)


def test_symbolic_adjoint_system_of_matrices_says_what_to_do():
    g, _ = two_layer_net()
    with pytest.raises(ShapeError, match=r"at a point: g.adjoint_system\(at\)"):
        g.adjoint_system()


def test_shadow_prices_of_matrix_nodes():
    g, at = two_layer_net(n=3, d=2)
    sol = g.solve(at)
    prices = g.shadow_prices(at)
    for z in g.nodes:
        price, lam = prices[z]
        assert np.shape(price) == np.shape(sol.values[z])
        np.testing.assert_allclose(price, lam, rtol=1e-4, atol=1e-5)
    W1 = g.lookup("W1")
    # one entry by hand: loosen W1[0, 1] and compare with lambda's entry
    f0 = g.solve(at).output
    bumped = at[W1].copy()
    bumped[0, 1] += 1e-6
    by_hand = (g.solve({**at, W1: bumped}).output - f0) / 1e-6
    assert prices[W1][0][0, 1] == pytest.approx(by_hand, rel=1e-6)


# -- 8. a self-contained HTML page -------------------------------------------------------


class _Page(HTMLParser):
    """Well-formedness (every element closed in order) and what a page would fetch."""

    VOID = frozenset({"meta", "br", "img", "hr", "link", "input", "col", "source", "wbr", "area"})

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.external, self.tags = [], [], [], []
        self.math_text = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if value and re.match(r"\s*(https?:)?//", value) and not name.startswith("xmlns"):
                self.external.append((tag, name, value))
        if tag in ("script", "link", "iframe", "img"):
            self.external.append((tag, "", ""))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if value and re.match(r"\s*(https?:)?//", value) and not name.startswith("xmlns"):
                self.external.append((tag, name, value))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        (self.math_text if "math" in self.stack else self.text).append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert not parser.errors, parser.errors[:5]
    assert parser.stack == [], parser.stack
    assert not parser.external, parser.external[:5]
    # url(#id) points inside the page (the SVG's clip paths); anything else is fetched
    assert not re.search(r"url\(\s*['\"]?(?!#)", page) and "@import" not in page
    return parser


def _formulas(explanation) -> int:
    count = sum(len(s.math) for s in explanation.sections)
    for prose in (
        [explanation.title]
        + [s.title for s in explanation.sections]
        + [s.note for s in explanation.sections]
    ):
        count += sum(type(p).__name__ == "Math" for p in getattr(prose, "parts", ()))
    return count


@pytest.fixture(scope="module")
def mathml():
    try:
        import latex2mathml  # noqa: F401
    except ImportError:
        if __import__("os").environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail("CI is set, so HTML pages must be tested: pip install latex2mathml")
        pytest.skip("latex2mathml is not installed (pip install latex2mathml)")


@pytest.mark.parametrize(
    "build",
    [warm_up, lecture_dag, lambda: (two_layer_net(n=3, d=2)[0], two_layer_net(n=3, d=2)[1])],
)
def test_explain_as_a_self_contained_page(mathml, build):
    g, at = build()
    explanation = g.explain(at)
    page = explanation.to_html()
    parsed = _parse(page)
    assert page.startswith("<!DOCTYPE html>")
    # every formula became MathML: one <math> per formula of the derivation, plus the
    # trace table's header and one per edge row; no LaTeX command is left anywhere
    trace_rows = len(g.trace(at).rows)
    assert parsed.tags.count("math") == _formulas(explanation) + 1 + trace_rows
    leftover = re.compile(r"\\[A-Za-z]+|\$")
    assert not leftover.search("".join(parsed.math_text))
    assert not [t for t in parsed.text if leftover.search(t) and "<code>" not in t]
    assert parsed.tags.count("svg") == 1 and parsed.tags.count("table") == 1
    assert "Both sweeps, edge by edge" in page and "Theorem 16.1" in page


def test_page_of_undefined_nodes_and_symbolic_explanations(mathml):
    g = adjoint.Graph.from_expr(sp.log(x) + abs(y))
    for at in ({x: -1.0, y: 0.0}, None):
        explanation = g.explain(at)
        parsed = _parse(explanation.to_html())
        assert not re.search(r"\\[A-Za-z]+", "".join(parsed.math_text))
        assert parsed.tags.count("svg") == 1
        assert parsed.tags.count("table") == (at is not None)


def test_command_line_html(mathml, capsys):
    from adjoint.cli import main

    assert main(["explain", "sin(x*y) + x**2", "--at", "x=1.5,y=-2", "--format", "html"]) == 0
    parsed = _parse(capsys.readouterr().out)
    assert parsed.tags.count("svg") == 1 and parsed.tags.count("math") > 20


def test_the_page_shows_the_graph_as_it_was_explained(mathml):
    g, at = lecture_dag()
    explanation = g.explain(at)
    g.define("z3", g.lookup("z2") ** 2)
    page = explanation.to_html()
    assert "z_{3}" not in page and "z3" not in page
