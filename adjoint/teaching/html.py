"""Self-contained HTML pages, for sharing a derivation: maths as MathML, the drawing as
inline SVG, no script, no font and no stylesheet from the network.

LaTeX becomes MathML with latex2mathml (pure Python; browsers render MathML natively),
so a page opens the same offline as online.
"""

from __future__ import annotations

import html
import io
import re

from ..core.display import Code, Math
from ..core.errors import AdjointError

__all__ = ["drawing_svg", "math", "page", "prose"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; line-height: 1.5; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.eq { overflow-x: auto; margin: 0.4rem 0; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.2rem 0.6rem; text-align: left; }
code { background: #f4f4f4; padding: 0 0.2rem; }
figure { margin: 1rem 0; overflow-x: auto; }
"""


def _convert():
    try:
        from latex2mathml.converter import convert
    except ImportError:
        raise AdjointError(
            "HTML pages write their maths as MathML with latex2mathml, which is not "
            "installed: pip install latex2mathml (a dependency of adjoint)"
        ) from None
    return convert


def math(tex: str, display: bool = False) -> str:
    """``tex`` as a MathML element."""
    return _convert()(tex, display="block" if display else "inline")


def prose(text: str) -> str:
    """A title or note (plain text, or a :class:`~adjoint.core.display.Prose`) as HTML."""
    out = []
    for part in getattr(text, "parts", (text,)):
        if isinstance(part, Math):
            out.append(math(part.latex))
        elif isinstance(part, Code):
            out.append(f"<code>{html.escape(part.text)}</code>")
        else:
            out.append(html.escape(part))
    return "".join(out)


def page(title: str, body: list[str]) -> str:
    """A complete HTML document: ``title`` (prose) over the ``body`` fragments."""
    plain = html.escape(str(title))
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{plain}</title>",
            f"<style>{_STYLE}</style>",
            "</head>",
            "<body>",
            f"<h1>{prose(title)}</h1>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )


def drawing_svg(graph, solution=None) -> str:
    """The drawing of ``graph`` (with ``solution`` on it) as an inline ``<svg>`` element:
    glyphs as paths, so no font is needed, and no metadata links."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .drawing import draw, layers

    layer = layers(graph)
    columns = max(layer.values()) + 1
    rows = max(list(layer.values()).count(k) for k in set(layer.values()))
    fig = Figure(figsize=(min(2.2 * columns + 2, 24), min(1.4 * rows + 1, 16)))
    FigureCanvasAgg(fig)
    draw(graph, solution, ax=fig.subplots())
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    return re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
