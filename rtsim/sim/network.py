"""A network link and a single-core server CPU, sampled in bulk with numpy.

One-way transit = RTT/2 + exponential jitter + serialisation at the link's bandwidth +
TCP retransmissions: each segment is lost with probability ``loss``, and each loss costs a
retransmission timeout (RTO) that doubles on consecutive losses (RFC 6298; Linux's minimum
RTO is 200 ms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MSS_BYTES",
    "TCP_IP_OVERHEAD_BYTES",
    "TLS_RECORD_OVERHEAD_BYTES",
    "FifoCpu",
    "Link",
    "fifo_constant",
    "wire_bytes",
    "wire_bytes_one",
]

#: IPv4 (20) + TCP (20) + TCP timestamps option (12) per segment.
TCP_IP_OVERHEAD_BYTES = 52
#: Ethernet MTU 1500 − 52 bytes of IP/TCP headers.
MSS_BYTES = 1448
#: TLS 1.3 record: 5-byte header + 1-byte content type + 16-byte AEAD tag (RFC 8446 §5.2).
TLS_RECORD_OVERHEAD_BYTES = 22


def wire_bytes(app_bytes: np.ndarray | int, *, tls: bool) -> np.ndarray:
    """Bytes on the wire for application writes of ``app_bytes``: TLS records + TCP/IP headers.

    ACKs are not counted (they are shared between writes and mostly delayed/piggy-backed).
    """
    a = np.asarray(app_bytes, dtype=np.int64)
    if tls:
        a = a + TLS_RECORD_OVERHEAD_BYTES
    segments = np.maximum(1, -(-a // MSS_BYTES))
    out: np.ndarray = a + segments * TCP_IP_OVERHEAD_BYTES
    return out


def wire_bytes_one(app_bytes: int, *, tls: bool) -> int:
    """:func:`wire_bytes` for one write, without numpy (the per-request hot path)."""
    a = app_bytes + (TLS_RECORD_OVERHEAD_BYTES if tls else 0)
    return a + max(1, -(-a // MSS_BYTES)) * TCP_IP_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True)
class Link:
    """A client's path to the server, the same in both directions.

    Args:
        rtt_s: base round-trip time (propagation), seconds.
        jitter_s: mean of the exponential extra delay added to each one-way transit.
        bandwidth_bps: the bottleneck rate in bits per second (serialisation delay).
        loss: per-segment loss probability in [0, 1).
        rto_min_s: minimum TCP retransmission timeout (Linux ``TCP_RTO_MIN``: 200 ms).
    """

    rtt_s: float = 0.050
    jitter_s: float = 0.005
    bandwidth_bps: float = 50e6
    loss: float = 0.0
    rto_min_s: float = 0.200

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rtt_s) and self.rtt_s >= 0):
            raise ValueError(f"rtt must be >= 0, got {self.rtt_s * 1000:g} ms")
        if not (math.isfinite(self.jitter_s) and self.jitter_s >= 0):
            raise ValueError(f"jitter must be >= 0, got {self.jitter_s * 1000:g} ms")
        if not self.bandwidth_bps > 0:
            raise ValueError(f"bandwidth must be > 0, got {self.bandwidth_bps} bit/s")
        if not 0 <= self.loss < 1:
            raise ValueError(f"loss must be in [0, 1), got {self.loss}")
        if not self.rto_min_s > 0:
            raise ValueError(f"rto_min must be > 0, got {self.rto_min_s}")

    @property
    def rto_s(self) -> float:
        """The retransmission timeout: max(RTO_min, RTT + 4 × jitter) (RFC 6298 §2)."""
        return max(self.rto_min_s, self.rtt_s + 4 * self.jitter_s)

    def transit(self, rng: np.random.Generator, nbytes: np.ndarray | int, n: int) -> np.ndarray:
        """``n`` one-way transit times (seconds) for writes of ``nbytes`` each."""
        base = np.full(n, self.rtt_s / 2)
        if self.jitter_s > 0:
            base += rng.exponential(self.jitter_s, n)
        size = np.broadcast_to(np.asarray(nbytes, dtype=float), (n,))
        base += size * 8.0 / self.bandwidth_bps
        if self.loss > 0:
            segments = np.maximum(1, np.ceil(size / MSS_BYTES)).astype(np.int64)
            # Losses of the worst segment of each write: geometric number of failures.
            p_ok = (1.0 - self.loss) ** segments
            failures = rng.geometric(p_ok) - 1
            base += self.rto_s * (np.exp2(failures) - 1.0)
        return base

    def transit_one(self, rng: np.random.Generator, nbytes: int) -> float:
        """One transit time: :meth:`transit` for a single write, without array overhead."""
        t = self.rtt_s / 2 + nbytes * 8.0 / self.bandwidth_bps
        if self.jitter_s > 0:
            t += float(rng.exponential(self.jitter_s))
        if self.loss > 0:
            segments = max(1, math.ceil(nbytes / MSS_BYTES))
            failures = int(rng.geometric((1.0 - self.loss) ** segments)) - 1
            t += self.rto_s * (2.0**failures - 1.0)
        return t


def fifo_constant(arrivals: np.ndarray, service_s: float, free_at: float) -> np.ndarray:
    """Completion times at a FIFO single server with constant service, arrivals sorted.

    The Lindley recursion ``done[i] = max(arrivals[i], done[i-1]) + c`` in closed form:
    ``done[i] = c·(i+1) + max(free_at, max_{j<=i}(arrivals[j] − c·j))``.
    """
    i = np.arange(len(arrivals))
    base = np.maximum.accumulate(np.maximum(arrivals - service_s * i, free_at))
    out: np.ndarray = base + service_s * (i + 1)
    return out


class FifoCpu:
    """A single core that runs work items first come, first served (an asyncio event loop).

    ``submit(now, work_s)`` returns when the item finishes: ``max(now, free_at) + work_s``
    (the Lindley recursion). Items must be submitted in time order, which SimPy guarantees
    when they are submitted from callbacks at the current simulated time.
    """

    def __init__(self) -> None:
        self.free_at = 0.0
        self.busy_s = 0.0
        self.items = 0

    def start_time(self, now: float) -> float:
        return max(now, self.free_at)

    def submit(self, now: float, work_s: float) -> float:
        if work_s < 0:
            raise ValueError(f"work must be >= 0, got {work_s}")
        start = max(now, self.free_at)
        self.free_at = start + work_s
        self.busy_s += work_s
        self.items += 1
        return self.free_at
