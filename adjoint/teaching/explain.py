"""The lecture's derivation, carried out for a user's own graph.

* :func:`explain`: problem 5, Lagrangian 6, Step 1 with numbers, Step 2 with the
  local partials written out and then numbers, the gradient, and the check of
  Theorem 16.1; Markdown with LaTeX in Jupyter, plain text from ``str()``.
* :func:`trace`: both sweeps one edge at a time, as a student works them on paper.
* :func:`adjoint_system`: Step 2 as the triangular linear system
  ``lambda = e_n + J^T lambda``, solved by back-substitution (which *is* the
  backward sweep) and by a dense solve, for comparison.
* :func:`shadow_prices`: lambda_i as a sensitivity: the change of z_n when
  constraint i is loosened to ``z_i = f_i + eps``, divided by eps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape

import numpy as np
import sympy as sp

from ..core.display import (
    Code,
    Math,
    Prose,
    float_latex,
    latex,
    latex_text,
    markdown_text,
    number,
    table,
    text,
)
from ..core.errors import AdjointError, ShapeError
from ..core.records import plain
from ..core.symbols import multiplier_of
from ..core.values import as_numpy_numbers, read_values
from ..coursework.checks import verify
from ..system.graph import STEP
from ..system.lagrangian import lagrangian, stationarity
from ..system.recurrences import SequenceGradient
from ..system.second_order import second_order, sweeps
from ..system.solve import forward_sweep, solve
from . import html

__all__ = ["Explanation", "adjoint_system", "explain", "shadow_prices", "trace"]

#: Graphs with more nodes than this are not checked inside explain(): the check
#: of Theorem 16.1 composes the function once per node.
CHECK_LIMIT = 60


@dataclass(frozen=True)
class Section:
    title: str  # plain text, or a Prose that also typesets its maths
    lines: tuple[str, ...]  # plain text
    math: tuple[str, ...]  # LaTeX, one display equation each
    note: str = ""  # as the title


class Explanation:
    """A derivation: sections with text and LaTeX. ``str()`` gives plain text; Jupyter
    renders Markdown with LaTeX; :meth:`to_latex` and :meth:`to_dict` give the rest."""

    def __init__(self, title: str, sections: list[Section], graph=None, at=None, solution=None):
        self.title = title
        self.sections = tuple(sections)
        # what was explained, for the page's table and drawing: solved once, kept
        self.graph, self.at, self.solution = graph, at, solution

    def __str__(self) -> str:
        out = [self.title, "=" * len(self.title)]
        for s in self.sections:
            out += ["", s.title, "-" * len(s.title)]
            if s.note:
                out.append(s.note)
            out += [f"  {line}" for line in s.lines]
        return "\n".join(out)

    def __repr__(self) -> str:
        return str(self)

    def _repr_markdown_(self) -> str:
        out = [f"### {markdown_text(self.title)}"]
        for s in self.sections:
            out += ["", f"**{markdown_text(s.title)}**", ""]
            if s.note:
                out += [markdown_text(s.note), ""]
            out += [f"$$ {m} $$" for m in s.math]
        return "\n".join(out)

    def to_markdown(self) -> str:
        return self._repr_markdown_()

    def to_latex(self, standalone: bool = False) -> str:
        """The body of a LaTeX document (amsmath): titles, notes and display maths; with
        ``standalone=True`` a whole document that compiles by itself (pdflatex)."""
        out = [rf"\subsection*{{{latex_text(self.title)}}}"]
        for s in self.sections:
            out.append(rf"\paragraph{{{latex_text(s.title)}}}")
            if s.note:
                out.append(latex_text(s.note))
            out += [rf"\[ {m} \]" for m in s.math]
        body = "\n".join(out)
        if not standalone:
            return body
        return "\n".join(
            [
                r"\documentclass{article}",
                r"\usepackage{amsmath,amssymb}",
                r"\usepackage[margin=2cm]{geometry}",
                r"\begin{document}",
                body,
                r"\end{document}",
                "",
            ]
        )

    def to_html(self) -> str:
        """A self-contained HTML page: the derivation with its maths as MathML, the
        trace table (at a point) and the drawing as inline SVG. It needs no network."""
        body = []
        for s in self.sections:
            body.append(f"<h2>{html.prose(s.title)}</h2>")
            if s.note:
                body.append(f"<p>{html.prose(s.note)}</p>")
            body += [f'<div class="eq">{html.math(m, display=True)}</div>' for m in s.math]
        solution = self.solution
        if self.graph is not None and self.at is not None:
            if solution is None:
                solution = solve(self.graph, self.at)
            # the edge-by-edge table is for explicit graphs
            if not self.graph.blocks and not self.graph.recurrences:
                table = trace(self.graph, self.at, solution=solution)
                body += ["<h2>Both sweeps, edge by edge</h2>", table.to_html()]
        if self.graph is not None and not self.graph.recurrences:  # no drawing of loops yet
            body += [
                "<h2>The computation graph</h2>",
                f"<figure>{html.drawing_svg(self.graph, solution)}</figure>",
            ]
        return html.page(self.title, body)

    def to_dict(self) -> dict:
        return {
            "title": self.title,
            "sections": [
                {"title": s.title, "note": s.note, "lines": list(s.lines), "latex": list(s.math)}
                for s in self.sections
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)


def _env(graph, at, solution=None):
    """Values of every z and lambda at ``at`` (and of the dimensions), or None."""
    return _solved(graph, at, solution)[0]


def _solved(graph, at, solution=None):
    """``(env, solution)`` at ``at``: see :func:`_env`; ``(None, None)`` without a point.
    A ``solution`` already solved there is used as it is."""
    if at is None:
        return None, None
    sol = solve(graph, at) if solution is None else solution
    # numpy numbers: partials evaluated on them give inf at 1/0, never ZeroDivisionError
    return as_numpy_numbers(sol.environment), sol


def explain(graph, at: Mapping | None = None, direction: Mapping | None = None) -> Explanation:
    """The derivation of ``grad L = 0`` and its solution for ``graph``, step by step;
    with a ``direction`` (and a point ``at``), the tangent sweep and the second-order
    adjoint sweep too, whose input entries are the Hessian-vector product."""
    if direction is not None and graph.recurrences:
        graph.require_no_recurrence("explain(direction=...)")
    if direction is not None and at is None:
        raise AdjointError(
            "explain(direction=...) needs a point too: explain(at={...}, direction={...})"
        )
    kkt = stationarity(graph)
    env, sol = _solved(graph, at)  # solved once: the sweeps, the check and the page read it
    second = None if direction is None else sweeps(graph, at, direction, solution=sol)
    undefined = {} if sol is None else dict(sol.undefined)
    out = graph.output
    sections = []

    implicit = bool(graph.blocks)
    rolled = {  # a recurrence's nodes, by its forward condition (written with the index t)
        z: c for c in kkt.forward_conditions if c.recurrent for z in c.nodes
    }
    shown = [z for z in graph.defined if z not in rolled or z == rolled[z].unknown]
    rows = [r for z in shown for r in _constraint_rows(graph, z, rolled, text)]
    note = Prose(
        "The function is written as constraints ",
        Math("z_i = f_i(z_alpha(i))", r"z_i = f_i(z_{\alpha(i)})"),
        ", one per node.",
    )
    if rolled:
        note = Prose(
            note,
            " A recurrence is one constraint per step, ",
            Math("z_{t+1} = f(z_t, t)", r"z_{t+1} = f(z_t, t)"),
            " for t = 0 .. T-1, written once with the index t.",
        )
    if implicit:
        note = Prose(
            "The function is written as constraints, one per node: ",
            Math("z_i = f_i(z_alpha(i))", r"z_i = f_i(z_{\alpha(i)})"),
            ", or a residual ",
            Math("r_i(z) = 0", r"r_i(z) = 0"),
            " for a node defined implicitly.",
        )
    sections.append(
        Section(
            "The problem (5)",
            (f"minimise {out}", *(f"subject to {r}" for r in rows)),
            (
                rf"\min\ {latex(out)} \quad \text{{s.t.}} \quad "
                + r",\ ".join(r for z in shown for r in _constraint_rows(graph, z, rolled, latex)),
            ),
            note,
        )
    )
    L = lagrangian(graph)
    sections.append(
        Section(
            "The Lagrangian (6)",
            (f"L = {text(L)}",),
            (rf"\mathcal{{L}} = {latex(L)}",),
            Prose(
                "One multiplier per constraint: ",
                Math(
                    "L = z_n - sum_i lambda_i (z_i - f_i)",
                    r"\mathcal{L} = z_n - \sum_i \lambda_i (z_i - f_i)",
                ),
                ".",
            )
            if not implicit
            else Prose(
                "One multiplier per constraint, each times its residual: ",
                Math(
                    "L = z_n - sum_i lambda_i r_i",
                    r"\mathcal{L} = z_n - \sum_i \lambda_i r_i",
                ),
                ", with ",
                Math("r_i = z_i - f_i", "r_i = z_i - f_i"),
                " for an explicit node. So ",
                Math("lambda_i", r"\lambda_i"),
                " is the price of constraint i: the change of the output when ",
                Math("r_i = eps", r"r_i = \varepsilon"),
                ", per unit of eps; and the derivative by a node is ",
                Math(
                    "d z_n / d z_j = (dr_j/dz_j)^T lambda_j",
                    r"\partial z_n / \partial z_j = (\partial r_j / \partial z_j)^T \lambda_j",
                ),
                ".",
            ),
        )
    )

    lines, math = [], []
    for c in kkt.forward_conditions:
        if c.recurrent:
            _recurrence_rows(c, c.nodes[1:], env, lines, math)
            continue
        if c.implicit:
            _implicit_forward_rows(c, env, sol, lines, math)
            continue
        z, f = c.unknown, c.rhs
        value = "" if env is None else f" = {number(env[z])}"
        lines.append(f"dL/d{c.wrt} = 0:  {z} = {text(f)}{value}")
        value_tex = "" if env is None else f" = {_num_tex(env[z])}"
        math.append(
            rf"\frac{{\partial \mathcal{{L}}}}{{\partial {latex(c.wrt)}}} = 0"
            rf"\ \Rightarrow\ {latex(z)} = {latex(f)}{value_tex}"
        )
    sections.append(
        Section(
            "Step 1: forward (7)",
            tuple(lines),
            tuple(math),
            "Setting the derivatives by the multipliers to zero gives back the constraints; "
            "in topological order each reads only values already known.",
        )
    )

    lines, math = [], []
    for c in kkt.backward_conditions:
        if c.recurrent:
            _recurrence_rows(c, c.multipliers, env, lines, math, first=True)
            continue
        if c.implicit:
            _implicit_backward_rows(c, env, lines, math)
            continue
        lam = c.unknown
        parts = [] if not c.seed else ["1"]
        parts_tex = [] if not c.seed else ["1"]
        for t in c.contributions:
            if getattr(t, "residual", False):  # minus lambda_i times dr_i/dz_j, written out
                r = graph.residual(t.reader)
                parts.append(f"-{t.multiplier} * d({text(r)})/d{c.wrt}")
                parts_tex.append(
                    rf"-{latex(t.multiplier)} \frac{{\partial}}{{\partial {latex(c.wrt)}}}"
                    rf"\left({latex(r)}\right)"
                )
            elif not t.pullback:  # lambda_i times the partial of f_i, written out
                parts.append(f"{t.multiplier} * d({text(graph.expr(t.reader))})/d{c.wrt}")
                parts_tex.append(
                    rf"{latex(t.multiplier)} \frac{{\partial}}{{\partial {latex(c.wrt)}}}"
                    rf"\left({latex(graph.expr(t.reader))}\right)"
                )
            else:
                parts.append(text(t.expr))
                parts_tex.append(latex(t.expr))
        written = " + ".join(parts) or "0"
        value = "" if env is None else f" = {number(env[lam])}"
        if isinstance(c, SequenceGradient):  # one per step: lambda_u[t]
            lam = c.equations[0].lhs
        solved = "" if written == text(c.rhs) else f" = {text(c.rhs)}"
        if value == f" = {written}" and not solved:  # the seed: lambda_n = 1, not 1 = 1
            value = ""
        lines.append(f"{lam} = {written}{solved}{value}")
        value_tex = "" if not value else f" = {_num_tex(env[c.unknown])}"
        written_tex = " + ".join(parts_tex) or "0"
        solved_tex = "" if solved == "" else f" = {latex(c.rhs)}"
        math.append(f"{latex(lam)} = {written_tex}{solved_tex}{value_tex}")
    lam_out = latex(graph.multiplier(out))
    sections.append(
        Section(
            Prose(
                "Step 2: backward (",
                Math("dL/dz_j = 0", r"\partial \mathcal{L} / \partial z_j = 0"),
                "), then the gradient",
            ),
            tuple(lines),
            tuple(math),
            Prose(
                Math(
                    f"dL/d{out} = 1 - lambda_{out}",
                    rf"\partial \mathcal{{L}} / \partial {latex(out)} = 1 - {lam_out}",
                ),
                " gives ",
                Math(f"lambda_{out} = 1", f"{lam_out} = 1"),
                "; for every other node, ",
                Math(
                    "lambda_j = sum over the readers i of z_j of lambda_i df_i/dz_j",
                    r"\lambda_j = \sum_{i \in \beta(j)} \lambda_i \, "
                    r"\partial f_i / \partial z_j",
                ),
                ", in reverse topological order. For an input ",
                Math("x", "x"),
                ", ",
                Math("lambda_x = dL/dx", r"\lambda_x = \partial \mathcal{L} / \partial x"),
                " is the gradient.",
                *(
                    ()
                    if not rolled
                    else (
                        " A recurrence's costates come from one loop in reverse, ",
                        Math(
                            "lambda_T = lambda_final, lambda_t = (df/dz_t)^T lambda_{t+1} + "
                            "lambda_cost dl/dz_t",
                            r"\lambda_T = \lambda_{\text{final}},\ \lambda_t = "
                            r"\left(\frac{\partial f}{\partial z_t}\right)^{T} \lambda_{t+1} "
                            r"+ \lambda_{\text{cost}} \frac{\partial l}{\partial z_t}",
                        ),
                        ", and what a step reads gets a part from every step: summed over t "
                        "for a parameter, one per step for a sequence.",
                    )
                ),
                *(
                    ()
                    if not implicit
                    else (
                        " An implicit block's conditions share its multipliers: ",
                        Math(
                            "sum_{i in B} (dr_i/dz_j) lambda_i = [j = n] + sum_{i outside B} "
                            "lambda_i df_i/dz_j",
                            r"\sum_{i \in B} \frac{\partial r_i}{\partial z_j} \lambda_i = "
                            r"[j = n] + \sum_{i \in \beta(j) \setminus B} \lambda_i "
                            r"\frac{\partial f_i}{\partial z_j}",
                        ),
                        ", one linear solve with the transposed Jacobian (the implicit function "
                        "theorem); for an explicit node the coefficient is 1 and it is back "
                        "substitution.",
                    )
                ),
            ),
        )
    )

    if undefined:
        sections.append(_undefined_section(graph, undefined))
    if sol is not None and sol.kinks:
        sections.append(_kinks_section(sol.kinks))

    if rolled and at is not None:
        lines, math, note = _gradient_check_rows(graph, at, out)
    elif rolled:
        lines, math = (), ()
        note = "A recurrence is checked at a point: explain(at={...})."
    elif len(graph.nodes) <= CHECK_LIMIT:
        report = verify(graph, at, solution=sol)
        by = "d eps_" if implicit else "d"  # a price: the constraint loosened by eps
        lines = tuple(
            f"--   lambda_{c.node} = d{out}/{by}{c.node}: not checked, {c.node} is undefined here"
            if c.node in undefined
            else f"--   lambda_{c.node} = d{out}/{by}{c.node}: not checked, a kink lies on its way"
            if c.method == "kink"
            else f"{'ok  ' if c.ok else 'FAIL'} lambda_{c.node} = d{out}/{by}{c.node} ({c.method})"
            for c in report.checks
        )
        checked = [c for c in report.checks if c.node not in undefined and c.method != "kink"]
        verdict = "holds" if all(c.ok for c in checked) else "FAILS"
        where = f"all {len(checked)} nodes" if not undefined else f"{len(checked)} nodes"
        if undefined and not checked:
            verdict, where = "is not checked", "any node: none is defined here"
        elif undefined:
            where += f"; {len(undefined)} undefined here, not checked"
        wrt = r"\varepsilon_j" if implicit else "z_j"
        math = (
            rf"\lambda_j = \frac{{\partial {latex(out)}}}{{\partial {wrt}}}\ "
            rf"\text{{{verdict} at {where}}}",
        )
        note = (
            "Checked against the chain-rule route (differentiating the composed function), "
            "which the solver never uses."
            if not implicit
            else "Checked by differences: each constraint loosened by eps and the forward "
            "sweep (Newton's method for the implicit blocks) run again, which Step 2 never "
            "uses."
        )
    else:
        lines, math = (), ()
        note = Prose(
            "Not checked here: the check differentiates the composed function once per node, "
            f"which grows quadratically; with {len(graph.nodes)} nodes, run ",
            Code("g.verify()"),
            " or ",
            Code("adjoint.check_gradient(g, at)"),
            " when you want it.",
        )
    theorem = Prose(
        "Theorem 16.1: ",
        Math("lambda_j = d z_n / d z_j", r"\lambda_j = \partial z_n / \partial z_j"),
    )
    if implicit:
        theorem = Prose(
            "Theorem 16.1, with residuals: ",
            Math(
                "lambda_j = d z_n / d eps_j, the price of constraint j",
                r"\lambda_j = \partial z_n / \partial \varepsilon_j",
            ),
        )
    sections.append(Section(theorem, lines, math, note))
    if second is not None:
        sections += _second_order_sections(graph, second)
    title = Prose(
        "Backpropagation, step by step, for the output ",
        Math(_constraint_text(graph, out), _constraint_latex(graph, out)),
        *_point(graph, env),
    )
    # A copy: the page drawn later shows this graph, whatever is defined on it meanwhile.
    return Explanation(title, sections, graph.copy(), at, sol)


def _constraint_rows(graph, z, rolled, printer) -> list[str]:
    """The constraint of ``z``; a recurrence's, with the index t, for its state."""
    if z in rolled:
        return [f"{printer(e.lhs)} = {printer(e.rhs)}" for e in rolled[z].equations]
    return [(_constraint_text if printer is text else _constraint_latex)(graph, z)]


def _recurrence_rows(c, valued, env, lines, math, first=False) -> None:
    """A recurrence's conditions, with the index t, and the values it keeps: ``z_T`` and
    the cost forward, ``lambda_0`` backward (``first``)."""
    for e in c.equations:
        lines.append(f"{text(e.lhs)} = {text(e.rhs)}")
        math.append(f"{latex(e.lhs)} = {latex(e.rhs)}")
    lines.append(f"  [{c.note}]")
    math.append(rf"\text{{{c.note}}}".replace("..", r"\ldots"))
    if env is None:
        return
    shown = []
    for s in valued:
        value = np.asarray(env[s])
        if first:  # every costate, or lambda_0 alone under a schedule
            value = value[0] if value.ndim > np.ndim(env[c.rec.final]) else value
        name = c.equations[-1].lhs if first else s
        shown.append((name.subs(STEP, 0) if first else name, value))
    lines.append("  " + ", ".join(f"{text(n)} = {number(_plain(v))}" for n, v in shown))
    math.append(r",\ ".join(f"{latex(n)} = {_num_tex(_plain(v))}" for n, v in shown))


def _plain(value):
    """A 0-d array as a float, for printing."""
    return float(value) if np.ndim(value) == 0 else value


def _gradient_check_rows(graph, at, out) -> tuple:
    """Theorem 16.1 for a graph with recurrences: the gradient against central
    differences along random directions (the costates of every step are not perturbed
    one by one: T of them)."""
    from ..coursework.checks import check_gradient

    report = check_gradient(graph, at)
    verdict = "holds" if report.ok else "FAILS"
    lines = (f"{'ok  ' if report.ok else 'FAIL'} gradient of {out} against central differences",)
    math = (rf"\lambda_x = \partial {latex(out)} / \partial x\ \text{{{verdict}}}",)
    note = (
        "Checked by central differences of the forward loop along random directions, which "
        "Step 2 never uses."
    )
    return lines, math, note


def _constraint_text(graph, z) -> str:
    if graph.is_implicit(z):
        return f"{text(graph.residual(z))} = 0"
    return f"{z} = {text(graph.expr(z))}"


def _constraint_latex(graph, z) -> str:
    if graph.is_implicit(z):
        return f"{latex(graph.residual(z))} = 0"
    return f"{latex(z)} = {latex(graph.expr(z))}"


def _implicit_forward_rows(c, env, sol, lines, math) -> None:
    """An implicit block in Step 1: its residuals set to zero, solved together."""
    report = None if sol is None else next((b for b in sol.blocks if b.nodes == c.nodes), None)
    how = "by Newton's method" if c.method == "newton" else "by one linear solve"
    if report is not None:
        how += f" ({report.iterations} step(s), largest residual entry {report.residual:.2g})"
    for lam, r in zip(c.wrt, c.residuals):
        lines.append(f"dL/d{lam} = 0:  {text(r)} = 0")
        math.append(
            rf"\frac{{\partial \mathcal{{L}}}}{{\partial {latex(lam)}}} = 0"
            rf"\ \Rightarrow\ {latex(r)} = 0"
        )
    if env is not None:
        values = ", ".join(f"{z} = {number(env[z])}" for z in c.nodes)
        lines.append(f"  solved together, {how}: {values}")
        math.append(r",\ ".join(f"{latex(z)} = {_num_tex(env[z])}" for z in c.nodes))


def _implicit_backward_rows(c, env, lines, math) -> None:
    """An implicit block in Step 2: one row per node, solved together with (dr/dz)^T."""
    for e in c.equations:
        lines.append(f"{text(e.lhs)} = {text(e.rhs)}")
        math.append(f"{latex(e.lhs)} = {latex(e.rhs)}")
    if env is not None:
        values = ", ".join(f"{lam} = {number(env[lam])}" for lam in c.multipliers)
        lines.append(f"  solved together with (dr/dz)^T: {values}")
        math.append(r",\ ".join(f"{latex(lam)} = {_num_tex(env[lam])}" for lam in c.multipliers))


def _undefined_section(graph, undefined: dict) -> Section:
    """The nodes whose value or multiplier is not a number here, with the reason."""
    lines = tuple(f"{z}: {why}" for z, why in undefined.items())
    math = tuple(rf"{latex(z)}:\ {_words(why)}" for z, why in undefined.items())
    note = Prose(
        "Their values or multipliers are nan: a constraint outside its domain, or a kink (",
        Math("|x|", r"|x|"),
        " at 0, max, a step) on the way to the output, where no derivative exists.",
    )
    return Section("Undefined here", lines, math, note)


def _kinks_section(kinks) -> Section:
    """Each kink met: the node, the partial, the entries, and the value taken."""
    lines = tuple(f"{k.node}: {k}" for k in kinks)
    math = tuple(rf"{latex(k.node)}:\ {_words(str(k))}" for k in kinks)
    note = Prose(
        "A partial does not exist at a kink (",
        Math("|x|", r"|x|"),
        " or relu at 0, max at a tie); its one-sided values differ there. The "
        "conventional value is taken, as JAX and PyTorch take it, unless the solution "
        "was asked for nan there (kinks='nan').",
    )
    return Section("Kinks met", lines, math, note)


#: Characters of a sentence that every renderer (LaTeX, KaTeX, MathML converters)
#: reads the same inside \text; the others are written in maths around it.
_PLAIN = re.compile(r"[A-Za-z0-9 ,.:;()=+*/'!?-]+")
_IN_MATH = {"|": r"\vert", "_": r"\_", "{": r"\{", "}": r"\}", "#": r"\#", "%": r"\%", "&": r"\&"}


def _words(sentence: str) -> str:
    """A plain sentence inside display maths: runs of plain characters in ``\text``."""
    out, k = [], 0
    while k < len(sentence):
        run = _PLAIN.match(sentence, k)
        if run:
            out.append(rf"\text{{{run.group()}}}")
            k = run.end()
        else:
            c = sentence[k]
            out.append(_IN_MATH.get(c, c if c in "<>[]" else rf"\text{{U+{ord(c):04X}}}"))
            k += 1
    return " ".join(out)


def _point(graph, env) -> tuple:
    """``, at x = 1.5, y = -2`` (a matrix by its shape), for a title; nothing without
    a point."""
    if env is None:
        return ()
    leaves = graph.inputs + graph.constants
    plain = ", ".join(
        f"{s} = {number(env[s])}" if np.ndim(env[s]) == 0 else f"{s} (given, {_size(env[s])})"
        for s in leaves
    )
    tex = r",\ ".join(f"{latex(s)} = {_num_tex(env[s])}" for s in leaves)
    return (", at ", Math(plain, tex)) if leaves else ()


def _size(value) -> str:
    return " x ".join(map(str, value.shape))


def _second_order_sections(graph, env) -> list[Section]:
    """The tangent sweep and the second-order adjoint sweep, each condition with its
    value."""
    so = second_order(graph)

    def rows(conditions):
        lines, math = [], []
        for c in conditions:
            if getattr(c, "implicit", False):  # a block: its equations, solved together
                for e in c.equations:
                    lines.append(f"{text(e.lhs)} = {text(e.rhs)}")
                    math.append(f"{latex(e.lhs)} = {latex(e.rhs)}")
                lines.append(
                    "  solved together: " + ", ".join(f"{u} = {number(env[u])}" for u in c.unknowns)
                )
                continue
            rhs, value = c.rhs, env[c.unknown]
            # a right-hand side that is a number already (lambdadot_n = 0) is said once
            said = rhs.is_number if isinstance(rhs, sp.Expr) else False
            lines.append(f"{c.unknown} = {text(rhs)}" + ("" if said else f" = {number(value)}"))
            tail = "" if said else f" = {_num_tex(value)}"
            math.append(f"{latex(c.unknown)} = {latex(rhs)}{tail}")
        return tuple(lines), tuple(math)

    directions = ", ".join(f"{x} = {number(env[so.dots[x]])}" for x in graph.inputs)
    tangent = Section(
        "Tangent sweep: forward mode along the direction",
        *rows(so.tangent_conditions),
        Prose(
            "The forward conditions linearised along the direction (",
            Math(
                directions,
                r",\ ".join(
                    f"{latex(so.dots[x])} = {_num_tex(env[so.dots[x]])}" for x in graph.inputs
                ),
            ),
            "): ",
            Math(
                "zdot_i = sum_j df_i/dz_j zdot_j",
                r"\dot{z}_i = \sum_{j \in \alpha(i)} \partial f_i / \partial z_j \, \dot{z}_j",
            ),
            ", forward substitution on the same triangular system. The output's tangent "
            "is the directional derivative.",
        ),
    )
    adjoint = Section(
        "Second-order adjoint sweep: the Hessian-vector product",
        *rows(so.backward_conditions),
        Prose(
            "The adjoint conditions differentiated along the tangent, solved in reverse: ",
            Math(
                "lambdadot_j = sum_i (lambdadot_i df_i/dz_j + lambda_i sum_k "
                "d2f_i/dz_j dz_k zdot_k)",
                r"\dot{\lambda}_j = \sum_{i \in \beta(j)} \big(\dot{\lambda}_i \,"
                r" \partial f_i / \partial z_j + \lambda_i \sum_k \partial^2 f_i / "
                r"\partial z_j \partial z_k \, \dot{z}_k\big)",
            ),
            "; for each input the entry of the Hessian times the direction.",
        ),
    )
    return [tangent, adjoint]


def _num_tex(value) -> str:
    if isinstance(value, np.ndarray) and value.ndim:
        times = r" \times "
        return rf"\left[{times.join(map(str, value.shape))}\right]"
    return float_latex(float(value))


# -- the trace table --------------------------------------------------------------


@dataclass(frozen=True)
class TraceRow:
    sweep: str  # "forward" or "backward"
    node: sp.Basic  # the node computed (forward) or whose lambda receives (backward)
    reader: sp.Basic | None  # backward: the node i whose constraint reads it
    formula: str  # f_i, or the partial df_i/dz_j
    value: object  # z_i, or the partial's value
    contribution: object  # backward: lambda_i * df_i/dz_j


class Trace:
    """Both sweeps, one row per node (forward) and one per edge (backward)."""

    def __init__(self, rows):
        self.rows = tuple(rows)

    def to_dict(self) -> dict:
        """One record per row, as plain data (:func:`adjoint.core.records.plain`)."""
        return {"rows": plain(self.rows)}

    def __repr__(self) -> str:
        header = ("sweep", "edge", "formula", "value", "lambda_i * partial")
        body = []
        for r in self.rows:
            edge = f"{r.node}" if r.reader is None else f"{r.node} <- {r.reader}"
            body.append(
                (
                    r.sweep,
                    edge,
                    r.formula,
                    number(r.value),
                    "" if r.contribution is None else number(r.contribution),
                )
            )
        return table(header, body)

    def to_html(self) -> str:
        """The table as an HTML ``<table>``, its edges and header as MathML."""
        head = [
            "sweep",
            "edge",
            "formula",
            "value",
            html.math(r"\lambda_i \, \partial f_i/\partial z_j"),
        ]
        rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
        for r in self.rows:
            edge = (
                latex(r.node)
                if r.reader is None
                else rf"{latex(r.node)} \leftarrow {latex(r.reader)}"
            )
            cells = [
                escape(r.sweep),
                html.math(edge),
                f"<code>{escape(r.formula)}</code>",
                escape(number(r.value)),
                "" if r.contribution is None else escape(number(r.contribution)),
            ]
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        return "<table>\n" + "\n".join(rows) + "\n</table>"

    def _repr_markdown_(self) -> str:
        out = [
            "| sweep | edge | formula | value | $\\lambda_i \\, \\partial f_i/\\partial z_j$ |",
            "|---|---|---|---|---|",
        ]
        for r in self.rows:
            edge = (
                f"${latex(r.node)}$"
                if r.reader is None
                else (f"${latex(r.node)} \\leftarrow {latex(r.reader)}$")
            )
            contribution = "" if r.contribution is None else number(r.contribution)
            # A bare | ends a cell, even in code ("|.|", an array's norm, would split
            # it); code cannot escape a $, which Jupyter would take for maths there.
            cells = [r.sweep, edge, f"`{r.formula}`", number(r.value), contribution]
            cells = [c.replace("|", r"\|") for c in cells]
            if "$" in r.formula or "`" in r.formula:
                cells[2] = markdown_text(r.formula)
            out.append("| " + " | ".join(cells) + " |")
        return "\n".join(out)


def trace(graph, at: Mapping, *, solution=None) -> Trace:
    """Both sweeps at ``at``, edge by edge, each partial written and evaluated
    (``solution``: grad L = 0 solved at ``at`` already)."""
    graph.require_no_recurrence("g.trace")
    graph.require_explicit("g.trace")
    if at is None:
        raise AdjointError("the trace table needs a point, as in g.trace({x: 1.5, y: -2.0})")
    kkt = stationarity(graph)
    env = _env(graph, at, solution)
    rows = []
    for c in kkt.forward_conditions:
        rows.append(TraceRow("forward", c.unknown, None, text(c.rhs), env[c.unknown], None))
    for c in kkt.backward_conditions:
        if c.seed:
            rows.append(TraceRow("backward", c.wrt, None, "lambda_n = 1", 1.0, 1.0))
        for t in c.contributions:
            with np.errstate(all="ignore"):
                contribution = t.value(env)
                partial = t.partial_value(env)
            if t.pullback:
                formula, value = f"pullback: {t.label}", contribution
            else:
                formula, value = f"d{t.reader}/d{c.wrt} = {t.label}", float(partial)
            rows.append(TraceRow("backward", c.wrt, t.reader, formula, value, contribution))
    return Trace(rows)


# -- Step 2 as a linear system ---------------------------------------------------


@dataclass(frozen=True)
class AdjointSystem:
    """``(I - J^T) lambda = e_n``, with ``J[i, j] = df_i/dz_j`` over the nodes in
    topological order: strictly lower triangular, with the graph's sparsity.

    For a graph with matrix nodes the unknowns are the multipliers' entries, each
    node's row by row (``entries`` names them), and ``J`` holds the partials of
    every entry of ``f_i`` by every entry of ``z_j``, at a point.
    """

    nodes: tuple
    J: sp.Matrix  # local partials, symbolic, or numbers at a point
    e: sp.Matrix
    entries: tuple = ()  # (node, (row, column)) per unknown, for matrix graphs

    @property
    def matrix(self) -> sp.Matrix:
        return sp.eye(self.J.rows) - self.J.T

    @property
    def unknowns(self) -> tuple:
        """The multipliers (or their entries) the system solves for, in order."""
        if not self.entries:
            return tuple(multiplier_of(z) for z in self.nodes)
        return tuple(_entry(multiplier_of(z), k) for z, k in self.entries)

    def back_substitution(self) -> list:
        """Solve from the last row up: exactly the backward sweep of Step 2."""
        n = self.J.rows
        lam = [None] * n
        for j in reversed(range(n)):
            lam[j] = self.e[j] + sum(self.J[i, j] * lam[i] for i in range(j + 1, n))
        return lam

    def dense_solve(self) -> np.ndarray:
        """A general-purpose dense solve, for comparison (numeric systems only)."""
        M = np.array(self.matrix.tolist(), dtype=float)
        return np.linalg.solve(M, np.array(self.e.tolist(), dtype=float).ravel())

    def __repr__(self) -> str:
        head = (
            "Step 2 as a triangular system (I - J^T) lambda = e_n, J[i, j] = df_i/dz_j "
            f"({len(self.unknowns)} unknowns)"
        )
        M = self.matrix
        cells = [[_cell(M[r, c]) for c in range(M.cols)] for r in range(M.rows)]
        lams = [text(u) for u in self.unknowns]
        es = [_cell(v) for v in self.e]
        widths = [max(len(row[c]) for row in cells) for c in range(M.cols)]
        wl, we = max(map(len, lams)), max(map(len, es))
        lines = [head]
        for r, row in enumerate(cells):
            eq = "=" if r == len(cells) // 2 else " "
            body = "  ".join(cell.rjust(w) for cell, w in zip(row, widths))
            lines.append(f"  [ {body} ] [ {lams[r].ljust(wl)} ] {eq} [ {es[r].rjust(we)} ]")
        return "\n".join(lines)

    def _repr_latex_(self) -> str:
        lam = sp.Matrix(list(self.unknowns))
        return rf"$\displaystyle {latex(self.matrix)} {latex(lam)} = {latex(self.e)}$"


def _entry(matrix, k):
    return matrix[k] if k is not None else matrix


def _cell(value) -> str:
    if isinstance(value, sp.Float):
        value = float(value)
        return "0" if value == 0 else number(value, 4)
    return text(value)


def adjoint_system(graph, at: Mapping | None = None) -> AdjointSystem:
    """Step 2 as a matrix: symbolic local partials, or their numbers at ``at``.

    With matrix nodes the system is over the vectorised entries, at a point only.
    """
    graph.require_no_recurrence("g.adjoint_system")
    graph.require_explicit("g.adjoint_system")
    env = _env(graph, at)
    if any(graph.node(z).shape is not None for z in graph.nodes + graph.constants):
        if env is None:
            raise ShapeError(
                "the adjoint system of a graph with matrix nodes is built over their "
                "entries, at a point: g.adjoint_system(at), with a value for every input "
                "and constant"
            )
        return _entrywise_system(graph, env)
    nodes = graph.nodes
    index = {z: k for k, z in enumerate(nodes)}
    J = sp.zeros(len(nodes))
    for c in stationarity(graph).backward_conditions:
        for t in c.contributions:
            if env is None:
                J[index[t.reader], index[c.wrt]] = t.partial
            else:
                with np.errstate(all="ignore"):
                    J[index[t.reader], index[c.wrt]] = sp.Float(float(t.partial_value(env)))
    e = sp.zeros(len(nodes), 1)
    e[index[graph.output]] = 1
    return AdjointSystem(tuple(nodes), J, e)


def _entrywise_system(graph, env) -> AdjointSystem:
    """The system over every entry of every node. Each contribution is linear in
    ``lambda_i``, so putting the unit matrix of entry k in place of ``lambda_i`` gives
    the partials of ``f_i``'s entry k by each entry of ``z_j``: row k of J's block."""
    entries, start = [], {}
    for z in graph.nodes:
        start[z] = len(entries)
        shape = np.shape(env[z])
        entries += [(z, k if shape else None) for k in np.ndindex(*shape)] if shape else [(z, None)]
    J = np.zeros((len(entries), len(entries)))
    for c in stationarity(graph).backward_conditions:
        for t in c.contributions:
            reader_shape = np.shape(env[t.reader])
            for k in np.ndindex(*reader_shape) if reader_shape else [()]:
                unit = np.zeros(reader_shape)
                unit[k] = 1.0
                with np.errstate(all="ignore"):
                    row = np.ravel(t.value({**env, t.multiplier: unit if reader_shape else 1.0}))
                i = start[t.reader] + (np.ravel_multi_index(k, reader_shape) if k else 0)
                J[i, start[c.wrt] : start[c.wrt] + row.size] = row
    e = sp.zeros(len(entries), 1)
    e[start[graph.output]] = 1
    return AdjointSystem(tuple(graph.nodes), sp.Matrix(J), e, tuple(entries))


# -- shadow prices -----------------------------------------------------------------


def shadow_prices(graph, at: Mapping, eps: float = 1e-6) -> dict:
    """``{node: (change of z_n / eps, lambda)}`` when constraint i becomes
    ``z_i = f_i + eps`` (for an input, when x moves by eps): lambda_i is the price of
    loosening constraint i, as in the sensitivity reading of Lagrange multipliers.

    For a matrix node the perturbation is ``eps`` in one entry at a time: the price is
    a matrix of the node's shape, entry by entry against ``lambda_i``'s entries.
    """
    graph.require_no_recurrence("g.shadow_prices")
    base = read_values(graph, at)
    sol = solve(graph, at)
    f0 = float(forward_sweep(graph, base)[graph.output])

    def price(z):
        shape = np.shape(sol.values[z])
        if not shape:
            return (float(forward_sweep(graph, base, {z: eps})[graph.output]) - f0) / eps
        out = np.empty(shape)
        for k in np.ndindex(*shape):
            bump = np.zeros(shape)
            bump[k] = eps
            out[k] = (float(forward_sweep(graph, base, {z: bump})[graph.output]) - f0) / eps
        return out

    return {z: (price(z), lam) for z, lam in sol.adjoints.items()}
