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


def latency_histogram(latency_ms: np.ndarray) -> HdrHistogram:
    """An HdrHistogram (µs resolution, 3 significant digits) of ``latency_ms``.

    Values are bulk-recorded as (value, count) pairs, so a million samples cost one
    ``np.unique`` and a few thousand calls rather than a million.
    """
    hist = new_latency_histogram()
    if len(latency_ms) == 0:
        return hist
    us = np.clip(np.rint(np.asarray(latency_ms, dtype=float) * 1000.0), 1, _HIGHEST_US)
    v = us.astype(np.int64)
    # Round each value down to the lowest value of its HdrHistogram bucket (the histogram
    # does the same when it records), so that np.unique leaves a few thousand pairs.
    shift = np.maximum(0, np.frexp(v.astype(float))[1] - 1 - hist.sub_bucket_half_count_magnitude)
    v = (v >> shift) << shift
    values, counts = np.unique(v, return_counts=True)
    for v, c in zip(values.tolist(), counts.tolist(), strict=True):
        hist.record_value(v, c)
    return hist


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
        if duration_s <= 0:
            raise ValueError(f"duration_s must be > 0, got {duration_s}")
        n = len(latency_ms)
        pct = percentiles_ms(latency_ms)
        return cls(
            p50_ms=pct[50],
            p95_ms=pct[95],
            p99_ms=pct[99],
            p999_ms=pct[99.9],
            mean_ms=float(np.mean(latency_ms)) if n else math.nan,
            max_ms=float(np.max(latency_ms)) if n else math.nan,
            deliveries=n,
            deliveries_per_s=n / duration_s,
            bytes_per_message=wire_bytes / n if n else math.nan,
            requests_per_message=requests / n if n else math.nan,
            connections=connections,
            server_memory_bytes=server_memory_bytes,
            lost=lost,
            extra=dict(extra or {}),
        )

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
        if duration_s <= 0:
            raise ValueError(f"duration_s must be > 0, got {duration_s}")
        n = int(hist.get_total_count())
        pct = histogram_percentiles_ms(hist)
        return cls(
            p50_ms=pct[50],
            p95_ms=pct[95],
            p99_ms=pct[99],
            p999_ms=pct[99.9],
            mean_ms=hist.get_mean_value() / 1000 if n else math.nan,
            max_ms=hist.get_max_value() / 1000 if n else math.nan,
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
