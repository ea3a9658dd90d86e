"""One sweep for every system of conditions.

A system is an ordered list of conditions (Step 1 in topological order, Step 2 in
reverse; the tangent and second-order adjoint conditions likewise), and every kind of
condition (explicit, an implicit block, a recurrence, their tangents and second-order
adjoints) solves itself for its own unknowns with :meth:`sweep`, given the
environment of values and the sweep's :class:`Sweep` state. :func:`sweep` is the one
loop that solving, second order and the explanations run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Sweep", "sweep"]


@dataclass
class Sweep:
    """What a sweep carries from condition to condition.

    ``symbolic``: solve in sympy expressions, not numbers. ``live``: the nodes the
    output depends on (Step 2: readers outside it add nothing). ``kinks``: the
    recorder of kinks met (:func:`adjoint.operations.numeric.watch_kinks`). ``work``:
    what implicit blocks and recurrences keep between the sweeps of one system (a
    factorisation, a trajectory or its schedule, a linearisation). ``checkpoints``: the
    states a recurrence may store. ``shift``: ``{node: amount}`` loosening Step 1's
    constraints to ``z_i = f_i + amount`` (``r_i = amount`` for an implicit node; see
    :func:`adjoint.system.solve.forward_sweep`). ``condition``: the condition being solved, for the
    messages of errors raised on the way.
    """

    symbolic: bool = False
    live: set | None = None
    kinks: object = None
    work: dict = field(default_factory=dict)
    checkpoints: int | None = None
    shift: dict | None = None
    condition: object = None


def sweep(conditions, env: dict, state: Sweep) -> None:
    """Solve ``conditions`` in order, each for its own unknowns, into ``env``."""
    for condition in conditions:
        state.condition = condition
        condition.sweep(env, state)
