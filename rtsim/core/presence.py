"""Presence: who is here, sans-I/O. One tracker for the simulation and the live server.

A :class:`PresenceTracker` keeps, per *resource* (a document, channel or workspace), the
clients present and a small state each (name, colour, "typing"...). You feed it what
happened and it returns the events to broadcast:

* :meth:`~PresenceTracker.join` / :meth:`~PresenceTracker.update` /
  :meth:`~PresenceTracker.heartbeat` / :meth:`~PresenceTracker.leave` as messages arrive;
* :meth:`~PresenceTracker.expire` when the caller's timer fires: "what expires by now?";
* :meth:`~PresenceTracker.next_deadline` says when that timer should fire next (a *timer
  request*; the caller owns the clock). After any call, if ``next_deadline()`` is earlier
  than the timer you have armed (or you have none), re-arm it. Waking too early is harmless:
  :meth:`~PresenceTracker.expire` then returns nothing.
* :meth:`~PresenceTracker.snapshot` is what a new subscriber receives first; applying the
  events broadcast afterwards to a :class:`PresenceView` built from it reconstructs the
  tracker's state for that resource.

A client is offline once ``timeout_s`` has passed since the last message from it (a TTL,
like a Redis key refreshed with ``SET ... EX``). A heartbeat never changes or erases a
member's state: only a join or update does. A heartbeat from a client that has just gone
(a false offline) brings it back with the state it had, remembered for ``timeout_s`` after
it left. Every timeout is the same, and time never
runs backwards, so the members are kept in deadline order in one ordered dict and every
operation is O(1) (amortised).

:class:`Throttle` coalesces transient updates (cursor positions, typing flags) to the
latest value per key, sent at most ``rate_hz`` times per second per key: the first update
after a quiet interval goes out at once, later ones wait for the key's next slot
(:meth:`~Throttle.next_flush`) and only the latest waiting value is sent.

The member life cycle is a two-state table, :data:`TRANSITIONS`, that notebooks can draw.
"""

from __future__ import annotations

import enum
import heapq
import math
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .params import Spec, check

__all__ = [
    "TRANSITIONS",
    "Emitted",
    "Event",
    "Input",
    "Join",
    "Leave",
    "LeaveReason",
    "MemberState",
    "PresenceTracker",
    "PresenceView",
    "Snapshot",
    "Throttle",
    "Update",
]

State = Mapping[str, Any]


class MemberState(enum.Enum):
    """Where one client stands in one resource."""

    ABSENT = "absent"
    PRESENT = "present"


class Input(enum.Enum):
    """What can happen to a client in a resource."""

    JOIN = "join"
    UPDATE = "update"
    HEARTBEAT = "heartbeat"
    LEAVE = "leave"
    EXPIRE = "expire"


class LeaveReason(enum.Enum):
    LEFT = "left"  # the client said goodbye
    EXPIRED = "expired"  # nothing heard from it for timeout_s


@dataclass(frozen=True, slots=True)
class Join:
    """``client`` appeared in ``resource`` with ``state``."""

    resource: str
    client: str
    state: State = field(hash=False)
    at: float


@dataclass(frozen=True, slots=True)
class Update:
    """``client`` changed its (persistent) state in ``resource``."""

    resource: str
    client: str
    state: State = field(hash=False)
    at: float


@dataclass(frozen=True, slots=True)
class Leave:
    """``client`` is gone from ``resource`` (it said so, or its TTL ran out)."""

    resource: str
    client: str
    reason: LeaveReason
    at: float


Event = Join | Update | Leave

#: (state, input) -> (next state, event emitted or None). A HEARTBEAT or UPDATE from an
#: absent client re-creates it, as refreshing a TTL key does; LEAVE/EXPIRE of an absent
#: client is a harmless race (e.g. a goodbye arriving after the TTL ran out) and does nothing.
TRANSITIONS: dict[tuple[MemberState, Input], tuple[MemberState, type[Event] | None]] = {
    (MemberState.ABSENT, Input.JOIN): (MemberState.PRESENT, Join),
    (MemberState.ABSENT, Input.UPDATE): (MemberState.PRESENT, Join),
    (MemberState.ABSENT, Input.HEARTBEAT): (MemberState.PRESENT, Join),
    (MemberState.ABSENT, Input.LEAVE): (MemberState.ABSENT, None),
    (MemberState.ABSENT, Input.EXPIRE): (MemberState.ABSENT, None),
    (MemberState.PRESENT, Input.JOIN): (MemberState.PRESENT, Update),  # only if state changed
    (MemberState.PRESENT, Input.UPDATE): (MemberState.PRESENT, Update),  # only if state changed
    (MemberState.PRESENT, Input.HEARTBEAT): (MemberState.PRESENT, None),
    (MemberState.PRESENT, Input.LEAVE): (MemberState.ABSENT, Leave),
    (MemberState.PRESENT, Input.EXPIRE): (MemberState.ABSENT, Leave),
}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The members of one resource at time ``at``: what a new subscriber receives first."""

    resource: str
    members: Mapping[str, State] = field(hash=False)
    at: float


def _check_time(now: float, last: float) -> float:
    if isinstance(now, bool) or not isinstance(now, int | float):
        raise ValueError(f"now must be a number of seconds, got {now!r}")
    now = float(now)
    if not math.isfinite(now):
        raise ValueError(f"now must be finite, got {now}")
    if now < last:
        raise ValueError(
            f"time went backwards: now={now:g} s is before the last call at {last:g} s; "
            "pass a monotonic clock (SimPy's env.now, asyncio's loop.time())"
        )
    return now


def _check_name(kind: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{kind} must be a non-empty string, got {value!r}")
    return value


def _check_state(state: object) -> dict[str, Any]:
    if state is None:
        return {}
    if not isinstance(state, Mapping):
        raise ValueError(f"state must be a mapping (e.g. a dict), got {type(state).__name__}")
    for k in state:
        if not isinstance(k, str):
            raise ValueError(f"state keys must be strings, got {k!r}")
    return dict(state)


def _positive(name: str, value: object, unit: str) -> float:
    reason = check(value, Spec(lo=0, lo_open=True, unit=unit))
    if reason is not None:
        raise ValueError(f"{name} {reason}")
    return float(value)  # type: ignore[arg-type]


@dataclass(slots=True)
class _Member:
    state: dict[str, Any]
    joined_at: float
    last_seen: float


class PresenceTracker:
    """Members per resource with a TTL of ``timeout_s`` seconds since the last message.

    Every method takes ``now`` (seconds, from a monotonic clock) and returns the list of
    events to broadcast to the resource's other subscribers (often empty).
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = _positive("timeout_s", timeout_s, "s")
        self._members: dict[str, dict[str, _Member]] = {}
        # (resource, client) -> deadline, in deadline order (oldest first).
        self._deadlines: OrderedDict[tuple[str, str], float] = OrderedDict()
        # (resource, client) -> (state, forget at) of members gone in the last timeout_s,
        # in departure order: a heartbeat after a false offline restores that state.
        self._departed: OrderedDict[tuple[str, str], tuple[dict[str, Any], float]] = OrderedDict()
        self._now = -math.inf

    # --- inputs ----------------------------------------------------------------------------
    def join(
        self, resource: str, client: str, state: State | None = None, *, now: float
    ) -> list[Event]:
        """``client`` subscribes to ``resource`` with ``state``; counts as a heartbeat too.

        Returns ``[Join]``, or ``[Update]`` if it was already present with another state,
        or ``[]`` if it was already present with the same state.
        """
        return self._present(Input.JOIN, resource, client, _check_state(state), now)

    def update(self, resource: str, client: str, state: State, *, now: float) -> list[Event]:
        """``client`` replaces its persistent state (e.g. status "away"); a heartbeat too."""
        if state is None:
            raise ValueError("state must be a mapping (e.g. a dict), got None")
        return self._present(Input.UPDATE, resource, client, _check_state(state), now)

    def heartbeat(
        self, resource: str, client: str, *, now: float, state: State | None = None
    ) -> list[Event]:
        """``client`` is still here: push its deadline to ``now + timeout_s``.

        Returns ``[]`` normally; the state of a present client is kept as it is (``state`` is
        ignored then: only :meth:`join` / :meth:`update` change it). A heartbeat from a
        client that is not present (its TTL ran out while it was still alive: a *false
        offline*) re-creates it and returns ``[Join]``, as refreshing an expired TTL key
        would, with ``state`` if given, else the state it had when it went (remembered for
        ``timeout_s``), else ``{}``.

        Raises:
            ValueError: an empty name, a state that is not a mapping with string keys, or
                ``now`` earlier than a previous call.
        """
        return self._present(Input.HEARTBEAT, resource, client, _check_state(state), now)

    def leave(self, resource: str, client: str, *, now: float) -> list[Event]:
        """``client`` said goodbye. ``[Leave(LEFT)]``, or ``[]`` if it was already gone."""
        _check_name("resource", resource)
        _check_name("client", client)
        now = self._tick(now)
        members = self._members.get(resource)
        if members is None or client not in members:
            return []
        self._remove(resource, client)
        return [Leave(resource, client, LeaveReason.LEFT, now)]

    def expire(self, now: float) -> list[Event]:
        """Remove every client whose deadline is ``<= now``; one ``Leave(EXPIRED)`` each.

        A client is reported at most once per stay: after it has expired it is absent,
        until a message from it re-creates it.
        """
        now = self._tick(now)
        out: list[Event] = []
        dl = self._deadlines
        while dl:
            key, deadline = next(iter(dl.items()))
            if deadline > now:
                break
            resource, client = key
            self._remove(resource, client)
            out.append(Leave(resource, client, LeaveReason.EXPIRED, now))
        return out

    # --- queries ---------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When the earliest member expires (call :meth:`expire` then), or None if empty."""
        if not self._deadlines:
            return None
        return next(iter(self._deadlines.values()))

    def deadline(self, resource: str, client: str) -> float | None:
        """When ``client`` expires from ``resource`` unless heard from, or None if absent."""
        return self._deadlines.get((resource, client))

    def snapshot(self, resource: str) -> Snapshot:
        """The members of ``resource`` and their states (empty for an unknown resource)."""
        _check_name("resource", resource)
        members = self._members.get(resource, {})
        at = self._now if math.isfinite(self._now) else 0.0
        return Snapshot(resource, {c: dict(m.state) for c, m in members.items()}, at)

    def members(self, resource: str) -> list[str]:
        """Clients present in ``resource``, in the order they joined."""
        return list(self._members.get(resource, {}))

    def count(self, resource: str) -> int:
        """How many clients are present in ``resource``."""
        return len(self._members.get(resource, {}))

    def state_of(self, resource: str, client: str) -> MemberState:
        members = self._members.get(resource)
        return MemberState.PRESENT if members and client in members else MemberState.ABSENT

    def resources(self) -> list[str]:
        """Resources with at least one member."""
        return list(self._members)

    def __len__(self) -> int:
        """Total (resource, client) memberships."""
        return len(self._deadlines)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._deadlines))

    # --- internals -------------------------------------------------------------------------
    def _tick(self, now: float) -> float:
        now = _check_time(now, self._now)
        self._now = now
        gone = self._departed  # forget departed members' states after timeout_s
        while gone and next(iter(gone.values()))[1] <= now:
            gone.popitem(last=False)
        return now

    def _present(
        self, inp: Input, resource: str, client: str, state: dict[str, Any], now: float
    ) -> list[Event]:
        _check_name("resource", resource)
        _check_name("client", client)
        now = self._tick(now)
        members = self._members.setdefault(resource, {})
        member = members.get(client)
        before = MemberState.ABSENT if member is None else MemberState.PRESENT
        _, kind = TRANSITIONS[(before, inp)]
        key = (resource, client)
        self._deadlines[key] = now + self.timeout_s
        self._deadlines.move_to_end(key)
        if member is None:
            gone = self._departed.pop(key, None)
            if inp is Input.HEARTBEAT and not state and gone is not None:
                state = gone[0]  # a heartbeat carries no state: never erase it
            members[client] = _Member(state, now, now)
            return [Join(resource, client, dict(state), now)]
        member.last_seen = now
        if kind is Update and state != member.state:
            member.state = state
            return [Update(resource, client, dict(state), now)]
        return []

    def _remove(self, resource: str, client: str) -> None:
        key = (resource, client)
        del self._deadlines[key]
        members = self._members[resource]
        self._departed[key] = (members.pop(client).state, self._now + self.timeout_s)
        self._departed.move_to_end(key)
        if not members:
            del self._members[resource]


class PresenceView:
    """A subscriber's copy of one resource's members: a snapshot, then events applied."""

    def __init__(self, resource: str, members: Mapping[str, State] | None = None) -> None:
        self.resource = _check_name("resource", resource)
        self.members: dict[str, dict[str, Any]] = {c: dict(s) for c, s in (members or {}).items()}

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> PresenceView:
        return cls(snapshot.resource, snapshot.members)

    def apply(self, event: Event) -> None:
        """Apply one event broadcast for this resource (events for others are an error)."""
        if event.resource != self.resource:
            raise ValueError(
                f"event for resource {event.resource!r} applied to a view of {self.resource!r}"
            )
        if isinstance(event, Leave):
            self.members.pop(event.client, None)
        elif isinstance(event, Join | Update):
            self.members[event.client] = dict(event.state)
        else:
            raise ValueError(f"not a presence event: {event!r}")


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Emitted(Generic[K, V]):
    """A throttled value to send now. ``coalesced``: newer values it replaced (dropped)."""

    key: K
    value: V
    at: float
    coalesced: int = 0


class Throttle(Generic[K, V]):
    """At most ``rate_hz`` values per second per key, each the latest one offered.

    ``offer`` returns ``[Emitted]`` when the key's slot is free (nothing sent for it in the
    last ``1 / rate_hz`` s); otherwise it keeps the value (replacing any older waiting one)
    and returns ``[]``. Call :meth:`flush` at :meth:`next_flush` to send what is due.
    Driven at exactly those times, a key offered faster than ``rate_hz`` goes out exactly
    every ``1 / rate_hz`` seconds. ``rate_hz=math.inf`` passes every value through.
    """

    def __init__(self, rate_hz: float) -> None:
        if isinstance(rate_hz, int | float) and rate_hz == math.inf:
            self.rate_hz = math.inf  # no throttling: every value goes out at once
        else:
            self.rate_hz = _positive("rate_hz", rate_hz, "updates/s")
        self.interval_s = 1.0 / self.rate_hz
        self._last_sent: dict[K, float] = {}
        # key -> (latest value, values it replaced, sequence number of its heap entry)
        self._pending: dict[K, tuple[V, int, int]] = {}
        self._due: list[tuple[float, int, K]] = []  # heap; one live entry per pending key
        self._seq = 0
        self._now = -math.inf
        self.offered = 0
        self.sent = 0

    def offer(self, key: K, value: V, now: float) -> list[Emitted[K, V]]:
        """A new value for ``key`` at ``now``: sent at once if its slot is free."""
        now = self._tick(now)
        self.offered += 1
        pending = self._pending.get(key)
        if pending is not None:
            self._pending[key] = (value, pending[1] + 1, pending[2])
            return []
        last = self._last_sent.get(key)
        if last is None or now >= last + self.interval_s:
            return [self._send(key, value, now, 0)]
        self._seq += 1
        self._pending[key] = (value, 0, self._seq)
        heapq.heappush(self._due, (last + self.interval_s, self._seq, key))
        return []

    def flush(self, now: float) -> list[Emitted[K, V]]:
        """Send every waiting value whose slot has come (due time ``<= now``)."""
        now = self._tick(now)
        out: list[Emitted[K, V]] = []
        while self._due and self._due[0][0] <= now:
            _, seq, key = heapq.heappop(self._due)
            pending = self._pending.get(key)
            if pending is not None and pending[2] == seq:
                del self._pending[key]
                out.append(self._send(key, pending[0], now, pending[1]))
        return out

    def next_flush(self) -> float | None:
        """When the next waiting value is due (call :meth:`flush` then), or None."""
        while self._due and not self._live(self._due[0]):
            heapq.heappop(self._due)  # a key discarded while it waited
        return self._due[0][0] if self._due else None

    def discard(self, key: K) -> None:
        """Forget ``key`` (its client left): drop its waiting value and its slot."""
        self._pending.pop(key, None)
        self._last_sent.pop(key, None)

    def pending(self) -> int:
        """How many keys have a value waiting."""
        return len(self._pending)

    def _live(self, entry: tuple[float, int, K]) -> bool:
        pending = self._pending.get(entry[2])
        return pending is not None and pending[2] == entry[1]

    def _send(self, key: K, value: V, now: float, coalesced: int) -> Emitted[K, V]:
        self._last_sent[key] = now
        self.sent += 1
        return Emitted(key, value, now, coalesced)

    def _tick(self, now: float) -> float:
        now = _check_time(now, self._now)
        self._now = now
        return now
