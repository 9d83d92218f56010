from __future__ import annotations

import pytest

from rtsim.cli import main
from rtsim.sim.architecture import (
    ArchitectureParams,
    run_bulk,
    run_events,
    simulate_architecture,
)
from rtsim.sim.runner import mean_ci, replicate

SMALL = ArchitectureParams(clients=2000, duration_s=120, instances=4)


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["redis-streams", "redis-pubsub"])
def test_bulk_and_per_event_modes_agree(broker: str) -> None:
    p = SMALL.with_(broker=broker)
    bulk = replicate(run_bulk, p, reps=4, seed=3, progress=False)
    events = replicate(run_events, p, reps=4, seed=3, progress=False)
    for metric in ("p50_ms", "p99_ms"):
        mb, hb = mean_ci(bulk[metric].to_numpy())
        me, he = mean_ci(events[metric].to_numpy())
        assert abs(mb - me) <= hb + he, (metric, mb, hb, me, he)
    # Same inputs, same semantics: the same deliveries and losses.
    assert (bulk["lost"] == events["lost"]).all()
    assert (bulk["expected_deliveries"] == events["expected_deliveries"]).all()


def test_pubsub_loses_what_streams_replay() -> None:
    streams = simulate_architecture(SMALL, 1).summary
    pubsub = simulate_architecture(SMALL.with_(broker="redis-pubsub"), 1).summary
    assert streams.lost == 0 and streams.extra["replayed"] > 0
    assert pubsub.lost == streams.extra["replayed"]
    assert pubsub.extra["replayed"] == 0


def test_short_history_loses_messages_as_gaps() -> None:
    p = SMALL.with_(max_len=5, disconnects_per_hour=30)
    s = simulate_architecture(p, 1).summary
    assert s.lost > 0 and s.extra["replayed"] > 0


def test_fault_moves_connections() -> None:
    s = simulate_architecture(SMALL, 1).summary
    assert s.extra["peak_connections_per_instance"] > 2000 // 4
    nofault = simulate_architecture(SMALL.with_(fault_at_s=-1), 1).summary
    assert nofault.extra["peak_connections_per_instance"] == 500


def test_reproducible_and_frame() -> None:
    a = simulate_architecture(SMALL.with_(broker="kafka"), 5, keep_deliveries=True)
    b = simulate_architecture(SMALL.with_(broker="kafka"), 5)
    assert a.summary == b.summary
    assert len(a.deliveries) == a.summary.deliveries
    assert set(a.deliveries["replayed"].unique()) <= {True, False}
    assert b.deliveries.empty  # not kept unless asked for


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"clients": 0}, "clients must be >= 1"),
        ({"user_rate": -1.0}, "user_rate must be >= 0"),
        ({"broker": "zeromq"}, "unknown broker 'zeromq'"),
        ({"instances": 0}, "instances must be >= 1"),
        ({"user_rate": 0.0, "topic_rate": 0.0}, "nothing is published"),
    ],
)
def test_invalid_params(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ArchitectureParams(**changes)  # type: ignore[arg-type]


def test_cli(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["simulate", "architecture", "--clients", "300", "--duration", "30", "--json"])
    assert rc == 0
    assert '"fan_out_ratio"' in capsys.readouterr().out
    assert main(["simulate", "architecture", "--clients", "5", "--topics", "10"]) == 2
    with pytest.raises(SystemExit):
        main(["simulate", "architecture", "--broker", "zeromq"])
    capsys.readouterr()
    assert main(["simulate", "architecture", "--workers", "2", "--mode", "events"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--workers > 1 needs --mode bulk" in err
    with pytest.raises(SystemExit):
        main(["simulate", "architecture", "--workers", "0"])
    assert "--workers must be >= 1, got 0" in capsys.readouterr().err
