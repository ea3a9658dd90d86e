"""How things read: text and LaTeX for expressions, graphs, conditions and solutions.

Element-wise functions are written the way people write them: ``tanh.(H)`` in text
and ``\\tanh_{\\circ}(H)`` in LaTeX, rather than sympy's ``Lambda(_d, tanh(_d)).(H)``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

__all__ = ["latex", "number", "table", "text"]


#: Sums with more terms than this print in stored order: sorting them for display
#: (a Lagrangian of 10^5 terms) would cost far more than printing them.
SORT_LIMIT = 200


class _Readable:
    """What the text and the LaTeX printer share."""

    def _print_Add(self, expr, order=None):
        if len(expr.args) > SORT_LIMIT:
            order = "none"
        return super()._print_Add(expr, order=order)

    def _print_Dummy(self, expr):
        return expr.name

    def _print_ElementwiseApplyFunction(self, expr):
        var, body = expr.function.variables[0], expr.function.expr
        arg = self._print(expr.expr)
        if isinstance(body, sp.Function) and body.args == (var,):
            return self._applied(body.func, arg)
        return self._applied(self._mapping(var, body), arg)


class TextPrinter(_Readable, StrPrinter):
    def _applied(self, function, arg) -> str:
        return f"{function}.({arg})"  # tanh.(H), as in Julia's broadcasting

    def _mapping(self, var, body) -> str:
        return f"({self._print(var)} -> {self._print(body)})"

    def _print_HadamardProduct(self, expr):
        return " .* ".join(self.parenthesize(a, 50) for a in expr.args)


class MathPrinter(_Readable, LatexPrinter):
    def _applied(self, function, arg) -> str:
        if not isinstance(function, str):  # a sympy function class: its LaTeX name
            name = self._print(function(sp.Symbol("x")))
            function = name.split(r"{\left(")[0] if r"{\left(" in name else name.split(r"\left(")[0]
        return rf"{function}_{{\circ}}\left({arg}\right)"

    def _mapping(self, var, body) -> str:
        return rf"\left({self._print(var)} \mapsto {self._print(body)}\right)"


_TEXT, _MATH = TextPrinter(), MathPrinter()


def text(expr) -> str:
    """``expr`` as one line of text."""
    return _TEXT.doprint(expr)


def latex(expr) -> str:
    """``expr`` in LaTeX."""
    return _MATH.doprint(expr)


def number(value, digits: int = 6) -> str:
    """A value for a table: a float to ``digits`` significant digits; an array by shape."""
    if isinstance(value, np.ndarray) and value.ndim:
        return f"{value.shape[0]}x{value.shape[1]} array, |.| = {np.linalg.norm(value):.4g}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return text(value)


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Rows of text cells as aligned columns, under a header and a rule."""
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def number_latex(value) -> str:
    if isinstance(value, np.ndarray) and value.ndim:
        size = rf"{value.shape[0]} \times {value.shape[1]}"  # no $ inside \text: MathJax
        return rf"{size}\ \text{{array}},\ \|\cdot\| = {np.linalg.norm(value):.4g}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return latex(value)


def aligned(rows: list[tuple[str, str]]) -> str:
    """``$\\displaystyle \\begin{aligned} lhs &= rhs \\\\ ... \\end{aligned}$``."""
    body = r" \\ ".join(f"{lhs} &= {rhs}" if lhs is not None else f"&{rhs}" for lhs, rhs in rows)
    return rf"$\displaystyle \begin{{aligned}} {body} \end{{aligned}}$"


def graph_latex(graph) -> str:
    rows = [(latex(z), latex(graph.expr(z))) for z in graph.defined]
    return aligned(rows) if rows else r"$\text{(no constraints)}$"


def solution_latex(solution) -> str:
    head = r"\text{node} & f_i & z & \lambda \\ \hline "
    rows = []
    for z, formula, value, lam in solution.rows():
        f = latex(formula) if isinstance(formula, sp.Basic) else rf"\text{{{formula}}}"
        lam_ = "" if lam is None else number_latex(lam)
        rows.append(f"{latex(z)} & {f} & {number_latex(value)} & {lam_}")
    return r"$\begin{array}{llll}" + head + r" \\ ".join(rows) + r"\end{array}$"
