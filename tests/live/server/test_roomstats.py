"""The facilitator screen's figures: percentiles from histogram buckets, windowed rates and
the polling estimate, read from a Prometheus registry (no server needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import Counter, Histogram

from rtsim.core.transport import Transport
from rtsim.live.server.metrics import Metrics
from rtsim.live.server.roomstats import RoomStats, histogram_quantile, snapshot

INF = math.inf


def test_quantile_interpolates_inside_the_bucket_as_prometheus_does() -> None:
    buckets = [(1.0, 10.0), (2.0, 30.0), (INF, 40.0)]
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.4)  # rank 4 of 10 in (0, 1]
    assert histogram_quantile(0.5, buckets) == pytest.approx(1.5)  # rank 20: half of (1, 2]
    assert histogram_quantile(0.9, buckets) == 2.0  # in +Inf: the highest finite bound
    assert histogram_quantile(0.5, [(1.0, 0.0), (INF, 0.0)]) is None  # nothing observed
    assert histogram_quantile(0.5, [(1.0, 0.0), (2.0, 4.0), (INF, 4.0)]) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="q must be"):
        histogram_quantile(1.5, buckets)


def test_quantiles_of_a_real_histogram_are_within_one_bucket() -> None:
    """Uniform observations on [0, 1): each percentile lands within a bucket of the truth."""
    m = Metrics([Transport.WEBSOCKET])
    values = np.random.default_rng(0).uniform(0.0, 1.0, 5000)
    for v in values:
        m.latency_by[Transport.WEBSOCKET].observe(float(v))
    snap = snapshot(m.registry)
    buckets = sorted(
        (float(dict(key)["le"]), value)
        for (name, key), value in snap.items()
        if name == "rtsim_delivery_latency_seconds_bucket"
    )
    for q in (0.5, 0.95, 0.99):
        got = histogram_quantile(q, buckets)
        assert got is not None
        truth = float(np.quantile(values, q))
        upper = min(le for le, _ in buckets if le >= truth)
        lower = max([le for le, _ in buckets if le < truth], default=0.0)
        assert lower <= got <= upper, (q, got, truth)


def fake_registry() -> tuple[Metrics, Counter, Histogram]:
    m = Metrics([Transport.WEBSOCKET, Transport.SSE, Transport.LONG_POLLING])
    return m, m.published, m.latency


def test_rates_are_differences_over_the_window_and_old_snapshots_are_dropped() -> None:
    m, published, _ = fake_registry()
    stats = RoomStats(m.registry, [Transport.WEBSOCKET], window_s=10.0)
    first = stats.read(0.0, poll_s=5.0)
    assert first["published_per_s"] is None and first["window_s"] is None
    published.inc(30)
    later = stats.read(3.0, poll_s=5.0)
    assert later["published_per_s"] == pytest.approx(10.0)
    assert later["window_s"] == pytest.approx(3.0)
    for t in range(4, 30):  # one read a second; nothing published after 3 s
        out = stats.read(float(t), poll_s=5.0)
    assert out["published_per_s"] == 0.0  # the burst has left the window
    assert 10.0 <= out["window_s"] <= 11.0
    assert len(stats._kept) <= 12  # bounded by the window


def test_polling_clients_are_the_poll_rate_times_the_interval() -> None:
    m, _, _ = fake_registry()
    stats = RoomStats(m.registry, [Transport.LONG_POLLING], window_s=10.0)
    poll_s = 2.0
    clients = 7
    for t in range(0, 13):  # every client polls once per interval: 3.5 polls/s
        m.interval_polls.inc(clients / poll_s)
        out = stats.read(float(t), poll_s=poll_s)
    assert out["polling_clients"] == clients


def test_read_rejects_a_window_that_is_not_positive() -> None:
    m, _, _ = fake_registry()
    with pytest.raises(ValueError, match="window_s"):
        RoomStats(m.registry, [], window_s=0)
