"""The transport model: RFC 6202's long-polling analysis, framing bytes, limits, validation."""

import numpy as np
import pandas as pd
import pytest

from rtsim.core.envelope import Envelope, encode
from rtsim.core.transport import Transport, ws_frame_header_len
from rtsim.sim.network import TCP_IP_OVERHEAD_BYTES, TLS_RECORD_OVERHEAD_BYTES
from rtsim.sim.runner import mean_ci, replicate
from rtsim.sim.theory import long_polling_mean_latency
from rtsim.sim.transports import TransportParams, simulate_transports

T = 0.050  # one-way transit in the RFC 6202 checks
IDEAL_LP = dict(
    transport="long-polling",
    clients=1,
    rtt_ms=2 * T * 1000,
    jitter_ms=0.0,
    cpu_per_delivery_us=0.0,
    cpu_per_request_us=0.0,
    bandwidth_mbps=1e9,
    hold_timeout_s=1e6,
)


@pytest.mark.parametrize(("rate", "duration"), [(0.5, 600.0), (5.0, 60.0), (40.0, 20.0)])
def test_long_polling_matches_rfc6202_closed_form(rate: float, duration: float) -> None:
    params = TransportParams(rate=rate, duration_s=duration, **IDEAL_LP)  # type: ignore[arg-type]
    reps = replicate(simulate_transports, params, reps=12, seed=11, progress=False)
    mean, half = mean_ci(reps["mean_ms"])
    expected = long_polling_mean_latency(rate, T) * 1000
    assert abs(mean - expected) <= half, (mean, half, expected)
    assert abs(mean - expected) / expected < 0.05
    # Never more than three transits (response, new request, response).
    assert reps["max_ms"].max() <= 3 * T * 1000 + 1e-6


def test_long_polling_low_rate_is_one_transit_high_rate_reaches_three() -> None:
    low = simulate_transports(TransportParams(rate=0.05, duration_s=2000, **IDEAL_LP), seed=3)  # type: ignore[arg-type]
    high = simulate_transports(TransportParams(rate=50, duration_s=20, **IDEAL_LP), seed=3)  # type: ignore[arg-type]
    assert low.summary.p50_ms == pytest.approx(T * 1000, rel=0.01)
    assert low.summary.mean_ms < 1.1 * T * 1000
    assert 2.9 * T * 1000 < high.summary.max_ms <= 3 * T * 1000 + 1e-6
    assert high.summary.mean_ms == pytest.approx(2 * T * 1000, rel=0.05)


def test_persistent_transports_deliver_in_one_transit() -> None:
    for t in ("websocket", "sse"):
        r = simulate_transports(
            TransportParams(
                transport=t,
                clients=50,
                rate=5,
                duration_s=30,
                jitter_ms=0,
                cpu_per_delivery_us=0,
                bandwidth_mbps=1e9,
            ),
            seed=1,
        )
        assert r.summary.max_ms == pytest.approx(25.0, abs=1e-6)
        assert r.summary.requests_per_message == 0


def test_every_message_reaches_every_client_once_in_order() -> None:
    for t in Transport:
        p = TransportParams(
            transport=t,
            clients=30,
            channels=3,
            rate=20,
            duration_s=20,
            loss=0.02,
            poll_interval_s=1.0,
        )
        r = simulate_transports(p, seed=5)
        d = r.deliveries
        assert r.summary.lost == 0
        assert r.summary.deliveries == r.summary.extra["expected_deliveries"]
        assert not d.duplicated(["client", "message_id"]).any()
        # TCP delivers in order: per client, receive order is publish order.
        for _, g in d.groupby("client"):
            assert g.sort_values("message_id")["receive_time"].is_monotonic_increasing
        assert (d["latency_ms"] > 0).all()


def test_wire_bytes_follow_the_framing() -> None:
    r = simulate_transports(
        TransportParams(
            transport="websocket", clients=10, rate=5, duration_s=10, payload_bytes=100
        ),
        seed=0,
    )
    envelope = len(encode(Envelope(channel="c0", id="1000000", data="x" * 100, ts=0.0))) - 2
    expected = envelope + ws_frame_header_len(envelope) + TLS_RECORD_OVERHEAD_BYTES
    assert r.summary.bytes_per_message == expected + TCP_IP_OVERHEAD_BYTES
    sse = simulate_transports(
        TransportParams(transport="sse", clients=10, rate=5, duration_s=10, payload_bytes=100),
        seed=0,
    )
    assert sse.summary.bytes_per_message > r.summary.bytes_per_message


def test_long_polling_costs_headers_polling_costs_empty_requests() -> None:
    base = TransportParams(clients=20, rate=0.5, duration_s=120, poll_interval_s=5)
    ws = simulate_transports(base, seed=2).summary
    lp = simulate_transports(base.with_(transport="long-polling"), seed=2).summary
    poll = simulate_transports(
        base.with_(transport="polling", rate=0.05, duration_s=600), seed=2
    ).summary
    assert lp.requests_per_message == pytest.approx(1.0, abs=0.05)
    assert lp.bytes_per_message > 700 + ws.bytes_per_message
    assert poll.requests_per_message > 2  # most polls come back empty at 0.05 msg/s
    assert poll.p50_ms > 1000  # waits for the next poll: about half the interval
    h2 = simulate_transports(base.with_(transport="long-polling", http_version="2"), seed=2)
    assert h2.summary.bytes_per_message < lp.bytes_per_message / 2  # HPACK


def test_http11_starves_sse_tabs_beyond_six_http2_does_not() -> None:
    p = TransportParams(transport="sse", clients=10, tabs_per_client=8, rate=5, duration_s=10)
    h1 = simulate_transports(p, seed=0).summary
    h2 = simulate_transports(p.with_(http_version="2"), seed=0).summary
    assert h1.extra["tabs_blocked"] == 20
    assert h1.lost == h1.extra["expected_deliveries"] * 2 // 8
    assert h1.connections == 60
    assert h2.lost == 0 and h2.connections == 10


def test_loss_and_reconnects_delay_but_do_not_lose() -> None:
    base = TransportParams(clients=50, rate=10, duration_s=60)
    clean = simulate_transports(base, seed=4).summary
    lossy = simulate_transports(base.with_(loss=0.05), seed=4).summary
    flaky = simulate_transports(base.with_(reconnects_per_hour=120), seed=4).summary
    assert lossy.p99_ms > clean.p99_ms + 150  # a 200 ms RTO shows in the tail
    assert flaky.extra["reconnects"] > 0
    assert flaky.lost == 0 and flaky.max_ms > 1000


def test_cpu_queueing_grows_with_fan_out() -> None:
    small = simulate_transports(TransportParams(clients=100, rate=10, duration_s=10), seed=0)
    big = simulate_transports(
        TransportParams(clients=5000, rate=10, duration_s=10, cpu_per_delivery_us=15), seed=0
    )
    assert big.summary.p99_ms > small.summary.p99_ms + 50
    assert 0 < big.summary.extra["server_cpu_utilisation"] < 1


def test_same_seed_same_result_and_common_arrivals() -> None:
    p = TransportParams(clients=20, rate=10, duration_s=20, loss=0.01)
    a = simulate_transports(p, seed=9)
    b = simulate_transports(p, seed=9)
    pd.testing.assert_frame_equal(a.deliveries, b.deliveries)
    c = simulate_transports(p.with_(transport="sse"), seed=9)
    assert a.summary.extra["messages_published"] == c.summary.extra["messages_published"]
    d = simulate_transports(p, seed=10)
    assert not np.array_equal(a.deliveries["latency_ms"], d.deliveries["latency_ms"])


def test_result_shape() -> None:
    r = simulate_transports(TransportParams(clients=5, rate=2, duration_s=5), seed=0)
    assert list(r.deliveries.columns) == [
        "channel",
        "message_id",
        "client",
        "transport",
        "publish_time",
        "receive_time",
        "latency_ms",
    ]
    row = r.summary_frame()
    assert row.loc[0, "source"] == "simulated" and row.loc[0, "transport"] == "websocket"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"clients": 0}, "clients must be >= 1, got 0"),
        ({"rate": -3}, "rate must be > 0, got -3"),
        ({"rate": float("nan")}, "rate must be finite, got nan"),
        ({"duration_s": 0}, "duration_s must be > 0, got 0"),
        ({"transport": "smoke"}, "unknown transport 'smoke'"),
        ({"loss": 1.0}, r"loss must be in \[0, 1\)"),
        ({"http_version": "3"}, "http_version must be one of 1.1, 2; got .3."),
        ({"channels": 5, "clients": 2}, "channels \\(5\\) must not exceed clients \\(2\\)"),
        ({"rtt_ms": -1}, "rtt_ms must be >= 0"),
        ({"tabs_per_client": 0}, "tabs_per_client must be >= 1"),
        ({"poll_interval_s": 0}, "poll_interval_s must be > 0"),
    ],
)
def test_invalid_parameters_raise_value_error(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TransportParams(**changes)  # type: ignore[arg-type]


def test_bad_seed() -> None:
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        simulate_transports(TransportParams(), seed=-1)


def test_fifo_constant_matches_the_lindley_loop() -> None:
    from rtsim.sim.network import fifo_constant

    rng = np.random.default_rng(0)
    arr = np.sort(rng.uniform(0, 1, 200))
    for c, free in ((0.001, 0.0), (0.01, 0.5), (0.0, 0.0)):
        done, t = [], free
        for a in arr:
            t = max(t, a) + c
            done.append(t)
        np.testing.assert_allclose(fifo_constant(arr, c, free), done)


def test_client_processes_queue_a_broadcast_and_shared_cores_slow_everything() -> None:
    base = TransportParams(
        clients=400,
        rate=2,
        duration_s=20,
        rtt_ms=0.1,
        jitter_ms=0,
        cpu_per_delivery_us=5,
        bandwidth_mbps=1e6,
    )
    plain = simulate_transports(base, seed=1).summary
    clients = simulate_transports(
        base.with_(client_processes=2, cpu_client_per_delivery_us=20), seed=1
    ).summary
    # The server writes one subscriber every 5 µs, so each of the two processes receives one
    # every 10 µs but needs 20: its queue grows 10 µs per message, 2 ms over 200 of them.
    assert clients.max_ms - plain.max_ms == pytest.approx(200 * (0.020 - 2 * 0.005), rel=0.05)
    assert clients.p50_ms > plain.p50_ms + 0.5
    crowded = simulate_transports(
        base.with_(client_processes=2, cpu_client_per_delivery_us=20, cores=0.01), seed=1
    ).summary
    assert crowded.extra["cpu_slowdown"] > 1 and crowded.p50_ms > clients.p50_ms
    for t in ("long-polling", "polling"):
        r = simulate_transports(
            base.with_(
                transport=t, client_processes=2, cpu_client_per_delivery_us=20, poll_interval_s=1.0
            ),
            seed=1,
        ).summary
        assert r.lost == 0 and r.deliveries == r.extra["expected_deliveries"]
