"""The architecture model at scale: streamed summaries, shards on Dask, the world's inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rtsim.core.backoff import Backoff, Jitter
from rtsim.core.results import Summary
from rtsim.sim import architecture_bulk as bulk
from rtsim.sim.architecture import ArchitectureParams, simulate_architecture
from rtsim.sim.architecture_world import Clients, _backoff, _linger

# topics, a broadcast channel, frequent drops and a short log: live, replayed and lost
SMALL = ArchitectureParams(
    clients=1500,
    duration_s=60,
    instances=3,
    topics=4,
    topic_rate=0.2,
    broadcast_rate=0.05,
    disconnects_per_hour=60,
    max_len=10,
)


@pytest.mark.parametrize("broker", ["redis-streams", "redis-pubsub", "kafka"])
def test_streamed_summary_equals_the_kept_deliveries_summary(broker: str) -> None:
    p = SMALL.with_(broker=broker)
    kept = simulate_architecture(p, 3, keep_deliveries=True)
    streamed = simulate_architecture(p, 3).summary
    assert kept.summary == streamed  # keeping the frame changes nothing
    df = kept.deliveries
    ref = Summary.from_latencies(
        df["latency_ms"].to_numpy(),
        duration_s=p.duration_s,
        wire_bytes=0.0,
        requests=0,
        connections=p.clients,
        server_memory_bytes=0.0,
    )
    for key in ("p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "deliveries"):
        assert getattr(streamed, key) == getattr(ref, key), key
    assert streamed.mean_ms == pytest.approx(ref.mean_ms, rel=1e-12)
    x = streamed.extra
    assert int(df["replayed"].sum()) == x["replayed"]
    assert streamed.deliveries + streamed.lost == x["expected_deliveries"]
    assert not df.duplicated(["message_id", "client"]).any()
    if broker == "redis-pubsub":
        assert streamed.lost > 0 and x["replayed"] == 0
    else:
        assert x["replayed"] > 0
    assert (streamed.lost > 0) == (broker != "kafka")  # the short log loses entries


def test_dask_partitions_give_what_one_process_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(bulk, "BLOCK", 256)  # several user shards, as at full size
    one = simulate_architecture(SMALL, 7, keep_deliveries=True)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        spread = simulate_architecture(SMALL, 7, keep_deliveries=True, client=client)
        streamed = simulate_architecture(SMALL, 7, client=client).summary
    assert spread.summary == one.summary == streamed
    pd.testing.assert_frame_equal(spread.deliveries, one.deliveries)
    assert len(one.deliveries) == one.summary.deliveries > 0


def test_a_dask_client_is_checked() -> None:
    with pytest.raises(ValueError, match=r"client must be a dask\.distributed\.Client"):
        simulate_architecture(SMALL, 1, client=object())
    with pytest.raises(ValueError, match="bulk engine only"):
        simulate_architecture(SMALL, 1, mode="events", client=object())


@pytest.mark.parametrize("jitter", list(Jitter))
def test_backoff_in_bulk_draws_what_delay_draws(jitter: Jitter) -> None:
    b = Backoff(base_s=0.5, cap_s=20.0, jitter=jitter)
    for attempt in (0, 3, 9):
        one, many = np.random.default_rng(1), np.random.default_rng(1)
        ref = [b.delay(attempt, one) for _ in range(500)]
        assert _backoff(b, many, 500, attempt).tolist() == ref


def test_outage_end_is_the_end_of_the_outage_covering_t() -> None:
    rng = np.random.default_rng(2)
    n = 50
    rows = []
    for c in range(n):
        t = 0.0
        for _ in range(int(rng.integers(0, 4))):
            s = t + rng.exponential(10.0)
            e = s + rng.exponential(3.0)
            rows.append((c, s, e))
            t = e
    oc, os_, oe = (np.array(x) for x in zip(*rows, strict=True))
    first = np.searchsorted(oc, np.arange(n + 1))
    zero = np.zeros(n, dtype=np.uint8)
    cl = Clients(zero, zero.astype(bool), zero, np.full(n, np.inf), oc, os_, oe, first,
                 first[1:] > first[:-1])  # fmt: skip
    qc = rng.integers(0, n, 4000)
    qt = rng.uniform(0, 40, 4000)
    qt[: len(oc)] = os_  # exactly at a start: down; exactly at an end: up again
    qc[: len(oc)] = oc
    qt[len(oc):2 * len(oc)], qc[len(oc):2 * len(oc)] = oe, oc  # fmt: skip
    got = cl.outage_end(qc, qt)
    for c, t, g in zip(qc.tolist(), qt.tolist(), got.tolist(), strict=True):
        ends = [e for cc, s, e in rows if cc == c and s <= t < e]
        assert (ends == [g]) if ends else np.isnan(g)


def test_linger_sends_each_batch_linger_after_its_first_record() -> None:
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0, 1, 3000))
    part = rng.integers(0, 3, 3000)
    send, size = _linger(t, part, 0.005)
    for q in range(3):
        tq, sq, zq = t[part == q], send[part == q], size[part == q]
        closes, first, counts = np.unique(sq, return_index=True, return_counts=True)
        assert len(closes) > 100
        assert np.all(tq[first] + 0.005 == closes)  # sent linger after its first record
        last = first + counts - 1
        assert np.all(tq[last] <= closes)  # every record of a batch is in its window
        assert np.all(tq[first[1:]] > closes[:-1])  # the next batch opens after it closed
        assert np.all(zq == np.repeat(counts, counts))
