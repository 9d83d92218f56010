from __future__ import annotations

import json

import numpy as np
import pytest

from rtsim.cli import main
from rtsim.sim.editing import (
    EditingParams,
    RecordParams,
    simulate_editing,
    simulate_records,
    unique_char,
)


def _schedule(seed: int, strategy: str) -> EditingParams:
    """A random small schedule: editors, typing rate, latency and jitter drawn from seed."""
    rng = np.random.default_rng(seed)
    return EditingParams(
        strategy=strategy,
        editors=int(rng.integers(2, 5)),
        ops_per_s=float(rng.uniform(2, 15)),
        rtt_ms=float(rng.uniform(0, 300)),
        jitter_ms=float(rng.uniform(0, 80)),
        duration_s=0.8,
        delete_fraction=float(rng.uniform(0, 0.5)),
    )


#: Random schedules per strategy: each draws editors, rate, RTT, jitter and delete share.
SCHEDULES = 300


@pytest.mark.parametrize("strategy", ["ot", "crdt"])
def test_converges_on_random_schedules(strategy: str) -> None:
    for seed in range(SCHEDULES):
        r = simulate_editing(_schedule(seed, strategy), seed=seed).summary.extra
        assert r["converged"], (strategy, seed)
        assert r["lost_updates"] == 0, (strategy, seed)


def test_lww_converges_but_loses_edits() -> None:
    r = simulate_editing(EditingParams(strategy="lww", editors=3, duration_s=20), seed=1)
    x = r.summary.extra
    assert x["converged"] and x["lost_updates"] > 0 and x["overwritten_notices"] > 0


def test_same_seed_same_result() -> None:
    p = EditingParams(strategy="ot", editors=3, duration_s=5)
    a = simulate_editing(p, seed=7).summary.to_dict()
    b = simulate_editing(p, seed=7).summary.to_dict()
    assert a == b


def test_optimistic_vs_pessimistic_perceived_latency() -> None:
    x = simulate_editing(EditingParams(strategy="crdt", rtt_ms=80, jitter_ms=0), seed=0)
    e = x.summary.extra
    assert e["perceived_ms_p50_optimistic"] == 0.0
    assert e["perceived_ms_p50_pessimistic"] == pytest.approx(80.0, rel=0.01)  # one RTT


def test_single_editor_nothing_to_correct() -> None:
    e = simulate_editing(EditingParams(strategy="ot", editors=1), seed=0).summary.extra
    assert e["corrected_fraction"] == 0.0 and e["converged"]


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"strategy": "x"}, "strategy"),
        ({"editors": 0}, "editors"),
        ({"ops_per_s": -3}, "ops_per_s must be > 0, got -3"),
        ({"duration_s": 0}, "duration"),
        ({"delete_fraction": 1.0}, "delete_fraction"),
        ({"editors": 100, "ops_per_s": 100, "duration_s": 100}, "too many"),
    ],
)
def test_params_validated(bad: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=match):
        EditingParams(**bad)


def test_unique_chars() -> None:
    chars = {unique_char(k) for k in range(0, 60000, 7)}
    assert len(chars) == len(range(0, 60000, 7))
    with pytest.raises(ValueError):
        unique_char(10**6)


def test_records_same_field_fraction_matches_uniform_theory() -> None:
    for fields in (2, 10):
        x = simulate_records(RecordParams(users=6, fields=fields, duration_s=900), seed=3)
        e = x.summary.extra
        assert e["converged"]
        assert e["same_field_fraction"] == pytest.approx(1 / fields, abs=0.03)


def test_records_skew_raises_collisions() -> None:
    flat = simulate_records(RecordParams(fields=20), seed=1).summary.extra
    hot = simulate_records(RecordParams(fields=20, field_skew=1.5), seed=1).summary.extra
    assert hot["same_field_fraction"] > 2 * flat["same_field_fraction"]


def test_cli_editing_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = "simulate editing --strategy crdt --editors 3 --ops-per-s 4 --rtt-ms 60"
    assert main([*argv.split(), "--duration", "3", "--seed", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for k in (
        "converged",
        "lost_updates",
        "bytes_per_op",
        "convergence_ms_p50",
        "convergence_ms_p99",
    ):
        assert k in out
    assert out["converged"] is True


def test_cli_bad_value_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "editing", "--strategy", "ot", "--editors", "0"])
    assert exc.value.code == 2
