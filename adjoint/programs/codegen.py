"""Code generation: the solved system ``grad L = 0`` as one straight-line program.

The program has one statement per forward condition, in topological order
(``z1 = ...``, Step 1), then one per multiplier in reverse order (``lam_z1 = ...``,
Step 2), then the gradient, each printed from the stationarity conditions with a
sympy printer. Where a local partial can be written with the node's own value
(``tanh' = 1 - tanh**2``, ``exp' = exp``), the backward statement reads the stored
value instead of computing the function again.

    >>> import sympy as sp
    >>> from adjoint import Graph
    >>> g = Graph()
    >>> x = g.input("x")
    >>> t = g.define("t", sp.tanh(x))
    >>> f = g.define("f", t * x)
    >>> print(g.source())  # doctest: +NORMALIZE_WHITESPACE
    import numpy
    <BLANKLINE>
    <BLANKLINE>
    def f_and_gradient(x):
        # Step 1, forward: dL/dlambda_i = 0, so z_i = f_i(z_alpha(i))
        t = numpy.tanh(x)  # t = tanh(x)
        f = x*t  # f = t*x
        # Step 2, backward: dL/dz_j = 0, so lambda_j = sum_i lambda_i df_i/dz_j
        lam_f = 1.0  # lam_f = 1: the output
        lam_t = lam_f*x  # read by f
        # gradient: lambda_x = dL/dx
        lam_x = lam_t*(1 - t**2) + lam_f*t  # read by t, f
        return f, (lam_x,)
    <BLANKLINE>
"""

from __future__ import annotations

import builtins
import keyword
import math
import re
import sys
import unicodedata

import numpy as np
import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixElement
from sympy.printing.codeprinter import PrintMethodNotImplementedError

from ..core.display import TextPrinter
from ..core.errors import AdjointError, BadValueError, MissingValueError, ShapeError, as_list
from ..core.expressions import free_symbols
from ..core.symbols import CHECKS
from ..core.values import as_array, as_points, as_sequence, bind_dimensions, check_square
from ..operations.checkpointing import check_checkpoints
from ..operations.numeric import (
    JaxNumericPrinter,
    NoNumericRule,
    NumericPrinter,
    check_kinks,
    namespace,
    on_host,
)
from ..system.graph import STEP
from ..system.lagrangian import Role, stationarity
from ..system.second_order import second_order
from .optimize import batched, share

__all__ = ["BoundFunction", "CompiledFunction", "compile_graph", "source"]


class ByName:
    """Prints nodes and multipliers by their variable names in the program."""

    def __init__(self, names: dict):
        # order="none": sorting the terms of every sum costs more than printing them
        super().__init__({"fully_qualified_modules": True, "strict": True, "order": "none"})
        self.names = names

    def statement(self, expr, aliases: dict) -> str:
        """``expr`` printed with ``aliases`` standing for its placeholders and parts."""
        self.aliases = aliases
        try:
            return self.doprint(expr)
        finally:
            self.aliases = {}

    def _print_Symbol(self, expr):
        # Only identifiers the program made: a raw name never reaches the source.
        if expr not in self.names:
            # the printer's own stand-ins, named after identifiers made here (the
            # argument of an element-wise function, its entry variable)
            if isinstance(expr, sp.Symbol) and expr.name in self.names.used:
                return expr.name
            raise AdjointError(f"internal error: {expr!r} has no name in the generated program")
        return self.names[expr]

    _print_Multiplier = _print_Dummy = _print_MatrixSymbol = _print_Symbol
    _print_MatrixMultiplier = _print_Symbol


class CommentPrinter(TextPrinter):
    """Text for comments: symbols by their program names, never a user's raw name."""

    def __init__(self, names: dict):
        super().__init__({"order": "none"})
        self.names = names

    def _print_Symbol(self, expr):
        return self.names.get(expr, "?")

    _print_Multiplier = _print_Dummy = _print_MatrixSymbol = _print_Symbol
    _print_MatrixMultiplier = _print_Symbol


class CodePrinter(ByName, NumericPrinter):
    """Prints statements of the NumPy program."""


class JaxCodePrinter(ByName, JaxNumericPrinter):
    """Prints statements of the JAX program: the same statements, in ``jax.numpy``."""


#: The printer of each backend's program.
BACKENDS = {"numpy": CodePrinter, "jax": JaxCodePrinter}


class _Aliases:
    """The aliases of one node's template, looked up as the printer meets them (a
    node that reads thousands of others would otherwise build thousands of aliases for
    every one of its partials)."""

    __slots__ = ("names", "node", "op", "parts", "reads")

    def __init__(self, names, op, reads, node, parts):
        self.names, self.op, self.reads, self.node, self.parts = names, op, reads, node, parts

    def get(self, e, default=None):
        if e is self.op.out:
            return self.names[self.node]
        k = self.op.argument(e)
        if k is not None and k < len(self.reads):
            return self.names[self.reads[k]]
        return self.parts.get(e, default)

    def __bool__(self) -> bool:
        return True


class Program:
    """The statements of a generated program and what it takes and returns.

    Every identifier in the program is made here: user names are mapped to unique,
    NFKC-normalised Python identifiers that never start with an underscore, and the
    program's own temporaries do (see :class:`Names`). Comments carry only those
    identifiers, never a user's raw name.
    """

    def __init__(
        self,
        graph,
        *,
        wrt=None,
        gradient=True,
        backend="numpy",
        name=None,
        hvp=False,
        kinks="convention",
        checkpoints=None,
    ):
        if backend not in BACKENDS:
            raise AdjointError(f"unknown backend {backend!r}; choose one of {sorted(BACKENDS)}")
        check_kinks(kinks)
        if graph.blocks and hvp:
            graph.require_explicit("compile(hvp=True)")
        if graph.recurrences and hvp:
            raise AdjointError(
                "compile(hvp=True) does not run recurrences yet "
                f"({', '.join(r.name for r in graph.recurrences)}); g.hvp(at, direction) and "
                "g.hessian(at) do, with the same loops",
                node=graph.recurrences[0].state,
            )
        self.checkpoints = check_checkpoints(checkpoints)
        self.graph = graph
        self.kkt = stationarity(graph)
        self.gradient = gradient
        self.backend = backend
        chosen = graph.inputs if wrt is None else as_list(wrt, "wrt")
        self.wrt = tuple(graph.lookup(w) for w in chosen)
        for w in self.wrt:
            if graph.node(w).kind != "input":
                raise AdjointError(
                    f"cannot differentiate with respect to {w}: it is a "
                    f"{graph.node(w).kind}, not an input",
                    node=w,
                )
        self.params = graph.inputs + graph.constants
        self.names = _variable_names(graph)
        self.temporaries: dict = {}
        self.hvp = hvp
        self.batch_source = None  # the HVP program over stacked directions (NumPy)
        self.keywords = {p: p.name for p in self.params}
        self.shapes = {p: graph.node(p).shape for p in self.params}
        self.steps = {p: graph.node(p).steps for p in self.params if graph.node(p).steps}
        self.parts: dict = {}  # {(recurrence, node): the variable of its gradient part}
        self.recurrence_reads: dict = {}  # {recurrence: what its loops read}
        if hvp:
            self._hvp_parameters(wrt, gradient)
        self.shared = self._shared_parts() if gradient else {}
        self.name = name or ("f_gradient_hvp" if hvp else "f_and_gradient" if gradient else "f")
        self.printer = BACKENDS[backend](self.names)
        self.printer.kinks = kinks
        try:
            self.lines = self._statements()
        except (NoNumericRule, PrintMethodNotImplementedError) as exc:
            what = exc.args[0] if isinstance(exc, NoNumericRule) else "an expression"
            raise AdjointError(
                f"cannot compile {what}: it has no numeric implementation (an "
                "undefined function or an unevaluated derivative); give the function one "
                "with adjoint.elementary"
            ) from None

    def _hvp_parameters(self, wrt, gradient) -> None:
        """The direction, one argument ``v_x`` per input after the inputs and constants;
        names for the tangents and the multipliers' tangents."""
        if wrt is not None or not gradient:
            raise AdjointError(
                "compile(hvp=True) differentiates with respect to every input and returns "
                "the gradient too: leave wrt and gradient at their defaults"
            )
        self.so = second_order(self.graph)
        for x in self.graph.inputs:
            keyword = f"v_{x.name}"
            if keyword in self.keywords.values():
                raise AdjointError(
                    f"compile(hvp=True) names the direction of {x} {keyword}, but {keyword} "
                    f"is a node of this graph already; rename the node {keyword}",
                    node=x,
                )
            dot = self.so.dots[x]
            self.names.claim(dot, keyword)
            self.keywords[dot] = keyword
            self.shapes[dot] = self.graph.node(x).shape
            self.params = [*self.params, dot]
        for z in self.graph.defined:
            self.names.temporary(self.so.dots[z], f"_dot_{self.names[z]}")
        for c in self.so.backward_conditions:
            self.names.temporary(c.unknown, f"_dot_{self.names[self.graph.multiplier(c.wrt)]}")

    def _shared_parts(self) -> dict:
        """``{node: {part of its template: temporary}}`` for the parts of f_i that both
        sweeps compute (``sin(a)`` in ``sin(a)*b``): computed once, in Step 1."""
        shared, self.temporaries = {}, {}
        for c in self.kkt.forward_conditions:
            if c.implicit or c.recurrent:
                continue
            if not c.op.pullback and c.op.shared():
                parts = {}
                for k, part in enumerate(c.op.shared()):
                    temp = sp.Dummy(f"part{k}", real=True)
                    name = self.names.temporary(temp, f"_{self.names[c.unknown]}_part{k}")
                    parts[part], self.temporaries[name] = name, temp
                shared[c.unknown] = parts
        return shared

    def _aliases(self, op, reads, node, parts=True) -> _Aliases:
        """What stands for a scalar template's placeholders (the program's variables of
        ``reads``, and of ``node`` for its own value) and, with ``parts``, for its
        shared parts."""
        return _Aliases(self.names, op, reads, node, self.shared.get(node, {}) if parts else {})

    def _read(self, expr, op, reads, node) -> set:
        """The variables that printing ``expr`` (in ``op``'s placeholders) reads: the
        arguments and own value it holds outside the shared parts, and those parts."""
        parts = self.shared.get(node, {})
        found, stack = set(), [expr]
        while stack:
            e = stack.pop()
            if e in parts:
                # the temporary, and what the part reads too: the printer may write the
                # part out where it prints a quotient (a/(1 + b**2) for a*(1 + b**2)**-1)
                found.add(self.temporaries[parts[e]])
                stack.extend(e.args)
            elif e is op.out:
                found.add(node)
            elif isinstance(e, sp.Dummy) and op.argument(e) is not None:
                found.add(reads[op.argument(e)])
            else:
                stack.extend(e.args)
        return found

    def _statements(self) -> list[str]:
        g, kkt = self.graph, self.kkt
        output = g.output
        ancestors = _closure([output], g.parents)
        # (symbols read, line) for each line of the program
        program = [(set(), "# Step 1, forward: dL/dlambda_i = 0, so z_i = f_i(z_alpha(i))")]
        if self.hvp:
            program[0] = (set(), program[0][1] + "; tangents zdot_i = sum_j df_i/dz_j zdot_j")
            tangents = dict(zip(kkt.forward_conditions, self.so.tangent_conditions))
        for c in kkt.forward_conditions:
            if c.recurrent:
                if ancestors.intersection(c.nodes):
                    program += self._recurrence_forward(c)
                continue
            if c.implicit:
                if ancestors.intersection(c.nodes):
                    program.append(self._implicit_forward(c))
                continue
            if c.unknown in ancestors:
                program += self._forward(c)
                # the output's tangent reads into nothing: no second-order term reads it
                if self.hvp and c.unknown != output:
                    program.append(self._tangent(tangents[c]))
        if self.hvp:
            return self._hvp_statements(program, ancestors)
        returned = {output}
        if self.gradient:
            # lambda_j is needed where j lies on a path from a chosen input to z_n.
            needed = _closure(self.wrt, g.children) & (ancestors | set(self.wrt))
            step2 = "# Step 2, backward: dL/dz_j = 0, so lambda_j = sum_i lambda_i df_i/dz_j"
            program.append((set(), step2))
            chosen = set(self.wrt)
            for c in kkt.conditions(Role.ADJOINT):
                if c.recurrent:
                    if c.rec.state in needed:
                        program += self._recurrence_backward(c, needed)
                elif c.implicit:
                    if needed.intersection(c.nodes):
                        program.append(self._implicit_backward(c, needed))
                elif c.wrt in needed:
                    program.append(self._backward(c, needed))
            program.append((set(), "# gradient: lambda_x = dL/dx"))
            for c in kkt.conditions(Role.GRADIENT):
                if c.wrt in chosen:
                    program.append(self._backward(c, needed))
            lams = [g.multiplier(x) for x in self.wrt]
            returned |= set(lams)
            names = ", ".join(self.names[lam] for lam in lams) + ("," if len(lams) == 1 else "")
            program.append((set(), f"return {self.names[output]}, ({names})"))
        else:
            program.append((set(), f"return {self.names[output]}"))
        lines = self._with_frees(program, returned)
        return self._dimensions("\n".join(lines)) + lines

    def _tangent(self, t) -> tuple:
        """``zdot_i = sum_j df_i/dz_j zdot_j`` with the numeric partials of Step 2."""
        c = t.forward
        if c.op.pullback:  # a matrix constraint: its tangent rules
            rhs = t.numeric_rhs
            return set(free_symbols(rhs)), f"{self.names[t.unknown]} = {self._print_matrix(rhs)}"
        op, pieces, reads = c.op, [], set()
        aliases = self._aliases(op, c.reads, t.node)
        for k, _, dot in t.edges():
            partial = op.numeric_partial(k)
            pieces.append(self._times(dot, partial, aliases))
            reads |= self._read(partial, op, c.reads, t.node) | {dot}
        return reads, f"{self.names[t.unknown]} = {' + '.join(pieces) or '0.0'}"

    def _second_adjoint(self, c, needed) -> tuple:
        """``lambdadot_j = sum_i (lambdadot_i df_i/dz_j + lambda_i sum_k d2f_i/dz_j dz_k
        zdot_k)``, with the numeric partials."""
        output = self.graph.output
        pieces, reads = [], set()
        for t in c.adjoint.contributions:
            if t.reader not in needed:
                continue
            if t.pullback:  # forward-over-reverse through the matrix rules
                # lambda_n = 1 does not move: its tangent's terms are left out
                term = c.numeric_matrix_term(t, self.graph.expr(t.reader), t.reader != output)
                pieces.append(self._print_matrix(term))
                reads |= set(free_symbols(term))
                continue
            op = t.op
            aliases = self._aliases(op, t.reads, t.reader)
            if t.reader != output:  # lambda_n = 1 does not move: its tangent is 0
                partial = op.numeric_partial(t.k)
                dot = c.multiplier_dots[t.reader]
                pieces.append(self._times(dot, partial, aliases))
                reads |= self._read(partial, op, t.reads, t.reader) | {dot}
            coupled = list(t.coupled(c.dots))
            second = sp.Add(*(op.numeric_second_partial(t.k, m) * dot for m, _, dot in coupled))
            if second != 0:
                pieces.append(self._times(t.multiplier, second, aliases))
                reads |= self._read(second, op, t.reads, t.reader) | {t.multiplier}
                reads |= {dot for _, _, dot in coupled}
        if not pieces and isinstance(c.unknown, sp.MatrixSymbol):
            pieces = [self.printer.doprint(sp.ZeroMatrix(*c.unknown.shape))]
        return reads, f"{self.names[c.unknown]} = {' + '.join(pieces) or '0.0'}"

    def _print_matrix(self, expr) -> str:
        """A tangent expression; a zero tangent as zeros of its shape."""
        if isinstance(expr, sp.MatrixExpr) and expr.is_ZeroMatrix:
            return self.printer.doprint(sp.ZeroMatrix(*expr.shape))
        return f"({self.printer.doprint(expr)})"

    def _hvp_statements(self, program, ancestors) -> list[str]:
        """Step 2 and the second-order adjoints, interleaved in reverse, then the
        gradient and the Hessian-vector product."""
        g, kkt = self.graph, self.kkt
        needed = _closure(g.inputs, g.children) & (ancestors | set(g.inputs))
        program.append((set(), "# Step 2, backward, with lambdadot_j, the tangent of lambda_j"))
        pairs = list(zip(kkt.backward_conditions, self.so.backward_conditions))
        for c, d in pairs[: len(pairs) - len(g.inputs)]:
            if c.wrt in needed:
                program += [self._backward(c, needed), self._second_adjoint(d, needed)]
        program.append((set(), "# gradient lambda_x and Hessian-vector product lambdadot_x"))
        for c, d in pairs[len(pairs) - len(g.inputs) :]:
            program += [self._backward(c, needed), self._second_adjoint(d, needed)]
        lams = [g.multiplier(x) for x in g.inputs]
        dots = [d.unknown for d in self.so.backward_conditions[len(pairs) - len(g.inputs) :]]

        def group(symbols):
            return ", ".join(self.names[s] for s in symbols) + ("," if len(symbols) == 1 else "")

        program.append((set(), f"return {self.names[g.output]}, ({group(lams)}), ({group(dots)})"))
        keep = {self.names[s] for s in (*self.params, g.output, *lams, *dots)}
        # second order prints the same parts in many conditions: computed once each
        arguments = {self.names[p] for p in self.params}
        lines = share([line for _, line in program], keep, floats=arguments)
        if lines is None:
            lines = self._with_frees(program, {g.output, *lams, *dots})
        lines = self._dimensions("\n".join(lines)) + lines
        # NumPy, for directions given stacked: what does not read them runs once
        if self.backend == "numpy":
            directions = [self.names[self.so.dots[x]] for x in g.inputs]
            self.batch_source = batched(lines, f"{self.name}_batch", self.arguments, directions)
        return lines

    def _with_frees(self, program, returned) -> list[str]:
        """The lines, each value deleted after its last use, so that large arrays do not
        all stay alive: the program keeps only what the rest of it reads."""
        last = {}
        for k, (reads, _) in enumerate(program):
            for r in reads:
                last[r] = k
        keep = set(self.params) | returned | set(self.graph.dims)
        dies = {}
        for r, k in last.items():
            if r not in keep and r in self.names and k < len(program) - 2:
                dies.setdefault(k, []).append(self.names[r])  # not just before the return
        lines = []
        for k, (_, line) in enumerate(program):
            lines.append(line)
            if k in dies:
                lines.append(f"del {', '.join(sorted(dies[k]))}")
        return lines

    def _forward(self, c) -> list:
        """``z_i = f_i``; first the parts of f_i that Step 2 reads too, if any."""
        z = c.unknown
        comment = f"  # {self.names[z]} = {self._comment(c.rhs)}"
        if c.op.pullback:  # a matrix constraint, in its own symbols
            code = f"{self.names[z]} = {self.printer.doprint(c.rhs)}"
            return [(set(c.reads), code + comment)]
        op, lines = c.op, []
        arguments = self._aliases(op, c.reads, z)
        for part, temp in self.shared.get(z, {}).items():
            code = self.printer.statement(part, self._aliases(op, c.reads, z, parts=False))
            lines.append((self._read(part, op, c.reads, None), f"{temp} = {code}"))
        code = f"{self.names[z]} = {self.printer.statement(op.template, arguments)}"
        return [*lines, (self._read(op.template, op, c.reads, z), code + comment)]

    def _comment(self, expr) -> str:
        """``expr`` as text for a comment: in the program's identifiers, never a raw
        user name, and with anything unprintable escaped."""
        line = CommentPrinter(self.names).doprint(expr)
        return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in line)

    def _pieces(self, contributions, seed, needed) -> tuple:
        """The printed terms of ``[j = n] + sum_i lambda_i df_i/dz_j``, what they read and
        the names of the readers."""
        pieces = ["1.0"] if seed else []
        if seed and isinstance(self.graph.output, sp.MatrixSymbol):  # a 1 x 1 output
            pieces = [self.printer.doprint(sp.OneMatrix(1, 1))]
        readers, reads = [], set()
        for t in contributions:
            if t.reader not in needed:
                continue  # lambda_i = 0: z_i does not reach the output
            if t.recurrent:  # summed (or kept per step) by the recurrence's reverse loop
                pieces.append(self.parts[t.op.rec, t.node])
            elif t.residual:  # -lambda_i dr_i/dz_j, in the nodes' symbols
                term = t.expr
                pieces.append(f"({self.printer.doprint(term)})")
                reads.update(free_symbols(term))
            elif t.pullback:  # a matrix constraint's pullback, in its own symbols
                pieces.append(self.printer.doprint(t.numeric))
                reads.update(free_symbols(t.numeric))
            else:  # lambda_i first, as in the lecture
                partial = t.op.numeric_partial(t.k)
                aliases = self._aliases(t.op, t.reads, t.reader)
                pieces.append(self._times(t.multiplier, partial, aliases))
                reads |= self._read(partial, t.op, t.reads, t.reader) | {t.multiplier}
            readers.append(self.names[t.reader])
        return pieces, reads, readers

    def _guess(self, c, z, guess) -> str:
        if guess is None:
            shape = getattr(z, "shape", None)
            return "0.0" if shape is None else self.printer.doprint(sp.ZeroMatrix(*shape))
        if isinstance(guess, sp.Basic):
            return f"({self.printer.doprint(guess)})"
        if isinstance(guess, np.ndarray):
            return f"numpy.array({guess.tolist()!r})"
        if isinstance(z, sp.MatrixSymbol):
            zeros = self.printer.doprint(sp.ZeroMatrix(*z.shape))
            return f"({zeros} + {float(guess)!r})"
        return repr(float(guess))

    def _implicit_forward(self, c) -> tuple:
        """An implicit block: ``r_B = 0`` by Newton's method (a residual ``M S + C`` by
        one factorisation), keeping ``dr/dz`` (factorised) for the backward solve."""
        block = c.nodes
        names = [self.names[z] for z in block]
        temp = sp.Dummy("jacobian")
        self.names.temporary(temp, f"_J_{names[0]}")
        self.temporaries[c.block] = temp
        reads = set(c.reads)
        shown = "; ".join(f"{self._comment(r)} = 0" for r in c.residuals)
        if c.matrix:
            z = block[0]
            if c.linear is not None:
                M, C = c.form
                code = (
                    f"{names[0]}, {self.names[temp]} = _linear_solve("
                    f"{self.printer.doprint(M)}, {self.printer.doprint(C)})"
                )
                return reads, f"{code}  # {shown}, one factorisation"
            # no node's name starts with an underscore: this symbol is no user's node
            unit = sp.MatrixSymbol("_unit", *z.shape)
            name = self.names.temporary(unit, "_unit")
            if self.backend == "jax":  # dR/dZ [E]: the tangent rules, vmapped over E
                linear = c.residual_tangent(z, unit)
            else:  # (dR/dZ)^T E: the pullback, one row of the Jacobian per unit matrix
                op, k = c.ops[0], c.reads_of[0].index(z)
                linear = op.local(k).xreplace({c.wrt[0]: unit})
            code = (
                f"{names[0]}, {self.names[temp]} = _newton_matrix(lambda {names[0]}: "
                f"{self.printer.doprint(c.residuals[0])}, lambda {names[0]}, {name}: "
                f"{self.printer.doprint(linear)}, {self._guess(c, z, c.guesses[0])}, "
                f"{c.tolerance!r}, {c.iterations})"
            )
            return reads, f"{code}  # {shown}, by Newton's method"
        J = c.coefficient()
        params = ", ".join(names)
        residuals = ", ".join(self.printer.doprint(r) for r in c.residuals)
        rows = ", ".join(
            "(" + ", ".join(self.printer.doprint(J[i, k]) for k in range(len(block))) + ",)"
            for i in range(len(block))
        )
        guesses = ", ".join(self._guess(c, z, g) for z, g in zip(block, c.guesses))
        code = (
            f"{params}, {self.names[temp]} = _newton(lambda {params}: ({residuals},), "
            f"lambda {params}: ({rows},), ({guesses},), {c.tolerance!r}, {c.iterations})"
        )
        return reads, f"{code}  # {shown}, by Newton's method"

    def _implicit_backward(self, c, needed) -> tuple:
        """``(dr_B/dz_B)^T lambda_B = [j = n] + sum_i lambda_i df_i/dz_j``: one solve."""
        f = c.forward
        temp = self.temporaries[f.block]
        reads, rhs = {temp}, []
        for z, contributions, seed in zip(f.block, c.contributions, c.seeds):
            pieces, read, _ = self._pieces(contributions, seed, needed)
            reads |= read
            if not pieces:
                shape = getattr(z, "shape", None)
                pieces = ["0.0"] if shape is None else [self.printer.doprint(sp.ZeroMatrix(*shape))]
            rhs.append(" + ".join(pieces))
        targets = [self.names[lam] for lam in f.wrt]
        why = "  # (dr/dz)^T lambda = [j = n] + sum_i lambda_i df_i/dz_j: a solve"
        if f.matrix:
            shape = ", ".join(self.printer.doprint(d) for d in f.block[0].shape)
            columns = f.linear is not None
            code = (
                f"{targets[0]} = _solve_matrix_transposed({self.names[temp]}, {rhs[0]}, "
                f"({shape},), {columns})"
            )
            return reads, code + why
        code = f"{', '.join(targets)}, = _solve_transposed({self.names[temp]}, ({', '.join(rhs)},))"
        return reads, code + why

    def _at_step(self, rec):
        """The recurrence's symbols while its loops run: ``{sequence: its value at t}``,
        the step index named, for printing its step, stage and partials."""
        if STEP not in self.names:
            self.names.temporary(STEP, "_t")
        now = {}
        for u in rec.reads:
            if u in self.steps:
                shape = self.graph.node(u).shape
                standin = sp.MatrixSymbol(f"_{u.name}_t", *shape) if shape else sp.Dummy(u.name)
                self.names[standin] = f"{self.names[u]}[{self.names[STEP]}]"
                now[u] = standin
        return now

    def _lambda(self, name, parameters, expr, now) -> tuple:
        """A loop's body as a function of ``parameters``: ``lambda ...: expr``, or a
        ``def`` computing once what ``expr`` (a tuple) reads twice; with what it reads
        from outside."""
        reads = set(free_symbols(expr)) - set(now)
        expr = expr.xreplace(now) if now else expr
        parts, expr = _common_parts(expr)
        if not parts:
            return reads, f"{name} = lambda {', '.join(parameters)}: {self.printer.doprint(expr)}"
        lines = [f"def {name}({', '.join(parameters)}):"]
        for k, (symbol, part) in enumerate(parts):
            variable = self.names.temporary(symbol, f"_{name.lstrip('_')}_{k}")
            lines.append(f"    {variable} = {self.printer.doprint(part)}")
        lines.append(f"    return {self.printer.doprint(expr)}")
        return reads, "\n".join(lines)

    def _recurrence_forward(self, c) -> list:
        """``z_{t+1} = f(z_t, ..., t)`` as a loop (a function of ``(z_t, t)``), run by the
        schedule's forward sweep, keeping what the reverse loop needs."""
        rec, now = c.rec, self._at_step(c.rec)
        z, t = self.names[rec.state], self.names[STEP]
        step = self.names.temporary(("step", rec), f"_step_{z}")
        run = self.names.temporary(("run", rec), f"_run_{z}")
        reads, line = self._lambda(step, (z, t), rec.step, now)
        shown = " ".join(self._comment(rec.step).replace("\\n", " ").split())
        program = [(set(), line + f"  # {z}[t + 1] = {shown}")]
        stage = "None"
        if rec.stage is not None:
            stage = self.names.temporary(("stage", rec), f"_stage_{z}")
            more, line = self._lambda(stage, (z, t), rec.stage, now)
            program.append((set(), line))
            reads |= more
        reads -= {rec.state, STEP}
        init = self.printer.doprint(rec.init)
        cost = "_" if rec.cost is None else self.names[rec.cost]
        self.recurrence_reads[rec] = reads
        code = (
            f"{self.names[rec.final]}, {cost}, {run} = _recurrence({step}, {stage}, ({init}), "
            f"{rec.steps}, {self.checkpoints!r}{'' if self.gradient else ', keep=False'})"
        )
        how = "every state stored" if self.checkpoints is None else "binomial checkpoints"
        if self.checkpoints is not None and self.backend == "jax":
            how = "checkpoints by segments"
        if not self.gradient:
            how = "no state kept"
        program.append((reads | set(free_symbols(rec.init)), f"{code}  # t = 0 .. T-1, {how}"))
        return program

    def _recurrence_backward(self, c, needed) -> list:
        """The costate recursion ``lambda_t = (df/dz_t)^T lambda_{t+1} + lambda_C dl/dz_t``
        as one reverse loop, which also sums (or keeps per step) the gradients of what
        the recurrence reads."""
        f, rec, now = c.forward, c.rec, self._at_step(c.rec)
        z, t = self.names[rec.state], self.names[STEP]
        nxt = self.names.temporary(c.lam_next, f"_lam_next_{z}")
        back = self.names.temporary(("back", rec), f"_back_{z}")
        # only what a gradient asked for needs its part: no memory for data's
        params = [r for r in f.params if r in needed]
        sequences = [u for u in f.sequences if u in needed]
        reads = (*params, *sequences)
        # a partial written with the step's own value reads z_{t+1}, which the loop
        # passes: tanh' = 1 - z_{t+1}**2, not the step again
        shape = getattr(rec.state, "shape", None)
        after = sp.Dummy("after") if shape is None else sp.MatrixSymbol("_after", *shape)
        exprs = sp.Tuple(*(c.local_after(w, after) for w in (rec.state, *reads)))
        following = self.names.temporary(after, f"_{z}_next")
        used, line = self._lambda(back, (z, nxt, t, following), exprs, now)
        used.discard(after)
        why = "  # lambda_t = (df/dz_t)^T lambda_{t+1} + lambda_C dl/dz_t, and the parts"
        first, _, rest = line.partition("\n")
        program = [(set(), first + why + ("\n" + rest if rest else ""))]
        for r in reads:
            self.parts[rec, r] = self.names.temporary(("part", rec, r), f"_part_{z}_{r.name}")
        summed = ", ".join(self.parts[rec, r] for r in params)
        kept = ", ".join(self.parts[rec, r] for r in sequences)
        shapes = ", ".join(f"{self.names[u]}.shape[1:]" for u in sequences)
        lam = self.names[f.wrt]
        final = self.names[c.final_lam]
        if rec.final not in needed:  # z_T does not reach the output: lambda_T = 0
            shape = getattr(rec.state, "shape", None)
            final = "0.0" if shape is None else self.printer.doprint(sp.ZeroMatrix(*shape))
        code = (
            f"{lam}, [{summed}], [{kept}] = _recurrence_reverse({self.names['step', rec]}, "
            f"{back}, {self.names['run', rec]}, {final}, {len(params)}, "
            f"({shapes}{',' if sequences else ''}))"
        )
        used |= self.recurrence_reads[rec] | ({c.final_lam} if rec.final in needed else set())
        used -= {rec.state, c.lam_next, STEP}
        program.append((used, f"{code}  # t = T-1 .. 0, lambda_0 kept"))
        for r in rec.reads:  # what the initial state reads: (dinit/dr)^T lambda_0
            if not rec.init.has(r) or r not in needed:
                continue
            term = self.printer.doprint(c.init_local(r))
            key = ("part", rec, r)
            if key in self.names:
                line = f"{self.names[key]} = {self.names[key]} + {term}"
            else:
                self.parts[rec, r] = self.names.temporary(key, f"_part_{z}_{r.name}")
                line = f"{self.parts[rec, r]} = {term}"
            program.append((set(free_symbols(c.init_local(r))), line + "  # from z_0 = init"))
        return program

    def _backward(self, c, needed) -> tuple:
        target = self.names[c.unknown]
        pieces, reads, readers = self._pieces(c.contributions, c.seed, needed)
        if not pieces:
            shape = getattr(c.unknown, "shape", None)
            pieces = ["0.0"] if shape is None else [self.printer.doprint(sp.ZeroMatrix(*shape))]
        if c.seed:
            why = f"{target} = 1: the output"
        elif readers:
            why = "read by " + ", ".join(readers)
        else:
            why = "read by no node that reaches the output"
        # Python's compiler recurses once per +: thousands of readers are one sum() call
        total = " + ".join(pieces) if len(pieces) <= 100 else f"sum(({', '.join(pieces)},))"
        return reads, f"{target} = {total}  # {why}"

    def _times(self, lam, partial, aliases) -> str:
        """``lam*partial``, printed in that order."""
        name = self.names[lam]
        if partial == 1:
            return name
        if partial == -1:
            return f"-{name}"
        code = self.printer.statement(partial, aliases)
        if isinstance(partial, sp.Add) or code.startswith("-"):
            code = f"({code})"
        return f"{name}*{code}"

    def _dimensions(self, body: str) -> list[str]:
        """``n = X.shape[0]`` for each symbolic dimension the program uses."""
        lines = []
        for dim in self.graph.dims:
            for p in self.params:
                shape = getattr(p, "shape", ())
                if dim in shape and _mentions(body, self.names[dim]):
                    lines.append(
                        f"{self.names[dim]} = {self.names[p]}.shape[{list(shape).index(dim)}]"
                    )
                    break
        return lines

    def implementations(self) -> dict:
        """The numeric implementations of user-defined operations the program calls."""
        return self.printer.implementations

    @property
    def arguments(self) -> list[str]:
        return [self.names[p] for p in self.params]

    def source(self) -> str:
        signature = f"def {self.name}({', '.join(self.arguments)}):"
        body = ("    " + line.replace("\n", "\n    ") for line in self.lines)
        return "\n".join([signature, *body]) + "\n"


def _common_parts(expr) -> tuple[list, object]:
    """``([(symbol, part), ...], expr)`` with each subexpression that ``expr`` computes
    more than once (the derivative of tanh in every part of a reverse step) replaced
    by a symbol, in the order they are to be computed. Greedy, largest first: sympy's
    ``cse`` would put scalar symbols where matrices were."""
    parts = []
    # an element-wise function made twice has two dummies: the same function, unequal
    entry = sp.Dummy("entry")
    expr = expr.replace(
        lambda e: isinstance(e, sp.Lambda) and len(e.variables) == 1,
        lambda e: sp.Lambda(entry, e.expr.xreplace({e.variables[0]: entry})),
    )
    while True:
        counts: dict = {}
        stack = [expr, *(p for _, p in parts)]
        while stack:
            e = stack.pop()
            if e.is_Atom or isinstance(e, (sp.Tuple, sp.Lambda, sp.MatrixSymbol)):
                stack.extend(e.args if isinstance(e, sp.Tuple) else ())
                continue
            if not isinstance(e, (sp.Expr, sp.MatrixExpr)) or isinstance(e, MatrixElement):
                continue
            counts[e] = counts.get(e, 0) + 1
            if counts[e] == 1:
                stack.extend(e.args)
        shared = [e for e, n in counts.items() if n > 1 and e.free_symbols]
        if not shared:
            return parts[::-1], expr
        part = max(shared, key=sp.count_ops)
        shape = getattr(part, "shape", None)
        symbol = (
            sp.MatrixSymbol(f"_part{len(parts)}", *shape)
            if isinstance(part, sp.MatrixExpr)
            else sp.Dummy(f"part{len(parts)}")
        )
        expr = expr.xreplace({part: symbol})
        parts = [(s, p.xreplace({part: symbol})) for s, p in parts] + [(symbol, part)]


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", text) is not None


def _closure(start, step) -> set:
    seen, stack = set(start), list(start)
    while stack:
        for nxt in step(stack.pop()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


#: Names the program's namespace defines, and Python's own: no node may take them.
_RESERVED = {"numpy", "math", "mpmath", "functools", "jax", "torch", *dir(builtins)}


class Names(dict):
    """Python identifiers for the program's symbols, each used once.

    A user's name becomes its NFKC normal form (Python reads identifiers that way,
    so ``a`` and a full-width ``a`` would otherwise be one variable), made a valid
    identifier that is no keyword, builtin or module name and does not start with an
    underscore; a clash adds ``_2``, ``_3``. Temporaries of the package start with an
    underscore, so they can never meet a user's node.
    """

    def __init__(self):
        super().__init__()
        self.used = set(_RESERVED) | {"_entry"}

    def claim(self, symbol, wanted: str) -> str:
        """Give ``symbol`` an identifier made from the user's name ``wanted``."""
        name = unicodedata.normalize("NFKC", wanted)
        name = "".join(ch if (ch + "a").isidentifier() or ch.isdigit() else "_" for ch in name)
        name = name.lstrip("_")
        if not name.isidentifier() or keyword.iskeyword(name) or keyword.issoftkeyword(name):
            name = f"v_{name}" if (f"v_{name}").isidentifier() else "v"
        return self._take(symbol, name)

    def temporary(self, symbol, wanted: str) -> str:
        """An identifier for the package's own temporary: it starts with an underscore."""
        assert wanted.startswith("_")
        return self._take(symbol, wanted)

    def _take(self, symbol, name: str) -> str:
        base, k = name, 1
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        self[symbol] = name
        return name


def _variable_names(graph) -> Names:
    """A Python identifier for every node, dimension and multiplier."""
    names = Names()
    for s in graph.inputs + graph.constants + graph.defined:
        names.claim(s, s.name)
    for d in graph.dims:
        names.claim(d, d.name)
    for s in graph.inputs + graph.defined:
        names.claim(graph.multiplier(s), "lam_" + names[s])
    return names


def source(graph, **options) -> str:
    """The generated program as Python source, a complete file: the imports it needs,
    then the function. See :func:`compile_graph` for options."""
    program = Program(graph, **options)
    body = program.source()
    return "\n".join([*_imports(program, body), "", ""]) + body


def _imports(program, body: str) -> list[str]:
    """The lines that make ``body`` run as a file: what :func:`namespace` provides."""
    lines = []
    if program.backend == "jax":
        lines += [
            "import jax",
            "import jax.numpy",
            "import jax.scipy.special",
            "",
            'jax.config.update("jax_enable_x64", True)  # float64, as g.solve computes',
        ]
    lines += [f"import {m}" for m in ("functools", "math", "mpmath", "numpy") if _mentions(body, m)]
    if _mentions(body, "scipy"):
        lines.append("import scipy.special")
    solvers = [
        h
        for h in (
            "_newton",
            "_solve_transposed",
            "_newton_matrix",
            "_linear_solve",
            "_solve_matrix_transposed",
        )
        if _mentions(body, h)
    ]
    if solvers:  # implicit blocks: Newton's method and the transposed solve
        jax = "_jax" if program.backend == "jax" else ""
        imported = ", ".join(f"{h[1:]}{jax} as {h}" for h in solvers)
        lines.append(f"from adjoint.operations.runtime import {imported}")
    loops = [h for h in ("_recurrence", "_recurrence_reverse") if _mentions(body, h)]
    if loops:  # recurrences: the two sweeps, every state stored or checkpointed
        jax = "_jax" if program.backend == "jax" else ""
        lines.append(
            f"from adjoint.operations.checkpointing import forward{jax} as _recurrence, "
            f"reverse{jax} as _recurrence_reverse"
        )
    helpers = [h for h in ("_vectorize", "_real") if _mentions(body, h)]
    if helpers:  # the package's helpers for functions without a NumPy version
        lines.append(
            "from adjoint.operations.numeric import _vectorize as _entrywise, to_real as _real"
        )
        if program.backend == "jax":
            lines.append("from adjoint.operations.numeric import on_host")
            lines += ["", "", "def _vectorize(fn):", "    return on_host(_entrywise(fn))"]
        else:
            lines.append("_vectorize = _entrywise")
    for name in program.implementations():
        lines.append(f"# {name}: a user's operation (adjoint.elementary); define it here")
    return lines


def compile_graph(
    graph,
    *,
    wrt=None,
    gradient=True,
    dtype="float64",
    backend="numpy",
    hvp=False,
    kinks="convention",
    checkpoints=None,
) -> CompiledFunction:
    """Compile ``graph`` into a function of its inputs and constants.

    Parameters
    ----------
    wrt : sequence of inputs, optional
        Differentiate with respect to these only; multipliers nobody needs are not
        computed.
    gradient : bool
        False for the value alone (Step 1 only).
    dtype : "float64" or "float32" (or what NumPy reads as either, ``np.float32``)
    backend : "numpy" or "jax"
        ``"jax"`` runs the same program, printed in ``jax.numpy``, through ``jax.jit``
        (``pip install adjoint[jax]``). float64 is computed in float64 whatever the
        global ``jax_enable_x64`` setting: each call enables it for its own duration
        only (``jax.enable_x64``, thread-local). Results come back as NumPy arrays, as
        from the NumPy backend.
    hvp : bool
        True for ``(value, gradient, Hessian-vector product)`` from one program that
        also takes a direction: one argument per input after the constants (by name
        ``v_x``). For a graph with matrix nodes, directions stacked along a first axis
        (``v_W`` of shape (k, m, n), ``v_b`` of shape (k,)) give the k products
        stacked alike, H V in one call (JAX maps the program over them with
        ``jax.vmap``; NumPy runs what reads no direction once, the rest per
        direction). The program shares every subexpression its conditions have in
        common (:mod:`adjoint.programs.optimize`).
    kinks : "convention" or "nan"
        At a kink (``relu`` at 0, ``|x|`` at 0, ``max`` at a tie) a partial takes the
        conventional value (``relu'(0) = 0``, ``sign(0) = 0``, ``Heaviside(0) =
        1/2``), or ``nan`` at the kinked entries, as :func:`adjoint.system.solve.solve` does.
    checkpoints : int, optional
        For a graph with recurrences: store at most this many states for the reverse
        loop. NumPy follows the binomial schedule (as ``g.solve(checkpoints=...)``);
        JAX stores the first state of each of at most ``checkpoints`` segments and
        recomputes one segment at a time (2 T forward steps). Default: every state.
    """
    try:  # what NumPy reads as a dtype: np.float32, "f4", float ...
        name = np.dtype(dtype).name
    except (TypeError, ValueError):
        name = None
    if name not in ("float64", "float32"):
        raise AdjointError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    dtype = name
    if backend not in BACKENDS:
        raise AdjointError(f"unknown backend {backend!r}; choose one of {sorted(BACKENDS)}")
    check_kinks(kinks)
    if backend == "jax":
        _require_jax()
    key = (
        "compiled",
        None if wrt is None else tuple(as_list(wrt, "wrt")),
        gradient,
        dtype,
        backend,
        kinks,
        checkpoints,
    )
    if hvp:
        key = (*key, "hvp")
    return graph.derived(
        key,
        lambda g: CompiledFunction(
            g,
            Program(
                g,
                wrt=wrt,
                gradient=gradient,
                backend=backend,
                hvp=hvp,
                kinks=kinks,
                checkpoints=checkpoints,
            ),
            np.dtype(dtype),
        ),
    )


def _number(a):
    """A 0-d array as the numpy number it holds; anything else as it is."""
    return a[()] if isinstance(a, np.ndarray) and a.ndim == 0 else a


def _undefined_where(value, g):
    """``g`` with nan wherever the value is not a number (every entry, for a matrix
    gradient: the points of a matrix graph are not separable)."""
    if np.ndim(value) and np.shape(value) == np.shape(g):
        return np.where(np.isfinite(value), g, np.nan)
    return np.full(np.shape(g), np.nan)


def _require_jax():
    try:
        import jax  # noqa: F401
    except ImportError:
        raise AdjointError(
            "backend='jax' needs JAX, which is not installed: pip install 'adjoint[jax]' "
            "(or pip install jax), or use the default backend='numpy'"
        ) from None


class CompiledFunction:
    """A generated program with argument checking.

    Call it with values by position (the inputs, then the constants, in
    declaration order) or by name. It returns ``(value, gradient)`` with the
    gradient a tuple in input order (or the value alone with ``gradient=False``).
    Scalar inputs may be arrays of points: they broadcast. Both backends check
    the arguments alike and return NumPy values.
    """

    def __init__(self, graph, program: Program, dtype: np.dtype):
        self.source = program.source()
        self.params = program.params
        self.wrt = program.wrt
        self.gradient = program.gradient
        self.backend = program.backend
        self.dtype = dtype
        self.hvp = program.hvp
        self._shapes = dict(program.shapes)
        self._steps = dict(program.steps)  # sequences: {symbol: steps}
        self._recurrent = bool(graph.recurrences)
        self._square = graph.square_operands()
        # a recurrence's loops run one point at a time, as a matrix node does
        self._output_scalar = not graph.recurrences and all(
            graph.node(z).shape is None for z in graph.nodes + graph.constants
        )
        self._names = {program.keywords[p]: p for p in self.params}
        self._keyword = {p: name for name, p in self._names.items()}
        # what the checks call each parameter: its name as given (v_x, not zdot_x; a
        # direction has no assumptions to check, a positive x may move back)
        self._label = {p: p if name == str(p) else name for p, name in self._keyword.items()}
        implemented = program.implementations()  # adjoint.elementary operations
        if self.backend == "jax":
            implemented = {name: on_host(fn) for name, fn in implemented.items()}
        scope = {**namespace(self.backend), **implemented}
        exec(compile(self.source, f"<adjoint:{program.name}>", "exec"), scope)
        self._fn = scope[program.name]
        # a value an assumption constrains (positive=True) is checked the long way
        assumed = any(
            getattr(p, "assumptions0", {}).get(fact) is not None
            for p in self.params
            for fact in CHECKS
        )
        # Python floats to a NumPy program of scalars: nothing to bind, convert or
        # broadcast, so they take a short way (the same program, the same results)
        self._quick = (
            self.backend == "numpy"
            and self.dtype == np.float64
            and not self.hvp
            and self._output_scalar
            and not self._steps
            and not assumed
        )
        self._quiet = np.errstate(all="ignore")(self._fn)  # 1/0 is inf, said by no warning
        # NumPy float64 arrays of the declared sizes (and finite Python floats) are
        # checked in one pass each, without the general conversion: (the keywords, the
        # shapes), in parameter order; None when a parameter has a symbolic size or is a
        # sequence
        self._plain = None
        self._plainable = self.dtype == np.float64 and not self._steps and not assumed
        self._learns = self._plainable
        if self._learns:
            shapes = [self._shapes[p] for p in self.params]
            if all(
                shape is None or all(isinstance(d, (int, sp.Integer)) for d in shape)
                for shape in shapes
            ):
                self._plain = (
                    tuple(program.keywords[p] for p in self.params),
                    tuple(None if shape is None else tuple(map(int, shape)) for shape in shapes),
                )
                self._learns = False
        self._matrices_only = all(self._shapes[p] is not None for p in self.params)
        self._short = (
            self.backend == "numpy"
            and self._matrices_only
            and self.gradient
            and self._plain is not None
        )
        self._vmap = None  # JAX: the program mapped over stacked directions, when asked
        # NumPy: the program over stacked directions, what reads none of them run once
        self._batch_fn = None
        if self.backend == "numpy" and program.batch_source is not None:
            exec(compile(program.batch_source, f"<adjoint:{program.name}_batch>", "exec"), scope)
            self._batch_fn = scope[f"{program.name}_batch"]
        if self.backend == "jax":
            import jax

            self._raw = self._fn
            self._fn = jax.jit(self._fn)
            self._flagged = jax.jit(_with_finite_flags(self._raw))

    def __call__(self, /, *args, **kwargs):
        if self._short:
            result = self._short_call(args, kwargs)
            if result is not None:
                return result
        if self.hvp and not self._output_scalar:
            batch = self._batch(args, kwargs)
            if batch is not None:
                return self._batched(args, kwargs, *batch)
        if (
            self._quick
            and not kwargs
            and len(args) == len(self.params)
            # finite Python floats: inf - inf and nan - nan are nan
            and all(type(a) is float and a - a == 0.0 for a in args)
        ):
            return self._quick_call(args)
        if (
            self.backend == "jax"
            and self._matrices_only
            and self.gradient
            and self._plain is not None
        ):
            with np.errstate(all="ignore"):
                values = self._plain_values(args, kwargs, on_device=True)
            if values is not None:
                if any(type(v) is not np.ndarray for v in values):
                    return self._finish(self._run_flagged(values))
                # NumPy arrays, checked on the host already (a sum on the device took
                # longer than the program): no flags to wait for
                return self._finish(self._run_checked(values, values))
        values = None
        if self._plain is not None:
            with np.errstate(all="ignore"):  # a sum that overflows is checked entry by entry
                values = self._plain_values(args, kwargs)
        if values is None:
            values, given = self._bind(args, kwargs)
            if self._learns:
                self._learn(values)
        elif self._matrices_only and self.gradient:
            return self._finish(self._run_checked(values, values))
        else:
            given = values
        result = self._run_checked(values, given)
        hv = None
        if self.hvp:
            value, grad, hv = result
        else:
            value, grad = result if self.gradient else (result, ())
        # Scalar nodes broadcast over arrays of points; a value or multiplier that
        # happens not to depend on them (a constant output, lambda_x = 1) is spread
        # to the points' shape too, so every result has the same shape.
        scalars = [
            np.shape(v)
            for p, v in zip(self.params, values)
            if self._shapes[p] is None and p not in self._steps
        ]
        points = np.broadcast_shapes(*scalars) if scalars else ()
        if self._output_scalar and np.shape(value) != points:
            value = np.broadcast_to(value, points).astype(self.dtype, copy=True)
        if not self.gradient:
            return value
        grad = tuple(
            np.broadcast_to(g, points).astype(self.dtype, copy=True)
            if self._shapes[w] is None and w not in self._steps
            else np.asarray(g).astype(self.dtype, copy=False)
            if w in self._steps
            else g
            for w, g in zip(self.wrt, grad)
        )
        if hv is not None:
            hv = tuple(
                np.broadcast_to(h, points).astype(self.dtype, copy=True)
                if self._shapes[w] is None
                else h
                for w, h in zip(self.wrt, hv)
            )
        if not np.all(np.isfinite(value)):  # no finite gradient through a nan value
            grad = tuple(_undefined_where(value, g) for g in grad)
            if hv is not None:
                hv = tuple(_undefined_where(value, h) for h in hv)
        # one point gives numbers, as the value is, not 0-d arrays
        grad = tuple(_number(g) for g in grad)
        hv = None if hv is None else tuple(_number(h) for h in hv)
        return (_number(value), grad) if hv is None else (_number(value), grad, hv)

    def _batch(self, args, kwargs):
        """``(k, {direction: its k slices})`` when the directions come stacked along a
        first axis of length k (``v_W`` of shape (k, m, n), ``v_b`` of shape (k,)),
        else None; stacked and single directions mixed are refused."""
        n = len(self.wrt)
        directions = self.params[len(self.params) - n :]
        given = {}
        for p, value in zip(self.params, args):
            if p in directions:
                given[p] = value
        keyword = {self._keyword[p]: p for p in directions}
        for name, value in kwargs.items():
            if name in keyword:
                given[keyword[name]] = value
        stacked = {
            p: np.ndim(v) == (0 if self._shapes[p] is None else 2) + 1 for p, v in given.items()
        }
        if not any(stacked.values()):
            return None
        single = [self._keyword[p] for p, s in stacked.items() if not s]
        if single:
            raise ShapeError(
                f"some directions are stacked (a batch, with a first axis more than the "
                f"input's shape) and {', '.join(single)} is not: stack every direction, "
                "with the same number of directions each",
                node=single[0],
            )
        sizes = {self._keyword[p]: np.shape(v)[0] for p, v in given.items()}
        if len(set(sizes.values())) > 1:
            raise ShapeError(
                "the stacked directions differ in number: "
                + ", ".join(f"{name} has {k}" for name, k in sizes.items())
                + "; give each input the same number of directions",
                node=next(iter(sizes)),
            )
        return next(iter(sizes.values())), given

    def _batched(self, args, kwargs, k, given):
        """``(value, gradient, H V)`` for k directions: the program once per
        direction (the value and gradient are those of the first), the products
        stacked along a first axis."""
        if k and (self.backend == "jax" or self._batch_fn is not None):
            stacks = self._stacks(args, kwargs, given)
            if self.backend == "jax":
                return self._stacked_result(self._vmapped(stacks, given))
            with np.errstate(all="ignore"):
                return self._stacked_result(self._batch_fn(*stacks))
        args = list(args)
        runs = []
        for j in range(k):
            a = [given[p][j] if p in given else v for p, v in zip(self.params, args)]
            kw = {
                name: given[self._names[name]][j] if self._names.get(name) in given else v
                for name, v in kwargs.items()
            }
            runs.append(self(*a, **kw))
        if not runs:  # no direction: nothing to run, and nothing to stack
            raise ShapeError(
                "the stacked directions are empty (a first axis of length 0): give at "
                "least one direction",
                node=self._keyword[next(iter(given))],
            )
        value, grad, _ = runs[0]
        hv = tuple(
            np.stack([np.asarray(run[2][i], dtype=self.dtype) for run in runs])
            for i in range(len(self.wrt))
        )
        return value, grad, hv

    def _stacks(self, args, kwargs, given) -> list:
        """The values in parameter order, each stacked direction one array: the point
        and the first direction checked as a single call checks them, every direction
        checked as one array (the first one that is wrong says why)."""
        first = {p: v[0] for p, v in given.items()}
        a = [first.get(p, v) for p, v in zip(self.params, args)]
        kw = {name: first.get(self._names[name], v) for name, v in kwargs.items()}
        values, _ = self._bind(a, kw)
        stacked = {}
        for p, stack in given.items():
            try:
                whole = np.asarray(stack, dtype=self.dtype)
            except (TypeError, ValueError):
                whole = None
            shape = values[self.params.index(p)].shape
            fine = whole is not None and whole.shape[1:] == shape
            if not (fine and np.all(np.isfinite(whole))):
                for j in range(len(stack)):
                    self._convert(p, stack[j])
                if not fine:
                    raise ShapeError(
                        f"the stacked directions {self._keyword[p]} do not all have the "
                        f"shape {shape}",
                        node=self._keyword[p],
                    )
            stacked[p] = whole
        return [stacked.get(p, v) for p, v in zip(self.params, values)]

    def _vmapped(self, stacks, given):
        """JAX: the program mapped over the stacked directions by ``jax.vmap``, one
        XLA program; what does not read a direction (the value, the gradient) is
        computed once."""
        import jax

        if self._vmap is None:
            axes = [0 if p in given else None for p in self.params]
            self._vmap = jax.jit(jax.vmap(self._raw, in_axes=axes, out_axes=(None, None, 0)))
        with jax.enable_x64(self.dtype == np.float64):
            return jax.tree.map(_to_numpy, self._vmap(*stacks))

    def _stacked_result(self, result):
        value, grad, hv = result
        return self._finish((value, grad, tuple(np.asarray(h, dtype=self.dtype) for h in hv)))

    def _run_checked(self, values, given):
        try:
            return self._run(values, given)
        except np.linalg.LinAlgError as exc:
            raise _singular(exc) from None

    def _finish(self, result):
        """The results of a program whose parameters are all matrices: nothing to
        broadcast; gradients are nan where the value is not finite, as below."""
        value, grad, *hv = result
        if np.ndim(value) == 0:
            finite = math.isfinite(value)
            value = _number(value)
        else:
            finite = bool(np.all(np.isfinite(value)))
        if not finite:
            grad = tuple(_undefined_where(value, g) for g in grad)
            hv = [tuple(_undefined_where(value, h) for h in hv[0])] if hv else hv
        return (value, grad, *hv)

    def _run_flagged(self, values):
        """JAX: the program and, computed on the device beside it, whether each
        argument's entries sum to a finite number; an argument whose sum is not finite
        is checked on the host, entry by entry, and refused as the general checks
        refuse it (a sum that overflowed passes)."""
        import jax

        with jax.enable_x64(self.dtype == np.float64):
            result, finite = self._flagged(*values)
            if not all(np.asarray(finite)):
                for p, v, ok in zip(self.params, values, np.asarray(finite)):
                    if not ok:
                        self._convert(p, np.asarray(v))
            return jax.tree.map(_to_numpy, result)

    def _plain_values(self, args, kwargs, on_device=False):
        """The values in parameter order when each is a finite float64 array of its
        declared shape (or a finite Python float for a scalar), else None: anything
        else takes the general checks, which say what is wrong. ``on_device``: JAX
        arrays too, and their entries are checked in the program (``_run_flagged``)."""
        names, shapes = self._plain
        values = _in_order(names, args, kwargs)
        if values is None or not _plain(values, shapes, on_device):
            return None
        return values

    def _learn(self, values) -> None:
        """After the general checks accepted matrices of symbolic sizes: their shapes,
        so that arrays of these same shapes take the short way in (their sizes are
        consistent, having been bound once); arrays of other shapes take the general
        checks, which learn those."""
        if any(
            (shape is None) != (np.ndim(v) == 0)
            for v, shape in zip(values, (self._shapes[p] for p in self.params))
        ):
            return  # scalars broadcast over points: their shapes are the points'
        self._plain = (
            tuple(self._keyword[p] for p in self.params),
            tuple(
                None if self._shapes[p] is None else np.shape(v)
                for p, v in zip(self.params, values)
            ),
        )
        self._short = self.backend == "numpy" and self._matrices_only and self.gradient

    def _short_call(self, args, kwargs):
        """NumPy, every parameter a matrix: finite float64 arrays of their declared
        shapes go straight into the program, checked and run under one errstate (a
        stack of directions has another shape, and takes the long way); None for
        anything else."""
        names, shapes = self._plain
        values = _in_order(names, args, kwargs)
        return None if values is None else self._short_run(values, values, shapes)

    def _quick_call(self, args):
        """The program on finite Python floats, read as NumPy numbers (1/0 is inf, as
        on arrays); a value that is not a number gives nan gradients, as on arrays."""
        result = self._quiet(*map(np.float64, args))
        if not self.gradient:
            return np.float64(result)
        value, grad = result
        value = np.float64(value)
        if not math.isfinite(value):  # no finite gradient through a nan or inf value
            return value, tuple(np.float64(np.nan) for _ in grad)
        return value, tuple(np.float64(g) for g in grad)

    def _run(self, values, given):
        if self.backend == "numpy":
            with np.errstate(all="ignore"):
                return self._fn(*values)
        import jax

        # A JAX array that passed the checks as it is goes in as it is: no copy back
        # to the device.
        values = [
            g if isinstance(g, jax.Array) and g.dtype == v.dtype else v
            for v, g in zip(values, given)
        ]
        # Traced and run with 64-bit types on for float64 (off for float32), for this
        # call and this thread only: the user's own JAX setting is left as it was.
        with jax.enable_x64(self.dtype == np.float64):
            result = self._fn(*values)
            return jax.tree.map(_to_numpy, result)

    def _bind(self, args, kwargs) -> tuple[list, list]:
        """The checked values (NumPy) and the values as given, in parameter order."""
        if len(args) > len(self.params):
            raise BadValueError(
                f"too many values: the function takes {len(self.params)} ({', '.join(self._names)})"
            )
        given = dict(zip(self.params, args))
        for name, value in kwargs.items():
            if name not in self._names:
                raise self._not_a_parameter(name)
            if self._names[name] in given:
                raise BadValueError(f"{name} is given twice", node=name)
            given[self._names[name]] = value
        missing = [self._keyword[p] for p in self.params if p not in given]
        if missing:
            raise MissingValueError(f"no value is given for {', '.join(missing)}", node=missing[0])
        out = [self._convert(p, given[p]) for p in self.params]
        self._dimensions(zip(self.params, out))
        if not self._output_scalar:
            what = "recurrences" if self._recurrent else "matrix nodes"
            for p, v in zip(self.params, out):
                if self._shapes[p] is None and np.ndim(v) and p not in self._steps:
                    raise ShapeError(
                        f"{self._keyword[p]} is given an array of points, {np.shape(v)}, but "
                        f"this graph has {what}, whose values are not separable by point: "
                        "give one number, and call once per point",
                        node=self._label[p],
                    )
        scalars = [
            np.shape(v)
            for p, v in zip(self.params, out)
            if self._shapes[p] is None and p not in self._steps
        ]
        try:
            np.broadcast_shapes(*scalars)
        except ValueError:
            raise ShapeError(
                "the arrays given for the scalar inputs do not broadcast together: "
                + ", ".join(
                    f"{self._keyword[p]} {np.shape(v)}"
                    for p, v in zip(self.params, out)
                    if self._shapes[p] is None
                )
            ) from None
        return out, [given[p] for p in self.params]

    def _convert(self, p, value):
        shape, label = self._shapes[p], self._label[p]
        if p in self._steps:
            steps = self._steps[p]
            return as_sequence(label, value, steps, shape).astype(self.dtype, copy=False)
        if shape is not None:
            return as_array(label, value, shape, self.dtype)
        return as_points(label, value, self.dtype)

    def bind(self, /, **values) -> BoundFunction:
        """This function with some of its values fixed, by name: checked once, here, and
        copied (changing your array later changes nothing). The bound function takes
        the others, by position (in this function's order) or by name, and returns
        what this one returns. A call then checks only the values it is given: with
        data fixed in a loop, the data is not read again to be checked (JAX: nor sent
        to the device again). Every parameter a matrix, arrays of the shapes a first
        call established take this short way; anything else the function's own checks.

        >>> import adjoint, numpy as np
        >>> g = adjoint.Graph()
        >>> X, w = g.constant("X", shape=(3, 2)), g.input("w", shape=(2, 1))
        >>> f = g.define("f", "sum_entries((X*w) .* (X*w))/2")
        >>> loss = g.compile().bind(X=np.ones((3, 2)))
        >>> value, (gradient,) = loss(np.array([[1.0], [2.0]]))
        >>> float(value), gradient.ravel().tolist()
        (13.5, [9.0, 9.0])
        """
        return self._bound({}, values)

    def _bound(self, fixed: dict, values: dict) -> BoundFunction:
        fixed = {**fixed, **self._fixed(values)}
        held = fixed
        if self.backend == "jax":  # on the device once, not copied there on every call
            import jax

            with jax.enable_x64(self.dtype == np.float64):
                held = {p: jax.device_put(v) for p, v in fixed.items()}
        short = self._matrices_only and self.gradient and self._plainable
        return BoundFunction(
            self,
            held,
            keywords=self._keyword,
            rebind=lambda more: self._bound(fixed, more),
            short=self._short_run if short else None,
        )

    def _short_run(self, full, given, shapes):
        """The checked results of the program on ``full`` (in parameter order) when
        ``given``, some of them, are finite float64 NumPy arrays of ``shapes`` (the
        others checked before); else None. JAX arrays among ``full`` go in as they are."""
        with np.errstate(all="ignore"):
            if not _plain(given, shapes):
                return None
            if self.backend != "numpy":
                return self._finish(self._run_checked(full, full))
            try:  # (not _run_checked: its own errstate would be a second one)
                result = self._fn(*full)
            except np.linalg.LinAlgError as exc:
                raise _singular(exc) from None
        return self._finish(result)

    def _fixed(self, values) -> dict:
        """{parameter: a checked, read-only copy} of ``values`` given by name."""
        fixed = {}
        for name, value in values.items():
            if name not in self._names:
                raise self._not_a_parameter(name)
            p = self._names[name]
            array = np.array(self._convert(p, value), dtype=self.dtype, copy=True)
            array.flags.writeable = False
            fixed[p] = array
        self._dimensions(fixed.items())
        return fixed

    def _dimensions(self, values) -> None:
        """The symbolic sizes that ``values`` ((parameter, array) pairs) give agree, and
        the matrices the program inverts come out square."""
        dims = bind_dimensions(
            [
                (self._label[p], self._shapes[p], v)
                for p, v in values
                if self._shapes[p] is not None and p not in self._steps
            ]
        )
        if dims:
            check_square(self._square, dims)

    def _not_a_parameter(self, name) -> MissingValueError:
        return MissingValueError(
            f"{name} is not an input or constant of this function; it takes "
            f"{', '.join(self._names)}",
            node=name,
        )

    def __repr__(self) -> str:
        return f"<compiled adjoint program of {', '.join(self._names)}>"


class BoundFunction:
    """A compiled function with some of its values fixed (:meth:`CompiledFunction.bind`).

    Call it with the others, by position (in the function's order) or by name. A call
    with finite float64 arrays of the shapes that a first call established (NumPy
    programs of matrices) checks those and runs the program; any other call goes
    through the function's own checks, with the bound values, and gives its errors.
    """

    def __init__(self, function, fixed: dict, *, keywords: dict, rebind, short):
        self.function = function
        self.params = tuple(p for p in function.params if p not in fixed)
        self._names = tuple(keywords[p] for p in self.params)
        self._given = {keywords[p]: v for p, v in fixed.items()}
        self._places = [k for k, p in enumerate(function.params) if p not in fixed]
        self._template = [fixed.get(p) for p in function.params]
        self._rebind, self._short = rebind, short
        self._shapes = None  # the free values' shapes, once the checks have bound them

    def bind(self, /, **values) -> BoundFunction:
        """This bound function with more values fixed (see :meth:`CompiledFunction.bind`)."""
        for name in values:
            self._not_bound(name)
        return self._rebind(values)

    def __call__(self, /, *args, **kwargs):
        if self._shapes is not None:
            values = _in_order(self._names, args, kwargs)
            if values is not None:
                full = self._template.copy()
                for k, v in zip(self._places, values):
                    full[k] = v
                result = self._short(full, values, self._shapes)
                if result is not None:
                    return result
        if len(args) > len(self._names):
            names, bound = ", ".join(self._names), ", ".join(self._given)
            takes = f"{len(self._names)} ({names}; " if self._names else "none ("
            raise BadValueError(f"too many values: the bound function takes {takes}{bound} bound)")
        given = dict(zip(self._names, args))
        for name, value in kwargs.items():
            self._not_bound(name)
            if name in given:
                raise BadValueError(f"{name} is given twice", node=name)
            given[name] = value
        result = self.function(**self._given, **given)
        if self._short is not None and self._shapes is None:
            self._learn(given)
        return result

    def _learn(self, given) -> None:
        """After the function's checks accepted these values with the bound ones: their
        shapes, when each is a float64 matrix (not a stack of directions)."""
        values = [given[name] for name in self._names]
        if all(type(v) is np.ndarray and v.dtype == np.float64 and v.ndim == 2 for v in values):
            self._shapes = tuple(v.shape for v in values)

    def _not_bound(self, name) -> None:
        if name in self._given:
            raise BadValueError(
                f"{name} is bound already: bind the function again to give it another value",
                node=name,
            )

    def __repr__(self) -> str:
        return (
            f"<compiled adjoint program of {', '.join(self._names)} "
            f"({', '.join(self._given)} bound)>"
        )


def _in_order(names, args, kwargs) -> list | None:
    """The values of ``names`` given by position and by name, in order; None when some
    are missing, unknown or given twice (the general checks then say which)."""
    if kwargs:
        if len(args) + len(kwargs) != len(names):
            return None
        try:  # a name given twice leaves another one missing
            return [*args, *(kwargs[name] for name in names[len(args) :])]
        except KeyError:
            return None
    return list(args) if len(args) == len(names) else None


def _plain(values, shapes, on_device=False) -> bool:
    """Whether each value is a finite float64 NumPy array of its shape (a finite Python
    float where the shape is None, made a NumPy number in ``values``); with
    ``on_device``, a JAX float64 array of its shape too, its entries then to be checked
    in the program. Called under ``np.errstate``: a sum that overflows is checked entry
    by entry."""
    for k, (value, shape) in enumerate(zip(values, shapes)):
        if shape is None:
            if type(value) is not float or value - value != 0.0:
                return False
            values[k] = np.float64(value)
        elif type(value) is np.ndarray:
            if value.dtype != np.float64 or value.shape != shape:
                return False
            # Finite entries only: a sum of squares is not finite if an entry is not
            # (its terms are >= 0: nothing cancels an inf, and nan stays nan); one
            # BLAS pass, twice as fast as a sum. It overflows for entries beyond
            # 1e154, which are then checked one by one. (x - x is 0 for a finite x.)
            total = _vdot(value, value)
            if total - total != 0.0 and not np.all(np.isfinite(value)):
                return False
        else:  # a JAX array's entries are checked on the device, in the program
            jax_array = on_device and _is_jax_array(value)
            if not jax_array or value.dtype != np.float64 or value.shape != shape:
                return False
    return True


def _with_finite_flags(fn):
    """``fn`` returning also, per argument, whether its entries sum to a finite number
    (one fused reduction each, on the device)."""
    import jax.numpy as jnp

    def flagged(*args):
        return fn(*args), jnp.stack([jnp.isfinite(jnp.sum(a)) for a in args])

    return flagged


_vdot = np.vdot


def _singular(exc) -> AdjointError:
    return AdjointError(
        f"numpy says {exc}: a matrix the program inverts is singular at these values"
    )


def _is_jax_array(x) -> bool:
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.Array)


def _to_numpy(x):
    """A JAX result as NumPy: a writable array (a NumPy scalar for 0-d), as NumPy gives."""
    array = np.array(x)
    return array[()] if array.ndim == 0 else array
