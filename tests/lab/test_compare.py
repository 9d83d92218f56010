"""Calibration and the sim-vs-live comparison run end to end against a real server process.

Accuracy is a measurement (benchmarks/bench_compare.py), not a test; here we check the
plumbing: costs are measured, both sides produce figures, and nothing is lost."""

import json
import math
import subprocess
import sys

import pytest

from rtsim.lab.compare import calibrate, compare, sim_params, start_server


def test_calibrate_and_compare_websocket() -> None:
    with start_server() as (url, pid):
        cal = calibrate(url, pid, "websocket", subscribers=40, rate=20, duration_s=1.5)
        assert cal.server_cpu_per_delivery_us > 0 and cal.client_cpu_per_delivery_us > 0
        assert cal.capacity_deliveries_per_s() > 0
        df = compare(url, pid, cal, subscribers=40, rate=10, duration_s=1.5)
    assert list(df["metric"]) == ["p50_ms", "p95_ms", "p99_ms", "deliveries_per_s"]
    assert (df["lost"] == 0).all()
    assert all(math.isfinite(v) and v > 0 for v in df["simulated"])
    assert all(math.isfinite(v) and v > 0 for v in df["measured"])
    p = sim_params(cal, 40, 10, 1.5)
    assert p.client_processes == cal.client_processes and p.cores == cal.cores


def test_cli_compare_json() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rtsim.cli",
            "compare",
            "--transport",
            "sse",
            "--subscribers",
            "20",
            "--rate",
            "10",
            "--duration",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    d = json.loads(out.stdout)
    assert d["calibration"]["transport"] == "sse"
    assert {r["metric"] for r in d["comparison"]} == {
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "deliveries_per_s",
    }


def test_small_comparison_runs_model_and_server_side_by_side() -> None:
    """Notebook 07's controls: one small run gives every metric from both sides."""
    from rtsim.lab.compare import small_comparison

    df = small_comparison("sse", subscribers=20, rate=5, duration_s=1.0)
    assert set(df["metric"]) == {"p50_ms", "p95_ms", "p99_ms", "deliveries_per_s"}
    assert (df["transport"] == "sse").all()
    assert (df["simulated"] > 0).all() and (df["measured"] > 0).all()
    assert int(df["lost"].max()) == 0


def test_small_comparison_rejects_an_unknown_transport_before_starting_a_server() -> None:
    from rtsim.lab.compare import small_comparison

    with pytest.raises(ValueError):
        small_comparison("carrier-pigeon")
