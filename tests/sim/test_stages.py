"""The stage model: calibrated from a stage frame, it reproduces the stages' structure and
reacts to load, and each switch turns its mechanism off."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from rtsim.core.stages import STAGES, Wakeup, stage_summary
from rtsim.sim.stages import (
    ANSWER_SHARE,
    StageCalibration,
    TransportCosts,
    calibrate_stages,
    simulate_stages,
)


def _frame(rng: np.random.Generator, messages: int = 40, n: int = 20) -> pd.DataFrame:
    rows = []
    for i in range(messages):
        fan = rng.uniform(0.1, 0.3)
        for pos in range(n):
            d = {
                "trace": f"r:{i}",
                "n": n,
                "position": pos,
                "fanout_ms": fan,
                "publish_timer": rng.uniform(0, 1),
                "publish_transit": rng.uniform(0.05, 0.2),
                "server_to_fanout": 0.05,
                "fanout_to_write": fan * (pos + 1) / n,
                "write_to_read": rng.uniform(0.05, 0.5),
                "client_handle": 0.01,
            }
            d["end_to_end"] = sum(d[s] for s in STAGES)
            rows.append(d)
    return pd.DataFrame(rows)


# A made-up machine: wake-up latency and CPU by idle gap.
WAKE = Wakeup(gaps_ms=[0.5, 5.0, 100.0], latency_ms=[0.1, 0.3, 0.5], cpu_us=[50.0, 100.0, 300.0])


@pytest.fixture(scope="module")
def cal() -> StageCalibration:
    rng = np.random.default_rng(1)
    return calibrate_stages(
        _frame(rng),
        0.05,
        800,
        rate=20,
        cores=2,
        client_processes=2,
        server_cpu_s=0.008,
        messages=40,
        publisher_cpu_s=0.01,
    )


@pytest.fixture(scope="module")
def wcal() -> StageCalibration:
    rng = np.random.default_rng(1)
    return calibrate_stages(
        _frame(rng),
        0.05,
        800,
        rate=20,
        cores=2,
        client_processes=2,
        server_cpu_s=0.008,
        messages=40,
        publisher_cpu_s=0.01,
        wakeup=WAKE,
    )


def test_calibration_names_its_sources_and_costs(cal: StageCalibration) -> None:
    assert "rtsim load" in cal.source["stages"] and "Epoll" in cal.source["epoll"]
    assert cal.publish_us == pytest.approx(250.0)  # 0.01 s / 40 messages
    assert cal.client_us == pytest.approx(50.0)  # (0.05 - 0.01) s / 800 deliveries
    # (8 ms - 40 messages x 50 µs before the fan-out) / 800 deliveries
    assert cal.per_delivery_us == pytest.approx(7.5)
    assert np.mean(cal.fanout_shape) == pytest.approx(1.0, rel=0.1)
    assert all(np.diff(q).min() >= 0 for q in (cal.transit_ms, cal.loopback_ms))
    assert set(cal.idle_gap_ms) == {"server", "client", "publisher"}
    with pytest.raises(ValueError, match="no traced deliveries"):
        calibrate_stages(_frame(np.random.default_rng(0)).iloc[:0], 1, 1, 1, 2, 2)


def test_wake_ups_follow_the_measured_curve(cal: StageCalibration, wcal: StageCalibration) -> None:
    g = wcal.idle_gap_ms["server"]
    assert wcal.wake_shift_ms("server", g) == pytest.approx(0.0, abs=1e-12)
    assert wcal.wake_shift_ms("server", 100.0) > 0 > wcal.wake_shift_ms("server", 0.5)
    assert cal.wake_shift_ms("server", 100.0) == 0.0 and cal.wake_cpu_us(100.0) == 0.0
    # CPU beyond the shortest gap's (the reading itself): 0 at 0.5 ms, 250 µs at 100 ms.
    assert WAKE.cpu_at(0.5) == 0.0 and WAKE.cpu_at(100.0) == pytest.approx(250.0)
    assert wcal.wake_cpu_us(5.0) == pytest.approx(50.0)
    # The run's costs are net of the wake-ups it paid: the publisher slept ~50 ms a message.
    gap = wcal.idle_gap_ms["publisher"]
    assert wcal.publish_us == pytest.approx(250.0 - WAKE.cpu_at(gap))
    assert wcal.client_us < cal.client_us and wcal.per_delivery_us < cal.per_delivery_us


def test_costs_grow_with_connections_as_fitted() -> None:
    small = TransportCosts(server_us=5.0, client_us=10.0, at_n=200)
    large = TransportCosts(server_us=7.0, client_us=20.0, at_n=1000)
    fit = TransportCosts.fit(small, large)
    assert fit.at(1000).server_us == pytest.approx(7.0)
    assert fit.at(1000).client_us == pytest.approx(20.0)
    assert fit.at(200).client_us == pytest.approx(10.0)
    assert fit.at(2000).client_us > 20.0 > fit.at(50).client_us
    # A cost that shrinks with size is held flat (exponent clipped at 0).
    shrinking = TransportCosts.fit(
        TransportCosts(server_us=7.0, client_us=10.0, at_n=200),
        TransportCosts(server_us=5.0, client_us=10.0, at_n=1000),
    )
    assert shrinking.at(5000).server_us == pytest.approx(7.0)


def test_the_answer_share_follows_size_between_its_two_measurements() -> None:
    """Fitted at 200 (share 0.7) and 1,000 connections (0.4): each size gets its own, a
    size between them the log-linear mix (at sqrt(200 × 1000) the mean), sizes beyond
    them the nearer one's; costs with one measurement keep theirs."""
    small = TransportCosts(8.0, 5.0, request_us=100.0, at_n=200, answer_share=0.7)
    large = TransportCosts(8.0, 5.0, request_us=90.0, at_n=1000, answer_share=0.4)
    fit = TransportCosts.fit(small, large)
    assert fit.at(200).answer_share == pytest.approx(0.7)
    assert fit.at(1000).answer_share == pytest.approx(0.4)
    assert fit.at(round((200 * 1000) ** 0.5)).answer_share == pytest.approx(0.55, abs=1e-3)
    assert fit.at(50).answer_share == pytest.approx(0.7)
    assert fit.at(2000).answer_share == pytest.approx(0.4)
    assert fit.at(2000).at(10).answer_share == pytest.approx(0.4)  # at() is final
    assert small.at(5000).answer_share == 0.7


@pytest.mark.parametrize("transport", ["websocket", "sse", "long-polling"])
def test_stages_add_up_and_are_causal(cal: StageCalibration, transport: str) -> None:
    df = simulate_stages(cal, transport, 30, 50, 1.0, seed=3)
    assert len(df) == 30 * 50
    assert df["end_to_end"].notna().all()
    assert (df[list(STAGES)] >= -1e-9).all().all()
    np.testing.assert_allclose(df[list(STAGES)].sum(axis=1), df["end_to_end"], atol=1e-9)


def test_same_seed_same_result_and_load_matters(cal: StageCalibration) -> None:
    a = simulate_stages(cal, "websocket", 200, 20, 1.0, seed=5)
    b = simulate_stages(cal, "websocket", 200, 20, 1.0, seed=5)
    pd.testing.assert_frame_equal(a, b)
    light = stage_summary(simulate_stages(cal, "websocket", 200, 5, 2.0))
    heavy = stage_summary(simulate_stages(cal, "websocket", 200, 300, 2.0))
    # Past the cores' capacity (200 x 300 deliveries/s at ~60 µs each) the queues grow.
    assert heavy["end_to_end"]["p99_ms"] > light["end_to_end"]["p99_ms"]


def test_epoll_switch_moves_only_the_timer(cal: StageCalibration) -> None:
    on = stage_summary(simulate_stages(cal, "websocket", 10, 30, 2.0, seed=2))
    off = stage_summary(simulate_stages(cal, "websocket", 10, 30, 2.0, seed=2, epoll_ms=False))
    # 1/30 s = 33.3 ms: the wake-up lands on a whole ms, about 0.5 ms late on average.
    assert on["publish_timer"]["mean_ms"] - off["publish_timer"]["mean_ms"] > 0.2
    assert on["client_handle"]["p50_ms"] == off["client_handle"]["p50_ms"]


def test_wake_cpu_makes_a_rare_message_slower_per_delivery(wcal: StageCalibration) -> None:
    on = stage_summary(simulate_stages(wcal, "websocket", 20, 5, 2.0, seed=1))
    off = stage_summary(simulate_stages(wcal, "websocket", 20, 5, 2.0, seed=1, wake_cpu=False))
    assert on["end_to_end"]["p50_ms"] > off["end_to_end"]["p50_ms"]


def test_sharing_two_cores_slows_a_crowded_machine(cal: StageCalibration) -> None:
    shared = stage_summary(simulate_stages(cal, "websocket", 400, 100, 1.0, seed=4))
    alone = stage_summary(
        simulate_stages(cal, "websocket", 400, 100, 1.0, seed=4, core_sharing=False)
    )
    assert shared["write_to_read"]["p50_ms"] > alone["write_to_read"]["p50_ms"]


def test_a_broker_hop_sits_between_receipt_and_fan_out(cal: StageCalibration) -> None:
    # A constant 2 ms hop (every percentile 2.0) and a relay of 100 µs per message.
    one = stage_summary(simulate_stages(cal, "websocket", 20, 20, 2.0, seed=6))
    two = stage_summary(
        simulate_stages(
            cal, "websocket", 20, 20, 2.0, seed=6, broker_hop_ms=[2.0] * 101, relay_us=100.0
        )
    )
    # receipt (on the relay) → fan-out start (on the server): relay CPU + hop + the same
    # server_to_fanout as without a hop.
    extra = two["server_to_fanout"]["p50_ms"] - one["server_to_fanout"]["p50_ms"]
    assert 2.1 <= extra < 2.6
    assert two["end_to_end"]["p50_ms"] - one["end_to_end"]["p50_ms"] > 2.0
    # The stages still add up.
    df = simulate_stages(cal, "sse", 20, 20, 1.0, seed=6, broker_hop_ms=[1.0] * 101)
    np.testing.assert_allclose(df[list(STAGES)].sum(axis=1), df["end_to_end"], atol=1e-9)


def test_the_ack_restarts_the_publishers_sleep(cal: StageCalibration) -> None:

    assert np.isfinite(cal.ack_return_ms)  # estimated from the calibration frame
    no_ack = replace(cal, ack_return_ms=float("nan"))
    on = simulate_stages(cal, "websocket", 20, 40, 2.0, seed=8)
    off = simulate_stages(cal, "websocket", 20, 40, 2.0, seed=8, ack=False)
    pd.testing.assert_frame_equal(off, simulate_stages(no_ack, "websocket", 20, 40, 2.0, seed=8))
    assert not on["publish_timer"].equals(off["publish_timer"])
    # Either way the publisher sends no message before it is due.
    assert (on["publish_timer"] >= 0).all() and (off["publish_timer"] >= 0).all()


def test_warmth_law_from_runs_at_several_rates(cal: StageCalibration) -> None:

    from rtsim.sim.stage_calibration import CpuRun, fit_warmth

    # The server: 50 subscribers at 185 and 740 msgs/s (22.3 and 12.7 µs per delivery,
    # as measured here), and one noisy point that a longer sleep must not make cheaper.
    runs = [
        CpuRun(185, 50, 2, 555, 555 * 50 * 22.3e-6, 1.0, 0.2),
        CpuRun(740, 50, 2, 2220, 2220 * 50 * 12.7e-6, 3.0, 0.4),
        CpuRun(30, 50, 2, 90, 90 * 50 * 20.0e-6, 0.3, 0.05),
    ]
    law = fit_warmth(runs)
    gaps, f = law["server"]
    assert gaps == sorted(gaps) and f[0] == 1.0 and f == sorted(f)
    assert f[1] == pytest.approx(22.3 / 12.7, rel=1e-6) and f[2] == f[1]
    assert fit_warmth(runs[:1]) == {}
    warm = replace(cal, warmth=law)
    assert warm.warm_factor("server", 0.01) == 1.0
    assert warm.warm_factor("server", 1e4) == pytest.approx(f[-1])
    # With the law, a busy server (high rate) costs less per delivery than an idle one,
    # so a message's fan-out is quicker at a higher rate.
    slow = stage_summary(simulate_stages(warm, "websocket", 50, 20, 2.0, seed=3))
    quick = stage_summary(simulate_stages(warm, "websocket", 50, 20, 2.0, seed=3, warmth=False))
    assert slow["fanout_to_write"]["p50_ms"] > quick["fanout_to_write"]["p50_ms"]


def test_bad_sizes() -> None:
    rng = np.random.default_rng(0)
    c = calibrate_stages(_frame(rng, 3, 3), 0.01, 9, 10, 2, 1)
    with pytest.raises(ValueError):
        simulate_stages(c, "websocket", 0, 10, 1)


def _flat(x: float) -> list[float]:
    return [x] * 101  # 0..100th percentiles of a constant


# A machine without noise: every stage one value, no wake-up, no warmth, no ack.
# Long polling: the server spends 0.1 ms per delivery and 10 ms per request (6 ms of it
# answering, 4 ms receiving and parking the next request: answer_share = 0.6).
FLAT = StageCalibration(
    timer_residual_ms=_flat(0.0),
    transit_ms=_flat(0.5),
    server_to_fanout_ms=_flat(0.1),
    fanout_shape=_flat(1.0),
    loopback_ms=_flat(0.2),
    client_handle_ms=_flat(0.0),
    costs={
        "websocket": TransportCosts(server_us=100.0, client_us=0.0),
        "long-polling": TransportCosts(100.0, 0.0, request_us=10_000.0, answer_share=0.6),
    },
    publish_us=0.0,
    cores=8,
    client_processes=1,
    loopback_min_ms=0.2,
)
_EXACT = {"epoll_ms": False, "idle_gap": False, "wake_cpu": False}


def test_a_publish_arriving_in_a_re_poll_storm_waits_for_the_work_before_it() -> None:
    """By hand (ms): message 0 reaches the idle server at 0.5 (transit), its fan-out runs
    0.5-0.6 and answers the two parked polls, 0.6-6.7 and 6.7-12.8 (0.1 + 6 each). The
    first client reads at 6.9 (loopback 0.2) and its next poll is at the server at 7.4,
    the second's at 13.5. Message 1, sent at 10, finds the server busy: it is on the wire
    0.2 ms (loopback), then waits, first in line after the answer (until 12.8) and the
    first re-poll that arrived before it (12.8-16.8), so it is received at 16.8 — 6.8 ms
    after its send — ahead of the second re-poll, which arrived after it. Sent at 30 (the
    storm over at 20.8), it takes the idle server's 0.5 ms."""
    storm = simulate_stages(FLAT, "long-polling", 2, 100.0, 0.02, **_EXACT)
    first = storm.groupby("trace").first()
    np.testing.assert_allclose(first["publish_transit"], [0.5, 6.8], atol=1e-9)
    np.testing.assert_allclose(first["server_to_fanout"], [0.1, 0.1], atol=1e-9)
    # Message 1: subscriber 0 (parked again at 16.8) answered 16.9-23.0, read at 23.2.
    np.testing.assert_allclose(storm["end_to_end"].iloc[2], 23.2 - 10.0, atol=1e-9)
    calm = simulate_stages(FLAT, "long-polling", 2, 100.0 / 3, 0.06, **_EXACT)
    np.testing.assert_allclose(calm.groupby("trace").first()["publish_transit"], 0.5)
    pd.testing.assert_frame_equal(
        storm, simulate_stages(FLAT, "long-polling", 2, 100.0, 0.02, **_EXACT)
    )


def test_long_polling_answers_parked_polls_in_the_order_they_were_parked() -> None:
    """By hand (ms): four subscribers on two workers (k % 2), one message. It reaches the
    server at 0.5, its fan-out ends at 0.6; each answer costs 0.1 + 0.36 × 10 = 3.7 (the
    measured answer share). The first polls were parked worker by worker (0, 2, then
    1, 3), so the answers are written at 0.6 + 3.7 × (1, 2, 3, 4) in that order:
    fanout_to_write 3.7 for subscriber 0, 7.4 for 2, 11.1 for 1, 14.8 for 3. In
    subscriber order (``park_order=False``) 1 comes before 2."""
    lp = TransportCosts(100.0, 0.0, request_us=10_000.0)
    assert lp.answer_share == ANSWER_SHARE == 0.36
    cal = replace(FLAT, client_processes=2, costs={**FLAT.costs, "long-polling": lp})
    one = simulate_stages(cal, "long-polling", 4, 100.0, 0.01, **_EXACT)
    assert one["trace"].nunique() == 1
    np.testing.assert_allclose(one["fanout_to_write"], [3.7, 11.1, 7.4, 14.8], atol=1e-9)
    flat = simulate_stages(cal, "long-polling", 4, 100.0, 0.01, park_order=False, **_EXACT)
    np.testing.assert_allclose(flat["fanout_to_write"], [3.7, 7.4, 11.1, 14.8], atol=1e-9)
    # The re-poll (6.4 ms each) is read after every answer: a share moved from answering
    # to receiving shortens the answers, not the server's work per request.
    six = replace(cal, costs={**FLAT.costs, "long-polling": replace(lp, answer_share=0.6)})
    late = simulate_stages(six, "long-polling", 4, 100.0, 0.01, **_EXACT)
    np.testing.assert_allclose(late["fanout_to_write"], [6.1, 18.3, 12.2, 24.4], atol=1e-9)


def test_stalls_come_per_stretch_of_time_not_per_delivery() -> None:
    # Nine fan-outs in ten at 0.9 of the mean cost, one in ten 1.9 times (interrupted).
    shape = [0.9] * 90 + [1.9] * 11
    c = replace(
        FLAT,
        fanout_shape=shape,
        costs={"websocket": TransportCosts(server_us=1.0, client_us=0.0, at_n=200)},
    )

    def fan_ms(n: int, **kw: bool) -> np.ndarray:
        f = simulate_stages(c, "websocket", n, 20, 4.0, seed=3, **_EXACT, **kw)
        return f.groupby("trace")["fanout_ms"].first().to_numpy()

    long_on, long_off = fan_ms(1000), fan_ms(1000, stalls=False)
    # A long fan-out meets several interruptions: its length varies less than if every
    # delivery were slowed, and its mean is the calibrated one either way.
    assert np.std(long_on) / np.mean(long_on) < 0.5 * np.std(long_off) / np.mean(long_off)
    assert abs(np.mean(long_on) / np.mean(long_off) - 1) < 0.15
    # A short one rarely meets one, but when it does it loses the whole interruption.
    short_on, short_off = fan_ms(20), fan_ms(20, stalls=False)
    assert np.median(short_on) <= np.median(short_off) + 1e-9
    assert np.max(short_on) > 3 * np.max(short_off)  # (0.20 ms against 0.04, seed 3)


def test_request_costs_are_fitted_to_reproduce_their_cost_run(cal: StageCalibration) -> None:
    """A long-polling cost run made by the model with known costs (request 150 µs, the
    worker's 120 µs, answer share 0.6) is fitted back from other starting costs: the
    model's CPU and fan-out-to-write p50 for that run are the measured ones, so the fitted
    costs are the known ones. A run that published nothing is refused."""
    from rtsim.sim.stage_fit import fit_request_costs
    from rtsim.sim.stages import CpuRun

    true = TransportCosts(8.0, 5.0, request_us=150.0, client_request_us=120.0, answer_share=0.6)
    start = TransportCosts(8.0, 5.0, request_us=80.0, client_request_us=60.0)
    known = replace(cal.with_costs("long-polling", true), warmth={})
    f = simulate_stages(known, "long-polling", 200, 10.0, 2.0, 0)
    cpu = f.attrs["cpu_s"]
    assert cpu["server"] > 0 and cpu["client"] > 0 and cpu["relay"] == 0.0
    run = CpuRun(
        rate=10.0,
        subscribers=200,
        processes=known.client_processes,
        published=20,
        server_cpu_s=cpu["server"],
        loadgen_cpu_s=cpu["client"] + cpu["publisher"],
        publisher_cpu_s=cpu["publisher"],
        fanout_to_write_p50_ms=float(np.median(f["fanout_to_write"])),
    )
    got = fit_request_costs(known.with_costs("long-polling", start), run)
    assert got.request_us == pytest.approx(150.0, rel=0.03)
    assert got.client_request_us == pytest.approx(120.0, rel=0.03)
    assert got.answer_share == pytest.approx(0.6, abs=0.05)
    assert got.at_n == 200 and got.server_exponent == 0.0
    with pytest.raises(ValueError, match="published nothing"):
        fit_request_costs(known, replace(run, published=0))


def test_burst_law_separates_a_burst_from_the_work_per_delivery() -> None:
    """Runs made by a known law — 2 µs of server CPU per delivery, a burst of 300 µs after
    a 1 ms sleep and 1,000 µs after 40 ms — are fitted back: the per-delivery cost from
    the two runs that slept about as long (200 and 1,000 subscribers), the bursts from all.
    The burst falls to 0 at no gap and stays flat beyond the longest; a multiplicative
    factor could not fit both 40 ms runs (6.5 against 3.0 µs per delivery)."""
    from rtsim.sim.stage_calibration import CpuRun, fit_burst

    def run(rate: float, n: int, burst_us: float) -> CpuRun:
        m = round(rate * 2)
        per_msg = burst_us + n * 2.0
        return CpuRun(rate, n, 2, m, m * per_msg * 1e-6, m * 10e-6, m * 5e-6)

    # Gaps: 1e3/rate less the CPU per message (1 ms and about 40 ms).
    runs = [
        run(1e3 / 1.7, 200, 300.0),
        run(1e3 / 41.4, 200, 1000.0),
        run(1e3 / 43.0, 1000, 1000.0),
    ]
    law, unit = fit_burst(runs)
    assert unit["server"] == pytest.approx(2.0)
    assert law["server"][1] == pytest.approx([300.0, 1000.0, 1000.0])
    assert runs[1].per_message_us("server") / 200 == pytest.approx(7.0)
    assert runs[2].per_message_us("server") / 1000 == pytest.approx(3.0)
    cal = replace(FLAT, burst=law)
    assert cal.burst_us("server", 0.0) == 0.0
    assert cal.burst_us("server", 0.5) == pytest.approx(150.0)
    assert cal.burst_us("server", 1000.0) == pytest.approx(1000.0)
    assert cal.burst_us("publisher", 5.0) == 0.0  # its runs' costs are equal: no burst
    assert fit_burst(runs[:1]) == ({}, {})


def test_a_burst_is_charged_once_per_idle_gap_not_per_delivery() -> None:
    """A burst law of 1 ms after any sleep: one message to 4 subscribers reaches the idle
    server, which pays the burst as it reads the publish — every delivery is 1 ms later
    than without it, the writes stay 0.1 ms apart (no burst per delivery), and the model
    charges the server 1 ms more CPU."""
    law = {"server": [[0.1, 100.0], [1000.0, 1000.0]]}
    one = simulate_stages(replace(FLAT, burst=law), "websocket", 4, 100.0, 0.01, **_EXACT)
    off = simulate_stages(FLAT, "websocket", 4, 100.0, 0.01, **_EXACT)
    np.testing.assert_allclose(one["end_to_end"] - off["end_to_end"], 1.0, atol=1e-9)
    np.testing.assert_allclose(one["publish_transit"] - off["publish_transit"], 1.0, atol=1e-9)
    np.testing.assert_allclose(one["fanout_to_write"], off["fanout_to_write"], atol=1e-9)
    assert one.attrs["cpu_s"]["server"] - off.attrs["cpu_s"]["server"] == pytest.approx(1e-3)
    # Turned off with the warmth switch (one mechanism: work after a sleep costs more).
    cal = replace(FLAT, burst=law)
    same = simulate_stages(cal, "websocket", 4, 100.0, 0.01, warmth=False, **_EXACT)
    pd.testing.assert_frame_equal(same, off)
