"""Scenario files, `rtsim plan` and its live check."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from rtsim.lab.plan import check_config, plan, smallest_meeting
from rtsim.sim.architecture import ArchitectureParams, simulate_architecture
from rtsim.sim.scenario import ScenarioError, example_names, example_path, parse_scenario

from ..cli_run import run_cli

EXAMPLES = ["chat", "dashboard", "notifications"]


def _base() -> dict[str, Any]:
    return tomllib.loads(example_path("chat").read_text(encoding="utf-8"))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtsim.cli", "plan", *args],
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_examples_are_packaged() -> None:
    assert example_names() == EXAMPLES


def _set(path: str, value: Any) -> Any:
    def mut(d: dict[str, Any]) -> None:
        *head, last = path.split(".")
        for k in head:
            d = d[k]
        if value is _DEL:
            del d[last]
        else:
            d[last] = value

    return mut


_DEL = object()

BAD = [
    ("missing field", _set("users.count", _DEL), "users.count is missing"),
    ("missing room size", _set("rooms.team.size", _DEL), "rooms.team.size is missing"),
    ("wrong unit", _set("targets.p99_ms", "0.5 s"), "targets.p99_ms must be a number in ms"),
    ("wrong type", _set("users.count", 1.5), "users.count must be a whole number"),
    ("negative rate", _set("rooms.team.rate", -1.0), "rooms.team.rate must be >= 0"),
    ("room too small", _set("rooms.team.size", 1), "rooms.team.size must be >= 2"),
    ("unknown broker", _set("broker.name", "rabbitmq"), "broker.name must be one of"),
    ("unknown top-level key", _set("brokers", {}), "brokers is not a top-level key"),
    ("unknown field", _set("users.cnt", 3), "users.cnt is not a field of [users]"),
    ("shares", _set("transports.sse", 0.3), "transports: shares must sum to 1"),
]


@pytest.mark.parametrize(("kind", "mut", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_scenario_one_line(kind: str, mut: Any, message: str) -> None:
    d = copy.deepcopy(_base())
    mut(d)
    with pytest.raises(ScenarioError) as e:
        parse_scenario(d)
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def _toml(d: dict[str, Any]) -> str:
    out: list[str] = []

    def val(v: Any) -> str:
        return json.dumps(v)

    def table(prefix: str, t: dict[str, Any]) -> None:
        scalars = {k: v for k, v in t.items() if not isinstance(v, dict)}
        if prefix:
            out.append(f"[{prefix}]")
        out.extend(f"{k} = {val(v)}" for k, v in scalars.items())
        for k, v in t.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)

    table("", d)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize(("kind", "mut", "message"), BAD[:8], ids=[b[0] for b in BAD[:8]])
def test_cli_bad_scenario_exit_2(kind: str, mut: Any, message: str, tmp_path: Path) -> None:
    d = copy.deepcopy(_base())
    mut(d)
    f = tmp_path / "bad.toml"
    f.write_text(_toml(d), encoding="utf-8")
    r = run_cli("plan", str(f))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith("rtsim plan: error: " + message)


@pytest.mark.parametrize(
    "args",
    [["chat", "--sweep", "brokers=2..4"], ["chat", "--sweep", "instances=5..2"],
     ["chat", "--reps", "0"], ["no-such-example"], ["chat.toml"]],
)  # fmt: skip
def test_cli_bad_arguments_exit_2(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    r = run_cli("plan", *args)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_round_trip_toml_writer_matches_example() -> None:
    d = _base()
    assert parse_scenario(tomllib.loads(_toml(d))) == parse_scenario(d)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_plans_strict_json(name: str) -> None:
    """In this process for two examples, as a process for one (``python -m rtsim.cli``)."""
    args = (name, "--json", "--sweep", "instances=2,4", "--reps", "2")
    r = _cli(*args) if name == "chat" else run_cli("plan", *args)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no progress bar with --json
    out = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"non-strict {c}"))
    assert out["scenario"] == name
    assert [row["instances"] for row in out["rows"]] == [2, 4]
    for row in out["rows"]:
        for key in ("p50_ms", "p95_ms", "p99_ms", "p50_ci_ms", "p99_ci_ms",
                    "instance_utilisation", "broker_utilisation", "memory_mib_per_instance",
                    "bandwidth_mbit_s_per_instance", "saturates_first", "meets"):  # fmt: skip
            assert key in row
        assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
    a, b = out["rows"]
    # twice the instances: half the connections and per-instance work each
    assert b["connections_per_instance"] == pytest.approx(a["connections_per_instance"] / 2, 1e-3)
    assert b["memory_mib_per_instance"] < a["memory_mib_per_instance"]
    assert b["bandwidth_mbit_s_per_instance"] == pytest.approx(
        a["bandwidth_mbit_s_per_instance"] / 2
    )
    assert "smallest" in out and out["notes"]


def test_table_output_names_smallest() -> None:
    r = run_cli("plan", "notifications", "--reps", "2")
    assert r.returncode == 0, r.stderr
    assert "smallest configuration" in r.stdout or "no configuration" in r.stdout
    assert "simulated" in r.stdout and "peak window" in r.stdout


def _row(k: int, **meets: bool) -> dict[str, Any]:
    m = {"p50": True, "p99": True, "instance_cpu": True, "broker_cpu": True,
         "connections": True, "memory": True}  # fmt: skip
    m.update(meets)
    return {"instances": k, "meets": m}


def test_smallest_meeting_logic() -> None:
    rows = [_row(2, p99=False), _row(3, memory=False), _row(4), _row(6), _row(5)]
    assert smallest_meeting(rows) == 4
    assert smallest_meeting([_row(2, connections=False)]) is None
    assert smallest_meeting([]) is None


def test_smallest_by_connection_limit_is_derivable() -> None:
    """Only the connection limit binds: smallest k = ceil(clients / max_connections)."""
    d = {
        "users": {"count": 10_000},
        "user_channel": {"rate": 0.01},
        "instances": {"count": 1, "max_connections": 3_000, "memory_mib": 1e6},
        "disconnects": {"per_hour": 0.0},
        "peak": {"duration_s": 20.0},
    }
    s = parse_scenario(d)
    pl = plan(s, range(1, 7), reps=2)
    assert pl.smallest == 4  # ceil(10,000 / 3,000)
    assert [r["meets"]["connections"] for r in pl.rows] == [False] * 3 + [True] * 3
    assert all(r["meets"]["p50"] and r["meets"]["p99"] for r in pl.rows)


def test_scenario_mapping() -> None:
    s = parse_scenario(_base())
    p = s.to_params()
    assert p.clients == round(20_000 * 0.5 * 1.5)
    per_client = s.deliveries_per_client()
    assert p.topic_rate == pytest.approx(sum(v for k, v in per_client.items() if "rooms" in k))
    assert 1 <= p.topics <= p.clients


def test_broadcast_rate_zero_keeps_results_and_engines_agree() -> None:
    base = ArchitectureParams(clients=400, duration_s=30, instances=2, topics=4, fault_at_s=-1)
    a = simulate_architecture(base, 1, keep_deliveries=False).summary
    b = simulate_architecture(base.with_(broadcast_rate=0.0), 1, keep_deliveries=False).summary
    assert a == b
    bc = base.with_(broadcast_rate=0.5, user_rate=0.0, topic_rate=0.0)
    bulk = simulate_architecture(bc, 2, mode="bulk", keep_deliveries=True)
    ev = simulate_architecture(bc, 2, mode="events")
    assert set(bulk.deliveries["channel"]) == {"broadcast"}
    assert bulk.summary.deliveries == ev.summary.deliveries  # every client gets each message
    assert bulk.summary.deliveries == bulk.summary.extra["published"] * 400
    assert bulk.summary.p50_ms == pytest.approx(ev.summary.p50_ms, rel=0.1)


def test_check_config_scales_down() -> None:
    for name in EXAMPLES:
        s = parse_scenario(tomllib.loads(example_path(name).read_text(encoding="utf-8")))
        c = check_config(s, 200)
        assert c["clients"] <= 200 and 1 <= c["channels"] <= 20
        assert c["rate"] * c["clients"] / c["channels"] <= 4000 + 1e-9


@pytest.mark.slow
def test_check_runs_live_tiny() -> None:
    r = _cli("dashboard", "--check", "--check-clients", "20", "--check-duration", "1", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["repeats"] == 3 and len(out["measured_runs"]) == 3
    metrics = {row["metric"]: row for row in out["comparison"]}
    assert {"p50_ms", "p95_ms", "p99_ms", "lost"} <= set(metrics)
    assert metrics["p50_ms"]["measured"] > 0 and metrics["p50_ms"]["simulated"] > 0
    assert any("backplane" in n for n in out["notes"])
