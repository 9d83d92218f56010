"""Processes sharing cores: the engine under the stage model (:mod:`rtsim.sim.stages`).

A handful of single-threaded processes (the server, the load generator's worker
processes, the publisher) each serve their own jobs one at a time, in order of arrival;
``cores`` cores are shared among the processes that have work (processor sharing, the
fluid limit of the OS scheduler's round robin: with ``b`` busy processes each runs at
``min(1, cores / b)`` of a core). A process that was idle when a job arrives first pays
a wake-up (its event loop returning from ``epoll_wait``), drawn by the caller.

This is a small event loop of its own rather than SimPy: every job's rate changes
whenever any process starts or stops, which SimPy's fixed timeouts cannot express
without cancelling and rescheduling each job at every change.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Job", "SharedCores"]

_EPS = 1e-12


@dataclass(order=True)
class Job:
    """``work`` CPU seconds, ready at ``ready`` (seconds); ``done(t)`` is called when it ends."""

    ready: float
    seq: int
    work: float = field(compare=False)
    done: Callable[[float], None] | None = field(compare=False, default=None)


class SharedCores:
    """``processes`` FIFO servers on ``cores`` cores (processor sharing).

    ``cores`` may be fractional: the part of the machine that other work leaves the
    processes (e.g. 2 cores less the 1.4 that other sessions took: 0.6).

    Use :meth:`submit` to give a process a job (from outside or from a job's ``done``
    callback) and :meth:`run` to play everything to the end. ``busy_until[p]`` is when
    process ``p`` last finished work (for "was it idle?" questions of the caller).
    ``clock``: a process that only keeps time — its jobs take no CPU and it never counts as
    running (timers, such as a sleep that another event may cut short).
    Raises ``ValueError`` for fewer than one process or no cores.
    """

    def __init__(
        self,
        processes: int,
        cores: float,
        dedicated: int | None = None,
        clock: int | None = None,
    ) -> None:
        if processes < 1 or not cores > 0:
            raise ValueError(f"processes must be >= 1 and cores > 0, got {processes}, {cores}")
        self.cores = float(cores)
        # A process that keeps a core to itself while busy (the scheduler's wake-up
        # affinity keeps a busy fan-out loop on its core and wakes the others elsewhere).
        self.dedicated = dedicated if cores > 1 else None
        self.now = 0.0
        self._pending: list[list[Job]] = [[] for _ in range(processes)]
        self._current: list[Job | None] = [None] * processes
        self._left: list[float] = [0.0] * processes
        self._seq = 0
        self.busy_until = [0.0] * processes
        self.clock = clock

    def idle(self, p: int, at: float) -> bool:
        """Whether process ``p`` has nothing to do at time ``at`` (as far as known now)."""
        return self._current[p] is None and not self._pending[p] and self.busy_until[p] <= at

    def free_core(self) -> bool:
        """Whether a core is idle now (fewer processes running than cores): a process
        woken now lands there and pays that core's wake-up."""
        return sum(c is not None for c in self._current) < self.cores

    def submit(
        self, p: int, ready: float, work: float, done: Callable[[float], None] | None
    ) -> None:
        """Queue ``work`` CPU seconds on process ``p``, startable from time ``ready``."""
        self._seq += 1
        heapq.heappush(self._pending[p], Job(ready, self._seq, max(work, 0.0), done))

    def run(self) -> None:
        """Play until no process has work left."""
        n = len(self._pending)
        cur, left, pend = self._current, self._left, self._pending
        clock = self.clock
        while True:
            while clock is not None and pend[clock] and pend[clock][0].ready <= self.now + _EPS:
                tick = heapq.heappop(pend[clock])
                if tick.done is not None:
                    tick.done(self.now)
            # Start a job on every process whose next job is ready.
            for p in range(n):
                if p == clock:
                    continue
                if cur[p] is None and pend[p] and pend[p][0].ready <= self.now + _EPS:
                    j = heapq.heappop(pend[p])
                    cur[p] = j
                    left[p] = j.work
            active = [p for p in range(n) if cur[p] is not None]
            nxt_ready = min(
                (pend[p][0].ready for p in range(n) if cur[p] is None and pend[p]),
                default=float("inf"),
            )
            if not active:
                if nxt_ready == float("inf"):
                    return
                self.now = nxt_ready
                continue
            d = self.dedicated
            if d is not None and d in active and len(active) > 1:
                rate = min(1.0, (self.cores - 1) / (len(active) - 1))
                rates = {p: (1.0 if p == d else rate) for p in active}
            else:
                rate = min(1.0, self.cores / len(active))
                rates = {p: rate for p in active}
            t_done = min(self.now + left[p] / rates[p] for p in active)
            t = min(t_done, nxt_ready)
            dt = t - self.now
            self.now = t
            finished = []
            for p in active:
                left[p] -= dt * rates[p]
                if left[p] <= _EPS:
                    finished.append(p)
            for p in finished:
                done_job = cur[p]
                cur[p] = None
                self.busy_until[p] = t
                if done_job is not None and done_job.done is not None:
                    done_job.done(t)
