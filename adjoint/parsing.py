"""Text to sympy expressions, without running the text as Python.

The text is read by :mod:`ast` into a syntax tree and only a small whitelist of
node kinds is turned into sympy objects: numbers, names of symbols, the
arithmetic operators and calls of the elementary functions listed in
:data:`FUNCTIONS`. Nothing is evaluated by Python's ``eval``, so attribute access,
imports, lambdas, strings and the like are errors, not code.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping

import sympy as sp

from .errors import ParseError

__all__ = ["FUNCTIONS", "parse"]

#: The longest text accepted, in characters.
MAX_LENGTH = 20_000
#: The deepest nesting of parentheses and operators accepted.
MAX_DEPTH = 100
#: The largest exponent allowed between two numbers, so ``9**9**9`` is refused.
MAX_NUMERIC_EXPONENT = 1_000


def _sigmoid(x):
    return 1 / (1 + sp.exp(-x))


def _relu(x):
    return sp.Max(0, x)


FUNCTIONS: Mapping[str, object] = {
    **{
        name: getattr(sp, name)
        for name in (
            "sin cos tan cot sec csc asin acos atan acot asec acsc atan2 "
            "sinh cosh tanh coth sech csch asinh acosh atanh acoth asech acsch "
            "exp log sqrt cbrt Abs sign Max Min Heaviside erf erfc gamma loggamma"
        ).split()
    },
    "ln": sp.log,
    "abs": sp.Abs,
    "max": sp.Max,
    "min": sp.Min,
    "sigmoid": _sigmoid,
    "relu": _relu,
}
"""The functions that text may call, by name."""

CONSTANTS: Mapping[str, sp.Expr] = {"pi": sp.pi, "E": sp.E}

_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
    ast.MatMult: lambda a, b: a * b,  # A @ B: sympy's product of matrix symbols
}


def parse(text: str, symbols: Iterable[sp.Symbol] | None = None) -> sp.Expr:
    """Turn ``text`` into a sympy expression without running it as code.

    Parameters
    ----------
    text : str
        An arithmetic expression: numbers, names, ``+ - * / **`` (``^`` is a power
        too), parentheses and calls of the functions in :data:`FUNCTIONS`; for
        matrix symbols also ``@`` and the transpose ``.T``.
    symbols : iterable of Symbol, optional
        The symbols the text may name. A name that is not among them is an error.
        With ``None``, every unknown name becomes a new real symbol.

    Returns
    -------
    sympy.Expr

    Raises
    ------
    ParseError
        For anything outside that grammar, naming the offending piece and its column.

    Examples
    --------
    >>> import sympy as sp
    >>> x, y = sp.symbols("x y", real=True)
    >>> parse("sin(x*y) + x^2", symbols=[x, y])
    x**2 + sin(x*y)
    >>> parse("__import__('os')")
    Traceback (most recent call last):
    ...
    adjoint.errors.ParseError: cannot parse "__import__('os')": a call of '__import__', ...
    """
    if not isinstance(text, str):
        raise ParseError(f"expected text to parse, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ParseError(
            f"cannot parse text of {len(text)} characters: the limit is {MAX_LENGTH}; "
            "build large expressions with sympy or with Graph.define, one node at a time"
        )
    _check_depth(text)
    # x^2 means a power, as on paper; nothing else may contain ^ (no strings are allowed).
    source = text.strip().replace("^", "**")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        col = f" (column {exc.offset})" if exc.offset else ""
        raise ParseError(f"cannot parse {_quote(text)}: invalid syntax{col}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ParseError(
            f"cannot parse {_quote(text)}: its chain of operators is too long for Python's "
            "parser; build it with sympy instead"
        ) from None
    if symbols is not None and (isinstance(symbols, str) or not hasattr(symbols, "__iter__")):
        raise ParseError(f"symbols must be a list of sympy symbols, got {symbols!r}")
    known = None if symbols is None else {s.name: s for s in symbols}
    return _Reader(source, known).read(tree.body)


def _quote(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _check_depth(text: str) -> None:
    """Refuse deep nesting before :mod:`ast` meets it (it would recurse)."""
    depth = 0
    for column, char in enumerate(text, 1):
        if char in "([{":
            depth += 1
            if depth > MAX_DEPTH:
                raise ParseError(
                    f"cannot parse the text: parentheses nest deeper than {MAX_DEPTH} "
                    f"(column {column})"
                )
        elif char in ")]}":
            depth -= 1


class _Reader:
    def __init__(self, text: str, known: dict[str, sp.Symbol] | None):
        self.text = text
        self.known = known
        self.created: dict[str, sp.Symbol] = {}

    def fail(self, node: ast.AST, what: str) -> ParseError:
        col = getattr(node, "col_offset", None)
        where = f" (column {col + 1})" if col is not None else ""
        return ParseError(f"cannot parse {_quote(self.text)}: {what}{where}")

    def read(self, root: ast.AST):
        # An explicit stack, so a long sum like x + x + ... + x cannot exhaust
        # Python's recursion limit.
        stack: list[tuple[ast.AST, bool]] = [(root, False)]
        done: list = []
        while stack:
            node, ready = stack.pop()
            children = self.children(node)
            if not ready:
                stack.append((node, True))
                stack.extend((child, False) for child in reversed(children))
                continue
            args = done[len(done) - len(children) :]
            del done[len(done) - len(children) :]
            done.append(self.build(node, args))
        return done[0]

    def children(self, node: ast.AST) -> list[ast.AST]:
        if isinstance(node, (ast.Constant, ast.Name)):
            return []
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            return [node.operand]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return [node.left, node.right]
        if isinstance(node, ast.Call):
            self.check_call(node)
            return list(node.args)
        if isinstance(node, ast.Attribute) and node.attr == "T":  # A.T, a transpose
            return [node.value]
        raise self.fail(node, f"{_describe(node)} is not allowed in an expression")

    def build(self, node: ast.AST, args: list):
        if isinstance(node, ast.Constant):
            return self.number(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.UnaryOp):
            return -args[0] if isinstance(node.op, ast.USub) else args[0]
        if isinstance(node, ast.Attribute):
            if not isinstance(args[0], sp.MatrixExpr):
                raise self.fail(node, f"{args[0]} is not a matrix, so it has no transpose .T")
            return args[0].T
        if isinstance(node, ast.BinOp):
            left, right = args
            if isinstance(node.op, ast.Pow):
                self.check_power(node, left, right)
            try:
                return _BINARY[type(node.op)](left, right)
            except (TypeError, ValueError, ZeroDivisionError) as exc:
                raise self.fail(node, f"the operation fails ({exc})") from None
        name = node.func.id
        try:
            return FUNCTIONS[name](*args)
        except (TypeError, ValueError) as exc:
            raise self.fail(node, f"{name}() cannot take these arguments ({exc})") from None

    def number(self, node: ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(node, f"{_describe(node)} is not allowed in an expression")
        if isinstance(value, int):
            return sp.Integer(value)
        literal = ast.get_source_segment(self.text, node) or repr(value)
        return sp.Float(literal.replace("_", ""))

    def name(self, node: ast.Name):
        name = node.id
        if name.startswith("_"):
            raise self.fail(node, f"the name {name!r} is not allowed (leading underscore)")
        if self.known is not None and name in self.known:
            return self.known[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in FUNCTIONS:
            raise self.fail(node, f"{name!r} is a function: call it, as in {name}(x)")
        if self.known is not None:
            allowed = ", ".join(sorted(self.known)) or "none"
            raise self.fail(node, f"unknown symbol {name!r}; the symbols are: {allowed}")
        if name not in self.created:
            self.created[name] = sp.Symbol(name, real=True)
        return self.created[name]

    def check_call(self, node: ast.Call) -> None:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node, f"{_describe(node.func)} cannot be called")
        name = node.func.id
        if name not in FUNCTIONS:
            raise self.fail(
                node,
                f"a call of {name!r}, which is not an elementary function "
                "(the allowed ones are in adjoint.parsing.FUNCTIONS)",
            )
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(node, f"{name}() takes plain positional arguments only")

    def check_power(self, node, base, exponent):
        if base.is_Number and exponent.is_Number and abs(exponent) > MAX_NUMERIC_EXPONENT:
            raise self.fail(node, f"the number {base}**{exponent} is too large to compute")


def _describe(node: ast.AST) -> str:
    kinds = {
        ast.Attribute: "attribute access",
        ast.Lambda: "a lambda",
        ast.Subscript: "indexing",
        ast.Compare: "a comparison",
        ast.BoolOp: "a boolean operation",
        ast.Starred: "unpacking",
        ast.JoinedStr: "an f-string",
        ast.List: "a list",
        ast.Tuple: "a tuple",
        ast.Dict: "a dict",
        ast.Set: "a set",
        ast.IfExp: "a conditional expression",
        ast.NamedExpr: "an assignment",
        ast.GeneratorExp: "a generator",
        ast.ListComp: "a comprehension",
        ast.Await: "await",
    }
    if isinstance(node, ast.Constant):
        return f"the literal {node.value!r}"
    for kind, text in kinds.items():
        if isinstance(node, kind):
            return text
    if isinstance(node, ast.BinOp):
        return f"the operator {type(node.op).__name__}"
    if isinstance(node, ast.UnaryOp):
        return f"the operator {type(node.op).__name__}"
    return type(node).__name__
