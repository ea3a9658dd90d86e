"""Assignments per student: a random graph, its statement in LaTeX, its answer key.

Each seed gives a different graph of elementary operations defined on the whole
real line, in which some node is read by two others (fan-out, the lecture's trap).
The graph travels as a plain text file that the command line ``adjoint grade``
reads back (:func:`read_graph`)::

    # comments and blank lines are ignored
    inputs: x, y          # scalars, or matrices with their shapes: W1(d, d)
    constants: c          # data: values but no multiplier (optional): X(n, d)
    z1 = x*y              # one constraint a line, in any order
    z2 = sin(z1) + x      # in the text syntax of adjoint.parse (tanh.(H), A .* B, ...)
    output: z2            # optional: else the one node nobody reads
    weights: x=2, y=1     # optional: points per node for partial credit

or as JSON: ``{"inputs": [...], "constants": [...], "constraints": ["z1 = x*y", ...],
"output": "z2", "weights": {"x": 2}}``. Formulas are parsed by
:func:`adjoint.parse`, never run.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sympy as sp

from .api import Graph
from .core.display import latex, text
from .core.errors import AdjointError
from .coursework.grading import check_adjoints
from .system.lagrangian import stationarity

__all__ = ["OPERATIONS", "Assignment", "assignment", "graph_text", "read_graph"]

#: The operations an assignment draws from: each defined on the whole real line.
OPERATIONS = {
    "mul": (2, lambda a, b: a * b),
    "add": (2, lambda a, b: a + b),
    "sub": (2, lambda a, b: a - b),
    "sinmul": (2, lambda a, b: sp.sin(a) * b),
    "sin": (1, sp.sin),
    "cos": (1, sp.cos),
    "tanh": (1, sp.tanh),
    "exp": (1, sp.exp),
    "square": (1, lambda a: a**2),
    "log1p2": (1, lambda a: sp.log(1 + a**2)),
}

#: The largest graph file or submission the readers accept, in characters.
MAX_FILE = 200_000


@dataclass(frozen=True)
class Assignment:
    """One student's graph, the statement to hand out and the answer key."""

    seed: int
    graph: Graph
    statement: str  # LaTeX: prose with $...$ and one display of the constraints
    answers: dict = field(repr=False)  # {node: lambda_j}, from grad L = 0

    @property
    def answer_key(self) -> dict[str, str]:
        """The answers as text, ``{node name: formula}``, as a submission file has them."""
        return {z.name: str(rhs) for z, rhs in self.answers.items()}

    def graph_text(self) -> str:
        """The graph in the text format ``adjoint grade --graph`` reads."""
        return graph_text(self.graph)

    def grade(self, submission: Mapping, **options):
        """:func:`adjoint.check_adjoints` on this assignment's graph."""
        return check_adjoints(self.graph, submission, **options)


def assignment(
    seed: int | str,
    size: int = 4,
    *,
    inputs: int = 2,
    operations: Sequence[str] | None = None,
) -> Assignment:
    """A random graph of ``size`` constraints on ``inputs`` scalar inputs, with fan-out:
    some node is read by two others (an inner node from 4 constraints on), and every
    node reaches the output.

    Parameters
    ----------
    seed : int or str
        The student's number or id (``"s1234567"``, an e-mail address): the same seed
        gives the same assignment, on every machine and Python version (a text is
        hashed with SHA-256, not Python's per-process ``hash``).
    size : int
        How many constraints (2 to 30).
    inputs : int
        How many inputs (1 to 6).
    operations : sequence of str, optional
        Names from :data:`OPERATIONS` to draw from (default: all).

    Examples
    --------
    >>> a = assignment(7)
    >>> len(a.graph.defined), sorted(a.answer_key) == sorted(z.name for z in a.graph.nodes)
    (4, True)
    >>> a.grade(a.answer_key, seed=0).ok
    True
    """
    for name, value, low, high in (("size", size, 2, 30), ("inputs", inputs, 1, 6)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise AdjointError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, str)):
        raise AdjointError(f"seed must be an integer or a student id (text), got {seed!r}")
    if isinstance(seed, str):
        if not seed.strip():
            raise AdjointError("seed must not be empty text: give the student's id")
        seed = int.from_bytes(hashlib.sha256(seed.strip().encode()).digest()[:8], "big")
    names = list(OPERATIONS) if operations is None else list(operations)
    unknown = [n for n in names if n not in OPERATIONS]
    if not names or unknown:
        raise AdjointError(
            f"unknown operations {unknown}: choose from {', '.join(OPERATIONS)}"
            if unknown
            else "operations must name at least one operation"
        )
    if all(OPERATIONS[n][0] == 1 for n in names) and inputs > 1:
        raise AdjointError("with several inputs, operations must include a binary one")
    rng = random.Random(seed)

    def fan_out_from(g):  # a node read by two others: an inner one if the graph has room
        return g.defined if size >= 4 else g.nodes

    for _ in range(200):
        g = _draw(rng, size, inputs, names)
        if any(len(g.children(z)) > 1 for z in fan_out_from(g)) and all(
            g.children(z) for z in g.nodes if z != g.output
        ):
            break
    else:  # pragma: no cover - the draws above almost never miss
        raise AdjointError(f"could not draw a graph with fan-out for seed {seed}: try another")
    answers = {c.wrt: c.rhs for c in stationarity(g).backward_conditions}
    return Assignment(seed, g, _statement(g), answers)


def _draw(rng, size: int, inputs: int, names: list[str]) -> Graph:
    """Nodes read mostly recent ones; the output gathers every node nobody reads yet,
    plus, when the graph has no fan-out so far, one node that is read once."""
    g = Graph()
    letters = ["x", "y", "w", "u", "v", "t"]
    nodes = [g.input(letters[k]) for k in range(inputs)]
    unread = list(nodes)
    for k in range(1, size):
        arity, build = OPERATIONS[rng.choice(names)]
        parents = []
        for _ in range(arity):
            pool = unread if unread and rng.random() < 0.6 else nodes
            parents.append(rng.choice(pool[-4:] if rng.random() < 0.7 else pool))
        expr = build(*parents)
        if expr.is_number or not expr.free_symbols & set(nodes):
            expr = nodes[-1] * nodes[0]  # sin(a)*b with a = b... never a constant node
        z = g.define(f"z{k}", expr)
        unread = [u for u in unread if not g.children(u)] + [z]
        nodes.append(z)
    pool = g.defined if size >= 4 else nodes
    gather = list(unread)
    if not any(len(g.children(z)) > 1 for z in pool):
        once = [z for z in pool if len(g.children(z)) == 1 and z not in gather]
        if once:
            gather.append(rng.choice(once))
    if len(gather) > 1:
        expr = sp.Add(*gather)
    else:
        arity, build = OPERATIONS[rng.choice(names)]
        expr = build(*gather, *(rng.choice(nodes) for _ in range(arity - 1)))
        if expr.is_number or gather[0] not in expr.free_symbols:
            expr = 2 * gather[0]
    g.define("f", expr)
    return g


def _statement(g: Graph) -> str:
    rows = r" \\ ".join(f"{latex(z)} &= {latex(g.expr(z))}" for z in g.defined)
    inputs = ", ".join(f"${latex(x)}$" for x in g.inputs)
    out = latex(g.output)
    return (
        f"Consider the computation graph with inputs {inputs} and the constraints\n"
        rf"\[ \begin{{aligned}} {rows} \end{{aligned}} \]"
        "\n"
        f"whose output is ${out}$. Write the Lagrangian "
        rf"$\mathcal{{L}} = {out} - \sum_i \lambda_i (z_i - f_i)$, "
        r"set $\partial \mathcal{L} / \partial z_j = 0$ for every node, and give each "
        r"multiplier $\lambda_j$ as a formula in the nodes $z$ and the multipliers "
        r"$\lambda_i$ of the nodes that read $z_j$."
    )


# -- the graph file ------------------------------------------------------------------


def graph_text(graph) -> str:
    """``graph`` in the text format of :func:`read_graph`: matrices with their shapes,
    constraints as the package prints them (which :func:`adjoint.parse` reads back)."""

    def declared(s):
        shape = graph.node(s).shape
        return s.name if shape is None else f"{s.name}({shape[0]}, {shape[1]})"

    lines = [f"inputs: {', '.join(declared(x) for x in graph.inputs)}"]
    if graph.constants:
        lines.append(f"constants: {', '.join(declared(c) for c in graph.constants)}")
    lines += [f"{z} = {text(graph.expr(z))}" for z in graph.defined]
    lines.append(f"output: {graph.output}")
    return "\n".join(lines) + "\n"


_DECLARED = re.compile(r"^([A-Za-z_]\w*)\s*(?:\(\s*(\w+)\s*,\s*(\w+)\s*\))?$")


def read_graph(text: str) -> tuple[Graph, dict]:
    """A graph and its weights ``{name: points}`` from a graph file's text (text format
    or JSON, see the module's docstring). Raises :class:`AdjointError` naming the line."""
    if not isinstance(text, str):
        raise AdjointError(f"expected the graph file's text, got {type(text).__name__}")
    if len(text) > MAX_FILE:
        raise AdjointError(f"the graph file has {len(text)} characters; the limit is {MAX_FILE}")
    if text.lstrip().startswith("{"):
        spec = _json(text, "the graph file")
        if not isinstance(spec, dict):
            raise AdjointError("the graph file's JSON must be an object")
        constraints = spec.get("constraints", [])
        if isinstance(constraints, dict):
            constraints = [f"{k} = {v}" for k, v in constraints.items()]
        return _build(
            _names(spec.get("inputs", []), "inputs"),
            _names(spec.get("constants", []), "constants"),
            constraints,
            spec.get("output"),
            spec.get("weights") or {},
        )
    inputs, constants, constraints, output, weights = [], [], [], None, {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, colon, rest = line.partition(":")
        key = key.strip().lower()
        if colon and key in ("inputs", "constants", "output", "weights"):
            if key == "inputs":
                inputs += _split(rest)
            elif key == "constants":
                constants += _split(rest)
            elif key == "output":
                output = rest.strip()
            else:
                for item in _split(rest):
                    name, _, value = item.partition("=")
                    try:
                        weights[name.strip()] = float(value)
                    except ValueError:
                        raise AdjointError(
                            f"line {number}: a weight is name=number, got {item!r}"
                        ) from None
        elif "=" in line:
            constraints.append(line)
        else:
            raise AdjointError(
                f"line {number}: expected 'inputs: ...', 'output: ...', 'weights: ...' or a "
                f"constraint 'z = f', got {raw.strip()!r}"
            )
    return _build(inputs, constants, constraints, output, weights)


def _split(text: str) -> list[str]:
    """The items of a comma-separated list, commas inside parentheses kept (W(d, d))."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def _declared(item: str) -> tuple[str, tuple | None]:
    """``("W", (d, d))`` from ``"W(d, d)"``, ``("x", None)`` from ``"x"``; a dimension is
    a positive integer or a name (a positive integer symbol, shared by name)."""
    match = _DECLARED.match(item.strip())
    if not match:
        raise AdjointError(
            f"{item!r} is not a declaration: write a name (x) or a matrix with its shape "
            "(W(d, d) or X(4, 3))"
        )
    name, rows, cols = match.groups()
    if rows is None:
        return name, None
    dims = []
    for dim in (rows, cols):
        if dim.isdigit():
            if int(dim) < 1:
                raise AdjointError(f"{item!r}: a dimension must be positive")
            dims.append(int(dim))
        elif dim.isidentifier() and not dim[0].isdigit():
            dims.append(sp.Symbol(dim, integer=True, positive=True))
        else:
            raise AdjointError(f"{item!r}: a dimension is a positive integer or a name")
    return name, tuple(dims)


def _names(value, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AdjointError(f"{what} must be a list of names, got {value!r}")
    return value


def _build(inputs, constants, constraints, output, weights):
    if not inputs:
        raise AdjointError("the graph file declares no inputs: add a line 'inputs: x, y'")
    if not isinstance(constraints, list) or not all(isinstance(c, str) for c in constraints):
        raise AdjointError("constraints must be lines 'z = f'")
    if not isinstance(weights, dict):
        raise AdjointError(f"weights must map node names to points, got {weights!r}")
    g = Graph()
    for names, declare in ((inputs, g.input), (constants, g.constant)):
        for item in names:
            name, shape = _declared(item)
            declare(name) if shape is None else declare(name, shape=shape)
    graph = Graph.from_equations(
        constraints,
        inputs=list(g.inputs),
        constants=list(g.constants),
        output=output or None,
    )
    return graph, dict(weights)


def _json(text: str, what: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise AdjointError(f"{what} is not valid JSON: {str(exc)[:200]}") from None


def read_submission(text: str) -> dict:
    """A submission file's ``{node name: formula}`` (a JSON object of text or numbers)."""
    if len(text) > MAX_FILE:
        raise AdjointError(f"the submission has {len(text)} characters; the limit is {MAX_FILE}")
    data = _json(text, "the submission")
    if not isinstance(data, dict):
        raise AdjointError(
            'the submission must be a JSON object {"node": "formula", ...}, such as '
            '{"z1": "lambda_z2*cos(z1)"}'
        )
    out = {}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            value = repr(value)  # graded as unparseable text, not refused as a whole
        out[key] = value
    return out
