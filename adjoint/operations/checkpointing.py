"""Reversing a recurrence: the loops of both sweeps, with every state stored or at most
``s`` of them by the binomial (revolve) schedule of Griewank and Walther.

``g.solve`` and the generated NumPy programs run these same loops, so a compiled
program takes the schedule the solver reports; the JAX versions are ``lax`` loops,
traced once. A step is ``step(z_t, t) -> z_{t+1}`` and a reverse step is
``back(z_t, lambda_{t+1}, t, z_{t+1}) -> (lambda_t, parts...)``, both closing over what
the recurrence reads. The reverse step gets ``z_{t+1}`` for free (the state of the
reverse step before it, or z_T): a partial written with the step's own value (``tanh' =
1 - tanh**2``) reads it instead of computing the step again.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, fields
from math import comb

import numpy as np

from ..core.errors import AdjointError

__all__ = [
    "ScheduleCounts",
    "Trajectory",
    "actions",
    "check_checkpoints",
    "forward",
    "forward_jax",
    "minimal_advances",
    "reverse",
    "reverse_jax",
]


def check_checkpoints(checkpoints):
    """``checkpoints`` as given: ``None`` (every state stored) or a positive int."""
    if checkpoints is not None and (
        isinstance(checkpoints, bool) or not isinstance(checkpoints, int) or checkpoints < 1
    ):
        raise AdjointError(
            f"checkpoints must be a positive number of stored states, got {checkpoints!r}"
        )
    return checkpoints


# -- the binomial (revolve) schedule -------------------------------------------------


def beta(c: int, r: int) -> int:
    """``(c + r)! / (c! r!)``: how many steps ``c`` snapshots reverse with ``r`` sweeps."""
    return comb(c + r, c) if r >= 0 else 0


def _reps(steps: int, snapshots: int) -> int:
    r = 0
    while beta(snapshots, r) < steps:
        r += 1
    return r


def minimal_advances(steps: int, snapshots: int) -> int:
    """The fewest state advances that reverse ``steps`` steps with ``snapshots`` stored
    states (the initial state among them), the first sweep included but not its last
    step: ``r T - beta(s + 1, r - 1)`` for ``beta(s, r - 1) < T <= beta(s, r)``."""
    if snapshots >= steps:
        return steps - 1
    r = _reps(steps, snapshots)
    return r * steps - beta(snapshots + 1, r - 1)


def _split(length: int, snapshots: int) -> int:
    """Where to take the next snapshot in a segment of ``length`` steps: the first step
    ``j`` of the optimal range ``max(beta(c, r - 2), l - beta(c - 1, r)) <= j <=
    min(beta(c, r - 1), l - beta(c - 1, r - 1))``, for which the left part costs ``r - 1``
    sweeps with ``c`` snapshots and the right part ``r`` with ``c - 1``."""
    if snapshots >= length:
        return 1
    r = _reps(length, snapshots)
    j = max(beta(snapshots, r - 2), length - beta(snapshots - 1, r))
    return min(max(1, j), length - 1)


def actions(steps: int, snapshots: int):
    """The schedule's actions, in order: ``("snapshot", t)``, ``("restore", t)``,
    ``("advance", a, b)`` (from state a to state b), ``("reverse", t)`` (the costate of
    step t, from state t) and ``("free", t)``. A generator: a million steps cost no
    list.

    The stored states form a stack, and so does the work left: reversing ``[a, b)``
    with ``c`` snapshots either reverses it directly, or stores ``m`` and reverses
    ``[m, b)`` with ``c - 1`` first; what is left is then ``[a, m)``, with ``a`` the
    state stored below ``m`` and ``c = snapshots + 1 - (states stored)``. So the stack
    of stored positions is all the bookkeeping: 8 bytes per snapshot.
    """
    held = array("q", [0])  # the positions of the stored states, bottom first
    yield ("snapshot", 0)
    end = steps  # the current task reverses [held[-1], end)
    while True:
        a, c = held[-1], snapshots + 1 - len(held)
        if end - a == 1:
            yield ("restore", a)
            yield ("reverse", a)
        elif c == 1:  # one snapshot, a's: advance from it to each step, last step first
            for t in range(end - 1, a - 1, -1):
                yield ("restore", a)
                if t > a:
                    yield ("advance", a, t)
                yield ("reverse", t)
        else:
            m = a + _split(end - a, c)
            yield ("restore", a)
            yield ("advance", a, m)
            yield ("snapshot", m)
            held.append(m)
            continue
        if len(held) == 1:  # [0, end) is reversed: done
            return
        yield ("free", held.pop())
        end = a


@dataclass(frozen=True)
class ScheduleCounts:
    """What reversing a recurrence cost: ``forward_steps`` (evaluations of the step,
    the first sweep's T included), ``stored_peak`` (states stored at once, the
    snapshots), ``reverse_steps`` (T) and ``checkpoints`` (the bound asked for, or
    ``None`` when every state was stored)."""

    steps: int
    forward_steps: int
    stored_peak: int
    reverse_steps: int
    checkpoints: int | None

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __repr__(self) -> str:
        return (
            f"{self.steps} steps: {self.forward_steps} forward steps "
            f"({self.forward_steps / self.steps:.2f} T), {self.stored_peak} states stored at "
            f"peak, {self.reverse_steps} reverse steps"
        )


# -- the two sweeps, in NumPy ----------------------------------------------------------


class Trajectory:
    """What Step 1 leaves for Step 2: every state (``states``, shape ``(T + 1, ...)``),
    or the schedule's snapshots (a stack of at most ``checkpoints`` states in one
    array, ``store[:top + 1]``) and the state where the first sweep stopped."""

    __slots__ = (
        "checkpoints",
        "counts",
        "current",
        "final",
        "forward",
        "peak",
        "plan",
        "states",
        "steps",
        "store",
        "top",
    )

    def __init__(self, steps, checkpoints, states=None):
        self.steps, self.checkpoints, self.states = steps, checkpoints, states
        self.plan, self.store, self.top = None, None, -1
        self.current, self.forward, self.peak = None, 0, 0
        self.counts = None  # ScheduleCounts, once a sweep has run
        self.final = None  # z_T

    def push(self, z) -> None:
        self.top += 1
        self.store[self.top] = z
        self.peak = max(self.peak, self.top + 1)


def _float(z0) -> np.dtype:
    kind = np.asarray(z0).dtype
    return kind if kind.kind == "f" else np.dtype(float)


def forward(step, stage, z0, steps: int, checkpoints: int | None = None, keep: bool = True):
    """Step 1: ``z_{t+1} = step(z_t, t)`` from ``z_0``, for ``t < steps``. Returns
    ``(z_T, cost, trajectory)`` with ``cost = sum_t stage(z_t, t)`` (``None`` without a
    stage). With ``checkpoints``, only the schedule's snapshots are kept; with
    ``keep=False`` (no reverse sweep to come) nothing is, and the trajectory is None."""
    z, total = z0, None if stage is None else 0.0
    if not keep:
        for t in range(steps):
            if stage is not None:
                total = total + stage(z, t)
            z = step(z, t)
        return z, total, None
    if checkpoints is None:
        states = np.empty((steps + 1, *np.shape(z0)), dtype=_float(z0))
        states[0] = z0
        for t in range(steps):
            if stage is not None:
                total = total + stage(states[t], t)
            states[t + 1] = step(states[t], t)
        run = Trajectory(steps, None, states)
        run.counts = ScheduleCounts(steps, steps, steps + 1, 0, None)
        run.final = states[steps]
        return states[steps], total, run
    run = Trajectory(steps, checkpoints)
    run.store = np.empty((min(checkpoints, steps), *np.shape(z0)), dtype=_float(z0))
    run.plan = actions(steps, checkpoints)
    for a in run.plan:  # up to the schedule's first reverse step
        if a[0] == "snapshot":
            run.push(z)
        elif a[0] == "advance":
            for t in range(a[1], a[2]):
                if stage is not None:
                    total = total + stage(z, t)
                z = step(z, t)
            run.forward += a[2] - a[1]
        elif a[0] == "reverse":  # at state T - 1: one more step, to z_T
            break
    if stage is not None:
        total = total + stage(z, steps - 1)
    run.current, run.forward = z, run.forward + 1
    run.counts = ScheduleCounts(steps, run.forward, run.peak, 0, checkpoints)
    run.final = step(z, steps - 1)
    return run.final, total, run


def reverse(step, back, run: Trajectory, lam, summed: int = 0, per_step=(), keep=False):
    """Step 2: ``lambda_t`` from ``lambda_T = lam`` by ``back(z_t, lambda_{t+1}, t,
    z_{t+1})``,
    whose first entry is ``lambda_t``, its next ``summed`` entries are summed over t and
    the rest kept per step (arrays ``(T, *shape)`` for the shapes ``per_step``).

    Returns ``(lambda, sums, per_step_parts)``: ``lambda_0``, or every costate
    (``(T + 1, ...)``) with ``keep`` when all states were stored; ``run.counts`` counts
    the work of both sweeps."""
    T = run.steps
    sums = [0.0] * summed
    parts = [np.empty((T, *shape)) for shape in per_step]
    shape = np.shape(lam)

    def back_step(z, lam, t, after):
        out = back(z, lam, t, after)
        for k in range(summed):  # in place once it is an array of its own: no allocation
            if isinstance(sums[k], np.ndarray):
                sums[k] += out[1 + k]
            else:
                first = np.array(out[1 + k])
                sums[k] = first if first.dtype.kind == "f" else first.astype(float)
        for k, p in enumerate(parts):
            p[t] = out[1 + summed + k]
        new = out[0]
        return new if getattr(new, "shape", None) == shape else np.reshape(new, shape)

    if run.states is not None:
        lams = np.empty_like(run.states, dtype=np.result_type(run.states, lam)) if keep else None
        if keep:
            lams[T] = lam
        for t in range(T - 1, -1, -1):
            lam = back_step(run.states[t], lam, t, run.states[t + 1])
            if keep:
                lams[t] = lam
        run.counts = ScheduleCounts(T, T, T + 1, T, None)
        return (lams if keep else lam), sums, parts
    current, forward_steps = run.current, run.forward
    lam, reversed_ = back_step(current, lam, T - 1, run.final), 1
    after = current  # z_{t+1} of the next reverse step: the steps reverse in order
    for a in run.plan:  # the rest of the schedule
        if a[0] == "snapshot":
            run.push(current)
        elif a[0] == "free":
            run.top -= 1
        elif a[0] == "restore":  # always the state on top of the stack
            current = run.store[run.top].copy()
        elif a[0] == "advance":
            for t in range(a[1], a[2]):
                current = step(current, t)
            forward_steps += a[2] - a[1]
        elif a[0] == "reverse":
            lam = back_step(current, lam, a[1], after)
            after = current
            reversed_ += 1
    run.counts = ScheduleCounts(T, forward_steps, run.peak, reversed_, run.checkpoints)
    return lam, sums, parts


# -- the same in JAX: lax loops, two levels of checkpoints -------------------------------


def _segments(steps: int, checkpoints: int | None) -> tuple[int, int]:
    """``(length, count)`` of the segments whose first states the JAX route stores:
    one segment of every step without checkpoints."""
    if checkpoints is None or checkpoints >= steps:
        return 1, steps
    length = -(-steps // checkpoints)
    return length, -(-steps // length)


def forward_jax(step, stage, z0, steps: int, checkpoints: int | None = None, keep=True):
    """:func:`forward` with ``lax.scan``. With ``checkpoints = s`` it stores the first
    state of each of at most s segments (length ``ceil(T / s)``), and the reverse sweep
    recomputes one segment at a time: 2 T forward steps, at most ``s + T/s`` states.
    Returns ``(z_T, cost, run)``, ``run`` what :func:`reverse_jax` reads."""
    import jax
    import jax.numpy as jnp

    z0 = jnp.asarray(z0, float)
    zero = jnp.zeros(jax.eval_shape(stage, z0, 0).shape) if stage is not None else None
    length, count = _segments(steps, checkpoints)
    padded = length * count != steps  # the last segment is short: steps past T do nothing

    def advance(carry, t):
        z, c = carry
        new = (step(z, t), None if stage is None else c + stage(z, t))
        if padded:
            new = jax.tree.map(lambda n, o: jnp.where(t < steps, n, o), new, carry)
        return new, (z if keep and length == 1 else None)

    if not keep or length == 1:  # every state is a snapshot: one scan
        (final, total), states = jax.lax.scan(advance, (z0, zero), jnp.arange(steps))
        return final, total, (None if not keep else (states, steps, checkpoints, final))

    def segment(carry, start):
        new, _ = jax.lax.scan(advance, carry, start + jnp.arange(length))
        return new, carry[0]

    (final, total), snaps = jax.lax.scan(segment, (z0, zero), length * jnp.arange(count))
    return final, total, (snaps, steps, checkpoints, final)


def reverse_jax(step, back, run, lam, summed=0, per_step=()):
    """:func:`reverse` with ``lax.scan`` over the snapshots ``run`` of
    :func:`forward_jax`, recomputing a segment's states before reversing it:
    ``(lambda_0, sums, per_step_parts)``."""
    import jax
    import jax.numpy as jnp

    snaps, steps, checkpoints, final = run
    lam = jnp.asarray(lam, float)
    length, count = _segments(steps, checkpoints)
    padded = length * count != steps
    shapes = jax.eval_shape(back, snaps[0], lam, 0, snaps[0])
    sums = tuple(jnp.zeros(s.shape) for s in shapes[1 : 1 + summed])

    def back_step(carry, zt):
        z, t, after = zt
        lam, sums = carry
        out = back(z, lam, t, after)
        new = (
            jnp.reshape(out[0], lam.shape),
            tuple(s + o for s, o in zip(sums, out[1 : 1 + summed])),
        )
        kept = tuple(jnp.broadcast_to(o, shape) for o, shape in zip(out[1 + summed :], per_step))
        if padded:  # a step past T: nothing
            new = jax.tree.map(lambda n, o: jnp.where(t < steps, n, o), new, carry)
        return new, kept

    if length == 1:  # every state stored: no recomputation
        after = jnp.concatenate([snaps[1:], final[None]])
        (lam, sums), parts = jax.lax.scan(
            back_step, (lam, sums), (snaps, jnp.arange(steps), after), reverse=True
        )
        return lam, sums, parts

    def fill(z, t):
        new = step(z, t)
        if padded:
            new = jnp.where(t < steps, new, z)
        return new, z

    def segment(carry, snap_start):
        snap, start = snap_start
        ts = start + jnp.arange(length)
        last, states = jax.lax.scan(fill, snap, ts)
        after = jnp.concatenate([states[1:], last[None]])
        return jax.lax.scan(back_step, carry, (states, ts, after), reverse=True)

    (lam, sums), parts = jax.lax.scan(
        segment, (lam, sums), (snaps, length * jnp.arange(count)), reverse=True
    )
    parts = tuple(p.reshape((count * length, *p.shape[2:]))[:steps] for p in parts)
    return lam, sums, parts
