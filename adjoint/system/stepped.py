"""Formulas in the step notation of recurrences, evaluated on a trajectory.

A recurrence's conditions are written once with the index t: ``lambda_z[t] =
a*cos(z[t])*lambda_z[t + 1] + ...``, ``lambda_a = Sum(sin(z[t])*lambda_z[t + 1], (t, 0,
T - 1))``. :class:`Stepped` turns such a formula into a numeric function of a *world*
(the values of every stepped name at every step, and of the plain symbols) and of the
step t: compiled once, each ``Sum`` evaluated by a loop over t. The grader reads
students' costate recursions with it.
"""

from __future__ import annotations

import re

import numpy as np
import sympy as sp

from ..core.symbols import STEP, STEPS, StepSum
from ..operations.numeric import numeric_function

__all__ = ["FreeStep", "OutOfSteps", "Stepped", "step_objects"]

_MATRIX_STEP = re.compile(r"(.+)\[(t|T|\d+)(?: ([+-]) (\d+))?\]")


class FreeStep(Exception):
    """The formula reads the step t where it is one value (no ``[t]`` on its left)."""


class OutOfSteps(Exception):
    """The formula reads a step that does not exist (``z[t - 1]`` at t = 0)."""


def _matrix_index(symbol):
    """``(base name, index)`` of a matrix at a step, ``x[t + 1]``; ``None`` otherwise."""
    m = _MATRIX_STEP.fullmatch(symbol.name)
    if m is None:
        return None
    head = {"t": STEP, "T": STEPS}.get(m[2]) or sp.Integer(m[2])
    shift = 0 if m[3] is None else int(m[4]) * (1 if m[3] == "+" else -1)
    return m[1], head + shift


def step_objects(expr) -> dict:
    """``{object: (base name, index)}`` for every value at a step in ``expr`` (outside
    sums too: a sum's summand has its own)."""
    found = {}
    for e in sp.preorder_traversal(expr):
        if isinstance(e, sp.Indexed):
            found[e] = (e.base.label.name, e.indices[0])
        elif isinstance(e, sp.MatrixSymbol):
            index = _matrix_index(e)
            if index is not None:
                found[e] = index
    return found


class Stepped:
    """``expr`` as a numeric function of a world and a step (see the module)."""

    def __init__(self, expr):
        odd = [
            e
            for e in sp.preorder_traversal(expr)
            if isinstance(e, (sp.Sum, StepSum)) and not _is_step_sum(e)
        ]
        if odd:
            raise ValueError(f"{odd[0]} is not a sum over t = 0 .. T-1, one at a time")
        sums = [e for e in sp.preorder_traversal(expr) if _is_step_sum(e)]
        outer = [s for s in sums if not any(s != o and o.has(s) for o in sums)]
        self.sums = []
        for k, s in enumerate(outer):
            summand = s.args[0] if isinstance(s, StepSum) else s.function
            holder = (
                sp.MatrixSymbol(f"_sum{k}", *s.shape)
                if isinstance(s, StepSum)
                else sp.Dummy(f"sum{k}")
            )
            self.sums.append((holder, Stepped(summand)))
            expr = expr.xreplace({s: holder})
        self.objects = []
        for k, (obj, (name, index)) in enumerate(step_objects(expr).items()):
            holder = (
                sp.MatrixSymbol(f"_at{k}", *obj.shape)
                if isinstance(obj, sp.MatrixSymbol)
                else sp.Dummy(f"at{k}")
            )
            self.objects.append((holder, name, sp.lambdify((STEP, STEPS), index, "math")))
            expr = expr.xreplace({obj: holder})
        self.free = sorted(
            expr.free_symbols
            - {STEP, STEPS}
            - {h for h, *_ in self.objects}
            - {h for h, _ in self.sums},
            key=lambda s: s.name,
        )
        args = [h for h, *_ in self.objects] + [h for h, _ in self.sums] + self.free
        self.expr = expr
        self.function = numeric_function([*args, STEP, STEPS], expr)

    @property
    def plain(self) -> list:
        """The symbols it reads that are no value at a step: from the world's ``env``."""
        out = list(self.free)
        for _, inner in self.sums:
            out += [s for s in inner.plain if s not in out]
        return out

    def __call__(self, world, t=None):
        """The value with the stepped names from ``world.series`` (``{name: array over
        steps}``), the others from ``world.env``, at step ``t`` (``None``: no step)."""
        T = world.steps
        if t is None and self.expr.has(STEP):
            raise FreeStep("t")
        values = []
        for _, name, index in self.objects:
            if t is None and _depends_on_t(index):
                raise FreeStep(name)
            k = int(index(0 if t is None else t, T))
            series = world.series[name]
            if not 0 <= k < len(series):
                raise OutOfSteps(f"{name}[{k}]")
            values.append(series[k])
        for _, inner in self.sums:
            total = 0.0
            for k in range(T):
                total = total + inner(world, k)
            values.append(total)
        values += [world.env[s] for s in self.free]
        with np.errstate(all="ignore"):
            out = self.function(*values, 0 if t is None else t, T)
        return np.asarray(out, dtype=float)


def _is_step_sum(e) -> bool:
    if isinstance(e, StepSum):
        return True
    return isinstance(e, sp.Sum) and len(e.limits) == 1 and e.limits[0][0] == STEP


def _depends_on_t(index) -> bool:
    """Whether a compiled index ``index(t, T)`` changes with t."""
    return index(0, 10) != index(1, 10)
