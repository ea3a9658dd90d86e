"""Whole-program common subexpressions for generated programs.

The code generator prints each condition by itself, so the parts that several
conditions share (``p*(1 - p)`` of a sigmoid layer, ``X @ v`` of a tangent, a
column of ones) are printed, and computed, once per condition. :func:`share`
reads the printed statements back (Python's ``ast``, nothing is run) and computes
each repeated expression once, in a temporary placed before its first use, then
drops statements nothing reads and frees each value after its last use.

It relies on what the generator guarantees: straight-line code, each name assigned
once, pure expressions. A program outside that (a loop, a nested function) is
returned as None and printed as it was.
"""

from __future__ import annotations

import ast
import copy
import io
import tokenize

__all__ = ["share"]

# expressions worth a temporary; names, numbers and attributes are free to repeat
_WORTH = (ast.Call, ast.BinOp, ast.UnaryOp, ast.Subscript, ast.Compare)
# evaluated only in part (a branch, a short circuit) or in another scope: never
# hoisted out of, so nothing is computed that the program did not compute
_OPAQUE = (ast.Lambda, ast.IfExp, ast.BoolOp, ast.ListComp, ast.GeneratorExp, ast.DictComp)


def share(
    lines: list[str], keep: set[str], floats: set[str] = frozenset(), prefix: str = "_cse"
) -> list[str] | None:
    """The program of ``lines`` (statements, each with an optional trailing comment,
    and comment lines) with repeated expressions computed once, dead assignments
    dropped and ``del`` after each value's last use; ``keep`` are the names never
    deleted (arguments, returned values), ``floats`` the names that hold floats (the
    arguments, converted on the way in). None when the program is not straight-line
    code assigning each name once."""
    parsed = [_parse(line) for line in lines]
    if any(p is False for p in parsed):
        return None
    statements = [p[0] for p in parsed if p is not None]
    targets = [s.targets[0].id for s in statements if isinstance(s, ast.Assign)]
    if len(set(targets)) != len(targets):
        return None
    used = {n.id for s in statements for n in ast.walk(s) if isinstance(n, ast.Name)}
    temporaries = _Temporaries(prefix, used)
    constants = {}
    for s in statements:
        if isinstance(s, ast.Assign) and _is_number(s.value) and s.targets[0].id not in keep:
            constants[s.targets[0].id] = s.value.value
    rewritten = []
    for p in parsed:
        if p is None:
            continue
        s, comment = p
        s = _Simplify(constants, floats).visit(s)
        rewritten.append((s, comment))
    counts: dict = {}
    for s, _ in rewritten:
        _count(s.value, counts)
    out: list = []  # (statement, comment, the statement of `lines` it computes for)
    for k, (s, comment) in enumerate(rewritten):
        hoisted: list = []
        s.value = _replace(s.value, counts, temporaries, hoisted)
        if isinstance(s, ast.Assign) and hoisted and _is_read_of(s.value, hoisted[-1]):
            # z = <a repeat>: z itself holds it, not a temporary that z copies
            made = hoisted.pop()
            s.value = made.value
            temporaries.rename(made.targets[0].id, s.targets[0].id)
        out += [(h, "", k) for h in hoisted]
        out.append((s, comment, k))
    out = _live(out, keep)
    return _with_frees(out, keep, lines)


def _parse(line: str):
    """``(statement, comment)``; None for a comment line; False when the line is not
    one assignment to a name or a return."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return False
    if len(tree.body) != 1:
        return False
    s = tree.body[0]
    if isinstance(s, ast.Assign):
        if len(s.targets) != 1 or not isinstance(s.targets[0], ast.Name):
            return False
    elif not (isinstance(s, ast.Return) and s.value is not None):
        return False
    comment = ""
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            comment = token.string
    return s, comment


def _is_number(node) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


class _Simplify(ast.NodeTransformer):
    """Numbers put where their names were read (``lam_f = 1.0``), lambdas applied to
    their arguments (``(lambda e: log(e))(x)`` is ``log(x)``), and a product by one
    left out: each exact in floating point (``1.0*x`` is ``x``, nan and inf alike)."""

    def __init__(self, constants: dict, floats=frozenset()):
        self.constants, self.floats = constants, floats

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load) and node.id in self.constants:
            return ast.copy_location(ast.Constant(self.constants[node.id]), node)
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        f = node.func
        plain = (
            isinstance(f, ast.Lambda)
            and not node.keywords
            and not (f.args.vararg or f.args.kwarg or f.args.kwonlyargs or f.args.defaults)
            and not f.args.posonlyargs
            and len(f.args.args) == len(node.args)
            and not any(isinstance(a, ast.Starred) for a in node.args)
        )
        if not plain:
            return node
        bound = {a.arg: value for a, value in zip(f.args.args, node.args)}
        return _Substitute(bound).visit(f.body)

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.USub):
            if _is_number(node.operand):
                return ast.copy_location(ast.Constant(-node.operand.value), node)
            inner = node.operand
            if isinstance(inner, ast.UnaryOp) and isinstance(inner.op, ast.USub):
                return inner.operand
            # -(-1/x * d) is 1/x * d: the sign goes to the number that leads the product
            # (exact: rounding is symmetric about zero)
            lead = inner
            while isinstance(lead, ast.BinOp) and isinstance(lead.op, (ast.Mult, ast.Div)):
                lead = lead.left
            if lead is not inner and _is_number(lead):
                lead.value = -lead.value
                return inner
        return node

    def visit_BinOp(self, node):
        self.generic_visit(node)
        numbers = _is_number(node.left) and _is_number(node.right)
        # Python computes 1/2 here as it would in the program: the same float
        if (
            numbers
            and type(node.op) in _FOLD
            and not (isinstance(node.op, ast.Div) and node.right.value == 0)
        ):
            value = _FOLD[type(node.op)](node.left.value, node.right.value)
            return ast.copy_location(ast.Constant(value), node)
        # a + -b is a - b, -a + b is b - a: one pass fewer, and exact (IEEE addition
        # commutes, and subtraction is the addition of the negation)
        if isinstance(node.op, ast.Add):
            for a, b in ((node.left, node.right), (node.right, node.left)):
                if isinstance(b, ast.UnaryOp) and isinstance(b.op, ast.USub):
                    return ast.copy_location(_minus(a, b.operand), node)
        if isinstance(node.op, ast.Sub) and not numbers:
            return ast.copy_location(_minus(node.left, node.right), node)
        if isinstance(node.op, ast.Mult):
            for one, other in ((node.left, node.right), (node.right, node.left)):
                # 1.0 * (x > 0) makes a float of a boolean: kept unless other is a float
                if _is_number(one) and type(one.value) is float and _floating(other, self.floats):
                    if one.value == 1:
                        return other
                    if one.value == -1:
                        return ast.UnaryOp(ast.USub(), other)
        return node


_FLOAT_CALLS = {"exp", "log", "log1p", "expm1", "sin", "cos", "tan", "tanh", "sqrt", "expit"}


def _floating(node, floats=frozenset()) -> bool:
    """Whether ``node`` certainly computes floats (not booleans or integers): a name
    of ``floats``, a product, quotient, sum or power with a float number in it, a true
    quotient, or a call of a function of floats (exp, log, ...)."""
    if isinstance(node, ast.Name):
        return node.id in floats
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Div):
            return True
        return any(
            (isinstance(n, ast.Constant) and type(n.value) is float) or _floating(n, floats)
            for n in (node.left, node.right)
        )
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _floating(node.operand, floats)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr in _FLOAT_CALLS
    return False


def _minus(a, b):
    """``a - b``; ``a + 1/x * d`` for ``a - (-1/x * d)`` (exact, as negation is)."""
    lead = b
    while isinstance(lead, ast.BinOp) and isinstance(lead.op, (ast.Mult, ast.Div)):
        lead = lead.left
    if lead is not b and _is_number(lead) and lead.value < 0:
        lead.value = -lead.value
        return ast.BinOp(a, ast.Add(), b)
    return ast.BinOp(a, ast.Sub(), b)


class _Substitute(ast.NodeTransformer):
    """A lambda's body with its parameters replaced by the arguments; an inner lambda
    binding the same name shadows it."""

    def __init__(self, bound: dict):
        self.bound = bound

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load) and node.id in self.bound:
            # a copy for each use: later rewrites change nodes in place
            return copy.deepcopy(self.bound[node.id])
        return node

    def visit_Lambda(self, node):
        inner = {a.arg for a in node.args.args}
        if inner & set(self.bound):
            free = {k: v for k, v in self.bound.items() if k not in inner}
            node.body = _Substitute(free).visit(node.body)
            return node
        self.generic_visit(node)
        return node


_FOLD = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


def _worth(node) -> bool:
    """An expression worth a temporary: an operation that reads a variable."""
    return isinstance(node, _WORTH) and any(isinstance(n, ast.Name) for n in ast.walk(node))


def _key(node) -> str:
    return ast.dump(node, annotate_fields=False)


def _count(node, counts: dict) -> None:
    """How often each expression is computed, counting the inside of a repeat once
    (sympy's ``tree_cse`` does the same): a repeated ``a*(b + c)`` makes one
    temporary, not one for ``b + c`` as well."""
    if isinstance(node, _OPAQUE):
        return
    if _worth(node):
        key = _key(node)
        counts[key] = counts.get(key, 0) + 1
        if counts[key] > 1:
            return
    for child in ast.iter_child_nodes(node):
        _count(child, counts)


def _replace(node, counts, temporaries, hoisted: list):
    """``node`` with each repeated expression read from its temporary, assigning the
    temporaries it needs first (into ``hoisted``, innermost first)."""
    if isinstance(node, _OPAQUE):
        return node
    key = _key(node) if _worth(node) else None
    if key is not None and key in temporaries.made:
        return ast.Name(temporaries.made[key], ast.Load())
    for field, value in ast.iter_fields(node):
        if isinstance(value, list):
            setattr(
                node,
                field,
                [
                    _replace(v, counts, temporaries, hoisted) if isinstance(v, ast.AST) else v
                    for v in value
                ],
            )
        elif isinstance(value, ast.expr):
            setattr(node, field, _replace(value, counts, temporaries, hoisted))
    if key is not None and counts.get(key, 0) > 1:
        name = temporaries.new(key)
        hoisted.append(ast.Assign([ast.Name(name, ast.Store())], node, lineno=0))
        return ast.Name(name, ast.Load())
    return node


def _is_read_of(value, assignment) -> bool:
    return isinstance(value, ast.Name) and value.id == assignment.targets[0].id


class _Temporaries:
    """The temporaries made: ``made`` maps an expression's key to the name holding it."""

    def __init__(self, prefix: str, used: set):
        self.prefix, self.used, self.made, self.key_of = prefix, used, {}, {}

    def rename(self, old: str, new: str) -> None:
        key = self.key_of.pop(old)
        self.made[key], self.key_of[new] = new, key

    def new(self, key: str) -> str:
        k = len(self.made)
        while f"{self.prefix}{k}" in self.used:
            k += 1
        name = f"{self.prefix}{k}"
        self.used.add(name)
        self.made[key], self.key_of[name] = name, key
        return name


def _reads(node) -> set:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _live(statements: list, keep: set) -> list:
    """Without the assignments that no later statement reads (and are not kept)."""
    needed, out = set(keep), []
    for entry in reversed(statements):
        s = entry[0]
        if isinstance(s, ast.Assign) and s.targets[0].id not in needed:
            continue
        needed |= _reads(s.value)
        out.append(entry)
    return out[::-1]


def _with_frees(statements: list, keep: set, original: list) -> list[str]:
    """The lines, the comment lines of ``original`` in their places (before what is
    computed for the statement that followed them), and ``del`` after each value's
    last read."""
    last: dict = {}
    for k, (s, _, _) in enumerate(statements):
        for name in _reads(s.value):
            last[name] = k
    assigned = {s.targets[0].id for s, _, _ in statements if isinstance(s, ast.Assign)}
    dies: dict = {}
    for name, k in last.items():
        if name in assigned and name not in keep and k < len(statements) - 2:
            dies.setdefault(k, []).append(name)
    heads: dict = {}  # {statement index: the comment lines before it}
    pending: list = []
    count = 0
    for line in original:
        text = line.strip()
        if not text or text.startswith("#"):
            pending.append(line)
            continue
        if pending:
            heads[count], pending = pending, []
        count += 1
    out, shown = [], 0
    for k, (s, comment, origin) in enumerate(statements):
        while shown <= origin:
            out += heads.get(shown, [])
            shown += 1
        code = ast.unparse(s)
        out.append(f"{code}  {comment}" if comment else code)
        if k in dies:
            out.append(f"del {', '.join(sorted(dies[k]))}")
    while shown <= count:
        out += heads.get(shown, [])
        shown += 1
    return out + pending


def batched(lines: list[str], name: str, parameters: list[str], directions: list[str]):
    """A program taking its ``directions`` stacked along a first axis, from ``lines``
    (a Hessian-vector-product program ending in ``return (value, (gradient...),
    (products...))``): what does not read a direction (the forward sweep, Step 2, the
    gradient) runs once, what does runs once per direction, and the products come back
    stacked. None when the program is not of that form."""
    statements = []
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#") or text.startswith("del "):
            continue
        parsed = _parse(text)
        if not parsed:
            return None
        statements.append(parsed[0])
    if not statements or not isinstance(statements[-1], ast.Return):
        return None
    result = statements[-1].value
    if not (isinstance(result, ast.Tuple) and len(result.elts) == 3):
        return None
    value, gradient, products = result.elts
    moving, before, inside = set(directions), [], []
    for s in statements[:-1]:
        if _reads(s.value) & moving:
            inside.append(s)
            moving.add(s.targets[0].id)
        else:
            before.append(s)
    if (_reads(value) | _reads(gradient)) & moving:
        return None
    used = {n.id for s in statements for n in ast.walk(s) if isinstance(n, ast.Name)}
    out = "_stacked_products"
    while out in used:
        out += "_"
    loop = ", ".join(directions) + ("," if len(directions) == 1 else "")
    body = [ast.unparse(s) for s in before]
    body += [f"{out} = []", f"for {loop} in zip({', '.join(directions)}):"]
    body += [f"    {ast.unparse(s)}" for s in inside]
    body.append(f"    {out}.append({ast.unparse(products)})")
    body.append(
        f"return ({ast.unparse(value)}, {ast.unparse(gradient)}, "
        f"tuple(numpy.stack(_p) for _p in zip(*{out})))"
    )
    return "\n".join([f"def {name}({', '.join(parameters)}):", *(f"    {b}" for b in body)])
