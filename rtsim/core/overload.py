"""Is the server overloaded? A sans-I/O detector with hysteresis (claim C20, server side).

Feed it one sample at a time — the event loop's lag (how late a periodic timer fired) and
the fill of the fullest send queue — with the current time; it answers whether the
server is overloaded now and says when that changes:

    d = OverloadDetector(enter_lag_ms=200)
    change = d.sample(now, lag_ms=350)      # None, or Change(overloaded=True, at=now)

It *enters* overload after ``enter_samples`` consecutive samples above the thresholds
and *leaves* after ``exit_samples`` consecutive samples below the lower exit thresholds,
and never changes state sooner than ``hold_s`` after its last change, so the server
does not flap between pushing and sending clients to polling (each flap costs every
client a reconnect). It never reads a clock: the live server feeds it from a periodic
asyncio timer, the SimPy model from its CPU utilisation (the same object, the same
decisions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Change", "OverloadDetector"]


@dataclass(frozen=True, slots=True)
class Change:
    """The detector's state changed at ``at`` (caller's clock) to ``overloaded``."""

    overloaded: bool
    at: float


@dataclass
class OverloadDetector:
    """Hysteresis over lag (and queue-fill) samples.

    Args:
        enter_lag_ms: a sample with more event-loop lag than this, milliseconds, is
            *high* (default 200 ms: a tenth of a second of lag is already felt in chat and
            cursors, twice that means the loop cannot keep up — well above the few ms of a
            healthy loop and the 100 ms a GC pause or a burst may take once).
        exit_lag_ms: lag below this is *low* (default half of ``enter_lag_ms``).
        enter_queue_fill: a sample whose fullest send queue is at least this fraction of
            its bound is high (default 0.5: half-way to the slow-consumer close).
        exit_queue_fill: queue fill below this is low (default 0.1).
        enter_samples: consecutive high samples to enter overload (default 3).
        exit_samples: consecutive low samples to leave it (default 10: leave slowly).
        hold_s: the least time between two changes, seconds (default 5 s: the article's
            polling interval; a client sent to polling polls at least once before it is
            called back).

    Samples that are neither high nor low (between the thresholds) reset both runs.

    Raises:
        ValueError: a threshold that is not finite and positive, ``exit_lag_ms`` above
            ``enter_lag_ms``, fills outside (0, 1] or in the wrong order, sample counts
            below 1, a negative ``hold_s``.
    """

    enter_lag_ms: float = 200.0
    exit_lag_ms: float | None = None
    enter_queue_fill: float = 0.5
    exit_queue_fill: float = 0.1
    enter_samples: int = 3
    exit_samples: int = 10
    hold_s: float = 5.0
    overloaded: bool = field(default=False, init=False)
    changed_at: float | None = field(default=None, init=False)
    changes: int = field(default=0, init=False)
    _high: int = field(default=0, init=False)
    _low: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.exit_lag_ms is None:
            self.exit_lag_ms = self.enter_lag_ms / 2
        if not (math.isfinite(self.enter_lag_ms) and self.enter_lag_ms > 0):
            raise ValueError(f"enter_lag_ms must be > 0 and finite, got {self.enter_lag_ms}")
        if not (0 < self.exit_lag_ms <= self.enter_lag_ms):
            raise ValueError(
                f"exit_lag_ms must be in (0, enter_lag_ms={self.enter_lag_ms:g}],"
                f" got {self.exit_lag_ms}"
            )
        if not (0 < self.exit_queue_fill <= self.enter_queue_fill <= 1):
            raise ValueError(
                "queue fills must satisfy 0 < exit_queue_fill <= enter_queue_fill <= 1,"
                f" got {self.exit_queue_fill}, {self.enter_queue_fill}"
            )
        for name in ("enter_samples", "exit_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.hold_s) and self.hold_s >= 0):
            raise ValueError(f"hold_s must be >= 0 and finite, got {self.hold_s}")

    def sample(self, now: float, lag_ms: float, queue_fill: float = 0.0) -> Change | None:
        """Record one sample taken at ``now``: event-loop lag ``lag_ms`` (milliseconds) and
        ``queue_fill`` (0..1, the fullest send queue over its bound). Returns the
        :class:`Change` if the state changed with this sample, else None."""
        assert self.exit_lag_ms is not None
        high = lag_ms > self.enter_lag_ms or queue_fill >= self.enter_queue_fill
        low = lag_ms < self.exit_lag_ms and queue_fill < self.exit_queue_fill
        self._high = self._high + 1 if high else 0
        self._low = self._low + 1 if low else 0
        held = self.changed_at is None or now - self.changed_at >= self.hold_s
        if not held:
            return None
        if not self.overloaded and self._high >= self.enter_samples:
            return self._change(True, now)
        if self.overloaded and self._low >= self.exit_samples:
            return self._change(False, now)
        return None

    def _change(self, overloaded: bool, now: float) -> Change:
        self.overloaded = overloaded
        self.changed_at = now
        self.changes += 1
        self._high = self._low = 0
        return Change(overloaded, now)
