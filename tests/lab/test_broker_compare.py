"""The Redis Streams comparison (rtsim.lab.broker_compare) at a tiny size: the model is set
up like the live run, its command line reproduces its figures, and a live run with two
instances on a real Redis crosses the broker (needs Redis on 127.0.0.1:6379, else skipped;
the full comparison is benchmarks/bench_compare_broker.py)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from rtsim.lab import live as L
from rtsim.lab.broker_compare import (
    RedisHop,
    compare_broker,
    measure_redis_hop,
    model_command,
    model_params,
    model_stages,
)
from rtsim.sim.architecture import simulate_architecture
from rtsim.sim.stages import StageCalibration

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def _committed_calibration() -> StageCalibration:
    data = json.loads((RESULTS / "compare_stages.json").read_text())
    return StageCalibration.from_dict(data["calibration"]["model"])


HOP = RedisHop(p50_ms=0.4, p99_ms=2.0, mean_ms=0.5, samples=100, rate=100.0, source="test")


def test_model_is_set_up_like_the_live_run() -> None:
    p = model_params(HOP, subscribers=30, rate=20.0, duration_s=5.0)
    assert (p.clients, p.instances, p.topics, p.topic_rate) == (60, 2, 1, 20.0)
    assert p.dc_transit_ms == pytest.approx(0.2) and p.fault_time is None
    assert p.user_rate == 0 and p.disconnects_per_hour == 0
    s = simulate_architecture(p, 0, keep_deliveries=False).summary
    assert s.lost == 0 and s.extra["fan_out_ratio"] == pytest.approx(60)
    # Every delivery crosses the broker hop twice (publisher → broker → instance).
    assert s.p50_ms >= HOP.p50_ms
    faster = model_params(HOP, subscribers=30, rate=20.0, duration_s=5.0, cpu_write_us=0.0)
    st, st0 = model_stages(p, 30), model_stages(faster, 30)
    assert st0["fanout"] < st["fanout"] and st0["publish_to_fanout"] == st["publish_to_fanout"]


def test_model_command_reproduces_the_figures() -> None:
    p = model_params(HOP, subscribers=10, rate=10.0, duration_s=5.0, cpu_write_us=12.5)
    cmd = [*model_command(p).split()[1:], "--seed", "3", "--json"]
    out = subprocess.run(
        [sys.executable, "-m", "rtsim.cli", *cmd], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    want = simulate_architecture(p, 3, keep_deliveries=False).summary
    assert got["p50_ms"] == pytest.approx(want.p50_ms)
    assert got["p99_ms"] == pytest.approx(want.p99_ms)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"subscribers": 0}, "subscribers must be >= 1"),
        ({"rates": ()}, "rates must be > 0"),
        ({"rates": (10.0, -1.0)}, "rates must be > 0"),
        ({"repeats": 0}, "repeats must be >= 1"),
        ({"duration_s": 0.0}, "duration_s must be > 0"),
        ({"settle_s": -1.0}, "settle_s must be >= 0"),
    ],
)
def test_bad_arguments(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compare_broker(**kw)  # type: ignore[arg-type]


@pytest.mark.redis
@pytest.mark.slow
def test_two_instances_over_redis_streams_tiny() -> None:
    if not L.redis_running():
        pytest.skip("no Redis on 127.0.0.1:6379 (CI's .ci/run starts one)")
    hop = measure_redis_hop(samples=30)
    assert hop.samples == 30 and 0 < hop.p50_ms <= hop.p99_ms
    c = compare_broker(
        subscribers=8,
        rates=(20.0,),
        repeats=2,
        duration_s=1.0,
        hop_samples=30,
        sim_duration_s=5,
        stage_model=_committed_calibration(),
    )
    assert set(c.table()["model"]) == {"hop", "hop+cpu", "stages+hop"}
    assert len(c.hop.quantiles_ms) == 101 and c.calibration["relay_us"] >= 5.0
    rows = c.table()
    assert set(rows["metric"]) == {"p50_ms", "p99_ms"} and len(rows) == 2 * len(set(rows["model"]))
    assert (rows["lost"] == 0).all()
    for r in c.rows:
        assert len(r["repeats_values"]) == 2 and all(v > 0 for v in r["repeats_values"])
        assert r["measured"] == pytest.approx(sum(r["repeats_values"]) / 2)
        assert r["measured_ci_low"] <= r["measured"] <= r["measured_ci_high"]
        assert r["rel_error"] == pytest.approx((r["simulated"] - r["measured"]) / r["measured"])
        assert isinstance(r["passes"], bool) and math.isfinite(r["simulated"])
    # The stage records of both instances were joined: A received → B fanned out.
    detail = c.stage_detail["20"]
    assert detail["server_to_fanout"]["n"] == detail["end_to_end"]["n"] > 0
    assert detail["server_to_fanout"]["p50_ms"] >= 0
    assert set(c.stages["20"]) >= {"measured", "hop", "stages+hop"}
    assert c.stages["20"]["stages+hop"]["publish_to_fanout"] >= min(c.hop.quantiles_ms)
    # The backplane's keys are gone.
    r = redis.Redis(port=6379)
    try:
        assert not list(r.scan_iter(match=f"{{{c.config['prefix']}}}:*"))
    finally:
        r.close()


BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_compare_broker.py"


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--rates", "10,x"], "--rates"),
        (["--rates", "0"], "--rates"),
        (["--repeats", "0"], "--repeats"),
        (["--subscribers", "many"], "--subscribers"),
        (["--redis", "nohost"], "--redis"),
        (["--settle", "-1"], "--settle"),
    ],
)
def test_bench_bad_parameters_one_line_exit_2(args: list[str], flag: str) -> None:
    r = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and flag in r.stderr
    assert "Traceback" not in r.stderr
