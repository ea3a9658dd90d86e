"""Text to sympy expressions, without running the text as Python.

The text is read by :mod:`ast` into a syntax tree and only a small whitelist of
node kinds is turned into sympy objects: numbers, names of symbols, the
arithmetic operators and calls of the elementary functions listed in
:data:`FUNCTIONS`. Nothing is evaluated by Python's ``eval``, so attribute access,
imports, lambdas, strings and the like are errors, not code.

Text may come from hundreds of people, some of them hostile, so reading it is
bounded: in length (:data:`MAX_LENGTH`), in nesting (:data:`MAX_DEPTH`), in the
size of every number sympy would compute exactly (:data:`MAX_DIGITS`, so neither
``9**9**9`` nor ``gamma(10**8)`` runs for minutes) and in time
(:data:`TIME_LIMIT`). Every refusal is a :class:`~adjoint.core.errors.ParseError`
that says what is wrong and, where it can, how to write it instead.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import keyword
import math
import re
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

import mpmath
import sympy as sp

from .budget import TimeBudget
from .errors import ParseError
from .symbols import STEP, STEPS, over_steps, step_value

__all__ = ["FUNCTIONS", "Word", "parse", "register_word", "words"]

#: The longest text accepted, in characters.
MAX_LENGTH = 20_000
#: The deepest nesting of parentheses, calls and operators accepted. sympy recurses
#: on nested expressions, and so do printing and differentiation later.
MAX_DEPTH = 50
#: Exact numbers (integers, numerators, denominators) have at most this many digits,
#: and floats lie between ``10**-MAX_DIGITS`` and ``10**MAX_DIGITS`` in magnitude.
MAX_DIGITS = 1_000
#: A float literal has at most this many significant digits (sympy keeps them all).
MAX_FLOAT_DIGITS = 100
#: A root (a fractional power) of an exact number with more digits is refused:
#: sympy factors the number to simplify the root.
MAX_ROOT_DIGITS = 200
#: ``gamma`` and ``loggamma`` of an exact number larger than this are refused:
#: sympy computes them as exact factorials (``gamma(450)`` has 998 digits).
MAX_GAMMA = 450
#: Seconds (of the reading thread's CPU time) that building one expression may take;
#: sympy is stopped after that.
TIME_LIMIT = 1.0


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
}
"""sympy's functions that text may call, by name; the package's own vocabulary
(:func:`register_word`) joins them."""


@dataclass(frozen=True)
class Word:
    """A function text may call, declared by the module that defines it.

    ``arguments``: the numbers of arguments it takes (``None``: any but none);
    ``matrices``: whether it takes matrices; ``keywords``: the integer keyword
    arguments it takes (``axis``).
    """

    build: Callable
    arguments: tuple[int, ...] | None = (1,)
    matrices: bool = False
    keywords: tuple[str, ...] = ()


#: The package's vocabulary beyond sympy's functions: adjoint.functions registers its
#: own, and each user operation (adjoint.elementary) registers itself while it lives.
_WORDS: dict[str, Word] = {}
_LIVING: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def register_word(name: str, word: Word, *, weak: bool = False) -> None:
    """Let text call ``name``; ``weak``: only while ``word.build`` is alive elsewhere
    (a user operation, whose name is free again once it is gone)."""
    if weak:
        _LIVING[name] = word.build
        _WORDS[name] = dataclasses.replace(word, build=None)
    else:
        _WORDS[name] = word


def words() -> dict[str, Callable]:
    """Every function text may call, by name: sympy's and the package's."""
    living = {name: w.build or _LIVING.get(name) for name, w in _WORDS.items()}
    return {**FUNCTIONS, **{name: f for name, f in living.items() if f is not None}}


def _is_function(name: str) -> bool:
    """Whether text may call ``name`` (without building the whole vocabulary)."""
    return name in FUNCTIONS or _word(name) is not None


def _word(name: str) -> Word | None:
    word = _WORDS.get(name)
    if word is None or word.build is not None:
        return word
    build = _LIVING.get(name)
    return None if build is None else dataclasses.replace(word, build=build)


CONSTANTS: Mapping[str, sp.Expr] = {"pi": sp.pi, "E": sp.E}

# How many arguments each function takes, where it is not exactly one (None: any
# number but none). sqrt and cbrt would take a second one, as sympy's evaluate flag.
_ARGUMENTS = {
    "atan2": (2,),
    "log": (1, 2),  # log(x, base)
    "ln": (1, 2),
    "Heaviside": (1, 2),  # Heaviside(x, value at 0)
    **dict.fromkeys(["Max", "Min", "max", "min"]),
}


def _elementwise(function, matrix):
    """``function`` applied to each entry of ``matrix``, as ``matrix.applyfunc`` does."""
    return matrix.applyfunc(function)


def _hadamard(a, b):
    """``a .* b``: the element-wise product of matrices; of numbers, their product."""
    if isinstance(a, sp.MatrixExpr) and isinstance(b, sp.MatrixExpr):
        return sp.HadamardProduct(a, b)
    return a * b


_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
    ast.MatMult: lambda a, b: a * b,  # A @ B: sympy's product of matrix symbols
    ast.Mod: _hadamard,  # A .* B (rewritten as %), see _rewrite
}
_SYMBOLS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Pow: "**",
    ast.MatMult: "@",
    ast.Mod: ".*",
}
# Operators of one precedence level, read left to right: a chain of them is one n-ary
# node, so x + x + ... + x is neither deep nor rebuilt term by term.
_FAMILY = {
    ast.Add: "sum",
    ast.Sub: "sum",
    ast.Mult: "product",
    ast.Div: "product",
    ast.MatMult: "product",
    ast.Mod: "product",
}
# Chains longer than this are built by one sympy call; shorter ones one operator at a
# time, exactly as Python would (the two can differ in the last bit of a float).
_NARY = 32
# Extra sympy levels that a function adds to its argument: sigmoid(x) = 1/(1 + exp(-x)).
_EXTRA_DEPTH = {"sigmoid": 3}
# exp(t) is beyond 10**MAX_DIGITS (or below its inverse) when |t| exceeds this.
_EXP_LIMIT = MAX_DIGITS * math.log(10)
_BIG = 10**MAX_DIGITS
_FEW_SYMBOLS = 12  # known symbols are listed in an error only when there are this few


def parse(
    text: str, symbols: Iterable[sp.Symbol] | None = None, steps: Mapping | None = None
) -> sp.Expr:
    """Turn ``text`` into a sympy expression without running it as code.

    Parameters
    ----------
    text : str
        An arithmetic expression: numbers, names, ``+ - * / **`` (``^`` is a power
        too), parentheses and calls of the functions in :data:`FUNCTIONS`; for
        matrix symbols also ``@`` and the transpose ``.T``.
    symbols : iterable of Symbol, optional
        The symbols (or matrix symbols) the text may name. A name that is not among
        them is an error. With ``None``, every unknown name becomes a new real symbol.
    steps : mapping of names to symbols, optional
        Names that text may index by the step of a recurrence, as the package prints
        its conditions: ``z[t]``, ``lambda_z[t + 1]``, ``u[t - 1]``, ``x[T]``, ``x[0]``
        (scalars as ``Indexed``, matrices as the symbols of
        :func:`adjoint.core.symbols.step_value`); then ``t`` and ``T`` name the step and
        the number of steps, and ``Sum(expr, (t, 0, T - 1))`` sums over the steps.

    Returns
    -------
    sympy.Expr
        (a ``sympy.MatrixExpr`` when the text computes a matrix).

    Raises
    ------
    ParseError
        For anything outside that grammar or beyond the bounds of this module
        (length, nesting, size of exact numbers, time), naming the offending piece
        and its column.

    Examples
    --------
    >>> import sympy as sp
    >>> x, y = sp.symbols("x y", real=True)
    >>> parse("sin(x*y) + x^2", symbols=[x, y])
    x**2 + sin(x*y)
    >>> parse("__import__('os')")
    Traceback (most recent call last):
    ...
    adjoint.core.errors.ParseError: cannot parse "__import__('os')": the name '__import__' ...
    """
    if not isinstance(text, str):
        raise ParseError(f"expected text to parse, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ParseError(
            f"cannot parse text of {len(text)} characters: the limit is {MAX_LENGTH}; "
            "build large expressions with sympy or with Graph.define, one node at a time"
        )
    reader = _Reader(text, _known_symbols(symbols), dict(steps or {}))
    try:
        tree = reader.syntax_tree()
        reader.check_nesting(tree)
        return _read_in_time(reader, tree)
    except ParseError:
        raise
    except Exception as exc:  # a gap in the checks: still no raw error for the user
        raise reader.fail(None, f"unexpected error ({_exception_text(exc)})") from exc


def _read_in_time(reader: _Reader, tree: ast.Expression):
    budget = TimeBudget(TIME_LIMIT)
    try:
        with budget:
            return reader.read(tree, budget)
    except budget.expired:
        # sympy was stopped anywhere: drop what it cached on the way.
        sp.core.cache.clear_cache()
        raise reader.fail(
            None,
            f"building it takes longer than the time limit of {TIME_LIMIT:g} s; "
            "split it into smaller expressions (with Graph.define, one node at a time)",
        ) from None


def _known_symbols(symbols) -> dict[str, sp.Basic] | None:
    if symbols is None:
        return None
    if isinstance(symbols, str) or not hasattr(symbols, "__iter__"):
        raise ParseError(f"symbols must be a list of sympy symbols, got {symbols!r}")
    known = {}
    for s in symbols:
        if not isinstance(s, (sp.Symbol, sp.MatrixSymbol)):
            raise ParseError(
                "symbols must be sympy Symbols or MatrixSymbols, got "
                f"{type(s).__name__} {_quote(repr(s))}"
            )
        known[s.name] = s
    return known


def _quote(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _did_you_mean(name: str, candidates: Iterable[str], n: int = 1) -> str:
    """``"; did you mean 'sin'?"`` for the candidates closest to ``name``, or ``""``."""
    candidates = list(candidates)
    same_letters = [c for c in candidates if c.lower() == name.lower()]
    close = same_letters[:n] or difflib.get_close_matches(name, candidates, n=n, cutoff=0.6)
    if not close:
        return ""
    quoted = [repr(c) for c in close]
    listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f"; did you mean {listed}?"


def _shape(matrix: sp.MatrixExpr) -> str:
    return f"{matrix.rows} x {matrix.cols}"


def _exception_text(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # a message holding a number too long to print, say
        text = ""
    return _quote(text, 120)[1:-1] if text else type(exc).__name__


def _rewrite(text: str) -> tuple[str, list[int]]:
    """The text as Python source, and for each character of it the index of the
    character of ``text`` it stands for (so that messages quote the text as written).

    The text's own syntax beyond Python's, as the package prints it:

    * ``x^2`` is a power, ``x**2``;
    * ``A .* B`` is the element-wise product (read as Python's ``%``, the same
      precedence as ``*``; a ``%`` written in the text is refused);
    * ``tanh.(H)`` applies a function entry by entry, ``tanh'.(H)`` its derivative,
      and ``(d -> d**2).(H)`` a function written out (read as calls of names with a
      leading underscore, which text itself may not use).
    """
    groups = _mapping_groups(text)
    opening = {o: c for o, _, c in groups}
    arrows = {a for _, a, _ in groups}
    dots = {c + 1 for _, _, c in groups}  # the . of ").(" after a group
    out: list[str] = []
    origin: list[int] = []

    def emit(piece: str, at: int) -> None:
        out.append(piece)
        origin.extend([at] * len(piece))

    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if i in opening:
            emit(_MAP + "(", i)
            i += 1
        elif i in arrows:
            emit(", ", i)
            i += 2
        elif i in dots:
            i += 1
        elif ch == "^":
            emit("**", i)
            i += 1
        elif text.startswith(".*", i) and _operator_dot(text, i):
            emit("%", i)
            i += 2
        elif (ch.isalpha() or ch == "_") and (i == 0 or not _in_name(text[i - 1])):
            j = i + 1
            while j < n and _in_name(text[j]):
                j += 1
            name = text[i:j]
            if text.startswith(".(", j):
                emit(_ELEMENTWISE, i)
                for k, c in enumerate(name):
                    emit(c, i + k)
                emit("(", j + 1)
                i = j + 2
            elif text.startswith("'.(", j):
                emit(_DERIVATIVE, i)
                for k, c in enumerate(name):
                    emit(c, i + k)
                emit("(", j + 2)
                i = j + 3
            else:
                for k, c in enumerate(name):
                    emit(c, i + k)
                i = j
        else:
            emit(ch, i)
            i += 1
    return "".join(out), origin


#: The multipliers' names with their Greek letters, as a student writes them (λ_z3).
_SPELLED = {"λ_": "lambda_", "Λ_": "Lambda_"}
_SPELLINGS = re.compile("^(?:" + "|".join(map(re.escape, _SPELLED)) + ")")


def spelled_out(name: str) -> str:
    """A multiplier's name as the package writes it: ``λ_z3`` is ``lambda_z3``."""
    return _SPELLINGS.sub(lambda m: _SPELLED[m.group()], name, count=1)


#: The names the rewrite gives the text's own syntax; text may not write them itself
#: (names with a leading underscore are refused).
_ELEMENTWISE, _DERIVATIVE, _MAP = "_ew_", "_ewd_", "_map_"


def _in_name(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _operator_dot(text: str, i: int) -> bool:
    """Whether the ``.`` at ``i`` (before ``*``) is the element-wise product, not the end
    of a number (``2.*x`` is ``2.0*x``)."""
    k = i
    while k > 0 and _in_name(text[k - 1]):
        k -= 1
    return not (k < i and text[k].isdigit())


def _mapping_groups(text: str) -> list[tuple[int, int, int]]:
    """``(open, arrow, close)`` for each ``(v -> body).(`` in the text: one pass, so a
    hostile text of thousands of arrows costs no more than its length."""
    match, stack, arrows = {}, [], []
    for i, ch in enumerate(text):
        if ch == "(":
            stack.append(i)
        elif ch == ")" and stack:
            match[stack.pop()] = i
        elif ch == "-" and text.startswith("->", i) and stack:
            arrows.append((stack[-1], i))  # the innermost open parenthesis holds it
    groups = []
    for open_, arrow in arrows:
        close = match.get(open_)
        if close is not None and text.startswith(".(", close + 1):
            groups.append((open_, arrow, close))
    return groups


class _Reader:
    def __init__(self, text: str, known: dict[str, sp.Basic] | None, steps=None):
        self.text = text
        self.known = known
        self.steps = steps or {}  # names text may index by step: {name: symbol}
        self.created: dict[str, sp.Symbol] = {}
        self.bound: dict[str, sp.Dummy] = {}  # the variables of (d -> ...) mappings
        self.mappings: dict[ast.AST, sp.Dummy] = {}
        stripped = text.lstrip()
        self.indent = len(text) - len(stripped)
        self.stripped = stripped.rstrip()
        if "%" in self.stripped:
            raise ParseError(
                f"cannot parse {_quote(text)}: % is not an operator here (column "
                f"{text.index('%') + 1}); the element-wise product is written .*"
            )
        hidden = re.search(r"(?<![\w.])_\w*", self.stripped)
        if hidden:  # the rewrite's own names among them: text may not write them
            raise ParseError(
                f"cannot parse {_quote(text)}: the name {hidden.group()!r} is not allowed "
                f"(leading underscore) (column {self.indent + hidden.start() + 1})"
            )
        self.source, self.origin = _rewrite(self.stripped)
        self.lines = [line.encode() for line in self.source.splitlines()] or [b""]

    # --- errors ---------------------------------------------------------------------

    def column(self, node: ast.AST | None) -> str:
        col = getattr(node, "col_offset", None)
        if col is None or getattr(node, "lineno", 1) != 1:
            return ""
        col = len(self.lines[0][:col].decode(errors="replace"))
        return f" (column {self.text_column(col) + 1})"

    def text_column(self, col: int) -> int:
        """The 0-based column in the text as written of column ``col`` of the source."""
        at = self.origin[col] if col < len(self.origin) else len(self.stripped)
        return at + self.indent

    def fail(self, node: ast.AST | None, what: str) -> ParseError:
        return ParseError(f"cannot parse {_quote(self.text)}: {what}{self.column(node)}")

    def segment(self, node: ast.AST) -> str:
        """The text of ``node`` as written (the source's, across lines)."""
        if node.lineno != node.end_lineno or node.lineno != 1:
            return ast.get_source_segment(self.source, node) or "the expression"
        line = self.lines[0]
        start = len(line[: node.col_offset].decode(errors="replace"))
        end = len(line[: node.end_col_offset].decode(errors="replace"))
        if end <= start:
            return ""
        return self.stripped[self.origin[start] : self.origin[end - 1] + 1]

    def snippet(self, node: ast.AST, limit: int = 40, tail: bool = False) -> str:
        """The source text of ``node``, shortened for a message (to its end if ``tail``)."""
        text = " ".join(self.segment(node).split())
        if len(text) <= limit:
            return text
        return "..." + text[3 - limit :] if tail else text[: limit - 3] + "..."

    def operand(self, node: ast.AST) -> str:
        """The source text of an operand, in parentheses unless it stands alone (a name,
        a number, a call), for a rewrite a message suggests (shortened if long)."""
        text = self.snippet(node, limit=60)
        return text if isinstance(node, (ast.Name, ast.Constant, ast.Call)) else f"({text})"

    # --- syntax -------------------------------------------------------------------------

    def syntax_tree(self) -> ast.Expression:
        if "\x00" in self.text:
            raise self.fail(None, "the text contains a NUL character")
        self.check_parentheses()
        try:
            return ast.parse(self.source, mode="eval")
        except SyntaxError as exc:
            raise self.syntax_error(exc) from None
        except (RecursionError, MemoryError, ValueError):
            raise self.fail(
                None,
                "its chain of operators is too long for Python's parser; "
                "build it with sympy instead",
            ) from None

    def check_parentheses(self) -> None:
        """Refuse deep nesting before :mod:`ast` meets it (it would recurse)."""
        depth = 0
        for column, char in enumerate(self.text, 1):
            if char in "([{":
                depth += 1
                if depth > MAX_DEPTH:
                    raise ParseError(
                        f"cannot parse the text: parentheses nest deeper than {MAX_DEPTH} "
                        f"levels, the limit (column {column})"
                    )
            elif char in ")]}":
                depth -= 1

    def syntax_error(self, exc: SyntaxError) -> ParseError:
        where = ""
        if exc.offset and (exc.lineno or 1) == 1:
            where = f" (column {self.text_column(exc.offset - 1) + 1})"
        message = exc.msg or ""
        reserved = [w for w in re.findall(r"[A-Za-z_]\w*", self.source) if keyword.iskeyword(w)]
        if "integer string conversion" in message:
            hint = f"a number has more than {MAX_DIGITS} digits, the limit for exact numbers"
        elif reserved and reserved[0] not in ("True", "False", "None"):
            word = reserved[0]
            names = [*(self.known or ()), *words()]
            suggestion = _did_you_mean(word, names, n=3) or f"; rename it, as in {word}_1"
            hint = f"{word!r} is a reserved word of Python, so it cannot name a symbol{suggestion}"
        elif message.startswith("invalid decimal literal"):
            hint = "a number is followed by a name: a product needs *, as in 2*x"
        elif message.startswith("invalid character"):
            hint = f"{message}; write powers as x**2 or x^2 and products with *"
        elif re.search(r"(?<![=<>!])=(?!=)", self.source):
            hint = "an equation or assignment; write only the expression, as in x**2 + 1"
        elif "never closed" in message or "unmatched" in message or "does not match" in message:
            hint = message
        else:
            hint = ""
        why = f"invalid syntax: {hint}" if hint else "invalid syntax"
        return ParseError(f"cannot parse {_quote(self.text)}: {why}{where}")

    def check_nesting(self, tree: ast.Expression) -> None:
        """Refuse expressions that nest deeper than :data:`MAX_DEPTH` (towers x**x**...).

        A chain of one precedence level (x + y - z, x*y/z) is one level, as is a run
        of signs (--x); every other operator, call and transpose adds one.
        """
        stack = [(tree.body, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise self.fail(
                    node,
                    f"operators and calls nest deeper than {MAX_DEPTH} levels, the limit; "
                    "split the expression into smaller ones (with Graph.define)",
                )
            for child in ast.iter_child_nodes(node):
                if not isinstance(child, ast.expr):
                    continue
                step = 1
                if isinstance(node, ast.BinOp) and child is node.left:
                    step = 0 if _same_chain(node, child) else 1
                elif isinstance(node, ast.UnaryOp):
                    step = 0 if isinstance(child, ast.UnaryOp) else 1
                elif isinstance(node, ast.Call):
                    if child is node.func:
                        continue
                    name = node.func.id if isinstance(node.func, ast.Name) else ""
                    step += _EXTRA_DEPTH.get(name, 0)
                stack.append((child, depth + step))

    # --- reading ------------------------------------------------------------------------

    def read(self, tree: ast.Expression, budget: TimeBudget):
        # An explicit stack, so a long sum like x + x + ... + x cannot exhaust
        # Python's recursion limit.
        stack: list[tuple[ast.AST, bool]] = [(tree.body, False)]
        done: list = []
        while stack:
            budget.check()  # where the watching thread cannot act
            node, ready = stack.pop()
            children = self.children(node)
            if not ready:
                stack.append((node, True))
                stack.extend((child, False) for child in reversed(children))
                continue
            args = done[len(done) - len(children) :]
            del done[len(done) - len(children) :]
            done.append(self.build(node, children, args))
        return done[0]

    def children(self, node: ast.AST) -> list[ast.AST]:
        if isinstance(node, (ast.Constant, ast.Name)):
            return []
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            return [node.operand]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _chain(node)[0]
        if isinstance(node, ast.Call) and self.is_mapping(node):
            return [node.func.args[1], node.args[0]]  # (d -> body).(A): body, then A
        if isinstance(node, ast.Call) and self.is_step_sum(node):  # Sum(e, (t, 0, T - 1))
            return [node.args[0]]
        if isinstance(node, ast.Call):
            self.check_call(node)
            return list(node.args)
        if isinstance(node, ast.Attribute) and node.attr == "T":  # A.T, a transpose
            return [node.value]
        if isinstance(node, ast.Subscript) and self.is_step(node):  # z[t + 1]
            return []
        if isinstance(node, ast.Subscript):  # (M)[i, j], an entry
            self.check_entry(node)
            return [node.value]
        raise self.fail(node, f"{_describe(node)} is not allowed in an expression")

    def is_step(self, node: ast.Subscript) -> bool:
        """Whether ``node`` is a name of ``steps`` at a step: ``z[t]``, ``z[t + 1]``,
        ``z[T]``, ``z[0]`` (``λ_z[t]`` for ``lambda_z[t]``); a wrong index on such a
        name is an error."""
        if not (isinstance(node.value, ast.Name) and self.stepped(node.value.id)):
            return False
        self.step_index(node)
        return True

    def stepped(self, name: str) -> str | None:
        """The name of ``steps`` that ``name`` is, spelled out; ``None`` if none."""
        for candidate in (name, spelled_out(name)):
            if candidate in self.steps:
                return candidate
        return None

    def step_index(self, node: ast.Subscript):
        """The index of ``z[...]``: ``t + k``, ``T - k`` or a number."""
        index = node.slice

        def base(e):
            if isinstance(e, ast.Name) and e.id in ("t", "T"):
                return STEP if e.id == "t" else STEPS
            if (
                isinstance(e, ast.Constant)
                and isinstance(e.value, int)
                and not isinstance(e.value, bool)
                and 0 <= e.value < _BIG
            ):
                return sp.Integer(e.value)
            return None

        found = base(index)
        if (
            found is None
            and isinstance(index, ast.BinOp)
            and isinstance(index.op, (ast.Add, ast.Sub))
        ):
            left, right = base(index.left), base(index.right)
            if left is not None and left.is_Symbol and right is not None and right.is_Integer:
                found = left + right if isinstance(index.op, ast.Add) else left - right
        if found is None:
            name = node.value.id
            raise self.fail(
                node,
                f"{name} is indexed by the step: write {name}[t], {name}[t + 1], {name}[t - 1], "
                f"{name}[T] or {name}[0]",
            )
        return found

    def is_step_sum(self, node: ast.Call) -> bool:
        """Whether ``node`` is ``Sum(expr, (t, 0, T - 1))``, the sum over the steps."""
        if not (self.steps and isinstance(node.func, ast.Name) and node.func.id == "Sum"):
            return False
        bounds = node.args[1] if len(node.args) == 2 else None
        ok = (
            not node.keywords
            and isinstance(bounds, ast.Tuple)
            and len(bounds.elts) == 3
            and isinstance(bounds.elts[0], ast.Name)
            and bounds.elts[0].id == "t"
            and isinstance(bounds.elts[1], ast.Constant)
            and bounds.elts[1].value == 0
            and isinstance(bounds.elts[2], ast.BinOp)
            and isinstance(bounds.elts[2].op, ast.Sub)
            and isinstance(bounds.elts[2].left, ast.Name)
            and bounds.elts[2].left.id == "T"
            and isinstance(bounds.elts[2].right, ast.Constant)
            and bounds.elts[2].right.value == 1
        )
        if not ok:
            raise self.fail(node, "a sum over the steps is written Sum(expr, (t, 0, T - 1))")
        return True

    def is_mapping(self, node: ast.Call) -> bool:
        """Whether ``node`` is ``(d -> body).(A)`` (rewritten as a call of _map_), and
        if so, bind ``d`` for the body."""
        inner = node.func
        if not (
            isinstance(inner, ast.Call)
            and isinstance(inner.func, ast.Name)
            and inner.func.id == _MAP
        ):
            return False
        if (
            len(inner.args) != 2
            or not isinstance(inner.args[0], ast.Name)
            or len(node.args) != 1
            or inner.keywords
            or node.keywords
        ):
            raise self.fail(
                node, "a function written out is (d -> body).(A): one variable, one matrix"
            )
        var = inner.args[0].id
        if var.startswith("_"):
            raise self.fail(inner.args[0], f"the name {var!r} is not allowed (leading underscore)")
        if node not in self.mappings:  # asked again once the body is read: same variable
            self.mappings[node] = self.bound[var] = sp.Dummy(var, real=True)
        return True

    def check_entry(self, node: ast.Subscript) -> None:
        index = node.slice
        ok = (
            isinstance(index, ast.Tuple)
            and len(index.elts) == 2
            and all(
                isinstance(e, ast.Constant)
                and isinstance(e.value, int)
                and not isinstance(e.value, bool)
                and 0 <= e.value < _BIG
                for e in index.elts
            )
        )
        if not ok:
            raise self.fail(node, "an entry of a matrix is written (M)[i, j], with numbers i, j")

    def build(self, node: ast.AST, children: list[ast.AST], args: list):
        if isinstance(node, ast.Constant):
            return self.number(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.UAdd):
                return args[0]
            return self.apply(node, "the sign - fails", lambda a: -a, args[0])
        if isinstance(node, ast.Attribute):
            if not isinstance(args[0], sp.MatrixExpr):
                what = self.snippet(node.value)
                raise self.fail(node, f"{what} is not a matrix, so it has no transpose .T")
            return self.apply(node, "the transpose fails", lambda a: a.T, args[0])
        if isinstance(node, ast.BinOp):
            return self.chain(node, children, args)
        if isinstance(node, ast.Subscript) and not children:  # z[t + 1]
            name = self.stepped(node.value.id)
            return step_value(self.steps[name], self.step_index(node), name)
        if isinstance(node, ast.Call) and self.is_step_sum(node):
            return self.apply(node, "the sum over the steps fails", over_steps, args[0])
        if isinstance(node, ast.Subscript):
            i, j = (e.value for e in node.slice.elts)
            if not isinstance(args[0], sp.MatrixExpr):
                raise self.fail(node, f"{self.snippet(node.value)} is not a matrix: no entries")
            entry = _word("entry")
            build = entry.build if entry is not None else (lambda M, i, j: M[i, j])
            return self.apply(node, "the entry fails", build, args[0], i, j)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Call):  # a mapping
            var = self.mappings[node]
            body, matrix = args
            return self.applied(node, sp.Lambda(var, body), matrix)
        return self.call(node, args)

    def applied(self, node: ast.AST, function, arg):
        """``function`` applied to ``arg``: entry by entry to a matrix."""
        if isinstance(arg, sp.MatrixExpr):
            return self.apply(node, "the element-wise function fails", _elementwise, function, arg)
        return self.apply(node, "the function fails", function, arg)

    def number(self, node: ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(node, f"{_describe(node)} is not allowed in an expression")
        if isinstance(value, int):
            if abs(value) >= _BIG:
                raise self.fail(node, f"{self.snippet(node)} is too large: {_NUMBERS}")
            return sp.Integer(value)
        literal = self.segment(node).replace("_", "")
        decimal = Decimal(literal)  # every Python float literal is a Decimal literal
        if len(decimal.as_tuple().digits) > MAX_FLOAT_DIGITS:
            raise self.fail(
                node, f"a float has more than {MAX_FLOAT_DIGITS} significant digits, the limit"
            )
        if decimal and abs(decimal.adjusted()) >= MAX_DIGITS:
            raise self.fail(node, f"{self.snippet(node)} is too large or too small: {_NUMBERS}")
        # As many digits as written, at least a double's: sympy alone would give 1e300
        # 301 digits (it reads an integer-valued literal as exact), and slow work on them.
        return sp.Float(literal, max(15, len(decimal.as_tuple().digits)))

    def name(self, node: ast.Name):
        name = node.id
        if name.startswith("_"):
            raise self.fail(node, f"the name {name!r} is not allowed (leading underscore)")
        if name in self.bound:  # the variable of a (d -> ...) mapping
            return self.bound[name]
        if self.stepped(name):  # never the plain symbol of the same name
            raise self.fail(
                node,
                f"{name} changes with the step: write it at one, as in {name}[t] or {name}[t + 1]",
            )
        if self.known is not None and name in self.known:
            return self.known[name]
        if self.steps and name in ("t", "T"):  # the step, the number of steps
            return STEP if name == "t" else STEPS
        if self.known is not None:  # a multiplier spelled λ_z3 or Λ_H
            alias = _SPELLINGS.sub(lambda m: _SPELLED[m.group()], name, count=1)
            if alias in self.known:
                return self.known[alias]
        if name in CONSTANTS:
            return CONSTANTS[name]
        if _is_function(name):
            raise self.fail(node, f"{name!r} is a function: call it, as in {name}(x)")
        if self.known is not None:
            names = list(self.known)
            hint = _did_you_mean(name, [*names, *CONSTANTS])
            if len(names) > _FEW_SYMBOLS:
                what = f"unknown symbol {name!r}, none of the {len(names)} symbols{hint}"
            elif hint:
                what = f"unknown symbol {name!r}{hint} The symbols are: {', '.join(names)}."
            else:
                what = f"unknown symbol {name!r}; the symbols are: {', '.join(names) or 'none'}"
            raise self.fail(node, what)
        if name not in self.created:
            self.created[name] = sp.Symbol(name, real=True)
        return self.created[name]

    def check_call(self, node: ast.Call) -> None:
        func = node.func
        if not isinstance(func, ast.Name):
            what = f"{_describe(func)} cannot be called"
            if isinstance(func, ast.Constant) and isinstance(func.value, (int, float)):
                inside = ", ".join(self.snippet(a) for a in node.args)
                what += f": a product needs *, as in {self.snippet(func)}*({inside})"
            raise self.fail(node, what)
        name = func.id
        for prefix in (_ELEMENTWISE, _DERIVATIVE):
            if name.startswith(prefix):
                self.check_elementwise(node, name[len(prefix) :], prefix == _DERIVATIVE)
                return
        if not _is_function(name):
            inside = ", ".join(self.snippet(a) for a in node.args)
            if (self.known is not None and name in self.known) or name in CONSTANTS:
                kind = "symbol" if name not in CONSTANTS else "constant"
                raise self.fail(
                    node,
                    f"{name} is a {kind}, not a function: a product needs *, "
                    f"as in {name}*({inside})",
                )
            known = words()
            hint = _did_you_mean(name, known) or (
                "; the functions are: " + ", ".join(sorted(known, key=str.lower))
            )
            raise self.fail(node, f"a call of {name!r}, which is not an allowed function{hint}")
        word = _word(name) if name not in FUNCTIONS else None
        keywords = word.keywords if word is not None else ()
        for k in node.keywords:
            if k.arg not in keywords or not (
                isinstance(k.value, ast.Constant)
                and isinstance(k.value.value, int)
                and not isinstance(k.value.value, bool)
                and abs(k.value.value) < _BIG
            ):
                allowed = f" ({', '.join(f'{w}=<integer>' for w in keywords)})" if keywords else ""
                raise self.fail(node, f"{name}() takes positional arguments{allowed} only")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(node, f"{name}() takes plain positional arguments only")
        counts = word.arguments if word is not None else _ARGUMENTS.get(name, (1,))
        given = len(node.args)
        if counts is None and not given:
            raise self.fail(node, f"{name}() takes at least one argument")
        if counts is not None and given not in counts:
            expected = " or ".join(map(str, counts))
            plural = "" if counts == (1,) else "s"
            raise self.fail(node, f"{name}() takes {expected} argument{plural}, got {given}")

    # --- operations ---------------------------------------------------------------------

    def apply(self, node: ast.AST, what: str, fn, *args):
        """``fn(*args)``, every failure of sympy as a ParseError saying ``what`` failed."""
        try:
            value = fn(*args)
        except RecursionError:
            raise self.fail(
                node, f"the expression nests too deeply (the limit is {MAX_DEPTH} levels)"
            ) from None
        except Exception as exc:  # sympy raises many kinds (NotImplementedError, ...)
            raise self.fail(node, f"{what} ({_exception_text(exc)})") from None
        self.check_size(node, value)
        return value

    def chain(self, node: ast.BinOp, operands: list[ast.AST], args: list):
        _, ops, steps = _chain(node)
        matrices = any(isinstance(a, sp.MatrixExpr) for a in args)
        if len(args) > _NARY and not matrices and not any(isinstance(o, ast.MatMult) for o in ops):
            return self.nary(node, ops, args)
        value = args[0]
        for step, right, arg in zip(steps, operands[1:], args[1:]):
            value = self.binary(step, right, value, arg)
        return value

    def nary(self, node: ast.BinOp, ops: list[ast.operator], args: list):
        if _FAMILY[type(ops[0])] == "sum":
            signs = [1, *(-1 if isinstance(o, ast.Sub) else 1 for o in ops)]
            self.check_sum(node, args, signs)
            terms = [a if sign > 0 else -a for a, sign in zip(args, signs)]
            return self.apply(node, "the sum fails", sp.Add, *terms)
        inverted = [False, *(isinstance(o, ast.Div) for o in ops)]
        self.check_product(node, args, inverted)
        factors = [
            self.apply(node, "the division fails", sp.Pow, a, -1) if inverse else a
            for a, inverse in zip(args, inverted)
        ]
        return self.apply(node, "the product fails", sp.Mul, *factors)

    def binary(self, step: ast.BinOp, right: ast.AST, a, b):
        """``a op b`` for the operator of ``step``, whose right operand ``right`` gives b."""
        kind = type(step.op)
        this = self.snippet(step, tail=True)
        if isinstance(a, sp.MatrixExpr) or isinstance(b, sp.MatrixExpr):
            self.check_matrices(right, step, kind, a, b)
        elif kind is ast.MatMult:
            raise self.fail(right, "the matrix product @ needs matrices; for numbers use *")
        elif kind is ast.Pow:
            self.check_power(right, a, b, this)
        elif kind in (ast.Add, ast.Sub):
            self.check_sum(step, [a, b], [1, -1 if kind is ast.Sub else 1])
        else:
            self.check_product(step, [a, b], [False, kind is ast.Div])
        what = f"the operation {_SYMBOLS[kind]} in {this} fails"
        return self.apply(right, what, _BINARY[kind], a, b)

    def call(self, node: ast.Call, args: list):
        name = node.func.id
        for prefix in (_ELEMENTWISE, _DERIVATIVE):
            if name.startswith(prefix):
                function = words()[name[len(prefix) :]]
                if prefix == _DERIVATIVE:
                    d = sp.Dummy("d", real=True)
                    function = sp.Lambda(d, sp.diff(function(d), d))
                elif not isinstance(args[0], sp.MatrixExpr):
                    self.check_function(node, name[len(prefix) :], args[0])
                return self.applied(node, function, args[0])
        word = _word(name) if name not in FUNCTIONS else None
        if word is None or not word.matrices:
            for arg, child in zip(args, node.args):
                if isinstance(arg, sp.MatrixExpr):
                    what = self.snippet(child)
                    example = f", as in {name}.({what})" if len(args) == 1 else ""
                    raise self.fail(
                        child,
                        f"{name}() takes numbers, and {what} is a {_shape(arg)} matrix; to apply "
                        f"it entry by entry write {name}.(...){example}",
                    )
        if len(args) == 1:
            self.check_function(node, name, args[0])
        keywords = {k.arg: k.value.value for k in node.keywords}
        build = word.build if word is not None else FUNCTIONS[name]
        return self.apply(
            node,
            f"{name}() cannot take these arguments",
            lambda *a: build(*a, **keywords),
            *args,
        )

    def check_function(self, node: ast.Call, name: str, arg) -> None:
        check = _CHECKS.get(name)
        if check is not None:
            check(self, node, arg)

    def check_elementwise(self, node: ast.Call, name: str, derivative: bool) -> None:
        """``name.(A)``: a function of one number, applied entry by entry."""
        known = words()
        if name not in known:
            hint = _did_you_mean(name, known)
            raise self.fail(node, f"{name!r} is not a function{hint}")
        word = _word(name) if name not in FUNCTIONS else None
        counts = word.arguments if word is not None else _ARGUMENTS.get(name, (1,))
        if (word is not None and word.matrices) or counts is None or 1 not in counts:
            raise self.fail(
                node, f"{name} is not a function of one number: {name}.(...) means nothing"
            )
        if len(node.args) != 1 or node.keywords:
            raise self.fail(node, f"{name}.(A) applies {name} to each entry of one matrix A")

    # --- bounds on exact numbers ------------------------------------------------------------

    def check_size(self, node: ast.AST, value) -> None:
        """Refuse a built number beyond the bounds (a product of two large ones, say).

        Only the value and the first two arguments are looked at: sympy keeps the
        number of a sum or product first, and the base and exponent of a power.
        """
        if not isinstance(value, sp.Basic):
            return
        numbers = [value] if value.is_Number else [a for a in value.args[:2] if a.is_Number]
        for number in numbers:
            if _size(number) >= MAX_DIGITS:
                raise self.fail(node, f"{self.snippet(node)} is too large: {_NUMBERS}")

    def check_sum(self, node: ast.AST, terms: list, signs: list[int]) -> None:
        """Refuse a sum whose exact coefficients grow beyond the bounds as sympy adds
        up like terms (``x/p + x/q + ...`` has the product of the p's as denominator).

        The coefficients are added here first, as sympy will, while they stay small.
        """
        totals: dict = {}
        for term, sign in zip(terms, signs):
            for arg in sp.Add.make_args(term):
                coeff, rest = arg.as_coeff_Mul()
                if coeff.is_Rational and coeff:
                    totals[rest] = total = totals.get(rest, sp.S.Zero) + sign * coeff
                    if _size(total) >= MAX_DIGITS:
                        raise self.fail(node, f"{self.snippet(node)} is too large: {_NUMBERS}")

    def check_product(self, node: ast.AST, factors: list, inverted: list[bool]) -> None:
        """Refuse a product whose exact coefficient grows beyond the bounds, or whose
        roots of numbers sympy would multiply into one root of a huge number
        (``sqrt(p)*sqrt(q) = sqrt(p*q)``, which it then factors).
        """
        coeff, roots = sp.S.One, 0.0
        for factor, inverse in zip(factors, inverted):
            for arg in sp.Mul.make_args(factor):
                if arg.is_Rational:
                    coeff = coeff / arg if inverse else coeff * arg
                    if _size(coeff) >= MAX_DIGITS:
                        raise self.fail(node, f"{self.snippet(node)} is too large: {_NUMBERS}")
                elif arg.is_Pow and arg.base.is_Rational and arg.exp.is_Rational:
                    roots += _size(arg.base)
                    if roots >= MAX_ROOT_DIGITS:
                        raise self.fail(
                            node,
                            f"{self.snippet(node)} multiplies roots of numbers of "
                            f"{math.ceil(roots)} digits in all, which sympy would factor (the "
                            f"limit is {MAX_ROOT_DIGITS} digits); write the numbers as floats",
                        )

    def check_power(self, node: ast.AST, base, exponent, this: str | None = None) -> None:
        """Refuse ``base**exponent`` if sympy would compute a huge exact number for it.

        sympy evaluates a power of numbers at once (``9**999``), distributes it over a
        product (``(2*x)**n = 2**n x**n``), multiplies exponents (``(x**a)**b``) and
        takes exact roots (``sqrt(n)`` factors ``n``). The sizes are estimated from
        the logarithms before anything is computed.
        """
        this = this or self.snippet(node)
        if base is sp.E:
            return self.check_exp(node, exponent)
        if not (exponent.is_Rational or exponent.is_Float) or not exponent:
            return
        log_exponent = _log10(exponent)
        root = exponent.is_Rational and not exponent.is_Integer
        for number, log_multiplier, is_exponent in _raised(base):
            size = _size(number)
            if not size:
                continue
            if is_exponent:  # an exponent that ours multiplies: their digits add up
                too_large = size + _size(exponent) + abs(log_multiplier) >= MAX_DIGITS
            else:  # a number raised to our power: its digits are multiplied
                too_large = math.log10(size) + log_exponent + log_multiplier >= math.log10(
                    MAX_DIGITS
                )
            if too_large:
                raise self.fail(node, f"{this} is too large: {_NUMBERS}")
            if root and number.is_Rational and not is_exponent and size >= MAX_ROOT_DIGITS:
                raise self.fail(
                    node,
                    f"a root of a number of {math.ceil(size)} digits is not computed exactly "
                    f"(the limit is {MAX_ROOT_DIGITS} digits); write the number as a float, "
                    "as in sqrt(1e300)",
                )

    def check_exp(self, node: ast.AST, arg) -> None:
        """Refuse ``exp(arg)`` when sympy would compute a huge number for it.

        ``exp(c*log(u))`` is ``u**c`` to sympy; a float argument is evaluated.
        """
        for term in sp.Add.make_args(arg):
            coeff, rest = term.as_coeff_Mul()
            if isinstance(rest, sp.log) and coeff.is_Number:
                self.check_power(node, rest.args[0], coeff)
        self.check_growth(node, arg, sp.S.One)

    def check_growth(self, node: ast.AST, arg, unit) -> None:
        """Refuse a function of a float ``t*unit`` that grows like ``exp(|t|)``.

        mpmath takes seconds for ``exp(1e999)``, and the value is beyond the bounds
        anyway: so for the exponential and hyperbolic functions (``unit`` 1) and the
        trigonometric ones of an imaginary argument (``unit`` I, sin(I t) = I sinh(t)).
        """
        for term in sp.Add.make_args(arg):
            coeff, rest = term.as_coeff_Mul()
            if coeff.is_Float and rest == unit and abs(coeff) > _EXP_LIMIT:
                raise self.fail(node, f"{self.snippet(node)} is too large or too small: {_NUMBERS}")

    def check_gamma(self, node: ast.Call, arg) -> None:
        """Refuse gamma and loggamma of large exact numbers: sympy computes factorials."""
        if arg.is_Rational and abs(arg) > MAX_GAMMA:
            name = node.func.id
            instead = (
                "write a float, as in loggamma(1e8)"
                if name == "loggamma"
                else f"the factorial would have more than {MAX_DIGITS} digits"
            )
            raise self.fail(
                node,
                f"{name} of an exact number beyond {MAX_GAMMA} in magnitude, the limit, is "
                f"computed as an exact factorial; {instead}",
            )

    def check_sigmoid(self, node: ast.Call, arg) -> None:
        self.check_exp(node, -arg)

    # --- matrices ---------------------------------------------------------------------------

    def check_matrices(self, node: ast.AST, step: ast.BinOp, kind: type, a, b) -> None:
        """Refuse an operation on matrices that is not defined, saying why.

        ``step`` is the operation in the text, ``node`` its right operand.
        """
        left, right = isinstance(a, sp.MatrixExpr), isinstance(b, sp.MatrixExpr)
        this = self.snippet(step, tail=True)
        if kind is ast.Pow:
            if right:
                raise self.fail(
                    node,
                    f"a power with a matrix exponent ({this}) is not defined; a number raised "
                    "to a matrix power has no text form",
                )
            if a.rows != a.cols and (a.rows - a.cols).is_number:
                raise self.fail(
                    node, f"only a square matrix has powers, and the base is {_shape(a)}"
                )
        elif kind is ast.Div and right:
            raise self.fail(
                node,
                f"dividing by a matrix ({this}) is not defined: multiply by its inverse, "
                f"written {self.operand(node)}**-1, or divide entry by entry, "
                f"`divide({self.operand(step.left)}, {self.operand(node)})`",
            )
        elif kind in (ast.Add, ast.Sub):
            if left != right:
                matrix = a if left else b
                ones = f"ones({matrix.rows}, {matrix.cols})"
                sign = "+" if kind is ast.Add else "-"

                def spread(number):  # the number times ones; 1 is the ones themselves
                    text = self.operand(number)
                    return ones if text in ("1", "1.0") else f"{text}*{ones}"

                if left:
                    rewrite = f"{self.operand(step.left)} {sign} {spread(node)}"
                else:
                    rewrite = f"{spread(step.left)} {sign} {self.operand(node)}"
                raise self.fail(
                    node,
                    f"cannot add a scalar and a matrix (at {this}); to add a number to every "
                    f"entry, multiply it by ones of the matrix's shape: `{rewrite}`",
                )
            if _differ(a.shape, b.shape):
                raise self.fail(
                    node,
                    f"cannot add a {_shape(a)} matrix and a {_shape(b)} matrix (at {this})",
                )
        elif kind is ast.Mod and left and right and _differ(a.shape, b.shape):
            raise self.fail(
                node,
                f"an element-wise product of a {_shape(a)} and a {_shape(b)} matrix (at "
                f"{this}): the shapes must be equal",
            )
        elif kind in (ast.Mult, ast.MatMult) and left and right and _differ((a.cols,), (b.rows,)):
            raise self.fail(
                node,
                f"a {_shape(a)} matrix times a {_shape(b)} matrix (at {this}): the product "
                "needs the columns of the left one to equal the rows of the right one",
            )


_NUMBERS = (
    f"exact numbers are limited to {MAX_DIGITS} digits and floats to magnitudes "
    f"from 10**-{MAX_DIGITS} to 10**{MAX_DIGITS}"
)

_CHECKS = {
    "exp": _Reader.check_exp,
    "sigmoid": _Reader.check_sigmoid,
    "gamma": _Reader.check_gamma,
    "loggamma": _Reader.check_gamma,
    "sqrt": lambda reader, node, a: reader.check_power(node, a, sp.Rational(1, 2)),
    "cbrt": lambda reader, node, a: reader.check_power(node, a, sp.Rational(1, 3)),
    **dict.fromkeys(["sinh", "cosh", "tanh", "coth", "sech", "csch"], _Reader.check_exp),
    **{
        name: lambda reader, node, a: reader.check_growth(node, a, sp.I)
        for name in ("sin", "cos", "tan", "cot", "sec", "csc")
    },
}


def _chain(node: ast.BinOp):
    """The operands, operators and BinOp nodes of the left-to-right chain ending at ``node``.

    Operator k joins operands k and k + 1; its node spans the chain up to there.
    """
    operands, ops, steps = [node.right], [node.op], [node]
    head = node.left
    while isinstance(head, ast.BinOp) and _same_chain(node, head):
        operands.append(head.right)
        ops.append(head.op)
        steps.append(head)
        head = head.left
    operands.append(head)
    return operands[::-1], ops[::-1], steps[::-1]


def _same_chain(node: ast.BinOp, child: ast.AST) -> bool:
    family = _FAMILY.get(type(node.op))
    return (
        family is not None
        and isinstance(child, ast.BinOp)
        and _FAMILY.get(type(child.op)) == family
    )


def _differ(shape_a, shape_b) -> bool:
    """Whether two shapes differ for certain (symbolic dimensions may agree)."""
    return any((p - q).is_number and p != q for p, q in zip(shape_a, shape_b))


def _size(number: sp.Number) -> float:
    """About the number of digits of a number: log10 of its numerator or denominator,
    whichever is larger, for an exact number; |log10 |x|| for a float (1e-300: 300).
    Zero and one have none."""
    if number.is_Rational:
        return max(math.log10(abs(number.p) or 1), math.log10(number.q))
    return abs(_log10(number)) if number.is_Float else 0.0


def _log10(number: sp.Number) -> float:
    """log10 |number| of a rational or float, without overflow; 0 for zero."""
    if number.is_Rational:
        return math.log10(abs(number.p) or 1) - math.log10(number.q)
    mantissa, exponent = mpmath.mpf(number).man_exp
    if not mantissa:
        return 0.0
    magnitude = exponent + mantissa.bit_length()
    if abs(magnitude) > 10**6:  # mpmath's exponents are unbounded integers
        return math.inf if magnitude > 0 else -math.inf
    return math.log10(abs(mantissa)) + exponent * math.log10(2)


def _raised(base):
    """The numbers sympy would raise to a power when raising ``base`` to one.

    Yields ``(number, log10 of the power it is already under, is_exponent)``: the
    numbers of a product and the bases of powers with numeric exponents (raised),
    and those exponents (multiplied). Sums and functions are left as they are.
    """
    stack = [(base, 0.0)]
    while stack:
        expr, log_k = stack.pop()
        if expr.is_Rational or expr.is_Float:
            yield expr, log_k, False
        elif expr.is_Mul:
            stack.extend((arg, log_k) for arg in expr.args)
        elif expr.is_Pow and (expr.exp.is_Rational or expr.exp.is_Float) and expr.exp:
            yield expr.exp, log_k, True
            stack.append((expr.base, log_k + _log10(expr.exp)))


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
