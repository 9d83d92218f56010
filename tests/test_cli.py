import json
import subprocess
import sys

import pytest

from rtsim.cli import main

KEYS = {
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "deliveries",
    "deliveries_per_s",
    "bytes_per_message",
    "requests_per_message",
}


@pytest.mark.parametrize("transport", ["websocket", "sse", "long-polling", "polling"])
def test_simulate_transports_json(transport: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "simulate",
        "transports",
        "--transport",
        transport,
        "--clients",
        "20",
        "--rate",
        "5",
        "--rtt-ms",
        "40",
        "--duration",
        "20",
        "--seed",
        "3",
        "--json",
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= KEYS
    assert out["deliveries"] > 0 and out["p50_ms"] >= 20
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == out  # same seed, same figures


def test_simulate_transports_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["simulate", "transports", "--transport", "sse", "--clients", "5", "--duration", "5"])
        == 0
    )
    out = capsys.readouterr().out
    assert "p99_ms" in out and "sse" in out


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--transport", "smoke"], "invalid choice: 'smoke'"),
        (["--transport", "sse", "--clients", "0"], "must be >= 1, got 0"),
        (["--transport", "sse", "--rate", "-3"], "must be > 0, got -3"),
        (["--transport", "sse", "--rtt-ms", "abc"], "expected a number"),
        (["--transport", "sse", "--loss", "1.5"], r"loss must be in \[0, 1\)"),
        (["--transport", "sse", "--clients", "2", "--channels", "3"], "must not exceed clients"),
    ],
)
def test_bad_parameters_exit_nonzero_with_a_reason(args: list[str], reason: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rtsim.cli", "simulate", "transports", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("rtsim")]
    assert lines and __import__("re").search(reason, lines[-1])
