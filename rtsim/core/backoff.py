"""Exponential backoff with jitter, as a pure function of the attempt number.

``Backoff(base_s=1, cap_s=30).delay(attempt, rng)`` is the wait before reconnect attempt
``attempt`` (0 for the first retry). Full jitter draws uniformly from ``[0, ceiling]``
("Exponential Backoff And Jitter", AWS Architecture Blog, 2015), which spreads a
reconnection storm evenly instead of sending every client back at the same instant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

__all__ = ["Backoff", "Jitter"]


class Jitter(StrEnum):
    NONE = "none"  # exactly the ceiling: every client retries at the same moments
    FULL = "full"  # uniform in [0, ceiling]
    EQUAL = "equal"  # ceiling/2 + uniform in [0, ceiling/2]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff.

    Defaults: the first retry waits up to 1 s and the ceiling doubles per failure up to
    30 s — the range of reconnecting-websocket's defaults (1–10 s, growth 1.3) and of
    Socket.IO's (1–5 s, growth 2), with a larger cap for a storm after a server restart.
    """

    base_s: float = 1.0
    cap_s: float = 30.0
    multiplier: float = 2.0
    jitter: Jitter = Jitter.FULL

    def __post_init__(self) -> None:
        if not (math.isfinite(self.base_s) and self.base_s > 0):
            raise ValueError(f"base_s must be > 0, got {self.base_s}")
        if not (math.isfinite(self.cap_s) and self.cap_s >= self.base_s):
            raise ValueError(f"cap_s must be >= base_s ({self.base_s}), got {self.cap_s}")
        if not (math.isfinite(self.multiplier) and self.multiplier >= 1):
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        object.__setattr__(self, "jitter", Jitter(self.jitter))

    def ceiling(self, attempt: int) -> float:
        """The largest delay for ``attempt`` (0-based): ``min(cap, base * multiplier**attempt)``."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        # Compare in log space so that huge attempt numbers do not overflow.
        if attempt * math.log(self.multiplier) > math.log(self.cap_s / self.base_s):
            return self.cap_s
        return min(self.cap_s, self.base_s * self.multiplier**attempt)

    def delay(self, attempt: int, rng: np.random.Generator) -> float:
        """The wait before retry ``attempt``, drawn with ``rng`` according to :attr:`jitter`."""
        c = self.ceiling(attempt)
        if self.jitter is Jitter.NONE:
            return c
        if self.jitter is Jitter.FULL:
            return float(rng.uniform(0.0, c))
        return c / 2 + float(rng.uniform(0.0, c / 2))
