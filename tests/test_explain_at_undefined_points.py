"""Where the output is not a number, explain, verify and drawings say so: never
'ok' over a nan, a kink named, undefined nodes marked."""

import re

import sympy as sp

import adjoint

x, y = sp.symbols("x y", real=True)


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
