"""Field-level last-write-wins with hybrid logical clocks.

Each ``(record, field)`` holds one value and the timestamp of the write that set it; a
write wins if its timestamp is larger. Timestamps come from a hybrid logical clock (HLC,
Kulkarni, Demirbas, Madappa, Avva & Leone, "Logical Physical Clocks", OPODIS 2014): a pair
``(l, c)`` where ``l`` follows the largest physical time seen and ``c`` counts events
within one ``l``, so causally later writes always carry larger timestamps while staying
within the clock skew of wall time. Ties (equal ``(l, c)`` from two nodes) break on the
node id, so every replica picks the same winner.

The state is a plain mapping, and :func:`merge` is its join: commutative, associative and
idempotent (a state-based CRDT, the "LWW-register map"). When a remote write beats a
write this replica made, :meth:`LwwMap.apply` returns an :class:`Overwritten` notice for
the losing writer (the article's "the earlier user is notified").

Physical time comes in as ``now`` (seconds); nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Entry",
    "HybridClock",
    "HybridTimestamp",
    "LwwMap",
    "Overwritten",
    "Write",
    "merge",
]


@dataclass(frozen=True, slots=True, order=True)
class HybridTimestamp:
    """``(l, c, node)``, compared in that order. ``l`` is in microseconds."""

    l: int  # noqa: E741 - the paper's name
    c: int
    node: str

    def __post_init__(self) -> None:
        if self.l < 0 or self.c < 0:
            raise ValueError(f"timestamp parts must be >= 0, got l={self.l} c={self.c}")


def _micros(now: float) -> int:
    if now != now or now < 0:  # NaN or negative
        raise ValueError(f"now must be >= 0 seconds, got {now}")
    return round(now * 1_000_000)


@dataclass
class HybridClock:
    """An HLC for one node. :meth:`send` for a local event, :meth:`receive` for a message."""

    node: str
    l: int = 0  # noqa: E741
    c: int = 0

    def send(self, now: float) -> HybridTimestamp:
        """Timestamp a local event or send at physical time ``now`` (seconds)."""
        pt = _micros(now)
        l_old = self.l
        self.l = max(l_old, pt)
        self.c = self.c + 1 if self.l == l_old else 0
        return HybridTimestamp(self.l, self.c, self.node)

    def receive(self, ts: HybridTimestamp, now: float) -> HybridTimestamp:
        """Advance past a received timestamp ``ts`` at physical time ``now``."""
        pt = _micros(now)
        l_old = self.l
        self.l = max(l_old, ts.l, pt)
        if self.l == l_old and self.l == ts.l:
            self.c = max(self.c, ts.c) + 1
        elif self.l == l_old:
            self.c += 1
        elif self.l == ts.l:
            self.c = ts.c + 1
        else:
            self.c = 0
        return HybridTimestamp(self.l, self.c, self.node)


@dataclass(frozen=True, slots=True)
class Entry:
    value: Any
    ts: HybridTimestamp


@dataclass(frozen=True, slots=True)
class Write:
    """One field write, as sent to other replicas."""

    record: str
    field: str
    value: Any
    ts: HybridTimestamp
    #: timestamp of the value the writer replaced (None: the field was empty or unknown)
    base: HybridTimestamp | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.record, self.field)


@dataclass(frozen=True, slots=True)
class Overwritten:
    """Notice to ``loser``: its ``lost_value`` for ``record.field`` was overwritten."""

    record: str
    field: str
    lost_value: Any
    lost_ts: HybridTimestamp
    winner_value: Any
    winner_ts: HybridTimestamp

    @property
    def loser(self) -> str:
        return self.lost_ts.node


State = Mapping[tuple[str, str], Entry]


def merge(*states: State) -> dict[tuple[str, str], Entry]:
    """Join of LWW states: per key, the entry with the largest timestamp."""
    out: dict[tuple[str, str], Entry] = {}
    for st in states:
        for k, e in st.items():
            cur = out.get(k)
            if cur is None or e.ts > cur.ts:
                out[k] = e
    return out


@dataclass
class LwwMap:
    """One replica of a record store with field-level last-write-wins."""

    node: str
    clock: HybridClock = field(init=False)
    state: dict[tuple[str, str], Entry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.node:
            raise ValueError("node id must be a non-empty string")
        self.clock = HybridClock(self.node)

    def get(self, record: str, field: str, default: Any = None) -> Any:
        e = self.state.get((record, field))
        return default if e is None else e.value

    def set(self, record: str, field: str, value: Any, now: float) -> Write:
        """Write a field locally at ``now``; return the write to send to the others."""
        ts = self.clock.send(now)
        cur = self.state.get((record, field))
        w = Write(record, field, value, ts, None if cur is None else cur.ts)
        self.state[w.key] = Entry(value, ts)
        return w

    def apply(self, w: Write, now: float) -> Overwritten | None:
        """Integrate a remote write. Returns a notice if it beat a write made *here*
        that its writer had not seen (a concurrent overwrite; a writer who saw our value
        and replaced it on purpose is not a conflict)."""
        if not isinstance(w, Write) or not isinstance(w.ts, HybridTimestamp):
            raise ValueError(f"not a Write: {w!r}")
        self.clock.receive(w.ts, now)
        cur = self.state.get(w.key)
        if cur is None or w.ts > cur.ts:
            self.state[w.key] = Entry(w.value, w.ts)
            unseen = w.base is None or w.base < cur.ts if cur is not None else False
            if cur is not None and cur.ts.node == self.node and unseen:
                return Overwritten(w.record, w.field, cur.value, cur.ts, w.value, w.ts)
        return None

    def merge_from(self, other: State, now: float) -> list[Overwritten]:
        """Merge another replica's whole state; notices for our writes that lost."""
        notices = []
        for (rec, fld), e in sorted(other.items(), key=lambda kv: kv[1].ts):
            n = self.apply(Write(rec, fld, e.value, e.ts), now)
            if n is not None:
                notices.append(n)
        return notices

    def values(self) -> dict[tuple[str, str], Any]:
        return {k: e.value for k, e in self.state.items()}


def writes_of(state: State) -> Iterable[Write]:
    """The state as writes (to ship a snapshot)."""
    for (rec, fld), e in state.items():
        yield Write(rec, fld, e.value, e.ts)
