"""The public :class:`Graph`: the constraint system with everything derived from it.

:class:`~adjoint.system.graph.ConstraintGraph` (at the bottom of the package) holds the
constraints and their DAG; the modules above derive the Lagrangian, ``grad L = 0``,
its solution, generated code, checks and displays as functions of a graph. This
class gathers them as methods, each a one-line alias of the function that owns it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .core.display import graph_latex, text
from .coursework import checks
from .programs import codegen
from .system import control, lagrangian, second_order, solve, split
from .system.graph import ConstraintGraph
from .teaching import drawing, explain

__all__ = ["Graph"]


class Graph(ConstraintGraph):
    """A system of constraints ``z_i = f_i(z_alpha(i))`` forming a DAG, with its
    Lagrangian and the solution of ``grad L = 0``.

    Examples
    --------
    >>> import sympy as sp
    >>> g = Graph()
    >>> x, y = g.input("x"), g.input("y")
    >>> z1 = g.define("z1", x * y)
    >>> z2 = g.define("z2", sp.sin(z1) + x)
    >>> g.parents(z2), g.children(x)
    ((x, z1), (z1, z2))
    >>> sol = g.solve({x: 1.5, y: -2.0})
    >>> round(sol.gradient[x], 6)  # 1 + y cos(x y)
    2.979985
    """

    @classmethod
    def from_expr(cls, expr, inputs: Iterable | None = None, constants: Iterable = ()) -> Graph:
        """Split an expression into elementary constraints, one node per operation.

        A subexpression that occurs several times becomes one node with several
        children. The expression is walked as a DAG, each distinct subexpression
        once, so heavily shared expressions split in linear time. With
        ``inputs=None`` every free symbol (that is not a constant) is an input,
        sorted by name.

        Examples
        --------
        >>> import sympy as sp
        >>> x, y = sp.symbols("x y", real=True)
        >>> g = Graph.from_expr(sp.sin(x * y) + x * y, inputs=[x, y])
        >>> [(z, g.expr(z)) for z in g.defined]
        [(z1, x*y), (z2, sin(z1)), (z3, z1 + z2)]
        """
        return split.split(cls, expr, inputs, constants)

    def lagrangian(self):
        """Equation 6: ``L = z_n - sum_i lambda_i (z_i - f_i(z_alpha(i)))``."""
        return self.derived("lagrangian", lagrangian.lagrangian)

    def stationarity(self) -> lagrangian.Stationarity:
        """The conditions ``grad L = 0``: forward, adjoint and gradient."""
        return lagrangian.stationarity(self)

    def solve(
        self,
        values: Mapping | None = None,
        *,
        expand: bool = True,
        kinks: str = "convention",
        checkpoints: int | None = None,
    ) -> solve.Solution:
        """Solve ``grad L = 0``: Step 1 forward for ``z``, Step 2 in reverse for ``lambda``.

        With ``values`` (a number for every input and constant, keyed by symbol or
        name) the solution is numeric; without, it holds sympy expressions: of the
        inputs, or with ``expand=False`` in the lecture's terms (``z_i = f_i`` of its
        parents, ``lambda_j`` of the readers' multipliers), as Steps 1 and 2 write them.
        At a kink the partial takes its conventional value, or ``nan`` with
        ``kinks="nan"``; ``solution.kinks`` lists every kink met. A recurrence stores at
        most ``checkpoints`` states when given (the binomial schedule).
        """
        return solve.solve(self, values, expand=expand, kinks=kinks, checkpoints=checkpoints)

    def tangent(
        self, at: Mapping, direction: Mapping, *, kinks: str = "convention"
    ) -> second_order.TangentSolution:
        """Forward mode: ``zdot_i = sum_j df_i/dz_j zdot_j`` solved along ``direction``."""
        return second_order.tangent(self, at, direction, kinks=kinks)

    def hvp(
        self,
        at: Mapping,
        direction: Mapping,
        *,
        kinks: str = "convention",
        checkpoints: int | None = None,
    ) -> second_order.HVP:
        """(Hessian of f) v, by the tangent and second-order adjoint sweeps; a recurrence
        stores at most ``checkpoints`` states (and tangents) when given."""
        return second_order.hvp(self, at, direction, kinks=kinks, checkpoints=checkpoints)

    def hessian(self, at: Mapping | None = None):
        """The Hessian of f (numpy at ``at``, a sympy Matrix without), in input order;
        matrix inputs by their entries, row-major (numeric only)."""
        return second_order.hessian(self, at)

    def second_order(self) -> second_order.SecondOrder:
        """The tangent and second-order adjoint conditions as sympy ``Eq`` lists."""
        return second_order.second_order(self)

    def minimize(self, output, over, at: Mapping, **options) -> control.Minimum:
        """Minimise the output over the inputs ``over`` from ``at``: Newton's method with
        Hessian-vector products (``method="newton"``) or gradient descent; for optimal
        control, ``dL/du_t = 0``. See :func:`adjoint.system.control.minimize`."""
        return control.minimize(self, output, over, at, **options)

    def verify(self, at: Mapping | None = None, **options) -> checks.VerifyReport:
        """Check Theorem 16.1 node by node; see :func:`adjoint.coursework.checks.verify`."""
        return checks.verify(self, at, **options)

    def compile(
        self,
        *,
        wrt=None,
        gradient: bool = True,
        dtype: str = "float64",
        backend: str = "numpy",
        hvp: bool = False,
        kinks: str = "convention",
        checkpoints: int | None = None,
    ):
        """The solved system as a fast function (NumPy, or ``backend="jax"`` for the same
        program jitted by JAX); see :func:`adjoint.programs.codegen.compile_graph`.

        ``f = g.compile(); value, gradient = f(x=1.5, y=-2.0)``; with ``hvp=True`` it
        also takes a direction (``v_x=...``) and returns the Hessian-vector product.
        A recurrence runs as a loop (never unrolled) storing every state, or at most
        ``checkpoints`` of them.
        """
        return codegen.compile_graph(
            self,
            wrt=wrt,
            gradient=gradient,
            dtype=dtype,
            backend=backend,
            hvp=hvp,
            kinks=kinks,
            checkpoints=checkpoints,
        )

    def source(
        self,
        *,
        wrt=None,
        gradient: bool = True,
        backend: str = "numpy",
        checkpoints: int | None = None,
    ) -> str:
        """The generated program (both sweeps, one statement per node, a loop per
        recurrence) as Python source, in NumPy or (``backend="jax"``) in ``jax.numpy``."""
        return codegen.source(
            self, wrt=wrt, gradient=gradient, backend=backend, checkpoints=checkpoints
        )

    def explain(
        self, at: Mapping | None = None, direction: Mapping | None = None
    ) -> explain.Explanation:
        """The derivation step by step, as the lecture gives it (Markdown+LaTeX in
        Jupyter, plain text from ``str()``); with ``direction``, the tangent and
        second-order sweeps too. See :func:`adjoint.teaching.explain.explain`."""
        return explain.explain(self, at, direction)

    def trace(self, at: Mapping) -> explain.Trace:
        """Both sweeps edge by edge, each partial with its value."""
        return explain.trace(self, at)

    def adjoint_system(self, at: Mapping | None = None) -> explain.AdjointSystem:
        """Step 2 as the triangular system ``(I - J^T) lambda = e_n``."""
        return explain.adjoint_system(self, at)

    def shadow_prices(self, at: Mapping, eps: float = 1e-6) -> dict:
        """``{node: ((change of z_n) / eps, lambda)}`` for ``z_i = f_i + eps``."""
        return explain.shadow_prices(self, at, eps)

    def draw(self, solution=None, ax=None, **options):
        """The computation graph (the lecture's Figure 1) with matplotlib; returns the Axes."""
        return drawing.draw(self, solution, ax=ax, **options)

    def to_dot(self, solution=None) -> str:
        """The computation graph as Graphviz DOT text."""
        return drawing.to_dot(self, solution)

    def _repr_latex_(self) -> str:
        return graph_latex(self)

    def __repr__(self) -> str:
        counts = [
            (len(self.inputs), "input"),
            (len(self.constants), "constant"),
            (len(self.defined), "constraint"),
        ]
        head = ", ".join(
            f"{n} {what}{'' if n == 1 else 's'}" for n, what in counts if n or what != "constant"
        )
        lines = [f"Graph: {head}"]
        for z in self.defined:
            node = self.node(z)
            if node.recurrence is not None:
                rec = node.recurrence
                if z == rec.state:
                    lines.append(
                        f"  {z}: z_(t+1) = {text(rec.step)} for t < {rec.steps}, "
                        f"z_0 = {text(rec.init)}"
                    )
            elif node.implicit:
                lines.append(f"  {z}: {text(node.residual)} = 0")
            else:
                lines.append(f"  {z} = {text(self.expr(z))}")
        if self.defined:
            lines.append(f"  output: {self.output}")
        return "\n".join(lines)
