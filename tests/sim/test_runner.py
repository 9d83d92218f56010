import math

import numpy as np
import pandas as pd
import pytest

from rtsim.sim.runner import mean_ci, replicate, replication_seeds, sweep
from rtsim.sim.transports import TransportParams, simulate_transports

SMALL = TransportParams(clients=20, rate=5, duration_s=10, loss=0.01)


def test_serial_and_parallel_runs_are_bit_identical() -> None:
    serial = replicate(simulate_transports, SMALL, reps=4, seed=3, progress=False)
    parallel = replicate(simulate_transports, SMALL, reps=4, seed=3, workers=2, progress=False)
    pd.testing.assert_frame_equal(serial, parallel)
    again = replicate(simulate_transports, SMALL, reps=4, seed=3, progress=False)
    pd.testing.assert_frame_equal(serial, again)


def test_replications_are_independent() -> None:
    df = replicate(simulate_transports, SMALL, reps=3, seed=0, progress=False)
    assert df["mean_ms"].nunique() == 3
    assert list(df["rep"]) == [0, 1, 2]


def test_sweep_is_tidy_with_confidence_intervals() -> None:
    df = sweep(
        simulate_transports,
        SMALL,
        {"transport": ["websocket", "long-polling"], "rtt_ms": [20.0, 100.0]},
        metrics=("mean_ms", "requests_per_message"),
        reps=3,
        seed=1,
        progress=False,
    )
    assert len(df) == 2 * 2 * 2
    assert set(df.columns) >= {"transport", "rtt_ms", "metric", "mean", "ci_low", "ci_high", "n"}
    m = df[df.metric == "mean_ms"].set_index(["transport", "rtt_ms"])["mean"]
    assert m[("long-polling", 100.0)] > m[("websocket", 100.0)] > m[("websocket", 20.0)]
    assert (df["ci_low"] <= df["mean"]).all() and (df["mean"] <= df["ci_high"]).all()
    par = sweep(
        simulate_transports,
        SMALL,
        {"transport": ["websocket", "long-polling"], "rtt_ms": [20.0, 100.0]},
        metrics=("mean_ms", "requests_per_message"),
        reps=3,
        seed=1,
        workers=2,
        progress=False,
    )
    pd.testing.assert_frame_equal(df, par)


def test_mean_ci_matches_student_t() -> None:
    m, h = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5
    assert h == pytest.approx(3.182446 * np.std([1, 2, 3, 4], ddof=1) / 2, rel=1e-5)
    assert math.isnan(mean_ci([1.0])[1])
    assert math.isnan(mean_ci([])[0])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: replication_seeds(0, 0), "reps must be >= 1"),
        (lambda: replication_seeds(-1, 2), "seed must be a non-negative integer"),
        (
            lambda: sweep(simulate_transports, SMALL, {"rate": []}),
            "grid field 'rate' has no values",
        ),
        (lambda: sweep(simulate_transports, SMALL, {"rate": [-1.0]}), "rate must be > 0"),
        (lambda: replicate(simulate_transports, SMALL, reps=2, workers=-1), "workers must be >= 0"),
        (
            lambda: sweep(simulate_transports, SMALL, {"rate": [1.0]}, metrics=("nope",), reps=1),
            "unknown metric 'nope'",
        ),
    ],
)
def test_bad_arguments(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
