"""The one result shape that the simulation and the live measurement both return.

A run yields a per-delivery :class:`pandas.DataFrame` (one row per message received by one
client) and a :class:`Summary`. Simulated and measured runs can be ``pd.concat``-ed and
plotted on one axis. Latency percentiles come from HdrHistogram (3 significant digits).
"""

from __future__ import annotations

import base64
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from hdrh.histogram import HdrHistogram

__all__ = [
    "DELIVERY_COLUMNS",
    "PERCENTILES",
    "LatencyStream",
    "RunResult",
    "Summary",
    "decode_histogram",
    "encode_histogram",
    "histogram_percentiles_ms",
    "latency_histogram",
    "new_latency_histogram",
    "percentile",
    "percentiles_ms",
    "record_latency_us",
]

#: Columns of the per-delivery frame (times in seconds, in the run's clock).
DELIVERY_COLUMNS = (
    "channel",
    "message_id",
    "client",
    "transport",
    "publish_time",
    "receive_time",
    "latency_ms",
)

_HIGHEST_US = 3_600 * 1_000_000  # one hour, in microseconds

#: The percentiles every summary reports (p50, p95, p99, p99.9).
PERCENTILES: tuple[float, ...] = (50, 95, 99, 99.9)


def new_latency_histogram() -> HdrHistogram:
    """An empty latency HdrHistogram: microseconds from 1 µs to one hour, 3 significant
    digits (the one histogram shape of the simulation, the live server's load generator
    and the lab)."""
    return HdrHistogram(1, _HIGHEST_US, 3)


def record_latency_us(hist: HdrHistogram, us: int) -> None:
    """Record one latency of ``us`` microseconds, clamped to the histogram's 1 µs..1 h."""
    hist.record_value(min(max(us, 1), _HIGHEST_US))


def encode_histogram(hist: HdrHistogram) -> str:
    """``hist`` as base64 text (HdrHistogram's compressed encoding), e.g. to send it from
    a worker process; :func:`decode_histogram` reads it back."""
    return base64.b64encode(hist.encode()).decode()


def decode_histogram(text: str) -> HdrHistogram:
    """The histogram encoded by :func:`encode_histogram`."""
    return HdrHistogram.decode(base64.b64decode(text))


def histogram_percentiles_ms(
    hist: HdrHistogram, qs: tuple[float, ...] = PERCENTILES
) -> dict[float, float]:
    """Percentiles ``qs`` of a latency histogram (recorded in µs), in milliseconds; NaN
    for an empty histogram."""
    if hist.get_total_count() == 0:
        return {q: math.nan for q in qs}
    return {q: hist.get_value_at_percentile(q) / 1000.0 for q in qs}


class LatencyStream:
    """Latencies recorded as they are produced, chunk by chunk, instead of kept.

    Holds the HdrHistogram bucket counts of every latency recorded so far (µs, 1 µs to
    one hour, 3 significant digits: the buckets of :func:`new_latency_histogram`) as one
    numpy array, plus the exact count, sum and maximum. :meth:`record` costs a few numpy
    passes over its chunk and no Python call per value, memory stays a few hundred KiB
    however many values go in, and :meth:`histogram` gives the same histogram as
    recording every value at once. ``merge`` adds another stream (e.g. a worker's):
    counts add exactly, so merged percentiles do not depend on how values were split.
    """

    __slots__ = ("_counts", "_half", "count", "max_ms", "sum_ms")

    def __init__(self) -> None:
        self._half = new_latency_histogram().sub_bucket_half_count_magnitude
        # one slot per (bucket shift, sub-bucket value): shift <= 32 below one hour
        self._counts = np.zeros(33 << (self._half + 1), dtype=np.int64)
        self.count = 0
        self.sum_ms = 0.0
        self.max_ms = -math.inf

    def record(self, latency_ms: np.ndarray) -> LatencyStream:
        """Add ``latency_ms`` (milliseconds, any shape); returns ``self``."""
        lat = np.asarray(latency_ms, dtype=float).ravel()
        if len(lat) == 0:
            return self
        us = np.clip(np.rint(lat * 1000.0), 1, _HIGHEST_US).astype(np.int64)
        # HdrHistogram's bucket of v: shift = bit length - 1 - half-count magnitude (>= 0);
        # its lowest value is (v >> shift) << shift, unique per (shift, v >> shift).
        shift = np.maximum(0, np.frexp(us.astype(float))[1] - 1 - self._half)
        key = (shift << (self._half + 1)) + (us >> shift)
        self._counts += np.bincount(key, minlength=len(self._counts))
        self.count += len(lat)
        self.sum_ms += float(np.sum(lat))
        self.max_ms = max(self.max_ms, float(np.max(lat)))
        return self

    def merge(self, other: LatencyStream) -> LatencyStream:
        """Add ``other``'s values to this stream; returns ``self``."""
        self._counts += other._counts
        self.count += other.count
        self.sum_ms += other.sum_ms
        self.max_ms = max(self.max_ms, other.max_ms)
        return self

    def histogram(self) -> HdrHistogram:
        """The HdrHistogram (µs) of every value recorded."""
        hist = new_latency_histogram()
        width = self._half + 1
        for key in np.flatnonzero(self._counts).tolist():
            value = (key & ((1 << width) - 1)) << (key >> width)
            hist.record_value(value, int(self._counts[key]))
        return hist


def latency_histogram(latency_ms: np.ndarray) -> HdrHistogram:
    """An HdrHistogram (µs resolution, 3 significant digits) of ``latency_ms``.

    Values are bulk-recorded as (value, count) pairs through :class:`LatencyStream`, so a
    million samples cost a few numpy passes and a few thousand calls rather than a million.
    """
    return LatencyStream().record(latency_ms).histogram()


def percentiles_ms(
    latency_ms: np.ndarray, qs: tuple[float, ...] = PERCENTILES
) -> dict[float, float]:
    """Latency percentiles in milliseconds via HdrHistogram; NaN for no samples."""
    if len(latency_ms) == 0:
        return {q: math.nan for q in qs}
    return histogram_percentiles_ms(latency_histogram(latency_ms), qs)


def percentile(values: np.ndarray, q: float, *, resolution: float = 0.001) -> float:
    """The ``q``-th percentile (0–100) of ``values`` via HdrHistogram; NaN for no samples.

    ``values`` may be in any unit; the answer is in the same unit. They are recorded as
    whole multiples of ``resolution`` (default 0.001: 1 µs for milliseconds) with 3
    significant digits, the way :func:`percentiles_ms` records every latency of the lab,
    so a simulated and a measured percentile are computed the same way. Pass
    ``resolution=1e-6`` for seconds and ``1.0`` for microseconds. Values above 3.6e9
    resolution units (one hour of microseconds) are clipped. Raises ``ValueError`` for
    ``q`` outside [0, 100] or a resolution that is not > 0.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    if not (math.isfinite(resolution) and resolution > 0):
        raise ValueError(f"resolution must be > 0, got {resolution}")
    arr = np.asarray(values, dtype=float) / resolution  # in units of `resolution`
    # percentiles_ms records milliseconds at 1 µs, i.e. in units of 0.001 ms.
    return percentiles_ms(arr / 1000.0, (q,))[q] * 1000.0 * resolution


@dataclass(frozen=True)
class Summary:
    """Headline figures of one run (simulated or measured)."""

    p50_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float
    deliveries: int
    deliveries_per_s: float
    bytes_per_message: float  # bytes on the wire (both directions) per delivered message
    requests_per_message: float  # HTTP requests per delivered message (0 for persistent)
    connections: int  # open at the end of the run
    server_memory_bytes: float  # connection-state memory at the server
    lost: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return d

    @classmethod
    def from_latencies(
        cls,
        latency_ms: np.ndarray,
        *,
        duration_s: float,
        wire_bytes: float,
        requests: int,
        connections: int,
        server_memory_bytes: float,
        lost: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> Summary:
        """Build a summary from raw latencies and counters."""
        return cls.from_stream(
            LatencyStream().record(latency_ms),
            duration_s=duration_s,
            wire_bytes=wire_bytes,
            requests=requests,
            connections=connections,
            server_memory_bytes=server_memory_bytes,
            lost=lost,
            extra=extra,
        )

    @classmethod
    def from_stream(
        cls,
        stream: LatencyStream,
        *,
        duration_s: float,
        wire_bytes: float,
        requests: float,
        connections: int,
        server_memory_bytes: float,
        lost: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> Summary:
        """Build a summary from a :class:`LatencyStream` and counters.

        Percentiles come from the stream's histogram; mean and max are exact (the stream
        keeps the sum and the maximum), so recording all latencies in one chunk gives the
        summary :meth:`from_latencies` gives. NaN figures when it is empty. Raises
        ``ValueError`` for ``duration_s <= 0``.
        """
        mean = stream.sum_ms / max(1, stream.count)
        return cls._of(stream.histogram(), mean, stream.max_ms, duration_s, connections,
                       server_memory_bytes, (wire_bytes, requests, lost, extra))  # fmt: skip

    @classmethod
    def from_histogram(
        cls,
        hist: HdrHistogram,
        *,
        duration_s: float,
        connections: int,
        server_memory_bytes: float = math.nan,
        wire_bytes: float = math.nan,
        requests: float = math.nan,
        lost: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> Summary:
        """Build a summary from a latency histogram (µs, e.g. merged from load workers).

        ``deliveries`` is the histogram's count; mean and max are the histogram's (to its
        3 significant digits); NaN figures when it is empty. ``wire_bytes``/``requests``
        default to NaN (not measured). Raises ``ValueError`` for ``duration_s <= 0``.
        """
        mean, top = hist.get_mean_value() / 1000, hist.get_max_value() / 1000
        rest = (wire_bytes, requests, lost, extra)
        return cls._of(hist, mean, top, duration_s, connections, server_memory_bytes, rest)

    @classmethod
    def _of(
        cls,
        hist: HdrHistogram,
        mean_ms: float,
        max_ms: float,
        duration_s: float,
        connections: int,
        server_memory_bytes: float,
        rest: tuple[float, float, int, dict[str, Any] | None],
    ) -> Summary:
        """The summary of ``hist`` with the given mean and max; ``rest`` is (wire_bytes,
        requests, lost, extra)."""
        wire_bytes, requests, lost, extra = rest
        if duration_s <= 0:
            raise ValueError(f"duration_s must be > 0, got {duration_s}")
        n = int(hist.get_total_count())
        pct = histogram_percentiles_ms(hist)
        return cls(
            p50_ms=pct[50],
            p95_ms=pct[95],
            p99_ms=pct[99],
            p999_ms=pct[99.9],
            mean_ms=mean_ms if n else math.nan,
            max_ms=max_ms if n else math.nan,
            deliveries=n,
            deliveries_per_s=n / duration_s,
            bytes_per_message=wire_bytes / n if n else math.nan,
            requests_per_message=requests / n if n else math.nan,
            connections=connections,
            server_memory_bytes=server_memory_bytes,
            lost=lost,
            extra=dict(extra or {}),
        )


@dataclass(frozen=True)
class RunResult:
    """A run: its parameters, the per-delivery frame and the summary."""

    params: dict[str, Any]
    deliveries: pd.DataFrame
    summary: Summary
    source: str = "simulated"  # or "measured"

    def summary_frame(self) -> pd.DataFrame:
        """One-row frame of parameters + summary, handy for ``pd.concat`` across runs."""
        row = {"source": self.source, **self.params, **self.summary.to_dict()}
        return pd.DataFrame([row])
