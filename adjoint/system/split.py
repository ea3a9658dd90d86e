"""Splitting one expression into elementary constraints (``Graph.from_expr``).

The expression is walked as a DAG: every distinct subexpression is visited once,
children before parents, with an explicit stack (no recursion limit). Each
operation that depends on a symbol becomes one node; numbers and subexpressions
free of symbols stay inline, as data of the operation that reads them.
"""

from __future__ import annotations

import sympy as sp
from sympy.core.function import Application

from ..core.errors import DuplicateNameError, UnknownSymbolError, as_list
from ..core.expressions import postorder
from ..core.parsing import parse
from ..core.symbols import node_symbol
from ..operations.matrices import RULES

__all__ = ["split"]


def _splittable(e: sp.Basic) -> bool:
    """Whether ``e`` is one elementary operation whose arguments become nodes.

    Piecewise is kept whole (its conditions are not expressions to split), and so
    is anything that binds variables (Derivative, Integral, Sum, ...). Matrix
    operations split where the rule table (:mod:`adjoint.operations.matrices`) has a rule.
    """
    if isinstance(e, (sp.Add, sp.Mul, sp.Pow)) or type(e) in RULES:
        return True
    return isinstance(e, Application) and not isinstance(e, sp.Piecewise)


def _is_symbol(e) -> bool:
    return isinstance(e, (sp.Symbol, sp.MatrixSymbol))


def split(cls, expr, inputs, constants):
    constants = [node_symbol(c, "constant") for c in as_list(constants, "constants")]
    if inputs is not None:
        inputs = [node_symbol(s, "input") for s in as_list(inputs, "inputs")]
    if isinstance(expr, str):
        expr = parse(expr, symbols=None if inputs is None else inputs + constants)
    probe = cls()  # validates expr the way define does, before anything is built
    expr = probe.read_expr(expr, "the expression")

    order = postorder(expr, enter=_splittable)
    leaves = {}  # every symbol the expression reads, by name
    for e in order:
        if _is_symbol(e):
            symbols = [e]
        elif _splittable(e):
            symbols = []
        else:
            symbols = sorted(e.free_symbols, key=lambda s: s.name)
        for s in symbols:
            leaves.setdefault(s.name, s)
    # The symbols in matrix shapes (n in an n x d matrix) are dimensions, not inputs.
    shaped = [*leaves.values(), *(inputs or []), *constants]
    dims = {d.name for s in shaped for d in getattr(s, "shape", ()) if isinstance(d, sp.Symbol)}
    leaves = {name: s for name, s in leaves.items() if name not in dims}

    constant_names = {c.name for c in constants}
    if inputs is None:
        inputs = sorted(
            (s for n, s in leaves.items() if n not in constant_names), key=lambda s: s.name
        )
    declared = {s.name for s in inputs} | constant_names
    unknown = sorted(set(leaves) - declared)
    if unknown:
        raise UnknownSymbolError(
            f"the expression reads {', '.join(unknown)}, which "
            f"{'is' if len(unknown) == 1 else 'are'} not among the inputs "
            f"({', '.join(sorted(s.name for s in inputs)) or 'none'}) or constants; "
            "add them to inputs=[...] or constants=[...]",
            node=unknown[0],
        )
    if len(declared) < len(inputs) + len(constants):
        raise DuplicateNameError("a name appears twice among the inputs and constants")

    g = cls()
    for s in inputs:
        g.input(s)
    for c in constants:
        g.constant(c)

    used = set(declared) | dims
    counter = 0

    def fresh() -> str:
        nonlocal counter
        while True:
            counter += 1
            name = f"z{counter}"
            if name not in used:
                used.add(name)
                return name

    # repl maps a subexpression to what stands for it: a node symbol, or itself
    # when it reads no node (a number, pi, sqrt(2), Identity(n), ...).
    repl: dict[sp.Basic, sp.Basic] = {}
    for e in order:
        if _is_symbol(e):
            repl[e] = g.lookup(e.name) if e.name in declared else e
        elif _splittable(e):
            args = [repl[a] for a in e.args]
            reads_node = any(a is not b for a, b in zip(args, e.args)) or any(
                _is_symbol(a) and a.name in declared for a in args
            )
            repl[e] = g.define(fresh(), e.func(*args)) if reads_node else e
        elif any(s.name in declared for s in e.free_symbols):
            repl[e] = g.define(fresh(), e)
        else:
            repl[e] = e
    if not _is_symbol(repl[expr]) or repl[expr] not in g.defined:
        repl[expr] = g.define(fresh(), repl[expr])
    g.set_output(repl[expr])
    return g
