"""The presence model: exact cursor counts, detection delay, false offline, C18 arithmetic."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsim.cli import main
from rtsim.sim.presence import (
    PresenceParams,
    cursor_emission_counts,
    cursor_emission_counts_core,
    exact_cursor_msgs_per_s,
    simulate_presence,
    store_write_load,
)

FAST = {"duration_s": 120.0, "cursor_pairs": 2, "cursor_window_s": 5.0}


@pytest.mark.parametrize(
    ("viewers", "resources", "cursor_hz", "throttle_hz"),
    [(2, 1, 60, 10), (10, 3, 60, 5), (25, 2, 60, 10), (8, 4, 60, 0), (6, 2, 4, 10)],
)
def test_cursor_server_rate_matches_the_exact_count_within_1pct(
    viewers: int, resources: int, cursor_hz: float, throttle_hz: float
) -> None:
    p = PresenceParams(
        viewers=viewers,
        resources=resources,
        cursor_hz=cursor_hz,
        throttle_hz=throttle_hz,
        cursor_engine="core",  # every viewer's updates go through the core Throttle
        **FAST,
    )
    s = simulate_presence(p, seed=3).summary.extra
    rate = min(cursor_hz, throttle_hz) if throttle_hz else cursor_hz
    exact = resources * viewers * (viewers - 1) * rate
    assert exact == exact_cursor_msgs_per_s(p)
    assert s["cursor_msgs_out_per_s"] == pytest.approx(exact, rel=0.01)
    # The closed form used for big runs gives the very same counts.
    fast = simulate_presence(p.with_(cursor_engine="closed-form"), seed=3).summary.extra
    assert fast["cursor_msgs_out_per_s"] == s["cursor_msgs_out_per_s"]


@settings(max_examples=60, deadline=None)
@given(
    cursor_hz=st.floats(1.0, 120.0),
    throttle_hz=st.one_of(st.just(0.0), st.floats(0.5, 60.0)),
    duration=st.floats(0.5, 10.0),
    seed=st.integers(0, 1000),
)
def test_closed_form_counts_equal_the_core_throttle(
    cursor_hz: float, throttle_hz: float, duration: float, seed: int
) -> None:
    phase = np.random.default_rng(seed).uniform(0, 1, 5)
    a = cursor_emission_counts(phase, cursor_hz, throttle_hz, duration)
    b = cursor_emission_counts_core(phase, cursor_hz, throttle_hz, duration)
    assert np.abs(a - b).max() <= 1  # equal but for float ties at the window's edge
    assert abs(int(a.sum()) - int(b.sum())) <= 1


def test_fan_out_grows_with_viewers_squared() -> None:
    rates = [
        simulate_presence(PresenceParams(viewers=n, resources=1, **FAST), seed=0).summary.extra[
            "cursor_msgs_out_per_s"
        ]
        for n in (10, 20, 40)
    ]
    assert rates[1] / rates[0] == pytest.approx(20 * 19 / (10 * 9), rel=0.01)
    assert rates[2] / rates[0] == pytest.approx(40 * 39 / (10 * 9), rel=0.01)


def test_crashes_are_detected_within_the_timeout_and_clean_leaves_at_once() -> None:
    p = PresenceParams(
        viewers=20,
        resources=5,
        session_mean_s=300,
        crash_fraction=0.5,
        duration_s=1800,
        cursor_hz=0,
    )
    r = simulate_presence(p, seed=1)
    df = r.deliveries
    crash = df.loc[df["kind"] == "expired:crash", "delay_s"]
    clean = df.loc[df["kind"] == "left:clean", "delay_s"]
    assert len(crash) > 50 and len(clean) > 50
    # A crash is seen between timeout − heartbeat and timeout (+ one transit) after it.
    assert crash.min() >= p.timeout_s - p.heartbeat_s - 1e-9
    assert crash.max() <= p.timeout_s + 1.0
    assert clean.max() < 1.0  # one transit
    s = r.summary.extra
    assert s["false_offline"] == 0  # no loss, heartbeat well inside the timeout
    assert s["crash_detection_p50_s"] == pytest.approx(45, abs=5)  # T − H/2 on average


def test_loss_causes_false_offline_and_shorter_heartbeats_cure_it() -> None:
    base = PresenceParams(
        viewers=20, resources=5, loss=0.1, duration_s=3600, cursor_hz=0, session_mean_s=1e6
    )
    slow = simulate_presence(base, seed=2).summary.extra
    fast = simulate_presence(base.with_(heartbeat_s=15), seed=2).summary.extra
    # One lost heartbeat out of two per timeout window is enough at H = T/2.
    assert slow["false_offline_per_hour"] > 2
    assert fast["false_offline_per_hour"] < slow["false_offline_per_hour"] / 3
    assert slow["rejoins"] <= slow["false_offline"]


def test_interpolation_beats_snapping_and_higher_rates_shrink_the_error() -> None:
    p = PresenceParams(viewers=2, resources=1, duration_s=30, cursor_pairs=4, cursor_window_s=20)
    five = simulate_presence(p.with_(throttle_hz=5), seed=0).summary.extra
    ten = simulate_presence(p.with_(throttle_hz=10), seed=0).summary.extra
    for s in (five, ten):
        assert s["cursor_interp_error_px_p95"] < s["cursor_snap_error_px_p95"]
        assert s["cursor_interp_jump_px_p95"] < s["cursor_snap_jump_px_p95"]
    assert ten["cursor_interp_error_px_p95"] < five["cursor_interp_error_px_p95"]
    assert ten["cursor_display_delay_ms"] < five["cursor_display_delay_ms"]


def test_same_seed_same_result_and_per_client_consistency() -> None:
    p = PresenceParams(viewers=5, resources=3, loss=0.05, **FAST)
    a = simulate_presence(p, seed=7).summary.to_dict()
    b = simulate_presence(p, seed=7).summary.to_dict()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a["per_client_msgs_per_s"] == pytest.approx(a["server_msgs_per_s"] / 15)


def test_store_write_load_arithmetic() -> None:
    w = store_write_load(
        heartbeats_per_s=100,
        joins_per_s=2,
        leaves_per_s=1,
        expiries_per_s=1,
        cursor_updates_per_s=1000,
        db_commits_per_s=1000,
        ttl_ops_per_s=10000,
    )
    assert w["db_writes_per_s"] == 104
    assert w["db_writes_with_cursors_per_s"] == 1104
    assert w["ttl_ops_per_s"] == 103  # expiry is free in a TTL store
    assert w["db_utilisation"] == pytest.approx(0.104)
    assert w["ttl_utilisation"] == pytest.approx(0.0103)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"viewers": 0}, "viewers must be >= 1"),
        ({"resources": 1.5}, "resources must be a whole number, got 1.5"),
        ({"heartbeat_s": 0}, "heartbeat_s must be > 0"),
        ({"timeout_s": -1}, "timeout_s must be > 0"),
        ({"cursor_hz": -1}, "cursor_hz must be >= 0"),
        ({"throttle_hz": float("nan")}, "throttle_hz must be finite, got nan"),
        ({"loss": 1.0}, r"loss must be in \[0, 1\)"),
        ({"duration_s": 0}, "duration_s must be > 0, got 0"),
        ({"crash_fraction": 1.5}, r"crash_fraction must be in \[0, 1\]"),
        ({"cursor_engine": "gpu"}, "cursor_engine must be"),
        ({"viewers": 1000, "resources": 1000}, "viewers × resources must be <= 200,000"),
    ],
)
def test_invalid_params_raise_clear_errors(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PresenceParams(**change)  # type: ignore[arg-type]


def test_bad_seed_and_params_type() -> None:
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        simulate_presence(PresenceParams(**FAST), seed=-1)
    with pytest.raises(ValueError, match="params must be PresenceParams"):
        simulate_presence({"viewers": 3}, seed=0)  # type: ignore[arg-type]


# --- the CLI -----------------------------------------------------------------------------------
def test_cli_json_has_the_listed_keys(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "simulate", "presence", "--viewers", "6", "--resources", "2", "--heartbeat-s", "15",
        "--timeout-s", "45", "--cursor-hz", "60", "--throttle-hz", "5", "--loss", "0.01",
        "--duration", "120", "--seed", "4", "--json",
    ]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    for key in (
        "server_msgs_per_s",
        "per_client_msgs_per_s",
        "detection_delay_p50_s",
        "detection_delay_p99_s",
        "false_offline_per_hour",
    ):
        assert key in out
    assert out["cursor_msgs_out_per_s"] == pytest.approx(2 * 6 * 5 * 5, rel=0.01)


def test_cli_table_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "presence", "--duration", "30", "--viewers", "3"]) == 0
    assert "detection_delay_p99_s" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "presence", "--loss", "1"])
    assert exc.value.code == 2
    assert "--loss must be in [0, 1), got 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "presence", "--viewers", "0"])
    assert exc.value.code == 2
