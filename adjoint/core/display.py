"""How things read: text and LaTeX for expressions, graphs, conditions and solutions.

Element-wise functions are written the way people write them: ``tanh.(H)`` in text
and ``\\tanh_{\\circ}(H)`` in LaTeX, rather than sympy's ``Lambda(_d, tanh(_d)).(H)``.
Every piece of LaTeX is meant to compile: a symbol's name is split into sub- and
superscripts as sympy does, and whatever else it holds (LaTeX specials, letters
beyond ASCII) is escaped. Prose that carries maths (:class:`Prose`) reads as plain
text, LaTeX text or Markdown.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import sympy as sp
from sympy.printing.conventions import split_super_sub
from sympy.printing.latex import LatexPrinter, translate
from sympy.printing.str import StrPrinter

__all__ = [
    "Code",
    "Equation",
    "Math",
    "Prose",
    "equation",
    "latex",
    "latex_text",
    "markdown_text",
    "number",
    "table",
    "text",
]


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
        named = _derivative_of(var, body)
        if named is not None:  # 1 - tanh(d)**2 is tanh', by name
            return self._applied_derivative(named, arg)
        return self._applied(self._mapping(var, body), arg)


def _derivative_of(var, body):
    """The function ``f`` (of one argument) whose derivative ``body`` is, if it is one of
    those ``body`` applies to ``var``."""
    for f in body.atoms(sp.Function):
        if f.args == (var,) and sp.diff(f, var) == body:
            return f.func
    return None


class TextPrinter(_Readable, StrPrinter):
    def _print(self, expr, **kwargs):
        # the package's operations print themselves: the calls that made them
        own = getattr(type(expr), "_adjoint_text", None)
        if own is not None:
            return own(expr, self)
        return super()._print(expr, **kwargs)

    def _applied(self, function, arg) -> str:
        return f"{function}.({arg})"  # tanh.(H), as in Julia's broadcasting

    def _mapping(self, var, body) -> str:
        return f"({self._print(var)} -> {self._print(body)})"

    def _applied_derivative(self, function, arg) -> str:
        return f"{function}'.({arg})"

    def _print_HadamardProduct(self, expr):
        return " .* ".join(self.parenthesize(a, 50) for a in expr.args)

    def _print_OneMatrix(self, expr):  # never a bare 1, which reads as a number
        return f"ones({self._print(expr.rows)}, {self._print(expr.cols)})"

    def _print_Identity(self, expr):
        return f"eye({self._print(expr.rows)})"


#: A matrix at a step of a recurrence, ``x[t + 1]`` (see adjoint.system.recurrences.step_value).
_STEP_NAME = re.compile(r"(.+)\[((?:t|T|\d+)(?: [+-] \d+)?)\]")


class MathPrinter(_Readable, LatexPrinter):
    def _print_MatrixSymbol(self, expr) -> str:
        # a recurrence's matrix at a step, x[t + 1]: subscripted, as a scalar's z[t + 1]
        step = _STEP_NAME.fullmatch(expr.name)
        if step:
            return rf"{{{self._print(sp.Symbol(step[1]))}}}_{{{step[2]}}}"
        return super()._print_MatrixSymbol(expr)

    def _applied(self, function, arg) -> str:
        if not isinstance(function, str):  # a sympy function class: its LaTeX name
            name = self._print(function(sp.Symbol("x")))
            function = name.split(r"{\left(")[0] if r"{\left(" in name else name.split(r"\left(")[0]
        return rf"{function}_{{\circ}}\left({arg}\right)"

    def _mapping(self, var, body) -> str:
        return rf"\left({self._print(var)} \mapsto {self._print(body)}\right)"

    def _applied_derivative(self, function, arg) -> str:
        name = self._print(function(sp.Symbol("x")))
        name = name.split(r"{\left(")[0] if r"{\left(" in name else name.split(r"\left(")[0]
        return self._applied(f"{name}'", arg)

    def _print_OneMatrix(self, expr):  # never a bare 1, which reads as a number
        rows, cols = (self._print(d) for d in expr.shape)
        return rf"\mathbf{{1}}_{{{rows} \times {cols}}}"

    def _print_Identity(self, expr):
        return rf"I_{{{self._print(expr.rows)}}}"

    def _print_Dummy(self, expr):
        return self._deal_with_super_sub(expr.name)

    def _deal_with_super_sub(self, string: str, style="plain") -> str:
        # sympy's own version passes a name holding "{" through as raw LaTeX, and
        # any other character as it is: a name is a name here, never markup.
        name, supers, subs = split_super_sub(string)
        name = _name_piece(name)
        if style == "bold":
            name = rf"\mathbf{{{name}}}"
        if supers:
            name += "^{" + " ".join(_name_piece(p) for p in supers) + "}"
        if subs:
            name += "_{" + " ".join(_name_piece(p) for p in subs) + "}"
        return name


#: Characters of a name that maths mode would read as markup (or reject).
_MATH_ESCAPES = {
    "_": r"\_",
    "%": r"\%",
    "#": r"\#",
    "&": r"\&",
    "$": r"\$",
    "{": r"\{",
    "}": r"\}",
    "\\": r"\backslash{}",
    "^": r"\text{\textasciicircum}",
    "~": r"\text{\textasciitilde}",
    " ": r"\ ",
    "|": r"\vert{}",  # no bare bar, which would end a cell of a Markdown table
}
#: Combining accents of letters such as e-acute, as maths accents.
_ACCENTS = {
    "\u0300": "grave",
    "\u0301": "acute",
    "\u0302": "hat",
    "\u0303": "tilde",
    "\u0304": "bar",
    "\u0306": "breve",
    "\u0307": "dot",
    "\u0308": "ddot",
    "\u030c": "check",
}


def _name_piece(piece: str) -> str:
    """One piece of a symbol's name (the name, a sub- or a superscript) in LaTeX."""
    if piece.isascii() and piece.isalnum():
        return translate(piece)  # alpha -> \alpha, xhat -> \hat{x}, as sympy does
    return "".join(_name_char(c) for c in piece)


def _name_char(c: str) -> str:
    if c.isascii():
        return _MATH_ESCAPES.get(c, c)
    words = unicodedata.name(c, "").split()
    if words[:1] == ["GREEK"]:  # SMALL LETTER ALPHA -> \alpha, PHI SYMBOL -> \varphi
        letter = words[-1].lower() if "SMALL" in words else words[-1].capitalize()
        if "FINAL" in words or words[-1] == "SYMBOL":
            letter = "var" + (words[-1] if "FINAL" in words else words[-2]).lower()
        tex = translate(letter)
        if tex != letter:
            return tex
    base, *marks = unicodedata.normalize("NFD", c)
    if base.isascii() and base.isalpha() and marks and all(m in _ACCENTS for m in marks):
        for m in marks:
            base = rf"\{_ACCENTS[m]}{{{base}}}"
        return base
    return rf"\text{{U+{ord(c):04X}}}"  # no glyph every LaTeX has: name the code point


_TEXT, _MATH = TextPrinter(), MathPrinter()


class Equation(sp.Equality):
    """A condition of grad L = 0 as an equation that prints as the package writes it,
    in ``str`` and LaTeX alike (``Lambda_H = tanh'.(H) .* Lambda_A``), never sympy's
    internals (``Lambda(_d, 1 - tanh(_d)**2).(H)``). It is a sympy ``Eq``."""

    def _sympystr(self, printer) -> str:
        return f"{text(self.lhs)} = {text(self.rhs)}"

    def _latex(self, printer) -> str:
        return f"{latex(self.lhs)} = {latex(self.rhs)}"

    # Equal to sympy's Eq of the same sides, and hashed alike: it is one, printed better.
    def __eq__(self, other):
        if isinstance(other, sp.Equality):
            return self.args == other.args
        return super().__eq__(other)

    def __hash__(self):
        return hash(sp.Equality(*self.args, evaluate=False))


def equation(lhs, rhs) -> Equation:
    """``lhs = rhs`` as an :class:`Equation`, unevaluated."""
    return Equation(lhs, rhs, evaluate=False)


def text(expr) -> str:
    """``expr`` as one line of text."""
    return _TEXT.doprint(expr)


def latex(expr) -> str:
    """``expr`` in LaTeX."""
    return _MATH.doprint(expr)


def number(value, digits: int = 6) -> str:
    """A value for a table: a float to ``digits`` significant digits; an array by shape."""
    if isinstance(value, np.ndarray) and value.ndim:
        size = "x".join(map(str, value.shape))
        return f"{size} array, |.| = {np.linalg.norm(value):.4g}"
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
        size = r" \times ".join(map(str, value.shape))  # no $ inside \text: MathJax
        norm = float_latex(float(np.linalg.norm(value)), 4)
        return rf"{size}\ \text{{array}},\ \|\cdot\| = {norm}"
    if isinstance(value, float):
        return float_latex(value)
    return latex(value)


def float_latex(value: float, digits: int = 6) -> str:
    """A float in LaTeX to ``digits`` significant digits: ``1.5 \\times 10^{-7}``, not
    ``1.5e-07``, which maths mode sets as the product of 1.5, e and -07."""
    if math.isnan(value):
        return r"\text{nan}"
    if math.isinf(value):
        return r"\infty" if value > 0 else r"-\infty"
    mantissa, _, exponent = f"{value:.{digits}g}".partition("e")
    return rf"{mantissa} \times 10^{{{int(exponent)}}}" if exponent else mantissa


def aligned(rows: list[tuple[str, str]]) -> str:
    """``$\\displaystyle \\begin{aligned} lhs &= rhs \\\\ ... \\end{aligned}$``."""
    body = r" \\ ".join(f"{lhs} &= {rhs}" if lhs is not None else f"&{rhs}" for lhs, rhs in rows)
    return rf"$\displaystyle \begin{{aligned}} {body} \end{{aligned}}$"


def graph_latex(graph) -> str:
    rows = [
        (latex(graph.residual(z)), "0")
        if graph.is_implicit(z)
        else (latex(z), latex(graph.expr(z)))
        for z in graph.defined
    ]
    return aligned(rows) if rows else r"$\text{(no constraints)}$"


def solution_latex(solution) -> str:
    head = r"\text{node} & f_i & z & \lambda \\ \hline "
    rows = []
    for z, formula, value, lam in solution.rows():
        f = latex(formula) if isinstance(formula, sp.Basic) else rf"\text{{{formula}}}"
        lam_ = "" if lam is None else number_latex(lam)
        rows.append(f"{latex(z)} & {f} & {number_latex(value)} & {lam_}")
    return r"$\begin{array}{llll}" + head + r" \\ ".join(rows) + r"\end{array}$"


# -- prose with maths in it --------------------------------------------------------


@dataclass(frozen=True)
class Math:
    """Mathematics inside a sentence: how it reads as plain text, and in LaTeX."""

    text: str
    latex: str


@dataclass(frozen=True)
class Code:
    """Code inside a sentence, such as ``g.verify()``."""

    text: str


class Prose(str):
    """A sentence of plain strings, :class:`Math` and :class:`Code`. As a ``str`` it is
    the plain text; :func:`latex_text` and :func:`markdown_text` typeset its parts.

    >>> note = Prose("constraints ", Math("z_i = f_i", "z_i = f_i"), ", one per node")
    >>> str(note), latex_text(note)
    ('constraints z_i = f_i, one per node', 'constraints $z_i = f_i$, one per node')
    """

    parts: tuple

    def __new__(cls, *parts):
        flat = []
        for part in parts:
            flat.extend(part.parts if isinstance(part, Prose) else [part])
        plain = "".join(p if isinstance(p, str) else p.text for p in flat)
        self = super().__new__(cls, plain)
        self.parts = tuple(flat)
        return self


#: LaTeX's text-mode specials, and the characters its default (OT1) font encoding
#: sets as other glyphs (< as an inverted exclamation mark, | as a dash).
_TEXT_ESCAPES = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "_": r"\_",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "^": r"\textasciicircum{}",
    "~": r"\textasciitilde{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    '"': r"\textquotedblright{}",
}
_TEXT_SPECIAL = re.compile("|".join(re.escape(c) for c in _TEXT_ESCAPES))
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|$#~])")


def _parts(prose: str) -> tuple:
    return prose.parts if isinstance(prose, Prose) else (prose,)


def latex_text(prose: str) -> str:
    """``prose`` as LaTeX text (for a paragraph or a title): maths as ``$...$``, code
    in typewriter type, every special character of the rest escaped."""

    def escape(s: str) -> str:
        return _TEXT_SPECIAL.sub(lambda m: _TEXT_ESCAPES[m.group()], s)

    out = []
    for part in _parts(prose):
        if isinstance(part, Math):
            out.append(f"${part.latex}$")
        elif isinstance(part, Code):
            out.append(rf"\texttt{{{escape(part.text)}}}")
        else:
            out.append(escape(part))
    return "".join(out)


def markdown_text(prose: str) -> str:
    """``prose`` as Markdown: maths as ``$...$``, code as ``code``, the rest escaped."""
    out = []
    for part in _parts(prose):
        if isinstance(part, Math):
            out.append(f"${part.latex}$")
        elif isinstance(part, Code):
            out.append(f"`{part.text}`")
        else:
            out.append(_MARKDOWN_SPECIAL.sub(r"\\\1", part))
    return "".join(out)
