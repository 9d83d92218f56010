"""The room's figures for the facilitator's screen, read from the server's own Prometheus
registry (no second bookkeeping): :class:`RoomStats`.

Every call of :meth:`RoomStats.read` takes a snapshot of the registry (the samples that
``GET /metrics`` serves) and compares it with the oldest one kept inside ``window_s``
seconds, as Prometheus' ``rate()`` and ``histogram_quantile()`` would:

* rates (messages published and delivered per second) are counter differences over the
  span between the two snapshots;
* latency percentiles come from the differences of the
  ``rtsim_delivery_latency_seconds`` buckets, interpolated within a bucket
  (:func:`histogram_quantile`), so they are as coarse as the buckets;
* interval-polling clients are estimated as ``rate(rtsim_interval_polls_total) × poll_s``
  over the last two intervals (each client polls once per interval; a poll carries no
  client identity), so the estimate follows a step within about ``2 × poll_s``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from rtsim.core.transport import Transport

__all__ = ["QUANTILES", "RoomStats", "Snapshot", "histogram_quantile", "snapshot"]

#: A registry reading: ``(sample name, sorted label pairs) -> value``.
Snapshot = dict[tuple[str, tuple[tuple[str, str], ...]], float]

#: The percentiles the screen shows.
QUANTILES = (0.5, 0.95, 0.99)
_LATENCY = "rtsim_delivery_latency_seconds_bucket"


def snapshot(registry: CollectorRegistry) -> Snapshot:
    """Every sample of ``registry`` now, keyed by name and labels."""
    out: Snapshot = {}
    for family in registry.collect():
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q`` quantile (0..1) of a histogram given as cumulative ``(le, count)`` pairs
    sorted by ``le`` (the last one ``+Inf``), as Prometheus' ``histogram_quantile``: linear
    interpolation inside the bucket that holds rank ``q × total``, the first bucket's
    lower bound 0, and the highest finite bound when the rank falls in ``+Inf``. None for
    an empty histogram. Raises ``ValueError`` for ``q`` outside 0..1."""
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in 0..1, got {q}")
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank and count > below:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = (le if not math.isinf(le) else lower), count
    return lower


def _labels(key: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return dict(key)


def _total(s: Snapshot, name: str, **match: str) -> float:
    """The sum of sample ``name`` over the label sets that match ``match``."""
    return sum(
        v
        for (n, key), v in s.items()
        if n == name and all(_labels(key).get(k) == m for k, m in match.items())
    )


class RoomStats:
    """Windowed figures of one server's registry.

    Args:
        registry: the server's :class:`prometheus_client.CollectorRegistry`.
        transports: the transports it serves (a row each, 0 when idle).
        window_s: how far back rates and percentiles look, seconds (default 10 s: long
            enough to hold two polls of a degraded client at the default ``poll_s`` of
            5 s, short enough that a step on the facilitator's screen shows within it).
        min_spacing_s: snapshots closer than this to the last kept one are not kept
            (default 0.5 s: half the screen's one-second refresh, so one screen keeps
            every read and several screens, or a reload loop, keep at most two a second).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        transports: Iterable[Transport],
        window_s: float = 10.0,
        min_spacing_s: float = 0.5,
    ) -> None:
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.registry = registry
        self.transports = tuple(transports)
        self.window_s = window_s
        self.min_spacing_s = min_spacing_s
        self._kept: deque[tuple[float, Snapshot]] = deque()

    def read(self, now: float, poll_s: float) -> dict[str, Any]:
        """The figures at ``now`` (a monotonic clock, seconds) for a server whose degraded
        clients poll every ``poll_s`` seconds. Window figures are None until a second
        snapshot at least a tenth of a second older exists (the first call)."""
        snap = snapshot(self.registry)
        kept = self._kept
        if not kept or now - kept[-1][0] >= self.min_spacing_s:
            kept.append((now, snap))
        while len(kept) > 2 and kept[1][0] <= now - self.window_s:
            kept.popleft()
        base_t, base = kept[0]
        span = now - base_t
        figures = self._figures(snap, base if span >= 0.1 else None, span, poll_s)
        # Pollers: over the last two polling intervals only (or the window, if shorter).
        recent_t, recent = next(
            ((t, b) for t, b in reversed(kept) if t <= now - 2 * poll_s), kept[0]
        )
        if now - recent_t >= 0.1:
            polls = _total(snap, "rtsim_interval_polls_total")
            polls -= _total(recent, "rtsim_interval_polls_total")
            figures["polling_clients"] = round(max(0.0, polls) / (now - recent_t) * poll_s)
        return figures

    # --- figures -------------------------------------------------------------------------
    def _figures(
        self, snap: Snapshot, base: Snapshot | None, span: float, poll_s: float
    ) -> dict[str, Any]:
        names = [t.value for t in self.transports]

        total = _total

        def rate(name: str, **match: str) -> float | None:
            if base is None:
                return None
            return max(0.0, total(snap, name, **match) - total(base, name, **match)) / span

        def window(name: str, **match: str) -> float | None:
            if base is None:
                return None
            return max(0.0, total(snap, name, **match) - total(base, name, **match))

        return {
            "window_s": round(span, 3) if base is not None else None,
            "connections": {t: int(total(snap, "rtsim_connections", transport=t)) for t in names},
            "polling_clients": None,  # set by read()
            "published_per_s": rate("rtsim_published_total"),
            "deliveries_per_s": rate("rtsim_deliveries_total"),
            "deliveries_per_s_by_transport": {
                t: rate("rtsim_deliveries_total", transport=t) for t in names
            },
            "latency_ms": self._latency(snap, base),
            "latency_ms_by_transport": {t: self._latency(snap, base, t) for t in names},
            "reconnects": {
                "total": int(total(snap, "rtsim_reconnections_total")),
                "in_window": window("rtsim_reconnections_total"),
                "by_transport": {
                    t: int(total(snap, "rtsim_reconnections_total", transport=t)) for t in names
                },
            },
            "degraded": {
                "total": int(total(snap, "rtsim_degraded_total")),
                "in_window": window("rtsim_degraded_total"),
            },
            "refused": {
                "total": int(total(snap, "rtsim_rejected_total")),
                "in_window": window("rtsim_rejected_total"),
            },
            "token_expired": int(total(snap, "rtsim_token_expired_total")),
            "slow_consumer_drops": int(total(snap, "rtsim_slow_consumer_drops_total")),
            "gaps": int(total(snap, "rtsim_replay_gaps_total")),
            "presence_members": int(total(snap, "rtsim_presence_members")),
            "loop_lag_ms": 1000 * total(snap, "rtsim_loop_lag_seconds"),
        }

    def _latency(
        self, snap: Snapshot, base: Snapshot | None, transport: str | None = None
    ) -> dict[str, float | int | None] | None:
        """Percentiles (ms) of the deliveries inside the window, all transports or one."""
        if base is None:
            return None
        by_le: dict[float, float] = {}
        for (name, key), value in snap.items():
            if name != _LATENCY:
                continue
            labels = _labels(key)
            if transport is not None and labels.get("transport") != transport:
                continue
            le = float(labels["le"])
            by_le[le] = by_le.get(le, 0.0) + value - base.get((name, key), 0.0)
        buckets = sorted(by_le.items())
        samples = round(buckets[-1][1]) if buckets else 0
        out: dict[str, float | int | None] = {"samples": samples}
        for q in QUANTILES:
            v = histogram_quantile(q, buckets)
            out[f"p{round(q * 100)}"] = None if v is None else round(1000 * v, 3)
        return out
