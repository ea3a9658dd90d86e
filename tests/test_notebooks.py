"""Every plot in the notebooks says what its axes are.

Read from the code cells with ``ast``, without running them: a cell that plots on an
Axes (or on ``plt``) must set both axis labels on that same Axes.
"""

import ast
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))

PLOTS = {
    "plot",
    "scatter",
    "semilogx",
    "semilogy",
    "loglog",
    "bar",
    "barh",
    "hist",
    "imshow",
    "step",
    "errorbar",
    "fill_between",
    "stem",
    "contour",
    "contourf",
    "pcolormesh",
}
LABELS = {"x": {"xlabel", "set_xlabel"}, "y": {"ylabel", "set_ylabel"}}


def code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def unlabelled(source: str) -> list[str]:
    """``["a: x", ...]``: each Axes (by its expression) plotted on without that axis's label."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    plotted, labelled = set(), set()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        on, name = ast.unparse(node.func.value), node.func.attr
        if name in PLOTS:
            plotted.add(on)
        for axis, names in LABELS.items():
            if name in names and (node.args or node.keywords):
                labelled.add((on, axis))
            if name == "set" and any(k.arg == f"{axis}label" for k in node.keywords):
                labelled.add((on, axis))
    missing = [(on, axis) for on in sorted(plotted) for axis in "xy" if (on, axis) not in labelled]
    return [f"{on}: {axis}" for on, axis in missing]


def test_the_check_finds_a_missing_label():
    # Notebook 06's plot as it was: titles, no axis labels.
    cell = (
        "fig, (a, b) = plt.subplots(1, 2)\n"
        "a.plot(ts, trajectory)\n"
        "a.set_xlabel('time')\n"
        "a.set_ylabel('x')\n"
        "b.step(ts, controls)\n"
        "b.set_title('optimised control u_t');\n"
    )
    assert unlabelled(cell) == ["b: x", "b: y"]
    assert unlabelled("plt.semilogy(c)\nplt.xlabel('step')\n") == ["plt: y"]
    assert unlabelled("%matplotlib inline\nax.hist(v)\nax.set(xlabel='v', ylabel='count')") == []
    assert unlabelled("g.draw(sol)\n") == []  # a drawing of the graph has no axes


def test_there_are_notebooks_with_plots():
    plotted = [c for p in NOTEBOOKS for c in code_cells(p) if any(f".{f}(" in c for f in PLOTS)]
    assert len(NOTEBOOKS) >= 7 and len(plotted) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_plot_has_axis_labels(path):
    missing = {k: m for k, c in enumerate(code_cells(path)) if (m := unlabelled(c))}
    assert not missing, f"{path.name}: code cell -> axes without labels: {missing}"
