"""Minimising the output over some inputs: optimal control read off ``grad L = 0``.

With the states a recurrence and the controls a sequence input, ``grad L = 0`` is the
discrete Pontryagin system (the lecture's Remark 3): the dynamics forward, the
costates backward, and ``dL/du_t = 0`` (equation 4a) for the controls, which
:func:`minimize` solves. Newton's method takes the Hessian-vector products of the
same Lagrangian (forward-over-reverse) inside conjugate gradients, so a linear
quadratic problem is solved in one step; gradient descent is the simple alternative.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..core.errors import AdjointError, as_list
from ..core.records import plain
from ..core.values import by_node
from .second_order import hvp
from .solve import solve

__all__ = ["Minimum", "minimize"]


@dataclass(frozen=True)
class Minimum:
    """The outcome of :func:`minimize`: ``at`` (the point, with the optimal values of
    the variables), ``solution`` (``grad L = 0`` solved there: its adjoints are the
    costates), ``iterations``, ``residual`` (the largest entry of the gradient by the
    variables, ``max_t |dH/du_t|``), ``values`` (the output after each iteration) and
    ``converged``."""

    at: dict
    solution: object
    iterations: int
    residual: float
    values: tuple
    converged: bool

    def to_dict(self) -> dict:
        """As plain data (:func:`adjoint.core.records.plain`): the solution's too."""
        return plain(
            {
                "at": self.at,
                "solution": self.solution,
                "iterations": self.iterations,
                "residual": self.residual,
                "values": self.values,
                "converged": self.converged,
            }
        )

    def __repr__(self) -> str:
        state = "converged" if self.converged else "NOT converged"
        return (
            f"Minimum({state} after {self.iterations} iteration(s): output "
            f"{_number(self.solution.output):.10g}, largest gradient entry {self.residual:.2e})"
        )


def _number(value) -> float:
    return float(np.asarray(value, dtype=float).reshape(-1)[0])


def _zeros(graph, v):
    """Zeros of an input's value: a number, a matrix, or one per step of a sequence."""
    node = graph.node(v)
    shape = () if node.shape is None else tuple(node.shape)
    if not all(isinstance(d, int) or getattr(d, "is_Integer", False) for d in shape):
        raise AdjointError(
            f"{v} has symbolic dimensions {shape}: give its starting value in at=",
            node=v,
        )
    shape = tuple(int(d) for d in shape)
    if node.steps is not None:
        shape = (node.steps, *shape)
    return np.zeros(shape) if shape else 0.0


def _inner(a: dict, b: dict) -> float:
    return float(sum(np.sum(np.asarray(a[k]) * np.asarray(b[k])) for k in a))


def _residual(gradient: dict) -> float:
    return max(float(np.max(np.abs(np.asarray(g)))) for g in gradient.values())


def minimize(
    graph,
    output,
    over,
    at: Mapping,
    *,
    method: str = "newton",
    tolerance: float = 1e-10,
    iterations: int | None = None,
    rate: float = 0.1,
    progress: bool | None = None,
) -> Minimum:
    """Minimise the output over the inputs ``over``, from the values in ``at`` (a
    variable left out of ``at`` starts at zero).

    ``method="newton"``: Newton's method, the Newton system solved by conjugate
    gradients with Hessian-vector products from the second-order sweeps, and a
    backtracking line search; one step solves a linear quadratic problem.
    ``method="gradient"``: gradient descent with step ``rate`` (halved when the output
    would rise). Stops when the largest gradient entry is below ``tolerance`` (relative
    to the first one, or absolute when that is 0). A progress bar (on stderr) shows the
    iterations, the output and the gradient: always with ``progress=True``, never with
    False, and by default once a run has taken more than two seconds.

    Examples
    --------
    >>> from adjoint import Graph
    >>> g = Graph()
    >>> x = g.input("x")
    >>> _ = g.define("f", "(x - 3)**2 + 1")
    >>> best = minimize(g, "f", over=[x], at={x: 0.0})
    >>> best.iterations, round(best.at[x], 12)
    (1, 3.0)
    """
    target = graph.lookup(output)
    if target != graph.output:
        raise AdjointError(
            f"{target} is not the graph's output ({graph.output}): set it with "
            f"g.set_output({target.name!r}) to minimise it",
            node=target,
        )
    variables = [graph.lookup(v) for v in as_list(over, "over")]
    for v in variables:
        if v not in graph.inputs:
            raise AdjointError(f"{v} is not an input: only inputs can be optimised over", node=v)
    if method not in ("newton", "gradient"):
        raise AdjointError(f"method must be 'newton' or 'gradient', got {method!r}")
    if iterations is None:
        iterations = 50 if method == "newton" else 1000
    point = by_node(graph, at, "the starting point")
    for v in variables:  # a variable not given starts at zero, as API.md's calls do
        if v not in point:
            point[v] = _zeros(graph, v)
    point = {k: np.array(v, dtype=float) if np.ndim(v) else float(v) for k, v in point.items()}
    sol = solve(graph, point)
    values = [_number(sol.output)]
    gradient = {v: sol.gradient[v] for v in variables}
    first = _residual(gradient)
    if not (np.isfinite(values[0]) and np.isfinite(first)):
        why = "; ".join(f"{z}: {note}" for z, note in list(sol.undefined.items())[:3])
        raise AdjointError(
            f"the output or its gradient is not a number at the starting point ({why or 'nan'}): "
            "start where the function is defined"
        )
    goal = tolerance * (first if first > 0 else 1.0)
    done = first <= goal
    bar = _Progress(iterations, progress)
    k = 0
    while not done and k < iterations:
        k += 1
        if method == "newton":
            step = _newton_step(graph, point, variables, gradient, sol)
        else:
            step = {v: -rate * np.asarray(gradient[v]) for v in variables}
        found = _line_search(graph, point, step, gradient, values[-1])
        if found is None:  # no step decreases the output: stop here, not converged
            break
        point, sol = found
        values.append(_number(sol.output))
        gradient = {v: sol.gradient[v] for v in variables}
        residual = _residual(gradient)
        done = residual <= goal
        bar.show(k, values[-1], residual, final=done or k == iterations)
    bar.close()
    return Minimum(point, sol, k, _residual(gradient), tuple(values), done)


class _Progress:
    """A one-line progress bar on stderr, redrawn in place at most 20 times a second:
    ``minimize [#######.............]  350/1000  output 1.2345  gradient 3.1e-04``."""

    WIDTH, AFTER, EVERY = 20, 2.0, 0.05  # bar cells; seconds before it shows; between draws

    def __init__(self, total: int, wanted: bool | None):
        self.total, self.wanted = total, wanted
        self.start = self.last = time.monotonic()
        self.shown = False

    def show(self, k: int, value: float, residual: float, final: bool = False) -> None:
        if self.wanted is False:
            return
        now = time.monotonic()
        if self.wanted is None and now - self.start < self.AFTER:
            return
        if not final and self.shown and now - self.last < self.EVERY:
            return
        filled = round(self.WIDTH * k / self.total) if self.total else self.WIDTH
        bar = "#" * filled + "." * (self.WIDTH - filled)
        line = (
            f"\rminimize [{bar}] {k:>{len(str(self.total))}}/{self.total}  output {value:.6g}  "
            f"gradient {residual:.2e}"
        )
        print(line, end="", file=sys.stderr, flush=True)
        self.shown, self.last = True, now

    def close(self) -> None:
        if self.shown:
            print(file=sys.stderr, flush=True)


def _newton_step(graph, point, variables, gradient, solution) -> dict:
    """``H p = -g`` over the variables, by conjugate gradients with Hessian-vector
    products at the point's ``solution`` (the other inputs held still); along a
    direction of negative curvature, the steepest descent direction."""
    zeros = {x: np.zeros(np.shape(point[x])) if np.ndim(point[x]) else 0.0 for x in graph.inputs}

    def H(p: dict) -> dict:
        out = hvp(graph, point, {**zeros, **p}, solution=solution)
        return {v: np.asarray(out[v], dtype=float) for v in variables}

    b = {v: -np.asarray(gradient[v], dtype=float) for v in variables}
    x = {v: np.zeros(np.shape(b[v])) for v in variables}
    r = dict(b)
    p = dict(r)
    rr = _inner(r, r)
    size = sum(np.size(b[v]) for v in variables)
    for _ in range(size + 10):
        Hp = H(p)
        curvature = _inner(p, Hp)
        if curvature <= 0:
            return x if _inner(x, x) > 0 else b
        alpha = rr / curvature
        x = {v: x[v] + alpha * p[v] for v in variables}
        r = {v: r[v] - alpha * Hp[v] for v in variables}
        new = _inner(r, r)
        if new <= 1e-30 * _inner(b, b):
            break
        p = {v: r[v] + (new / rr) * p[v] for v in variables}
        rr = new
    return x


def _line_search(graph, point, step, gradient, value):
    """The full step, or halved until the output decreases enough (Armijo); ``None``
    when no step does (outside the domain, or no descent left at rounding level)."""
    slope = _inner(gradient, step)
    t = 1.0
    for _ in range(40):
        trial = {**point, **{v: np.asarray(point[v]) + t * s for v, s in step.items()}}
        trial = {k: (float(v) if np.ndim(v) == 0 else v) for k, v in trial.items()}
        try:
            sol = solve(graph, trial)
        except AdjointError:  # a step out of the domain (Newton's method of a block, say)
            t /= 2
            continue
        new = _number(sol.output)
        finite = np.isfinite(new) and all(np.all(np.isfinite(sol.gradient[v])) for v in step)
        if finite and new <= value + 1e-4 * t * slope + 1e-15 * abs(value):
            return trial, sol
        t /= 2
    return None
