"""Time budgets: a block of code stopped once it has used up its seconds.

One mechanism for every budget the package keeps (reading text, grading a node): a
watching thread raises the budget's own exception in the working thread with
``PyThreadState_SetAsyncExc`` (CPython delivers it between two bytecodes), so sympy is
stopped wherever it is, in any thread, at no cost while it runs (a profile or trace
hook slows sympy two to three times; a signal works in the main thread only). Time is
the working thread's CPU time where the system tells it, so a busy machine does not
stop work that would finish in time. The block's own loops may also call
:meth:`TimeBudget.check` between steps: where ctypes cannot reach CPython's API, that
is all that watches.

    >>> with TimeBudget(10.0) as budget:
    ...     budget.check()  # well within it
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time

__all__ = ["OutOfTime", "TimeBudget"]


class OutOfTime(BaseException):
    """A budget ran out. A BaseException, so that no ``except Exception`` inside sympy
    swallows it; each budget raises its own subclass (``budget.expired``), so that
    nested budgets tell theirs apart."""


class TimeBudget:
    """``seconds`` of the calling thread's CPU time for the ``with`` block (``None``: no
    limit); past them the block is stopped with ``self.expired``."""

    _raise_in = getattr(getattr(ctypes, "pythonapi", None), "PyThreadState_SetAsyncExc", None)

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.expired = type("OutOfTime", (OutOfTime,), {"__module__": __name__})
        self.target = threading.get_ident()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.fired = False
        self.clock = None
        self.end = float("inf")

    def now(self) -> float:
        return time.perf_counter() if self.clock is None else time.clock_gettime(self.clock)

    def __enter__(self) -> TimeBudget:
        if self.seconds is None:
            return self
        # An outer budget's exception may arrive while this one starts: its watching
        # thread must not outlive it (it would strike later, in someone else's code).
        try:
            self._start()
            return self
        except BaseException:
            self.__exit__()
            raise

    def _start(self) -> None:
        self.target = threading.get_ident()
        try:
            self.clock = time.pthread_getcpuclockid(self.target)
            time.clock_gettime(self.clock)
        except (AttributeError, OSError):  # not on this system: the wall clock, then
            self.clock = None
        self.end = self.now() + self.seconds
        if self._raise_in is not None:
            # Without a thread to be had, the block's own checks still watch.
            with contextlib.suppress(RuntimeError):
                threading.Thread(target=self._watch, daemon=True).start()

    def check(self) -> None:
        """Raise ``self.expired`` if the time is up (for the block's own loops)."""
        if self.seconds is not None and self.now() > self.end:
            raise self.expired

    #: Wall seconds between strikes: an exception that lands in a finaliser (``__del__``,
    #: a weakref callback) is ignored by Python, so the budget strikes until the block ends.
    AGAIN = 0.05

    def _watch(self) -> None:
        # CPU time runs no faster than the wall clock: sleep the rest, then look again.
        wait = max(self.end - self.now(), 0.0)
        while not self.stopped.wait(wait):
            wait = max(self.end - self.now(), 0.0)
            if wait > 0:
                continue
            with self.lock:
                if self.stopped.is_set():
                    return
                self.fired = True
                self._raise_in(ctypes.c_ulong(self.target), ctypes.py_object(self.expired))
            wait = self.AGAIN

    def __exit__(self, *exc) -> bool:
        while True:  # a strike issued just before may land here: the block is over anyway
            try:
                with self.lock:  # held, no new strike is issued
                    self.stopped.set()
                    if self.fired:  # raised, perhaps not yet delivered
                        self._raise_in(ctypes.c_ulong(self.target), None)
                return False
            except self.expired:
                continue
