from __future__ import annotations

import numpy as np
import pytest

from rtsim.sim.brokers import (
    Broker,
    BrokerParams,
    broker_capacity,
    capacity_curve,
    lag_over_time,
    simulate_broker,
)

OUTAGES = ((10.0, 20.0), (30.0, 45.0))


def _lost_ids(r: object) -> set[int]:
    df = r.deliveries  # type: ignore[attr-defined]
    return set(df.loc[df["lost"], "message_id"])


def _published_during_outage(r: object) -> set[int]:
    df = r.deliveries  # type: ignore[attr-defined]
    bt = df.drop_duplicates("message_id").set_index("message_id")["broker_time"]
    return {int(m) for m, t in bt.items() if any(a <= t < b for a, b in OUTAGES)}


def test_pubsub_loses_exactly_the_messages_published_during_the_outage() -> None:
    r = simulate_broker(BrokerParams(broker="redis-pubsub", publish_rate=50, outages=OUTAGES), 1)
    during = _published_during_outage(r)
    assert len(during) > 500
    assert _lost_ids(r) == during
    assert r.summary.lost == len(during)


@pytest.mark.parametrize("broker", ["redis-streams", "jetstream", "kafka"])
def test_durable_brokers_lose_nothing_while_the_log_holds_it(broker: str) -> None:
    r = simulate_broker(BrokerParams(broker=broker, publish_rate=50, outages=OUTAGES), 1)
    assert r.summary.lost == 0
    assert r.summary.extra["replayed"] == len(_published_during_outage(r))


@pytest.mark.parametrize("broker", ["redis-streams", "jetstream"])
def test_trimmed_messages_are_reported_as_a_gap(broker: str) -> None:
    p = BrokerParams(broker=broker, publish_rate=50, outages=OUTAGES, max_len=200)
    r = simulate_broker(p, 1)
    assert r.summary.lost > 0
    assert r.summary.extra["lost_to_trimming"] == r.summary.lost


def test_kafka_resumes_from_committed_offset_with_duplicates() -> None:
    r = simulate_broker(BrokerParams(broker="kafka", publish_rate=50, outages=OUTAGES), 1)
    assert r.summary.extra["duplicates"] > 0 and r.summary.lost == 0
    # linger adds up to 5 ms of batching delay
    assert r.summary.p50_ms > 1.0


def test_jetstream_redelivers_after_ack_wait() -> None:
    # 0.25 ms transit: an outage starting right after a delivery catches it in flight.
    p = BrokerParams(broker="jetstream", publish_rate=2000, duration_s=5, outages=((1.0, 1.5),))
    p = p.with_(ack_wait_s=2.0, transit_ms=5.0)
    r = simulate_broker(p, 3)
    assert r.summary.lost == 0
    assert r.summary.extra["redelivered"] > 0
    late = r.deliveries[r.deliveries["replayed"]]["latency_ms"].max()
    assert late >= 2000.0  # waited for its AckWait


def test_same_seed_same_result() -> None:
    p = BrokerParams(broker="redis-streams", publish_rate=100, duration_s=10)
    a, b = simulate_broker(p, 7), simulate_broker(p, 7)
    assert a.summary == b.summary


def test_lag_over_time() -> None:
    r = simulate_broker(BrokerParams(broker="redis-pubsub", publish_rate=50, outages=OUTAGES), 1)
    lag = lag_over_time(r, np.array([5.0, 19.9, 59.0]))
    assert lag["lag"].iloc[0] <= 2
    assert lag["lag"].iloc[2] == r.summary.lost  # lost messages never drain


def test_capacity() -> None:
    assert broker_capacity("redis-pubsub") == pytest.approx(400_000)
    df = capacity_curve("redis-pubsub", [100_000, 350_000], messages=20_000)
    assert df["p99_us"].iloc[1] > df["p99_us"].iloc[0]
    assert df["utilisation"].iloc[1] == pytest.approx(0.875)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"publish_rate": -3}, "publish_rate must be > 0"),
        ({"subscribers": 0}, "subscribers must be >= 1"),
        ({"broker": "rabbitmq"}, "unknown broker 'rabbitmq'"),
        ({"outages": ((5.0, 1.0),)}, "start < end"),
        ({"service": "uniform"}, "service must be"),
    ],
)
def test_invalid_params(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BrokerParams(**changes)  # type: ignore[arg-type]


def test_broker_enum_values() -> None:
    assert [b.value for b in Broker] == ["redis-pubsub", "redis-streams", "jetstream", "kafka"]
