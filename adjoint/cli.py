"""The ``adjoint`` command: the lecture's derivation for an expression, in a terminal.

    adjoint demo                                   # the lecture's examples, end to end
    adjoint explain "sin(x*y) + x**2" --at x=1.5,y=-2
    adjoint explain "sin(x*y) + x**2" --format json    # or markdown, latex
    adjoint explain "sin(x*y) + x**2" --at x=1.5,y=-2 --direction x=1,y=0.5
                                                   # with the tangent and second-order sweeps
    adjoint dot "sin(x*y) + x**2" --at x=1.5,y=-2      # Graphviz DOT
    adjoint compile "sin(x*y) + x**2"                  # the generated program

Text is parsed without running it as code; a mistake prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from .api import Graph
from .errors import AdjointError, BadValueError
from .examples import EXAMPLES
from .parsing import parse

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
    explain.add_argument("--format", choices=["text", "markdown", "latex", "json"], default="text")
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
    args = parser.parse_args(argv)
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
    return 0


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
    if fmt == "latex":
        return explanation.to_latex()
    return str(explanation)


def _read_point(text: str, g: Graph, option: str = "--at") -> dict:
    point = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep:
            raise BadValueError(
                f"{option} expects name=value pairs such as x=1.5,y=-2, got {item!r}"
            )
        number = parse(value.strip(), symbols=[])
        if not number.is_number:
            raise BadValueError(f"the value of {name.strip()} is not a number: {value!r}")
        point[name.strip()] = float(number) if number.is_real else number
    return point


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
    }


def _json_number(value):
    """A float, or None where it is not a number (JSON has no nan): the reason is
    under "undefined"."""
    value = float(value)
    return value if math.isfinite(value) else None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
