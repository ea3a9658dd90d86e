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
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import sympy as sp

from .checks import verify
from .display import (
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
from .errors import AdjointError, ShapeError
from .lagrangian import lagrangian, stationarity
from .second_order import second_order, sweeps
from .solve import forward_sweep, solve
from .symbols import multiplier_of
from .values import read_values

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

    def __init__(self, title: str, sections: list[Section]):
        self.title = title
        self.sections = tuple(sections)

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

    def to_latex(self) -> str:
        """The body of a LaTeX document (amsmath): titles, notes and display maths."""
        out = [rf"\subsection*{{{latex_text(self.title)}}}"]
        for s in self.sections:
            out.append(rf"\paragraph{{{latex_text(s.title)}}}")
            if s.note:
                out.append(latex_text(s.note))
            out += [rf"\[ {m} \]" for m in s.math]
        return "\n".join(out)

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


def _env(graph, at):
    """Values of every z and lambda at ``at`` (and of the dimensions), or None."""
    if at is None:
        return None
    sol = solve(graph, at)
    env = {**read_values(graph, at), **sol.values}
    env.update({graph.multiplier(z): v for z, v in sol.adjoints.items()})
    return env


def explain(graph, at: Mapping | None = None, direction: Mapping | None = None) -> Explanation:
    """The derivation of ``grad L = 0`` and its solution for ``graph``, step by step;
    with a ``direction`` (and a point ``at``), the tangent sweep and the second-order
    adjoint sweep too, whose input entries are the Hessian-vector product."""
    if direction is not None and at is None:
        raise AdjointError(
            "explain(direction=...) needs a point too: explain(at={...}, direction={...})"
        )
    second = None if direction is None else sweeps(graph, at, direction)
    kkt = stationarity(graph)
    env = _env(graph, at)
    out = graph.output
    sections = []

    rows = [f"{z} = {text(graph.expr(z))}" for z in graph.defined]
    sections.append(
        Section(
            "The problem (5)",
            (f"minimise {out}", *(f"subject to {r}" for r in rows)),
            (
                rf"\min\ {latex(out)} \quad \text{{s.t.}} \quad "
                + r",\ ".join(f"{latex(z)} = {latex(graph.expr(z))}" for z in graph.defined),
            ),
            Prose(
                "The function is written as constraints ",
                Math("z_i = f_i(z_alpha(i))", r"z_i = f_i(z_{\alpha(i)})"),
                ", one per node.",
            ),
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
            ),
        )
    )

    lines, math = [], []
    for c in kkt.forward_conditions:
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
        lam = c.unknown
        parts = [] if not c.seed else ["1"]
        parts_tex = [] if not c.seed else ["1"]
        for t in c.contributions:
            if not t.pullback:  # lambda_i times the partial of f_i, written out
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
        solved = "" if written == text(c.rhs) else f" = {text(c.rhs)}"
        lines.append(f"{lam} = {written}{solved}{value}")
        value_tex = "" if env is None else f" = {_num_tex(env[lam])}"
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
            ),
        )
    )

    if len(graph.nodes) <= CHECK_LIMIT:
        report = verify(graph, at)
        lines = tuple(
            f"{'ok  ' if c.ok else 'FAIL'} lambda_{c.node} = d{out}/d{c.node} ({c.method})"
            for c in report.checks
        )
        verdict = "holds" if report.ok else "FAILS"
        math = (
            rf"\lambda_j = \frac{{\partial {latex(out)}}}{{\partial z_j}}\ \text{{{verdict} at "
            rf"all {len(report.checks)} nodes}}",
        )
        note = (
            "Checked against the chain-rule route (differentiating the composed function), "
            "which the solver never uses."
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
    sections.append(Section(theorem, lines, math, note))
    if second is not None:
        sections += _second_order_sections(graph, second)
    title = Prose(
        "Backpropagation, step by step, for the output ",
        Math(f"{out} = {text(graph.expr(out))}", f"{latex(out)} = {latex(graph.expr(out))}"),
    )
    return Explanation(title, sections)


def _second_order_sections(graph, env) -> list[Section]:
    """The tangent sweep and the second-order adjoint sweep, each condition with its
    value."""
    so = second_order(graph)

    def rows(conditions):
        lines, math = [], []
        for c in conditions:
            rhs = c.rhs
            lines.append(f"{c.unknown} = {text(rhs)} = {number(env[c.unknown])}")
            math.append(f"{latex(c.unknown)} = {latex(rhs)} = {_num_tex(env[c.unknown])}")
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
        return rf"\left[{value.shape[0]} \times {value.shape[1]}\right]"
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


def trace(graph, at: Mapping) -> Trace:
    """Both sweeps at ``at``, edge by edge, each partial written and evaluated."""
    if at is None:
        raise AdjointError("the trace table needs a point, as in g.trace({x: 1.5, y: -2.0})")
    kkt = stationarity(graph)
    env = _env(graph, at)
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
    topological order: strictly lower triangular, with the graph's sparsity."""

    nodes: tuple
    J: sp.Matrix  # local partials, symbolic, or numbers at a point
    e: sp.Matrix

    @property
    def matrix(self) -> sp.Matrix:
        return sp.eye(len(self.nodes)) - self.J.T

    def back_substitution(self) -> list:
        """Solve from the last row up: exactly the backward sweep of Step 2."""
        n = len(self.nodes)
        lam = [None] * n
        for j in reversed(range(n)):
            lam[j] = self.e[j] + sum(self.J[i, j] * lam[i] for i in range(j + 1, n))
        return lam

    def dense_solve(self) -> np.ndarray:
        """A general-purpose dense solve, for comparison (numeric systems only)."""
        M = np.array(self.matrix.tolist(), dtype=float)
        return np.linalg.solve(M, np.array(self.e.tolist(), dtype=float).ravel())

    def _repr_latex_(self) -> str:
        lam = sp.Matrix([multiplier_of(z) for z in self.nodes])
        return rf"$\displaystyle {latex(self.matrix)} {latex(lam)} = {latex(self.e)}$"


def adjoint_system(graph, at: Mapping | None = None) -> AdjointSystem:
    """Step 2 as a matrix: symbolic local partials, or their numbers at ``at``.

    Scalar graphs only (for matrix nodes the blocks would be Kronecker products).
    """
    if any(graph.node(z).shape is not None for z in graph.nodes + graph.constants):
        raise ShapeError("the adjoint system as a matrix is shown for scalar graphs only")
    nodes = graph.nodes
    index = {z: k for k, z in enumerate(nodes)}
    env = _env(graph, at)
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


# -- shadow prices -----------------------------------------------------------------


def shadow_prices(graph, at: Mapping, eps: float = 1e-6) -> dict:
    """``{node: (change of z_n / eps, lambda)}`` when constraint i becomes
    ``z_i = f_i + eps`` (for an input, when x moves by eps): lambda_i is the price of
    loosening constraint i, as in the sensitivity reading of Lagrange multipliers."""
    if any(graph.node(z).shape is not None for z in graph.nodes):
        raise ShapeError("shadow prices are shown for scalar nodes only")
    base = read_values(graph, at)
    sol = solve(graph, at)
    f0 = forward_sweep(graph, base)[graph.output]
    return {
        z: ((float(forward_sweep(graph, base, {z: eps})[graph.output]) - float(f0)) / eps, lam)
        for z, lam in sol.adjoints.items()
    }
