"""The client's reconnect and transport-fallback policy, as a sans-I/O state machine.

Feed it events (:class:`Start`, :class:`Opened`, :class:`Healthy`, :class:`Failed`,
:class:`Lost`, :class:`TimerFired`, :class:`Stop`) with the current time; it answers with
actions for the caller to carry out (:class:`Connect`, :class:`SetTimer`, :class:`FellBack`,
:class:`StableAt`). It never opens a socket or reads a clock, so the SimPy model and the
live client drive the same object.

Every legal move is a row of :data:`TRANSITIONS` — a notebook can draw the diagram from it.
After ``failures_before_fallback`` consecutive failures on one transport the policy steps
down the cascade WebSocket → SSE → long polling → polling (claim C20); between attempts it
waits with exponential backoff and jitter (claim C21). On the last rung, plain polling, a
"connection" is a poll loop at ``poll_interval_s``.

A connection that opens is not yet a success: a server that accepts and then closes at
once (e.g. its slow-consumer close 1013) would otherwise be dialled again every few
milliseconds forever. The backoff schedule restarts only once a connection has stayed open
for ``stable_after_s`` (told by :class:`Healthy`, or found when it is :class:`Lost`); a
connection lost sooner counts as one more attempt, so the delays keep growing to the cap.

A server may send its clients down the cascade (:class:`Degrade`: a ``degrade`` frame,
or 503 with the interval): an overloaded one to the polling rung, a facilitator's room to
any rung (``Degrade(transport=SSE)``). The rung named is a *ceiling*: the policy connects
with the best transport of its cascade at or below it (:attr:`Transport.POLLING` at the
server's interval for the last rung) until :class:`Recover` (a ``recover`` frame or a poll
answer that says the server allows more) lifts the ceiling, and then starts again at the
top of what is allowed. Below the ceiling the usual fallback goes on.

A server that refuses with ``Retry-After`` (429/503, e.g. a connection limit) is obeyed:
:class:`Failed` and :class:`Lost` carry ``retry_after_s`` and the next attempt waits at
least that long, whatever the backoff would have said.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from .backoff import Backoff
from .transport import CASCADE, Transport

__all__ = [
    "TRANSITIONS",
    "Action",
    "Connect",
    "Degrade",
    "Event",
    "Failed",
    "FellBack",
    "Healthy",
    "InvalidTransition",
    "Lost",
    "Opened",
    "ReconnectPolicy",
    "Recover",
    "SetTimer",
    "StableAt",
    "Start",
    "State",
    "Stop",
    "TimerFired",
    "rank",
]


class State(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    OPEN = "open"
    WAITING = "waiting"  # backing off before the next attempt
    CLOSED = "closed"


# --- events (what the caller tells the policy) -------------------------------------------
@dataclass(frozen=True, slots=True)
class Start:
    """Begin connecting."""


@dataclass(frozen=True, slots=True)
class Opened:
    """The connection attempt succeeded."""


@dataclass(frozen=True, slots=True)
class Healthy:
    """The open connection is still up (e.g. at the time :class:`StableAt` named)."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The connection attempt failed (refused, blocked by a proxy, timed out).

    ``retry_after_s``: the server's ``Retry-After`` (seconds; None: it named none), the
    least wait before the next attempt."""

    reason: str = ""
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Lost:
    """An open connection dropped (``retry_after_s``: as for :class:`Failed`)."""

    reason: str = ""
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class TimerFired:
    """The timer the policy asked for (:class:`SetTimer`) has fired."""


@dataclass(frozen=True, slots=True)
class Stop:
    """The application closed the client; no more reconnects."""


@dataclass(frozen=True, slots=True)
class Degrade:
    """The server allows nothing better than ``transport`` (default: interval polling,
    what an overloaded server asks); ``poll_s``: the polling interval, seconds (None: keep
    the policy's ``poll_interval_s``)."""

    poll_s: float | None = None
    transport: Transport = Transport.POLLING


@dataclass(frozen=True, slots=True)
class Recover:
    """The server allows more again: up to ``transport`` (None or WebSocket: everything,
    the top of the cascade)."""

    transport: Transport | None = None


Event = Start | Opened | Healthy | Failed | Lost | TimerFired | Stop | Degrade | Recover


# --- actions (what the policy asks the caller to do) -------------------------------------
@dataclass(frozen=True, slots=True)
class Connect:
    transport: Transport
    attempt: int  # consecutive failed attempts before this one (0 = first try)


@dataclass(frozen=True, slots=True)
class SetTimer:
    at: float  # absolute time, in the caller's clock
    delay: float


@dataclass(frozen=True, slots=True)
class FellBack:
    """Informational: the policy moved down the cascade."""

    from_transport: Transport
    to_transport: Transport


@dataclass(frozen=True, slots=True)
class StableAt:
    """Send :class:`Healthy` at ``at`` (caller's clock) if the connection is still open then.

    Optional: :class:`Lost` also checks how long the connection lasted.
    """

    at: float


Action = Connect | SetTimer | FellBack | StableAt


def rank(transport: Transport) -> int:
    """``transport``'s rung in the article's cascade (:data:`CASCADE`): 0 WebSocket,
    1 SSE, 2 long polling, 3 polling — a higher rung is a lesser transport."""
    return CASCADE.index(transport)


class InvalidTransition(ValueError):
    """An event arrived that the current state does not accept."""


#: (state, event type) -> (next state, effect). The effects are methods of the policy.
TRANSITIONS: dict[tuple[State, type], tuple[State, str]] = {
    (State.IDLE, Start): (State.CONNECTING, "connect"),
    (State.CONNECTING, Opened): (State.OPEN, "note_opened"),
    (State.OPEN, Healthy): (State.OPEN, "reset_if_stable"),
    (State.CONNECTING, Failed): (State.WAITING, "count_failure_and_back_off"),
    (State.OPEN, Lost): (State.WAITING, "back_off_after_loss"),
    (State.WAITING, TimerFired): (State.CONNECTING, "connect"),
    (State.OPEN, Degrade): (State.WAITING, "degrade"),
    (State.CONNECTING, Degrade): (State.WAITING, "degrade"),
    (State.OPEN, Recover): (State.WAITING, "recover"),
    (State.IDLE, Stop): (State.CLOSED, "nothing"),
    (State.CONNECTING, Stop): (State.CLOSED, "nothing"),
    (State.OPEN, Stop): (State.CLOSED, "nothing"),
    (State.WAITING, Stop): (State.CLOSED, "nothing"),
}


@dataclass
class ReconnectPolicy:
    """Reconnect with backoff; fall back along ``cascade`` after repeated failures.

    Args:
        rng: the randomness for jitter (inject a seeded generator for reproducible runs).
        cascade: transports to try, best first; the default is :data:`CASCADE`.
        failures_before_fallback: consecutive failures on one transport before stepping down.
        backoff: the delay schedule between attempts.
        poll_interval_s: the interval of the last rung, plain polling (article: 5–10 s).
        stable_after_s: how long a connection must stay open before the backoff schedule
            restarts (default 5 s: reconnecting-websocket's ``minUptime`` of 5000 ms, "min
            time to consider the connection as stable"). A connection lost sooner is one
            more attempt (delays keep growing). 0 restores "reset on every open".

    Raises:
        ValueError: an empty or repeating cascade, ``failures_before_fallback`` < 1, or a
            ``poll_interval_s`` / ``stable_after_s`` out of range.
    """

    rng: np.random.Generator
    cascade: Sequence[Transport] = CASCADE
    failures_before_fallback: int = 2
    backoff: Backoff = field(default_factory=Backoff)
    poll_interval_s: float = 5.0
    stable_after_s: float = 5.0
    state: State = field(default=State.IDLE, init=False)
    level: int = field(default=0, init=False)
    failures: int = field(default=0, init=False)  # consecutive, on the current transport
    attempt: int = field(default=0, init=False)  # consecutive, across transports (backoff)
    history: list[tuple[float, State, str]] = field(default_factory=list, init=False)
    opened_at: float | None = field(default=None, init=False)  # of the open connection
    ceiling: Transport | None = field(default=None, init=False)  # set by the server

    def __post_init__(self) -> None:
        self.cascade = tuple(Transport(t) for t in self.cascade)
        if not self.cascade:
            raise ValueError("cascade must name at least one transport")
        if len(set(self.cascade)) != len(self.cascade):
            raise ValueError(f"cascade must not repeat a transport: {list(self.cascade)}")
        if self.failures_before_fallback < 1:
            raise ValueError(
                f"failures_before_fallback must be >= 1, got {self.failures_before_fallback}"
            )
        if not self.poll_interval_s > 0:
            raise ValueError(f"poll_interval_s must be > 0, got {self.poll_interval_s}")
        if not (math.isfinite(self.stable_after_s) and self.stable_after_s >= 0):
            raise ValueError(f"stable_after_s must be >= 0 and finite, got {self.stable_after_s}")

    @property
    def degraded(self) -> bool:
        """The server has sent this client down the cascade (a :attr:`ceiling` is set)."""
        return self.ceiling is not None

    @property
    def transport(self) -> Transport:
        """The transport the policy is on now: its cascade's rung, or the best one at or
        below the server's :attr:`ceiling` (polling when the cascade has none)."""
        if self.ceiling is None:
            return self.cascade[self.level]
        floor = rank(self.ceiling)
        for t in self.cascade[self.level :]:
            if rank(t) >= floor:
                return t
        return Transport.POLLING

    def handle(self, event: Event, now: float) -> list[Action]:
        """Apply ``event`` at time ``now``; return the actions to carry out, in order."""
        key = (self.state, type(event))
        if key not in TRANSITIONS:
            raise InvalidTransition(
                f"{type(event).__name__} is not accepted in state {self.state.value!r}"
            )
        next_state, effect = TRANSITIONS[key]
        method = getattr(self, "_" + effect)
        takes_event = effect in (
            "degrade",
            "recover",
            "count_failure_and_back_off",
            "back_off_after_loss",
        )
        actions: list[Action] = method(now, event) if takes_event else method(now)
        self.state = next_state
        self.history.append((now, next_state, type(event).__name__))
        return actions

    # --- effects -------------------------------------------------------------------------
    def _connect(self, now: float) -> list[Action]:
        return [Connect(self.transport, self.attempt)]

    def _note_opened(self, now: float) -> list[Action]:
        # The transport works (no fallback), but the backoff waits for a stable connection.
        self.failures = 0
        self.opened_at = now
        if self.stable_after_s == 0:
            self.attempt = 0
            return []
        return [StableAt(now + self.stable_after_s)]

    def _stable(self, now: float) -> bool:
        return self.opened_at is not None and now - self.opened_at >= self.stable_after_s

    def _reset_if_stable(self, now: float) -> list[Action]:
        if self._stable(now):
            self.attempt = 0
        return []

    def _count_failure_and_back_off(self, now: float, event: Failed) -> list[Action]:
        actions: list[Action] = []
        self.failures += 1
        old = self.transport
        # The rung to fall back from: the one in use (none on the server's polling rung).
        at = self.cascade.index(old) if old in self.cascade else len(self.cascade)
        if self.ceiling is Transport.POLLING:
            at = len(self.cascade)
        if self.failures >= self.failures_before_fallback and at < len(self.cascade) - 1:
            self.level = at + 1
            self.failures = 0
            actions.append(FellBack(old, self.transport))
            # A different transport deserves a prompt first try: restart the schedule.
            self.attempt = 0
        else:
            self.attempt += 1
        delay = _at_least(self.backoff.delay(self.attempt, self.rng), event.retry_after_s)
        actions.append(SetTimer(now + delay, delay))
        return actions

    def _back_off_after_loss(self, now: float, event: Lost) -> list[Action]:
        if self._stable(now):
            self.attempt = 0  # a healthy connection ended: start the schedule afresh
        else:
            self.attempt += 1  # it flapped: one more attempt, a longer wait
        self.opened_at = None
        delay = _at_least(self.backoff.delay(self.attempt, self.rng), event.retry_after_s)
        return [SetTimer(now + delay, delay)]

    def _degrade(self, now: float, event: Degrade) -> list[Action]:
        # Not a failure: the transport works, the server asks for less. Polling starts
        # jittered over the server's interval, another rung after a jittered first
        # backoff, so that clients sent away together do not come back together.
        old = self.transport
        self.ceiling = Transport(event.transport)
        if event.poll_s is not None and math.isfinite(event.poll_s) and event.poll_s > 0:
            self.poll_interval_s = event.poll_s
        self.failures = 0
        self.attempt = 0
        self.opened_at = None
        new = self.transport
        if new is Transport.POLLING:
            delay = float(self.rng.uniform(0, self.poll_interval_s))
        else:
            delay = self.backoff.delay(0, self.rng)
        actions: list[Action] = []
        if old is not new:
            actions.append(FellBack(old, new))
        actions.append(SetTimer(now + delay, delay))
        return actions

    def _recover(self, now: float, event: Recover) -> list[Action]:
        up_to = event.transport
        self.ceiling = None if up_to is None or rank(up_to) == 0 else Transport(up_to)
        self.level = 0
        self.failures = 0
        self.attempt = 0
        self.opened_at = None
        # Jittered too: every polling client learns of the recovery within one interval.
        delay = self.backoff.delay(0, self.rng)
        return [SetTimer(now + delay, delay)]

    def _nothing(self, now: float) -> list[Action]:
        return []


def _at_least(delay: float, retry_after_s: float | None) -> float:
    """``delay``, raised to the server's ``retry_after_s`` (ignored unless finite and > 0)."""
    if retry_after_s is None or not (0 < retry_after_s < float("inf")):
        return delay
    return max(delay, float(retry_after_s))
