"""The ``adjoint`` command: the lecture's derivation for an expression, in a terminal.

    adjoint demo                                   # the lecture's examples, end to end
    adjoint explain "sin(x*y) + x**2" --at x=1.5,y=-2
    adjoint explain "sin(x*y) + x**2" --format json    # or markdown, latex, html
    adjoint explain "sin(x*y) + x**2" --at x=1.5,y=-2 --direction x=1,y=0.5
                                                   # with the tangent and second-order sweeps
    adjoint dot "sin(x*y) + x**2" --at x=1.5,y=-2      # Graphviz DOT
    adjoint compile "sin(x*y) + x**2"                  # the generated program
    adjoint grade answers.json --graph graph.txt --format gradescope --output results.json

Text is parsed without running it as code; a mistake prints one line and exits 2.
``grade`` exits 0 when every submitted multiplier is right, 1 when some are wrong or
could not be graded, 2 when the files cannot be read (with ``--format gradescope`` a
results.json with score 0 and the reason is still written, for the student to see),
3 when the result cannot be written (``--output`` in a folder that does not exist).
The graph file is described in :mod:`adjoint.assignments`; the submission is a JSON
object ``{"node": "formula"}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from .api import Graph
from .assignments import MAX_FILE, assignment, read_graph, read_submission
from .core.errors import AdjointError, BadValueError, ParseError, WriteError, write_text
from .core.parsing import parse
from .coursework.grading import check_adjoints
from .examples import EXAMPLES

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="adjoint",
        description="Backpropagation as the stationarity conditions of a Lagrangian.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run the lecture's examples end to end")
    explain = commands.add_parser("explain", help="derive and solve grad L = 0 for EXPR")
    explain.add_argument("expr", help='an expression, such as "sin(x*y) + x**2"')
    explain.add_argument("--at", help="a point, such as x=1.5,y=-2 (else symbolic)")
    explain.add_argument(
        "--format",
        choices=["text", "markdown", "latex", "latex-document", "json", "html"],
        default="text",
        help="latex: the body, to paste into a document; latex-document: a whole "
        "document that compiles by itself",
    )
    explain.add_argument(
        "--direction",
        help="a direction, such as x=1,y=0.5 (with --at): adds the tangent and "
        "second-order sweeps and the Hessian-vector product",
    )
    dot = commands.add_parser("dot", help="the computation graph of EXPR as Graphviz DOT")
    dot.add_argument("expr")
    dot.add_argument("--at", help="a point, to show values and multipliers on the nodes")
    code = commands.add_parser("compile", help="the generated NumPy program for EXPR")
    code.add_argument("expr")
    code.add_argument("--backend", choices=["numpy", "jax"], default="numpy")
    grade = commands.add_parser(
        "grade", help="grade the multipliers in SUBMISSION (JSON) against the graph GRAPH"
    )
    grade.add_argument("submission", help='a JSON file {"node": "formula", ...}')
    grade.add_argument("--graph", required=True, help="the graph file: constraints, inputs")
    grade.add_argument("--format", choices=["text", "json", "gradescope"], default="text")
    grade.add_argument("--output", help="write the result to this file (else stdout)")
    grade.add_argument("--seed", type=int, help="reproduce the random points")
    grade.add_argument("--budget", type=float, default=3.0, help="seconds per node")
    grade.add_argument("--points", type=int, default=8, help="random points per node")
    assign = commands.add_parser(
        "assign",
        help="write one assignment per student: graph file, LaTeX statement, answer key",
    )
    assign.add_argument("students", nargs="+", help="student ids (or numbers): the seeds")
    assign.add_argument("--dir", required=True, help="the folder to write into")
    assign.add_argument("--size", type=int, default=4, help="constraints per graph (2 to 30)")
    assign.add_argument("--inputs", type=int, default=2, help="inputs per graph (1 to 6)")
    args = parser.parse_args(argv)
    if args.command == "assign":
        try:
            return assign_files(args)
        except WriteError as exc:
            print(f"adjoint: error: {exc}", file=sys.stderr)
            return 3
    if args.command == "grade":
        try:
            return grade_files(args)
        except WriteError as exc:
            print(f"adjoint: error: {exc}", file=sys.stderr)
            return 3
    try:
        if args.command == "demo":
            print(demo())
        elif args.command == "explain":
            print(explain_expr(args.expr, args.at, args.format, args.direction))
        elif args.command == "dot":
            g = Graph.from_expr(parse(args.expr))
            print(g.to_dot(g.solve(_read_point(args.at, g)) if args.at else None))
        else:
            print(Graph.from_expr(parse(args.expr)).source(backend=args.backend), end="")
    except AdjointError as exc:
        print(f"adjoint: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader stopped early (adjoint demo | head): no traceback for that; stdout
        # goes to devnull so that Python's own flush at exit does not complain either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


def grade_files(args) -> int:
    """``adjoint grade``: read the two files, grade, write the result; the exit code."""
    try:
        graph, weights = read_graph(_read(args.graph, "graph"))
        unknown = [k for k in weights if k not in graph]
        if unknown:  # as the Python call refuses it: a weight nobody can earn is a typo
            raise AdjointError(
                f"weights: {', '.join(map(str, unknown))} is not a node of the graph; its "
                f"nodes are {', '.join(map(str, graph.nodes))}"
            )
    except AdjointError as exc:
        print(f"adjoint: error: in the graph file {args.graph}: {exc}", file=sys.stderr)
        return 2
    notes = []
    try:
        submission = read_submission(_read(args.submission, "submission"))
        known = {k: v for k, v in submission.items() if k in graph}
        notes = [f"{k} is not a node of the graph: ignored" for k in submission if k not in known]
        grading = check_adjoints(
            graph, known, seed=args.seed, weights=weights, budget=args.budget, points=args.points
        )
    except AdjointError as exc:
        print(f"adjoint: error: in the submission {args.submission}: {exc}", file=sys.stderr)
        if args.format == "gradescope":
            _write(args.output, json.dumps(_unreadable(str(exc)), indent=2))
        return 2
    if args.format == "gradescope":
        results = grading.to_gradescope()
        if notes:
            results["output"] += "\n" + "\n".join(notes)
        out = json.dumps(results, indent=2, allow_nan=False)
    elif args.format == "json":
        out = grading.to_json()
    else:
        out = "\n".join([repr(grading), *notes])
    _write(args.output, out)
    return 0 if grading.ok and not grading.missing else 1


def assign_files(args) -> int:
    """``adjoint assign``: for each student id, ``DIR/<id>/graph.txt`` (what ``adjoint
    grade --graph`` reads), ``statement.tex`` (to hand out) and ``key.json`` (the
    answers, as a submission file has them). The same id gives the same files."""
    written = []
    try:
        tasks = [
            (student, assignment(student, args.size, inputs=args.inputs))
            for student in args.students
        ]
    except AdjointError as exc:
        print(f"adjoint: error: {exc}", file=sys.stderr)
        return 2
    folders = {}
    for student, _ in tasks:
        folder = _folder_name(student)
        if folder in folders:
            print(
                f"adjoint: error: the ids {folders[folder]!r} and {student!r} make the same "
                f"folder name {folder!r}; give distinct ids",
                file=sys.stderr,
            )
            return 2
        folders[folder] = student
    for student, task in tasks:
        base = os.path.join(args.dir, _folder_name(student))
        try:
            os.makedirs(base, exist_ok=True)
        except OSError as exc:
            raise WriteError(f"cannot make the folder {base}: {exc.strerror or exc}") from None
        write_text(os.path.join(base, "graph.txt"), task.graph_text())
        write_text(os.path.join(base, "statement.tex"), task.statement + "\n")
        write_text(os.path.join(base, "key.json"), json.dumps(task.answer_key, indent=2) + "\n")
        written.append(f"{student}: {base}")
    print("\n".join(written))
    return 0


def _folder_name(student: str) -> str:
    """A folder name for a student id: its letters, digits and ``-_.@`` (others as _)."""
    name = "".join(ch if ch.isalnum() or ch in "-_.@" else "_" for ch in student.strip())
    return name.strip(".") or "student"


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(MAX_FILE + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise AdjointError(f"cannot read the {what} file: {exc}") from None


def _write(path: str | None, text: str) -> None:
    if path is None:
        print(text)
    else:
        write_text(path, text + "\n")


def _unreadable(reason: str) -> dict:
    return {
        "score": 0.0,
        "execution_time": 0.0,
        "output": f"the submission could not be read: {reason}",
        "visibility": "visible",
        "tests": [],
    }


def demo() -> str:
    """The lecture's examples: each graph, its Lagrangian, grad L = 0 and the solution."""
    parts = []
    for name, build in EXAMPLES.items():
        g, point = build()
        summary = build.__doc__.splitlines()[0].replace("``", "")
        parts.append(f"Example: {name}. {summary}\n\n{g.explain(point)}")
    return "\n\n".join(parts)


def explain_expr(text: str, at: str | None, fmt: str = "text", direction: str | None = None) -> str:
    g = Graph.from_expr(parse(text))
    point = _read_point(at, g) if at else None
    if direction and point is None:
        raise BadValueError("--direction needs --at: the second order is shown at a point")
    v = _read_point(direction, g, "--direction") if direction else None
    explanation = g.explain(point, direction=v)
    if fmt == "json":
        data = explanation.to_dict()
        data["result"] = _as_json(g, point)
        if v is not None:
            data["result"]["hvp"] = {str(x): _json_number(h) for x, h in g.hvp(point, v).items()}
        return json.dumps(data, indent=2, allow_nan=False)
    if fmt == "markdown":
        return explanation.to_markdown()
    if fmt in ("latex", "latex-document"):
        return explanation.to_latex(standalone=fmt == "latex-document")
    if fmt == "html":  # a page to share: the derivation, the trace table, the drawing
        return explanation.to_html()
    return str(explanation)


def _read_point(text: str, g: Graph, option: str = "--at") -> dict:
    """``x=1.5,y=-2`` as ``{"x": 1.5, "y": -2.0}``; a value may be a constant expression."""
    point = {}
    for item in text.split(","):
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not name:
            raise BadValueError(
                f"{option} expects name=value pairs such as x=1.5,y=-2, got {item!r}"
            )
        if name in point:
            raise BadValueError(f"{name} is given twice in {option} {text!r}")
        point[name] = _real_number(name, value)
    return point


def _real_number(name: str, value: str) -> float:
    try:
        number = parse(value, symbols=[])  # no names: only numbers and constants
        number = float(number) if number.is_number and number.is_real else None
    except (ParseError, TypeError, ValueError, OverflowError):
        number = None
    if number is None or not math.isfinite(number):
        raise BadValueError(
            f"the value of {name} must be a real number (such as 1.5, -2 or pi/4), got {value!r}"
        )
    return number


def _as_json(g: Graph, point) -> dict:
    kkt = g.stationarity()
    sol = g.solve(point)
    as_value = _json_number if point is not None else str
    return {
        "inputs": [str(x) for x in g.inputs],
        "output": str(g.output),
        "constraints": {str(z): str(g.expr(z)) for z in g.defined},
        "lagrangian": str(g.lagrangian()),
        "stationarity": {
            role: [{"unknown": str(c.unknown), "rhs": str(c.rhs)} for c in kkt.conditions(role)]
            for role in ("forward", "adjoint", "gradient")
        },
        "values": {str(z): as_value(v) for z, v in sol.values.items()},
        "adjoints": {str(z): as_value(v) for z, v in sol.adjoints.items()},
        "gradient": {str(z): as_value(v) for z, v in sol.gradient.items()},
        "output_value": as_value(sol.output),
        "undefined": {str(z): why for z, why in sol.undefined.items()},
        "kinks": [
            {
                "node": str(k.node),
                "partial": f"d{k.node}/d{k.argument}",
                "entries": [list(e) for e in k.entries],
                "taken": k.taken,
            }
            for k in sol.kinks
        ],
    }


def _json_number(value):
    """A float, or None where it is not a number (JSON has no nan): the reason is
    under "undefined"."""
    value = float(value)
    return value if math.isfinite(value) else None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
