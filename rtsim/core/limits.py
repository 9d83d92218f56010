"""Per-key limits and deadlines, sans I/O: a token bucket per key and a token's deadline.

The live server keeps one :class:`KeyedRateLimiter` for publishes per client address and
asks :func:`seconds_until` when a connection's token runs out; it owns the clock and the
timers. Time is an argument (``now``, seconds on any monotonic or wall clock, the same
one for every call).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["KeyedRateLimiter", "TokenBucket", "seconds_until"]


def seconds_until(deadline: float | None, now: float) -> float | None:
    """Seconds from ``now`` until ``deadline`` (0 if it has passed; None: no deadline).

    Both in the same clock's seconds (a token's ``exp`` and ``time.time()``).
    """
    if deadline is None:
        return None
    return max(0.0, deadline - now)


@dataclass
class TokenBucket:
    """``rate`` tokens per second up to ``burst``; one :meth:`take` spends one.

    Starts full. Raises ``ValueError`` unless ``rate > 0`` and ``burst >= 1`` (finite).
    """

    rate: float
    burst: float
    tokens: float = math.nan  # nan: full (set on the first call)
    updated: float = math.nan

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"rate must be > 0 per second, got {self.rate}")
        if not (math.isfinite(self.burst) and self.burst >= 1):
            raise ValueError(f"burst must be >= 1, got {self.burst}")

    def _refill(self, now: float) -> None:
        if math.isnan(self.updated):
            self.tokens, self.updated = self.burst, now
            return
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one (True), else leave the bucket as it is (False)."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def retry_after(self, now: float) -> float:
        """Seconds until a :meth:`take` at ``now`` would succeed (0: it would now)."""
        self._refill(now)
        return max(0.0, (1.0 - self.tokens) / self.rate)

    def full(self, now: float) -> bool:
        """Whether the bucket is full again (nothing taken that has not been refilled)."""
        self._refill(now)
        return self.tokens >= self.burst


class KeyedRateLimiter:
    """One :class:`TokenBucket` per key (e.g. a client's IP address), created on demand.

    Buckets that have refilled completely are forgotten when the table grows past
    ``sweep_at`` keys (a full bucket is the same as a new one), so memory follows the
    number of keys active within about ``burst / rate`` seconds.
    """

    def __init__(self, rate: float, burst: float, sweep_at: int = 10_000) -> None:
        TokenBucket(rate, burst)  # validates
        self.rate = rate
        self.burst = burst
        self.sweep_at = sweep_at
        self.buckets: dict[str, TokenBucket] = {}

    def take(self, key: str, now: float) -> bool:
        """Spend one of ``key``'s tokens (True) or refuse (False)."""
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.sweep_at:
                self.sweep(now)
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket.take(now)

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` may go again (0 for an unknown key)."""
        bucket = self.buckets.get(key)
        return 0.0 if bucket is None else bucket.retry_after(now)

    def sweep(self, now: float) -> None:
        """Forget every full bucket."""
        self.buckets = {k: b for k, b in self.buckets.items() if not b.full(now)}
