"""The self-contained HTML page of an explanation: parsed, its formulas counted,
its drawing the graph as it was explained."""

import re
from html.parser import HTMLParser

import pytest
import sympy as sp

import adjoint
from adjoint.examples import lecture_dag, two_layer_net, warm_up

x, y = sp.symbols("x y", real=True)


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
