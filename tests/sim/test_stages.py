"""The stage model: calibrated from a stage frame, it reproduces the stages' structure and
reacts to load, and each switch turns its mechanism off."""

import numpy as np
import pandas as pd
import pytest

from rtsim.core.stages import STAGES, stage_summary
from rtsim.sim.stages import StageCalibration, calibrate_stages, simulate_stages


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


@pytest.fixture(scope="module")
def cal() -> StageCalibration:
    rng = np.random.default_rng(1)
    return calibrate_stages(_frame(rng), 0.04, 800, rate=20, cores=2, client_processes=2)


def test_calibration_names_its_sources_and_costs(cal: StageCalibration) -> None:
    assert "rtsim load" in cal.source["stages"] and "Epoll" in cal.source["epoll"]
    assert cal.client_us == pytest.approx(50.0)  # 0.04 s / 800 deliveries
    assert 5 < np.median(cal.per_delivery_us) < 15  # 0.1–0.3 ms over 20 subscribers
    assert all(np.diff(q).min() >= 0 for q in (cal.transit_ms, cal.loopback_ms))
    with pytest.raises(ValueError, match="no traced deliveries"):
        calibrate_stages(_frame(np.random.default_rng(0)).iloc[:0], 1, 1, 1, 2, 2)


@pytest.mark.parametrize("transport", ["websocket", "sse", "long-polling"])
def test_stages_add_up_and_are_causal(cal: StageCalibration, transport: str) -> None:
    df = simulate_stages(cal, transport, 30, 50, 1.0, seed=3)
    assert len(df) == 30 * 50
    assert (df[list(STAGES)] >= -1e-9).all().all()
    np.testing.assert_allclose(df[list(STAGES)].sum(axis=1), df["end_to_end"], atol=1e-9)


def test_same_seed_same_result_and_load_matters(cal: StageCalibration) -> None:
    a = simulate_stages(cal, "websocket", 200, 20, 1.0, seed=5)
    b = simulate_stages(cal, "websocket", 200, 20, 1.0, seed=5)
    pd.testing.assert_frame_equal(a, b)
    light = stage_summary(simulate_stages(cal, "websocket", 200, 5, 2.0))
    heavy = stage_summary(simulate_stages(cal, "websocket", 200, 300, 2.0))
    # Not flat: queueing in the fan-out and the client processes grows with the load.
    assert heavy["end_to_end"]["p99_ms"] > light["end_to_end"]["p99_ms"]


def test_epoll_switch_moves_only_the_timer(cal: StageCalibration) -> None:
    on = stage_summary(simulate_stages(cal, "websocket", 10, 30, 2.0, seed=2))
    off = stage_summary(simulate_stages(cal, "websocket", 10, 30, 2.0, seed=2, epoll_ms=False))
    # 1/30 s = 33.3 ms: the wake-up lands on 34 ms, 0.67 ms late on average.
    assert on["publish_timer"]["mean_ms"] - off["publish_timer"]["mean_ms"] > 0.3
    assert on["client_handle"]["p50_ms"] == off["client_handle"]["p50_ms"]


def test_bad_sizes() -> None:
    rng = np.random.default_rng(0)
    c = calibrate_stages(_frame(rng, 3, 3), 0.01, 9, 10, 2, 1)
    with pytest.raises(ValueError):
        simulate_stages(c, "websocket", 0, 10, 1)
