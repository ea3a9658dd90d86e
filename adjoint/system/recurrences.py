"""Rolled recurrences: the method of adjoints over many steps, declared once.

For ``z_{t+1} = f(z_t, theta, u_t, t)``, ``t = 0 .. T-1``, ``z_0 = init``, a stage cost
``C = sum_{t<T} l(z_t, theta, u_t, t)`` and the final state ``z_T`` (nodes the rest of
the graph reads), the Lagrangian carries

    - lambda_0 (z_0 - init) - sum_t lambda_{t+1} (z_{t+1} - f(z_t, theta, u_t, t))
    - lambda_C (C - sum_t l(z_t, ...)) - lambda_F (z_F - z_T),

and ``grad L = 0`` gives, once and with the index t:

* forward: ``z_0 = init``, ``z_{t+1} = f(z_t, ...)``, ``z_F = z_T``, ``C = sum_t l``;
* the costates: ``lambda_T = lambda_F`` and ``lambda_t = (df/dz_t)^T lambda_{t+1} +
  lambda_C dl/dz_t``, in reverse (``dL/dz_t = 0``);
* the gradients: ``dL/dtheta = sum_t (df/dtheta)^T lambda_{t+1} + lambda_C dl/dtheta``
  (plus ``(dinit/dtheta)^T lambda_0``), and for a sequence ``dL/du_t = (df/du_t)^T
  lambda_{t+1} + lambda_C dl/du_t``, one per step.

The local partials of ``f`` and ``l`` are derived once, whatever T; solving loops over t.
The reverse sweep needs the states in reverse order: stored, or recomputed from at most
``s`` stored ones by the binomial (revolve) schedule of Griewank and Walther.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..core.display import equation, table
from ..core.errors import AdjointError
from ..core.symbols import over_steps, step_value
from ..operations.checkpointing import ScheduleCounts, actions, forward, minimal_advances, reverse
from ..operations.matrices import pullback, reuse_output, tangent
from ..operations.numeric import numeric_function
from .conditions import AdjointCondition, Contribution, Lazy, Role
from .graph import STEP

__all__ = [
    "RecurrenceAdjoint",
    "RecurrenceContribution",
    "RecurrenceForward",
    "Schedule",
    "ScheduleCounts",
    "actions",
    "minimal_advances",
    "schedule",
]


# -- the binomial (revolve) schedule, shown -------------------------------------------


class Schedule:
    """The binomial schedule for ``steps`` steps and ``checkpoints`` stored states: its
    actions as a table (``str``) and a picture (:meth:`draw`), with its counts."""

    def __init__(self, steps: int, checkpoints: int):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise AdjointError(f"steps must be a positive integer, got {steps!r}")
        if isinstance(checkpoints, bool) or not isinstance(checkpoints, int) or checkpoints < 1:
            raise AdjointError(f"checkpoints must be a positive integer, got {checkpoints!r}")
        self.steps, self.checkpoints = steps, checkpoints
        self.counts = _count(steps, checkpoints)

    def to_dict(self, limit: int = 200) -> dict:
        """The counts and the first ``limit`` actions, as plain data."""
        rows = [{"action": a, "what": w} for a, w in self.rows(limit)]
        return {
            "steps": self.steps,
            "checkpoints": self.checkpoints,
            "counts": self.counts.to_dict(),
            "actions": rows,
        }

    def actions(self):
        """The actions, as :func:`actions` yields them."""
        return actions(self.steps, self.checkpoints)

    def rows(self, limit: int = 200) -> list[tuple[str, str]]:
        out = []
        for k, a in enumerate(self.actions()):
            if k == limit:
                out.append(("...", "(more)"))
                break
            if a[0] == "advance":
                what = f"step forward from state {a[1]} to state {a[2]}"
            elif a[0] == "reverse":
                what = f"costate of step {a[1]}: lambda_{a[1]} from lambda_{a[1] + 1}"
            else:
                verb = {"snapshot": "store", "restore": "take", "free": "drop"}[a[0]]
                what = f"{verb} state {a[1]}"
            out.append((a[0], what))
        return out

    def __repr__(self) -> str:
        head = f"binomial schedule, {self.steps} steps, {self.checkpoints} stored states: "
        return head + repr(self.counts) + "\n" + table(("action", "what"), self.rows())

    def draw(self, ax=None):
        """Step index against action number: advances as rising lines, reverse steps as
        dots, snapshots as squares; returns the Axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.5))
        k, labels = 0, {"advance": "forward steps", "reverse": "reverse step", "snapshot": "stored"}

        def label(kind):  # each kind once in the legend
            return labels.pop(kind, None)

        for a in self.actions():
            if a[0] == "advance":
                ax.plot(
                    [k, k + a[2] - a[1]], [a[1], a[2]], color="#219ebc", lw=1.5, label=label(a[0])
                )
                k += a[2] - a[1]
            elif a[0] == "reverse":
                ax.plot([k], [a[1]], "o", color="#ef476f", ms=3, label=label(a[0]))
                k += 1
            elif a[0] == "snapshot":
                ax.plot([k], [a[1]], "s", color="#06d6a0", ms=5, label=label(a[0]))
        ax.set_xlabel("work (forward and reverse steps, in order)")
        ax.set_ylabel("step index t")
        ax.set_title(f"binomial schedule: T = {self.steps}, {self.checkpoints} stored states")
        ax.legend(loc="upper right", fontsize=8)
        return ax


def schedule(steps: int, checkpoints: int) -> Schedule:
    """The binomial (revolve) schedule that reverses ``steps`` steps storing at most
    ``checkpoints`` states.

    >>> schedule(10, 3).counts
    10 steps: 16 forward steps (1.60 T), 3 states stored at peak, 10 reverse steps
    """
    return Schedule(steps, checkpoints)


def _count(steps: int, checkpoints: int) -> ScheduleCounts:
    """The counts of the schedule, by running its actions without states."""
    advanced, stored, peak, reversed_ = 0, set(), 0, 0
    first = True
    for a in actions(steps, checkpoints):
        if a[0] == "advance":
            advanced += a[2] - a[1]
        elif a[0] == "snapshot":
            stored.add(a[1])
            peak = max(peak, len(stored))
        elif a[0] == "free":
            stored.discard(a[1])
        elif a[0] == "reverse":
            if first:  # the first sweep also takes the last step, to z_T
                advanced += 1
                first = False
            reversed_ += 1
    return ScheduleCounts(steps, advanced, peak, reversed_, checkpoints)


# -- the conditions --------------------------------------------------------------------


@dataclass(frozen=True)
class GradientPart:
    """The key under which the reverse sweep leaves what a recurrence adds to the
    condition of a node it reads (summed over t, or one per step for a sequence)."""

    recurrence: object
    node: object


def _pullback(expr, cot, wrt):
    """``(d expr / d wrt)^T cot``: by the matrix rules for matrix expressions, entry by
    entry for explicit matrices and for scalars written with a matrix's entries."""
    if isinstance(expr, sp.MatrixBase):  # explicit entries: sum of cot_ij d expr_ij
        entries = [(cot[i, j], expr[i, j]) for i in range(expr.rows) for j in range(expr.cols)]
        return _entrywise(entries, wrt)
    elements = sp.matrices.expressions.matexpr.MatrixElement
    if (
        isinstance(wrt, sp.MatrixSymbol)
        and not isinstance(expr, sp.MatrixExpr)
        and any(e.parent == wrt for e in expr.atoms(elements))
    ):
        return _entrywise([(cot, expr)], wrt)
    return pullback(expr, cot, wrt)


def _entrywise(entries, wrt):
    if isinstance(wrt, sp.MatrixSymbol):
        rows, cols = wrt.shape
        return sp.ImmutableMatrix(
            rows,
            cols,
            lambda a, b: sp.Add(*(c * sp.diff(e, wrt[a, b]) for c, e in entries)),
        )
    return sp.Add(*(c * sp.diff(e, wrt) for c, e in entries))


def indexed(symbol, shift: int = 0, name=None):
    """``symbol`` at step ``t + shift``, for printing: ``z[t + 1]``."""
    return step_value(symbol, STEP + shift, name)


def at_step(symbol, index, name=None):
    """``symbol`` at a fixed step (0, or T), for printing."""
    return step_value(symbol, index, name)


def _display(expr, rec, sequences=()):
    """``expr`` with the state and the sequences at step t as indexed symbols (``z[t]``,
    ``u[t]``), for printing."""
    mapping = {rec.state: indexed(rec.state)}
    for s in sequences:
        mapping[s] = indexed(s)
    return expr.xreplace(mapping) if isinstance(expr, sp.Basic) else expr


class RecurrenceForward(Lazy):
    """``z_0 = init``, ``z_{t+1} = f(z_t, ..., t)``, ``z_F = z_T``, ``C = sum_t l``: the
    forward conditions of a recurrence, solved by one loop over t."""

    role = Role.FORWARD
    seed = 0
    implicit, recurrent = False, True
    __slots__ = ("graph_dims", "params", "priced", "rec", "sequences", "wrt")

    def __init__(self, graph, rec):
        self.rec = rec
        self.wrt = graph.multiplier(rec.state)
        step_reads = [r for r in rec.reads]
        self.sequences = tuple(r for r in step_reads if graph.node(r).steps is not None)
        self.params = tuple(r for r in step_reads if graph.node(r).steps is None)
        # what the reverse loop prices: constants (data) get no gradient, and no memory
        data = {r for r in step_reads if graph.node(r).kind == "constant"}
        self.priced = (
            tuple(p for p in self.params if p not in data),
            tuple(u for u in self.sequences if u not in data),
        )
        self.graph_dims = tuple(graph.dims)
        self._memo = None

    @property
    def nodes(self) -> tuple:
        rec = self.rec
        return tuple(s for s in (rec.state, rec.final, rec.cost) if s is not None)

    @property
    def unknown(self):
        return self.rec.state

    @property
    def reads(self) -> tuple:
        return self.rec.reads

    @property
    def equations(self) -> list:
        rec, z = self.rec, self.rec.state
        eqs = [
            equation(at_step(z, 0), rec.init),
            equation(indexed(z, 1), _display(rec.step, rec, self.sequences)),
            equation(rec.final, at_step(z, "T")),
        ]
        if rec.cost is not None:
            eqs.append(equation(rec.cost, over_steps(_display(rec.stage, rec, self.sequences))))
        return eqs

    note = "for t = 0 .. T-1, one loop"

    def arguments(self):
        return (self.rec.state, *self.params, *self.sequences, STEP, *self.graph_dims)

    def functions(self):
        """The step and the stage cost as numeric functions of ``(z_t, params, u_t, t,
        dims)``."""

        def build():
            step = numeric_function(self.arguments(), self.rec.step)
            stage = self.rec.stage
            stage = None if stage is None else numeric_function(self.arguments(), stage)
            init_reads = [r for r in self.rec.reads if self.rec.init.has(r)]
            init = numeric_function((*init_reads, *self.graph_dims), self.rec.init)
            return step, stage, init, tuple(init_reads)

        return self._kept("functions", build)

    def loop(self, env):
        """``(z_0, step, stage)`` at ``env``: the initial state, ``step(z_t, t) ->
        z_{t+1}`` and ``stage(z_t, t) -> l_t`` (``None`` without a cost)."""
        rec = self.rec
        step, stage, init, init_reads = self.functions()
        params = [env[p] for p in self.params]
        seqs = [np.asarray(env[u]) for u in self.sequences]
        dims = [env[d] for d in self.graph_dims]
        z0 = _as_state(init(*(env[r] for r in init_reads), *dims), rec)

        def advance(z, t):
            return _as_state(step(z, *params, *(u[t] for u in seqs), t, *dims), rec)

        def cost_at(z, t):
            return stage(z, *params, *(u[t] for u in seqs), t, *dims)

        return z0, advance, (None if stage is None else cost_at)

    def solve(self, env, work=None, checkpoints=None):
        """The states (all of them, or the schedule's snapshots), ``z_T`` and the cost,
        put into ``env``; what the reverse sweep reads goes into ``work``."""
        rec = self.rec
        z0, advance, cost_at = self.loop(env)
        final, total, run = forward(advance, cost_at, z0, rec.steps, checkpoints)
        # under a schedule the trajectory is not kept: z_T stands for it
        env[rec.state] = run.states if run.states is not None else final
        if work is not None:
            work[rec] = run
        env[rec.final] = _as_state(final, rec)
        if rec.cost is not None:
            env[rec.cost] = _as_cost(total, rec)
        return tuple(env[s] for s in self.nodes)

    def sweep(self, env, state) -> None:
        """The forward loop into ``env`` (every state, or the schedule's snapshots)."""
        if state.symbolic:
            self.solve_symbolic(env)  # says how to solve a recurrence instead
        self.solve(env, state.work, state.checkpoints)

    def solve_symbolic(self, env):
        raise AdjointError(
            f"the recurrence {self.rec.state} is solved at a point, g.solve({{...}}): its "
            "conditions, with the index t, are g.stationarity()",
            node=self.rec.state,
        )


def _as_state(value, rec):
    if isinstance(rec.state, sp.MatrixSymbol):
        return np.asarray(value, dtype=float).reshape(tuple(int(d) for d in rec.state.shape))
    return float(value)


def _as_cost(value, rec):
    if rec.cost is not None and isinstance(rec.cost, sp.MatrixSymbol):
        return np.asarray(value, dtype=float).reshape(1, 1)
    return float(np.asarray(value, dtype=float).reshape(()))


class RecurrenceContribution(Contribution):
    """What a recurrence adds to the condition of a node it reads: summed over t for a
    parameter, one per step for a sequence, ``(dinit/dz_j)^T lambda_0`` for what the
    initial state reads. The reverse sweep computes it."""

    __slots__ = ()
    recurrent = True

    def __repr__(self) -> str:
        return f"RecurrenceContribution({self.reader} -> {self.node})"

    @property
    def partial(self):
        return self.expr

    @property
    def expr(self):
        return self._kept("expr", lambda: self.op.contribution_expr(self.node))

    @property
    def numeric(self):
        raise AdjointError("a recurrence has no compiled partial yet")

    @property
    def reuses_output(self) -> bool:
        return False

    @property
    def pullback(self) -> bool:
        return True

    def value(self, env):
        return env[GradientPart(self.op.rec, self.node)]

    def partial_value(self, env):
        return None

    def second(self, ldot, dots):
        """Its tangent, which the second-order loop gathers: written ``d/ds`` of it."""
        return sp.Derivative(self.expr, sp.Symbol("s"))

    def add_second(self, total, env, ldot, dots):
        return total + env[TangentPart(self.op.rec, self.node)]


class RecurrenceAdjoint(Lazy):
    """``dL/dz_t = 0`` for every t: ``lambda_T = lambda_F`` and ``lambda_t = (df/dz_t)^T
    lambda_{t+1} + lambda_C dl/dz_t``, solved by one loop in reverse; the same loop
    gathers the gradients of what the recurrence reads."""

    role = Role.ADJOINT
    seed = 0
    implicit, recurrent = False, True
    __slots__ = ("contributions", "cost_lam", "final_lam", "forward", "lam_next", "rec")

    def __init__(self, graph, forward: RecurrenceForward):
        self.forward = forward
        self.rec = rec = forward.rec
        self.final_lam = graph.multiplier(rec.final)
        self.cost_lam = None if rec.cost is None else graph.multiplier(rec.cost)
        state = rec.state
        # lambda_{t+1} while the loop runs: a symbol no node can have (a leading underscore)
        self.lam_next = (
            sp.MatrixSymbol(f"_lambda_{state.name}_next", *state.shape)
            if isinstance(state, sp.MatrixSymbol)
            else sp.Symbol(f"_lambda_{state.name}_next", real=True)
        )
        self.contributions = ()
        self._memo = None

    @property
    def after(self):
        """``z_{t+1}`` while the reverse loop runs (no node can have its name)."""
        state = self.rec.state
        if isinstance(state, sp.MatrixSymbol):
            return sp.MatrixSymbol(f"_{state.name}_after", *state.shape)
        return sp.Symbol(f"_{state.name}_after", real=True)

    @property
    def wrt(self):
        return self.rec.state

    @property
    def unknown(self):
        return self.forward.wrt

    @property
    def nodes(self) -> tuple:
        return (self.rec.state,)

    @property
    def multipliers(self) -> tuple:
        return (self.forward.wrt,)

    note = "for t = T-1 .. 0, in reverse"

    def local_after(self, wrt, after):
        """:meth:`local`, a partial written with the step's own value reading
        ``after`` (z_{t+1}, which every reverse loop has) instead of the step again."""
        return reuse_output(self.local(wrt), self.rec.step, after)

    def local(self, wrt):
        """``(df/dwrt)^T lambda_{t+1} + lambda_C (dl/dwrt)`` in the node symbols."""
        rec = self.rec
        terms = [_pullback(rec.step, self.lam_next, wrt)]
        if rec.stage is not None:
            cost = self.cost_lam
            if isinstance(rec.stage, sp.MatrixExpr) and not isinstance(cost, sp.MatrixSymbol):
                cost = sp.ImmutableMatrix([[cost]])
            terms.append(_pullback(rec.stage, cost, wrt))
        terms = [t for t in terms if not (t == 0 or getattr(t, "is_ZeroMatrix", False))]
        if not terms:
            return sp.ZeroMatrix(*wrt.shape) if isinstance(wrt, sp.MatrixSymbol) else sp.S.Zero
        if any(isinstance(t, (sp.MatrixExpr, sp.MatrixBase)) for t in terms):
            total = terms[0]
            for t in terms[1:]:
                total = total + t
            return total
        return sp.Add(*terms)

    def init_local(self, wrt):
        return _pullback(self.rec.init, self.forward.wrt, wrt)

    @property
    def costate_name(self) -> str:
        """``lambda_z`` (``Lambda_x`` for a matrix state): the costate's name in text."""
        return self._name()

    def _name(self) -> str:
        state = self.rec.state
        return f"{'Lambda' if isinstance(state, sp.MatrixSymbol) else 'lambda'}_{state.name}"

    def costate_at(self, shift):
        """The costate at step ``t + shift`` (``"T"``: at the last step), for printing."""
        if shift == "T":
            return at_step(self.rec.state, "T", self._name())
        return indexed(self.rec.state, shift, self._name())

    def _shown(self, expr):
        return _display(expr, self.rec, self.forward.sequences).xreplace(
            {self.lam_next: self.costate_at(1)}
        )

    @property
    def equations(self) -> list:
        return [
            equation(self.costate_at("T"), self.final_lam),
            equation(self.costate_at(0), self._shown(self.local(self.rec.state))),
        ]

    @property
    def lhs(self):
        return self.equations[1].lhs

    @property
    def rhs(self):
        return self.equations[1].rhs

    @property
    def eq(self):
        return self.equations[1]

    @property
    def hamiltonian(self):
        """``H_t = lambda_C l(z_t, u_t, t) + lambda_{t+1}^T f(z_t, u_t, t)``, for printing:
        the costates are ``lambda_t = dH_t/dz_t`` and a control's condition is
        ``dL/du_t = dH_t/du_t`` (Pontryagin's, in the lecture's sign)."""
        rec, lam = self.rec, self.costate_at(1)
        step = _display(rec.step, rec, self.forward.sequences)
        if isinstance(rec.state, sp.MatrixSymbol):
            H = (
                sp.Trace(lam.T * step)
                if not isinstance(step, sp.MatrixBase)
                else (sp.ImmutableMatrix(lam).T * step)[0, 0]
            )
        else:
            H = lam * step
        if rec.stage is not None:
            stage = _display(rec.stage, rec, self.forward.sequences)
            if isinstance(stage, (sp.MatrixExpr, sp.MatrixBase)):
                stage = sp.Trace(stage) if isinstance(stage, sp.MatrixExpr) else stage[0, 0]
            cost = self.cost_lam
            cost = cost[0, 0] if isinstance(cost, sp.MatrixSymbol) else cost
            H = cost * stage + H
        return H

    def contribution_expr(self, node):
        """What the recurrence adds to the condition of ``node``, with the index t."""
        rec = self.rec
        part = self._shown(self.local(node))
        zero = (
            part == 0
            or getattr(part, "is_ZeroMatrix", False)
            or (isinstance(part, sp.MatrixBase) and part.is_zero_matrix)
        )
        if node not in self.forward.sequences and not zero:
            part = over_steps(part)
        if rec.init.has(node):
            start = at_step(rec.state, 0, self._name())
            initial = self.init_local(node).xreplace({self.forward.wrt: start})
            part = initial if zero else part + initial
        return part

    def functions(self):
        """The reverse step as one numeric function: ``(lambda_t, contributions...)`` from
        ``(z_t, lambda_{t+1}, lambda_C, params, u_t, t, dims)``."""

        def build():
            f = self.forward
            reads = (*f.priced[0], *f.priced[1])
            # a partial written with the step's own value reads z_{t+1}, which the loop
            # passes: tanh' = 1 - z_{t+1}**2, not the step again
            after = self.after
            exprs = [self.local_after(w, after) for w in (self.rec.state, *reads)]
            cost = [] if self.cost_lam is None else [self.cost_lam]
            args = (
                self.rec.state,
                self.lam_next,
                *cost,
                *f.params,
                *f.sequences,
                STEP,
                *f.graph_dims,
                after,
            )
            step = numeric_function(args, sp.Tuple(*exprs))
            init_reads = [r for r in self.rec.reads if self.rec.init.has(r)]
            init = {
                r: numeric_function(
                    (self.forward.wrt, *init_reads, *f.graph_dims), self.init_local(r)
                )
                for r in init_reads
            }
            return step, init, tuple(init_reads)

        return self._kept("functions", build)

    def solve(self, env, live=None, kinks=None, work=None):
        """The costates (all, or lambda_0 under a schedule) and the gradient parts."""
        f, rec = self.forward, self.rec
        back, init, init_reads = self.functions()
        params = [env[p] for p in f.params]
        seqs = [np.asarray(env[u]) for u in f.sequences]
        dims = [env[d] for d in f.graph_dims]
        cost = [] if self.cost_lam is None else [env[self.cost_lam]]
        run = (work or {}).get(rec)
        if run is None:  # solved elsewhere: the states again
            memo = {}
            f.solve({**env}, memo)
            run = memo[rec]
        _, advance, _ = f.loop(env)

        def back_step(z, lam, t, after):
            out = back(z, lam, *cost, *params, *(u[t] for u in seqs), t, *dims, after)
            return [np.asarray(o, dtype=float) for o in out]

        lam, sums, per_step = reverse(
            advance,
            back_step,
            run,
            np.asarray(env[self.final_lam], dtype=float),
            summed=len(f.priced[0]),
            per_step=[np.shape(env[u])[1:] for u in f.priced[1]],
            keep=run.states is not None,
        )
        env[f.wrt] = lam  # every costate, or lambda_0 under a schedule
        lam0 = lam if run.states is None else lam[0]
        for p, part in zip(f.priced[0], sums):
            env[GradientPart(rec, p)] = _shaped(part, env[p])
        for u, part in zip(f.priced[1], per_step):
            env[GradientPart(rec, u)] = part
        for r in init_reads:
            part = np.asarray(init[r](lam0, *(env[q] for q in init_reads), *dims), dtype=float)
            key = GradientPart(rec, r)
            env[key] = _shaped(env.get(key, 0.0) + part, env[r])
        return (env[f.wrt],)

    def sweep(self, env, state) -> None:
        """The reverse loop into ``env``: the costates and the gradient parts."""
        self.solve(env, state.live, state.kinks, state.work)

    def solve_symbolic(self, env):
        return self.forward.solve_symbolic(env)


def _shaped(value, like):
    if np.ndim(like):
        return np.broadcast_to(np.asarray(value, dtype=float), np.shape(like)).copy()
    return float(np.asarray(value, dtype=float).reshape(()))


def recurrence_terms(graph, rec) -> list:
    """The recurrence's terms of the Lagrangian, with the index t: ``-lambda_0 (z_0 -
    init) - sum_t lambda_{t+1} (z_{t+1} - f(z_t, t)) - lambda_F (z_F - z_T) - lambda_C
    (C - sum_t l(z_t, t))`` (Frobenius products for matrices)."""
    state = rec.state
    name = f"{'Lambda' if isinstance(state, sp.MatrixSymbol) else 'lambda'}_{state.name}"
    sequences = tuple(r for r in rec.reads if graph.node(r).steps is not None)

    def product(lam, residual):
        if isinstance(residual, (sp.MatrixExpr, sp.MatrixBase)):
            return sp.Trace(lam.T * residual)
        return lam * residual

    step = _display(rec.step, rec, sequences)
    terms = [
        -product(at_step(state, 0, name), at_step(state, 0) - rec.init),
        -over_steps(product(indexed(state, 1, name), indexed(state, 1) - step)),
        -product(graph.multiplier(rec.final), rec.final - at_step(state, "T")),
    ]
    if rec.cost is not None:
        stage = over_steps(_display(rec.stage, rec, sequences))
        terms.append(-product(graph.multiplier(rec.cost), rec.cost - stage))
    return terms


class SequenceGradient(AdjointCondition):
    """``dL/du_t`` for a sequence input: one entry per step, ``lambda_u[t] = ...``."""

    __slots__ = ()
    note = "for t = 0 .. T-1"

    @property
    def equations(self) -> list:
        lam = self.unknown
        shown = (
            indexed(lam, 0) if isinstance(lam, sp.MatrixSymbol) else sp.IndexedBase(lam.name)[STEP]
        )
        return [equation(shown, self.rhs)]


# -- second order: the tangent and second-order adjoint loops -------------------------


@dataclass(frozen=True)
class TangentPart:
    """The key of what the second-order adjoint loop adds to the tangent of the
    condition of a node the recurrence reads (see :class:`GradientPart`)."""

    recurrence: object
    node: object


def _tangent(expr, dots):
    """``expr`` differentiated along ``dots`` (``{symbol: tangent}``): by the tangent
    rules for matrix expressions, entry by entry for explicit matrices and for scalars
    written with a matrix's entries."""
    elements = sp.matrices.expressions.matexpr.MatrixElement

    def entrywise(e):
        total = []
        for var, dot in dots.items():
            if isinstance(var, sp.MatrixSymbol):
                for a in range(var.rows):
                    for b in range(var.cols):
                        total.append(sp.diff(e, var[a, b]) * dot[a, b])
            else:
                total.append(sp.diff(e, var) * dot)
        return sp.Add(*total)

    if isinstance(expr, sp.MatrixBase):
        return sp.ImmutableMatrix(expr.rows, expr.cols, lambda i, j: entrywise(expr[i, j]))
    if not isinstance(expr, sp.MatrixExpr) and expr.atoms(elements):
        return entrywise(expr)
    return tangent(expr, dots)


def _dot(symbol, prefix):
    """A working symbol for a tangent; no node's name starts with an underscore, so it
    is no user's node (its printed name drops the underscore)."""
    name = f"_{prefix}_{symbol.name}"
    if isinstance(symbol, sp.MatrixSymbol):
        return sp.MatrixSymbol(name, *symbol.shape)
    return sp.Symbol(name, real=True)


class RecurrenceTangent:
    """``zdot_0 = dinit[v]``, ``zdot_{t+1} = (df/dz_t) zdot_t + (df/dtheta) thetadot +
    (df/du_t) udot_t``: the forward conditions linearised along the direction, one loop
    (with ``Cdot = sum_t dl[...]`` and ``zdot_F = zdot_T``)."""

    implicit, recurrent = False, True
    role = Role.TANGENT
    note = "for t = 0 .. T-1, one loop"

    def __init__(self, forward: RecurrenceForward, dots: dict):
        self.forward, self.dots = forward, dots
        self.rec = forward.rec
        self.unknowns = tuple(dots[s] for s in forward.nodes)
        self._fns = None

    @property
    def nodes(self) -> tuple:
        return self.forward.nodes

    def _moving(self):
        """``{symbol: tangent symbol}`` for the state and every read that moves."""
        f = self.forward
        moving = {self.rec.state: _dot(self.rec.state, "zdot")}
        moving.update({r: self.dots[r] for r in (*f.params, *f.sequences) if r in self.dots})
        return moving

    def functions(self):
        if self._fns is None:
            f, rec = self.forward, self.rec
            moving = self._moving()
            moved = tuple(r for r in (*f.params, *f.sequences) if r in self.dots)
            args = (*f.arguments(), *(moving[r] for r in (rec.state, *moved)))
            step = numeric_function(args, _tangent(rec.step, moving))
            stage = None
            if rec.stage is not None:
                stage = numeric_function(args, _tangent(rec.stage, moving))
            init_reads = [r for r in rec.reads if rec.init.has(r) and r in self.dots]
            init_dots = {r: self.dots[r] for r in init_reads}
            all_init = [r for r in rec.reads if rec.init.has(r)]
            init = numeric_function(
                (*all_init, *init_dots.values(), *f.graph_dims), _tangent(rec.init, init_dots)
            )
            self._fns = (step, stage, init, moved, tuple(all_init), tuple(init_dots.values()))
        return self._fns

    @property
    def equations(self) -> list:
        rec, moving = self.rec, self._moving()
        zdot = moving[rec.state]
        shown = {zdot: indexed(rec.state, 0, zdot.name[1:]), rec.state: indexed(rec.state)}
        for s in self.forward.sequences:
            shown[s] = indexed(s)
            if s in self.dots:
                shown[self.dots[s]] = indexed(s, 0, self.dots[s].name)
        return [
            equation(
                indexed(rec.state, 1, zdot.name[1:]), _tangent(rec.step, moving).xreplace(shown)
            )
        ]

    def augmented(self, env):
        """``(start, advance, stage)`` of the state and its tangent as one recurrence,
        stacked ``[z_t, zdot_t]``: what a schedule stores and recomputes."""
        f, rec = self.forward, self.rec
        step, stage, init, moved, all_init, init_dots = self.functions()
        z0, advance, cost_at = f.loop(env)
        params = [env[p] for p in f.params]
        seqs = [np.asarray(env[u]) for u in f.sequences]
        dims = [env[d] for d in f.graph_dims]
        dot_values = [np.asarray(env[self.dots[r]]) for r in moved]
        is_seq = [r in f.sequences for r in moved]
        zdot0 = _as_state(
            init(*(env[r] for r in all_init), *(env[d] for d in init_dots), *dims), rec
        )

        def args(zz, t):
            at = [v[t] if s else v for v, s in zip(dot_values, is_seq)]
            return (zz[0], *params, *(u[t] for u in seqs), t, *dims, zz[1], *at)

        def advance2(zz, t):
            return np.stack([advance(zz[0], t), _as_state(step(*args(zz, t)), rec)])

        def stage2(zz, t):
            return np.stack([np.asarray(cost_at(zz[0], t)), np.asarray(stage(*args(zz, t)))])

        start = np.stack(np.broadcast_arrays(np.asarray(z0, float), np.asarray(zdot0, float)))
        return start, advance2, (None if stage is None else stage2)

    def sweep(self, env, state) -> None:
        """The loop into ``env`` (under the schedule too, with ``state.checkpoints``)."""
        env.update(zip(self.unknowns, self.solve(env, None, state.checkpoints, state.work)))

    def solve(self, env, linearization=None, checkpoints=None, work=None):
        f, rec = self.forward, self.rec
        if checkpoints is not None:  # the state and its tangent under one schedule
            start, advance2, stage2 = self.augmented(env)
            final, total, run = forward(advance2, stage2, start, rec.steps, checkpoints)
            work[self] = (run, advance2)
            env[self.dots[rec.state]] = final[1]  # zdot_T stands for the tangents
            env[self.dots[rec.final]] = _as_state(final[1], rec)
            if rec.cost is not None:
                env[self.dots[rec.cost]] = _as_cost(total[1], rec)
            return tuple(env[u] for u in self.unknowns)
        step, stage, init, moved, all_init, init_dots = self.functions()
        T = rec.steps
        states = env[rec.state]
        params = [env[p] for p in f.params]
        seqs = [np.asarray(env[u]) for u in f.sequences]
        dims = [env[d] for d in f.graph_dims]
        dot_values = [np.asarray(env[self.dots[r]]) for r in moved]
        is_seq = [r in f.sequences for r in moved]
        zdot = _as_state(
            init(*(env[r] for r in all_init), *(env[d] for d in init_dots), *dims), rec
        )
        dots = np.empty_like(states)
        dots[0] = zdot
        total = 0.0
        for t in range(T):
            at = [v[t] if s else v for v, s in zip(dot_values, is_seq)]
            args = (states[t], *params, *(u[t] for u in seqs), t, *dims, dots[t], *at)
            if stage is not None:
                total = total + stage(*args)
            dots[t + 1] = _as_state(step(*args), rec)
        env[self.dots[rec.state]] = dots
        env[self.dots[rec.final]] = dots[T]
        if rec.cost is not None:
            env[self.dots[rec.cost]] = _as_cost(total, rec)
        return tuple(env[u] for u in self.unknowns)


class RecurrenceSecondAdjoint:
    """The costate recursion differentiated along the tangent: ``lambdadot_T =
    lambdadot_F`` and ``lambdadot_t = d/ds [(df/dz_t)^T lambda_{t+1} + lambda_C dl/dz_t]``,
    one loop in reverse, which also gathers the tangents of the gradient parts (the
    entries of the Hessian-vector product)."""

    implicit, recurrent = False, True
    role = Role.SECOND_ADJOINT
    note = "for t = T-1 .. 0, in reverse"

    def __init__(self, adjoint: RecurrenceAdjoint, ldots: dict, dots: dict):
        self.adjoint, self.ldots, self.dots = adjoint, ldots, dots
        self.rec = adjoint.rec
        self.unknowns = (ldots[self.rec.state],)
        self._fns = None

    @property
    def nodes(self) -> tuple:
        return (self.rec.state,)

    def _moving(self):
        a, f, rec = self.adjoint, self.adjoint.forward, self.rec
        moving = {rec.state: _dot(rec.state, "zdot"), a.lam_next: _dot(a.lam_next, "dot")}
        if a.cost_lam is not None:
            moving[a.cost_lam] = self.ldots[rec.cost]
        moving.update({r: self.dots[r] for r in (*f.params, *f.sequences) if r in self.dots})
        return moving

    def functions(self):
        if self._fns is None:
            a, f, rec = self.adjoint, self.adjoint.forward, self.rec
            moving = self._moving()
            reads = (*f.params, *f.sequences)
            exprs = [a.local(rec.state), *(a.local(r) for r in reads)]
            cost = [] if a.cost_lam is None else [a.cost_lam]
            moved = tuple(r for r in reads if r in self.dots)
            args = (
                rec.state,
                a.lam_next,
                *cost,
                *f.params,
                *f.sequences,
                STEP,
                *f.graph_dims,
                moving[rec.state],
                moving[a.lam_next],
                *(moving[c] for c in cost),
                *(moving[r] for r in moved),
            )
            step = numeric_function(args, sp.Tuple(*(_tangent(e, moving) for e in exprs)))
            init_reads = [r for r in rec.reads if rec.init.has(r)]
            init_moving = {a.forward.wrt: _dot(a.lam_next, "dot0")}
            init_moving.update({r: self.dots[r] for r in init_reads if r in self.dots})
            init = {
                r: numeric_function(
                    (a.forward.wrt, *init_reads, *init_moving.values(), *f.graph_dims),
                    _tangent(a.init_local(r), init_moving),
                )
                for r in init_reads
            }
            self._fns = (step, init, moved, tuple(init_reads), tuple(init_moving))
        return self._fns

    @property
    def equations(self) -> list:
        a, rec = self.adjoint, self.rec
        moving = self._moving()
        ldot = self.ldots[rec.state]
        shown = {
            moving[a.lam_next]: indexed(rec.state, 1, ldot.name),
            moving[rec.state]: indexed(rec.state, 0, moving[rec.state].name[1:]),
            a.lam_next: a.costate_at(1),
            rec.state: indexed(rec.state),
        }
        for s in a.forward.sequences:
            shown[s] = indexed(s)
            if s in self.dots:
                shown[self.dots[s]] = indexed(s, 0, self.dots[s].name)
        rhs = _tangent(a.local(rec.state), moving).xreplace(shown)
        return [equation(indexed(rec.state, 0, ldot.name), rhs)]

    def sweep(self, env, state) -> None:
        """The loop into ``env`` (under the schedule too, with ``state.checkpoints``)."""
        env.update(zip(self.unknowns, self.solve(env, None, state.checkpoints, state.work)))

    def solve(self, env, linearization=None, checkpoints=None, work=None):
        if checkpoints is not None:
            return self._solve_with_schedule(env, work)
        a, f, rec = self.adjoint, self.adjoint.forward, self.rec
        step, init, moved, init_reads, init_moving = self.functions()
        T = rec.steps
        states, lams = env[rec.state], env[a.forward.wrt]
        dots = env[self.dots[rec.state]]
        params = [env[p] for p in f.params]
        seqs = [np.asarray(env[u]) for u in f.sequences]
        dims = [env[d] for d in f.graph_dims]
        cost = [] if a.cost_lam is None else [env[a.cost_lam]]
        cost_dot = [] if a.cost_lam is None else [env[self.ldots[rec.cost]]]
        dot_values = [np.asarray(env[self.dots[r]]) for r in moved]
        is_seq = [r in f.sequences for r in moved]
        ldot = np.empty_like(lams)
        ldot[T] = np.asarray(env[self.ldots[rec.final]], dtype=float).reshape(np.shape(lams[T]))
        totals = [0.0] * len(f.params)
        per_step = [np.zeros(np.shape(u)) for u in seqs]
        for t in range(T - 1, -1, -1):
            at = [v[t] if s else v for v, s in zip(dot_values, is_seq)]
            out = step(
                states[t],
                lams[t + 1],
                *cost,
                *params,
                *(u[t] for u in seqs),
                t,
                *dims,
                dots[t],
                ldot[t + 1],
                *cost_dot,
                *at,
            )
            ldot[t] = np.asarray(out[0], dtype=float).reshape(np.shape(ldot[t]))
            for k in range(len(f.params)):
                totals[k] = totals[k] + np.asarray(out[1 + k], dtype=float)
            for k in range(len(seqs)):
                per_step[k][t] = np.asarray(out[1 + len(f.params) + k], dtype=float).reshape(
                    np.shape(per_step[k][t])
                )
        env[self.ldots[rec.state]] = ldot
        for k, p in enumerate(f.params):
            env[TangentPart(rec, p)] = _shaped(totals[k], env[p])
        for k, u in enumerate(f.sequences):
            env[TangentPart(rec, u)] = per_step[k]
        for r in init_reads:
            values = [env[self.dots[q]] if q in self.dots else 0.0 for q in init_moving[1:]]
            part = init[r](lams[0], *(env[q] for q in init_reads), ldot[0], *values, *dims)
            key = TangentPart(rec, r)
            env[key] = _shaped(env.get(key, 0.0) + np.asarray(part, dtype=float), env[r])
        return (ldot,)

    def _solve_with_schedule(self, env, work):
        """Forward over reverse under the tangent loop's schedule: ``[lambda_t,
        lambdadot_t]`` in one reverse loop from the stored ``[z_t, zdot_t]``, recomputing
        the others; the tangents of the gradient parts summed (or kept per step)."""
        a, f, rec = self.adjoint, self.adjoint.forward, self.rec
        step, init, moved, init_reads, init_moving = self.functions()
        back, _, _ = a.functions()
        tangent = next(k for k in work if isinstance(k, RecurrenceTangent) and k.rec is rec)
        run, advance2 = work[tangent]
        params = [env[p] for p in f.params]
        seqs = [np.asarray(env[u]) for u in f.sequences]
        dims = [env[d] for d in f.graph_dims]
        cost = [] if a.cost_lam is None else [env[a.cost_lam]]
        cost_dot = [] if a.cost_lam is None else [env[self.ldots[rec.cost]]]
        dot_values = [np.asarray(env[self.dots[r]]) for r in moved]
        is_seq = [r in f.sequences for r in moved]
        shape = np.shape(_as_state(env[rec.final], rec))

        def back2(zz, ll, t, after):
            u_t = [u[t] for u in seqs]
            at = [v[t] if s else v for v, s in zip(dot_values, is_seq)]
            first = back(zz[0], ll[0], *cost, *params, *u_t, t, *dims, after[0])
            second = step(
                zz[0], ll[0], *cost, *params, *u_t, t, *dims, zz[1], ll[1], *cost_dot, *at
            )
            pair = [np.reshape(np.asarray(first[0], float), shape)]
            pair.append(np.reshape(np.asarray(second[0], float), shape))
            return (np.stack(pair), *(np.asarray(o, float) for o in second[1:]))

        final = [env[a.final_lam], env[self.ldots[rec.final]]]
        start = np.stack([np.reshape(np.asarray(v, float), shape) for v in final])
        ll, sums, per_step = reverse(
            advance2,
            back2,
            run,
            start,
            summed=len(f.params),
            per_step=[np.shape(u)[1:] for u in seqs],
        )
        env[self.ldots[rec.state]] = ll[1]  # lambdadot_0
        for p, part in zip(f.params, sums):
            env[TangentPart(rec, p)] = _shaped(part, env[p])
        for u, part in zip(f.sequences, per_step):
            env[TangentPart(rec, u)] = part
        for r in init_reads:
            values = [env[self.dots[q]] if q in self.dots else 0.0 for q in init_moving[1:]]
            part = init[r](ll[0], *(env[q] for q in init_reads), ll[1], *values, *dims)
            key = TangentPart(rec, r)
            env[key] = _shaped(env.get(key, 0.0) + np.asarray(part, dtype=float), env[r])
        return (ll[1],)


def recurrence_formula(graph, rec, node):
    """What a solution's table shows for ``z_final`` (``z_T``) and ``z_cost`` (the sum
    of the stage costs over t)."""
    if node == rec.final:
        return at_step(rec.state, "T")
    sequences = tuple(r for r in rec.reads if graph.node(r).steps is not None)
    return over_steps(_display(rec.stage, rec, sequences))
