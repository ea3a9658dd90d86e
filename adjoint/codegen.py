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
    def f_and_gradient(x):
        # Step 1, forward: dL/dlambda_i = 0, so z_i = f_i(z_alpha(i))
        t = numpy.tanh(x)  # t = tanh(x)
        f = t*x  # f = t*x
        # Step 2, backward: dL/dz_j = 0, so lambda_j = sum_i lambda_i df_i/dz_j
        lam_f = 1.0  # lambda_f = 1: the output
        lam_t = lam_f*x  # read by f
        # gradient: lambda_x = dL/dx
        lam_x = lam_t*(1 - t**2) + lam_f*t  # read by t, f
        return f, (lam_x,)
    <BLANKLINE>
"""

from __future__ import annotations

import keyword

import numpy as np
import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from .display import text
from .errors import AdjointError, BadValueError, MissingValueError, ShapeError
from .numeric import NoNumericRule, NumericPrinter, namespace, undefined_at_zero
from .partials import Operation, placeholders
from .solve import as_array

__all__ = ["CompiledFunction", "compile_graph", "source"]

BACKENDS = {"numpy": "numpy", "jax": "jax.numpy", "torch": "torch"}


class CodePrinter(NumericPrinter):
    """Prints statements of the program: nodes and multipliers by their variable names."""

    def __init__(self, names: dict, module: str = "numpy"):
        # order="none": sorting the terms of every sum costs more than printing them
        super().__init__({"fully_qualified_modules": True, "strict": True, "order": "none"})
        self.names = names
        self.module = module
        if module != "numpy":  # the same names exist in jax.numpy and, mostly, torch
            self._module = module

    def _print_Symbol(self, expr):
        return self.names.get(expr) or super()._print_Symbol(expr)

    _print_Multiplier = _print_Symbol

    def _print_MatrixSymbol(self, expr):
        return self.names.get(expr) or expr.name

    _print_MatrixMultiplier = _print_MatrixSymbol

    def _module_format(self, fqn, register=True):
        if self.module != "numpy" and fqn.startswith("numpy."):
            fqn = self.module + fqn[len("numpy") :]
        return super()._module_format(fqn, register)


class Program:
    """The statements of a generated program and what it takes and returns."""

    def __init__(self, graph, *, wrt=None, gradient=True, backend="numpy", name=None):
        if backend not in BACKENDS:
            raise AdjointError(f"unknown backend {backend!r}; choose one of {sorted(BACKENDS)}")
        self.graph = graph
        self.gradient = gradient
        self.backend = backend
        self.wrt = tuple(graph.inputs if wrt is None else (graph._lookup(w) for w in wrt))
        for w in self.wrt:
            if graph.node(w).kind != "input":
                raise AdjointError(
                    f"cannot differentiate with respect to {w}: it is a "
                    f"{graph.node(w).kind}, not an input",
                    node=w,
                )
        self.params = graph.inputs + graph.constants
        self.names = _variable_names(graph)
        self.shared = self._shared_parts() if gradient else {}
        self.name = name or ("f_and_gradient" if gradient else "f")
        self.printer = CodePrinter(self.names, BACKENDS[backend])
        try:
            self.lines = self._statements()
        except NoNumericRule as exc:
            raise AdjointError(
                f"cannot compile {exc.args[0]}: it has no numeric implementation (an "
                "undefined function or an unevaluated derivative); give the function one "
                "with adjoint.elementary"
            ) from None

    def _shared_parts(self) -> dict:
        """``{node: {subexpression: temporary}}`` for the parts of f_i that both sweeps
        compute (``sin(a)`` in ``sin(a)*b``): computed once, in Step 1."""
        shared = {}
        for c in self.graph.stationarity().conditions("forward"):
            op = c.terms[0].op
            if isinstance(op, Operation) and op.shared():
                parts = {}
                for k, part in enumerate(op.shared()):
                    temp = sp.Symbol(f"{self.names[c.unknown]}_part{k}", real=True)
                    self.names.claim(temp, temp.name)
                    parts[op.instantiate(part, c.terms[0].reads)] = temp
                shared[c.unknown] = parts
        return shared

    def _statements(self) -> list[str]:
        g, kkt = self.graph, self.graph.stationarity()
        output = g.output
        ancestors = _closure([output], g.parents)
        # (symbols read, line) for each line of the program
        program = [(set(), "# Step 1, forward: dL/dlambda_i = 0, so z_i = f_i(z_alpha(i))")]
        for c in kkt.conditions("forward"):
            if c.unknown in ancestors:
                program += self._forward(c)
        returned = {output}
        if self.gradient:
            # lambda_j is needed where j lies on a path from a chosen input to z_n.
            needed = _closure(self.wrt, g.children) & (ancestors | set(self.wrt))
            step2 = "# Step 2, backward: dL/dz_j = 0, so lambda_j = sum_i lambda_i df_i/dz_j"
            program.append((set(), step2))
            for c in kkt.conditions("adjoint"):
                if c.wrt in needed:
                    program.append(self._backward(c, needed))
            program.append((set(), "# gradient: lambda_x = dL/dx"))
            for c in kkt.conditions("gradient"):
                if c.wrt in self.wrt:
                    program.append(self._backward(c, needed))
            lams = [g.multiplier(x) for x in self.wrt]
            returned |= set(lams)
            names = ", ".join(self.names[lam] for lam in lams) + ("," if len(lams) == 1 else "")
            program.append((set(), f"return {self.names[output]}, ({names})"))
        else:
            program.append((set(), f"return {self.names[output]}"))
        lines = self._with_frees(program, returned)
        return self._dimensions("\n".join(lines)) + lines

    def _with_frees(self, program, returned) -> list[str]:
        """The lines, each value deleted after its last use, so that large arrays do not
        all stay alive: the program keeps only what the rest of it reads."""
        last = {}
        for k, (reads, _) in enumerate(program):
            for r in reads:
                last[r] = k
        keep = set(self.params) | returned | set(self.graph._dims.values())
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
        term, z = c.terms[0], c.unknown
        f, reads = term.f, set(self.graph.node(z).reads)
        lines = []
        shared = self.shared.get(z, {})
        if shared:
            f = term.op.instantiate(term.op.template, term.reads).xreplace(shared)
            for part, temp in shared.items():
                code = self.printer.doprint(part)
                lines.append(
                    (set(part.free_symbols), f"{self.names[temp]} = {code}  # Step 2 reads it too")
                )
            reads = f.free_symbols
        code = f"{self.names[z]} = {self.printer.doprint(f)}  # {z} = {text(term.f)}"
        return [*lines, (reads, code)]

    def _backward(self, c, needed) -> str:
        target = self.names[c.unknown]
        pieces = ["1.0"] if c.seed else []
        readers, reads = [], set()
        for term in c.terms:
            if term.node not in needed:
                continue  # lambda_i = 0: z_i does not reach the output
            expr = _reusing_output(term)
            if term.node in self.shared:
                expr = expr.xreplace(self.shared[term.node])
            if isinstance(term.op, Operation):  # lambda_i first, as in the lecture
                pieces.append(self._times(term.multiplier, expr))
                reads |= expr.free_symbols | {term.multiplier}
            else:
                pieces.append(self.printer.doprint(expr))
                reads |= expr.free_symbols
            readers.append(str(term.node))
        if not pieces:
            shape = getattr(c.unknown, "shape", None)
            pieces = ["0.0"] if shape is None else [self.printer.doprint(sp.ZeroMatrix(*shape))]
        if c.seed:
            why = f"lambda_{c.wrt} = 1: the output"
        elif readers:
            why = "read by " + ", ".join(readers)
        else:
            why = "read by no node that reaches the output"
        return reads, f"{target} = {' + '.join(pieces)}  # {why}"

    def _times(self, lam, partial) -> str:
        """``lam*partial``, printed in that order."""
        name = self.names[lam]
        if partial == 1:
            return name
        if partial == -1:
            return f"-{name}"
        code = self.printer.doprint(partial)
        if isinstance(partial, sp.Add) or code.startswith("-"):
            code = f"({code})"
        return f"{name}*{code}"

    def _dimensions(self, body: str) -> list[str]:
        """``n = X.shape[0]`` for each symbolic dimension the program uses."""
        lines = []
        for dim in self.graph._dims.values():
            for p in self.params:
                shape = getattr(p, "shape", ())
                if dim in shape and _mentions(body, self.printer.doprint(dim)):
                    lines.append(
                        f"{self.printer.doprint(dim)} = {self.names[p]}.shape"
                        f"[{list(shape).index(dim)}]"
                    )
                    break
        return lines

    @property
    def arguments(self) -> list[str]:
        return [self.names[p] for p in self.params]

    def source(self) -> str:
        signature = f"def {self.name}({', '.join(self.arguments)}):"
        return "\n".join([signature, *("    " + line for line in self.lines)]) + "\n"


def _mentions(text: str, name: str) -> bool:
    import re

    return re.search(rf"\b{re.escape(name)}\b", text) is not None


def _closure(start, step) -> set:
    seen, stack = set(start), list(start)
    while stack:
        for nxt in step(stack.pop()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def _reusing_output(term) -> sp.Expr:
    """``df_i/dz_j`` (scalar terms, without lambda_i) or the whole pullback (matrix
    terms), with ``f_i`` itself replaced by the stored ``z_i``.

    Exact once Step 1 holds (z_i = f_i), and it saves computing tanh, exp, sqrt, ...
    a second time. Where the partial has a kink, it is nan there (as in solving).
    """
    op = term.op
    if isinstance(op, Operation):
        args = placeholders(len(op.args) + 1)  # f's arguments, then f's own value
        partial = op.partial_of_output(term.k).xreplace(dict(zip(args, (*term.reads, term.node))))
        for kink in op.kinks(term.k):
            partial = undefined_at_zero(partial, op.instantiate(kink, term.reads))
        return partial
    return _matrix_reusing_output(term.expr, op.expr, term.node)


def _matrix_reusing_output(expr, F, Z):
    """A matrix term with ``F`` replaced by its node ``Z``; for an element-wise ``F = f.(X)``,
    ``f'.(X)`` becomes ``g.(Z)`` where ``f' = g(f)`` (``1 - Z**2`` for tanh, ``Z`` for exp)."""
    replacements = {F: Z}
    if isinstance(F, ElementwiseApplyFunction):
        v, t = sp.Dummy("v", real=True), sp.Dummy("t", real=True)
        for e in expr.atoms(ElementwiseApplyFunction):
            if e == F or e.expr != F.expr:
                continue
            g = e.function(v).subs(F.function(v), t)
            if v not in g.free_symbols:
                replacements[e] = Z if g == t else ElementwiseApplyFunction(sp.Lambda(t, g), Z)
    return expr.xreplace(replacements)


_RESERVED = {"numpy", "math", "mpmath", "functools", "jax", "torch"}


class Names(dict):
    """Python identifiers for symbols, each used once."""

    def __init__(self):
        super().__init__()
        self.used = set(_RESERVED)

    def claim(self, symbol, wanted: str) -> None:
        """Give ``symbol`` the identifier ``wanted``, or ``wanted_2``, ... if taken."""
        name = wanted if wanted.isidentifier() and not keyword.iskeyword(wanted) else "v"
        base, k = name, 1
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        self[symbol] = name


def _variable_names(graph) -> dict:
    """A Python identifier for every node and multiplier: its name where it is one."""
    names = Names()
    claim = names.claim

    for s in graph.inputs + graph.constants + graph.defined:
        claim(s, s.name)
    for d in graph._dims.values():
        claim(d, d.name)
    for s in graph.inputs + graph.defined:
        claim(graph.multiplier(s), "lam_" + names[s])
    return names


def source(graph, **options) -> str:
    """The generated program as Python source; see :func:`compile_graph` for options."""
    return Program(graph, **options).source()


def compile_graph(graph, *, wrt=None, gradient=True, dtype="float64") -> CompiledFunction:
    """Compile ``graph`` into a NumPy function of its inputs and constants.

    Parameters
    ----------
    wrt : sequence of inputs, optional
        Differentiate with respect to these only; multipliers nobody needs are not
        computed.
    gradient : bool
        False for the value alone (Step 1 only).
    dtype : "float64" or "float32"
    """
    if dtype not in ("float64", "float32"):
        raise AdjointError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    program = Program(graph, wrt=wrt, gradient=gradient)
    return CompiledFunction(graph, program, np.dtype(dtype))


class CompiledFunction:
    """A generated program with argument checking.

    Call it with values by position (the inputs, then the constants, in
    declaration order) or by name. It returns ``(value, gradient)`` with the
    gradient a tuple in input order (or the value alone with ``gradient=False``).
    Scalar inputs may be arrays of points: they broadcast.
    """

    def __init__(self, graph, program: Program, dtype: np.dtype):
        self.source = program.source()
        self.params = program.params
        self.wrt = program.wrt
        self.gradient = program.gradient
        self.dtype = dtype
        self._shapes = {p: graph.node(p).shape for p in self.params}
        self._output_scalar = all(
            graph.node(z).shape is None for z in graph.nodes + graph.constants
        )
        self._names = {p.name: p for p in self.params}
        scope = namespace()
        exec(compile(self.source, f"<adjoint:{program.name}>", "exec"), scope)
        self._fn = scope[program.name]

    def __call__(self, *args, **kwargs):
        values = self._bind(args, kwargs)
        with np.errstate(all="ignore"):
            result = self._fn(*values)
        value, grad = result if self.gradient else (result, ())
        # Scalar nodes broadcast over arrays of points; a value or multiplier that
        # happens not to depend on them (a constant output, lambda_x = 1) is spread
        # to the points' shape too, so every result has the same shape.
        scalars = [np.shape(v) for p, v in zip(self.params, values) if self._shapes[p] is None]
        points = np.broadcast_shapes(*scalars) if scalars else ()
        if self._output_scalar and np.shape(value) != points:
            value = np.broadcast_to(value, points).astype(self.dtype, copy=True)
        if not self.gradient:
            return value
        grad = tuple(
            np.broadcast_to(g, points).astype(self.dtype, copy=True)
            if self._shapes[w] is None
            else g
            for w, g in zip(self.wrt, grad)
        )
        return value, grad

    def _bind(self, args, kwargs) -> list:
        if len(args) > len(self.params):
            raise BadValueError(
                f"too many values: the function takes {len(self.params)} "
                f"({', '.join(p.name for p in self.params)})"
            )
        given = dict(zip(self.params, args))
        for name, value in kwargs.items():
            if name not in self._names:
                raise MissingValueError(
                    f"{name} is not an input or constant of this function; it takes "
                    f"{', '.join(self._names)}",
                    node=name,
                )
            if self._names[name] in given:
                raise BadValueError(f"{name} is given twice", node=name)
            given[self._names[name]] = value
        missing = [p.name for p in self.params if p not in given]
        if missing:
            raise MissingValueError(f"no value is given for {', '.join(missing)}", node=missing[0])
        dims: dict = {}
        out = []
        for p in self.params:
            out.append(self._convert(p, given[p], dims))
        scalars = [np.shape(v) for p, v in zip(self.params, out) if self._shapes[p] is None]
        try:
            np.broadcast_shapes(*scalars)
        except ValueError:
            raise ShapeError(
                "the arrays given for the scalar inputs do not broadcast together: "
                + ", ".join(
                    f"{p.name} {np.shape(v)}"
                    for p, v in zip(self.params, out)
                    if self._shapes[p] is None
                )
            ) from None
        return out

    def _convert(self, p, value, dims):
        shape = self._shapes[p]
        if shape is not None:
            return as_array(p, value, shape, dims, self.dtype)
        try:  # a scalar node: a number, or an array of points
            if value is None or isinstance(value, (str, bytes)) or np.iscomplexobj(value):
                raise TypeError
            array = np.asarray(value, dtype=self.dtype)
            if np.asarray(value).dtype == object:  # None or objects inside: not numbers
                raise TypeError
            return array
        except (TypeError, ValueError):
            raise BadValueError(
                f"the value of {p.name} must be real numbers, got {type(value).__name__}",
                node=p,
            ) from None

    def __repr__(self) -> str:
        return f"<compiled adjoint program of {', '.join(p.name for p in self.params)}>"
