"""Regenerate the README's figures: ``docs/drawing.png`` and ``docs/derivation.png``.

Run from the repository root: ``python docs/make_figures.py`` (or pass another output
folder). Both show the lecture's DAG ``z2 = sin(x y) + x`` at x = 1.5, y = -2: the
drawing of the graph with its values and multipliers, and ``g.explain(...)``'s
derivation typeset with matplotlib's own mathtext (no LaTeX installation needed).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.mathtext import MathTextParser

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's adjoint, installed or not

from adjoint.examples import lecture_dag  # noqa: E402

#: PNG metadata without the matplotlib version, so regenerating changes no byte
#: unless the picture changes.
METADATA = {"Software": None}


def drawing(path: Path) -> None:
    g, point = lecture_dag()
    ax = g.draw(g.solve(point))
    ax.figure.savefig(path, dpi=100, bbox_inches="tight", metadata=METADATA)
    plt.close(ax.figure)


def _renders(math: str) -> bool:
    """Whether mathtext can typeset ``math`` (it knows a subset of LaTeX)."""
    try:
        MathTextParser("path").parse(f"${math}$")
    except ValueError:
        return False
    return True


def _pieces(section) -> list[tuple[str, str]]:
    """``[("math" or "text", line)]``: each equation, or its plain text if mathtext
    cannot typeset it."""
    # Jupyter shows these as display maths, where fractions are full size.
    maths = [m.replace(r"\frac{", r"\dfrac{") for m in section.math]
    ok = [_renders(m) for m in maths]
    if all(ok):
        return [("math", m) for m in maths]
    if len(maths) == len(section.lines):
        return [
            ("math", m) if good else ("text", line)
            for m, line, good in zip(maths, section.lines, ok)
        ]
    return [("text", line) for line in section.lines]


def derivation(path: Path, width: float = 10.0) -> None:
    g, point = lecture_dag()
    explanation = g.explain(at=point)
    lines = [(explanation.title, {"fontsize": 14, "fontweight": "bold"}, 0)]
    for section in explanation.sections:
        lines.append((section.title, {"fontsize": 12, "fontweight": "bold"}, 14))
        if section.note:
            note = textwrap.fill(section.note, 110)
            lines.append((note, {"fontsize": 9.5, "color": "#555555"}, 4))
        for kind, piece in _pieces(section):
            shown = f"${piece}$" if kind == "math" else piece.replace("$", r"\$")
            lines.append((shown, {"fontsize": 15 if kind == "math" else 11}, 7))

    with plt.rc_context({"mathtext.fontset": "cm"}):
        fig = plt.figure(figsize=(width, 1.0))
        renderer = fig.canvas.get_renderer()
        inch = fig.dpi_scale_trans
        placed, depth = [], 0.2  # inches from the top of the page
        for content, style, gap in lines:
            depth += gap / 72
            t = fig.text(0.2, 0.0, content, va="top", ha="left", transform=inch, **style)
            placed.append((t, depth))
            depth += t.get_window_extent(renderer).height / fig.dpi
        height = depth + 0.2
        fig.set_size_inches(width, height)
        for t, top in placed:
            t.set_y(height - top)
        fig.savefig(path, dpi=100, bbox_inches="tight", pad_inches=0.15, metadata=METADATA)
        plt.close(fig)


def main(out: Path = ROOT / "docs") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "drawing.png", out / "derivation.png"]
    drawing(paths[0])
    derivation(paths[1])
    return paths


if __name__ == "__main__":
    for p in main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs"):
        print(f"{p}: {p.stat().st_size // 1024} KB")
