from __future__ import annotations

import numpy as np
import pytest

from rtsim.sim.queueing import QueueCase, fifo_station, number_in_system, validate
from rtsim.sim.theory import erlang_c, md1_sojourn, mm1_sojourn, mmc_sojourn


def test_closed_forms() -> None:
    assert mm1_sojourn(0.5, 1.0) == pytest.approx(2.0)
    assert md1_sojourn(0.5, 1.0) == pytest.approx(1.5)
    assert erlang_c(1, 0.7) == pytest.approx(0.7)  # M/M/1: P(wait) = ρ
    assert mmc_sojourn(0.7, 1.0, 1) == pytest.approx(mm1_sojourn(0.7, 1.0))
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="unstable"):
        mm1_sojourn(2.0, 1.0)


def test_fifo_station_single_and_multi_server_agree_with_a_loop() -> None:
    rng = np.random.default_rng(1)
    a = np.cumsum(rng.exponential(1.0, 2000))
    s = rng.exponential(0.8, 2000)
    for c in (1, 3):
        start, finish = fifo_station(a, s, c)
        free = [0.0] * c
        for i in range(len(a)):
            k = int(np.argmin(free))
            st = max(a[i], free[k])
            free[k] = st + s[i]
            assert start[i] == pytest.approx(st)
        assert np.all(finish >= a)
    assert number_in_system(np.array([0.0, 1.0, 5.0]), np.array([2.0, 3.0, 6.0])).tolist() == [
        1,
        2,
        1,
    ]


@pytest.mark.parametrize("servers", [1, 3])
@pytest.mark.parametrize("rho", [0.2, 0.9, 1.3])
def test_number_in_system_counts_jobs_not_done(servers: int, rho: float) -> None:
    rng = np.random.default_rng(int(rho * 10) + servers)
    a = np.sort(rng.uniform(0, 100, 3000))
    s = rng.exponential(rho * servers / 30, 3000)
    s[rng.random(3000) < 0.2] = 0.0  # some jobs take no time
    _, f = fifo_station(a, s, servers)
    # by definition: jobs that arrived by a_i (itself included) minus those done by a_i
    ref = [int(np.sum(a <= x) - np.sum(f <= x)) for x in a]
    got = number_in_system(a, f)
    assert got.tolist() == ref
    assert got.max() > (1 if rho > 0.5 else 0)


def test_fifo_station_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="sorted"):
        fifo_station(np.array([1.0, 0.0]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="servers must be >= 1"):
        fifo_station(np.array([1.0]), np.array([1.0]), 0)
    with pytest.raises(ValueError, match="unstable"):
        QueueCase("x", arrival_rate=1.0, service_rate=1.0)


@pytest.mark.slow
def test_validate_passes_every_case() -> None:
    """The same checks as ``rtsim validate``: within 2% and the closed form inside the CI.

    Serially (workers=1): the results do not depend on the workers (tests/sim/test_runner.py
    checks serial == parallel bit for bit), and a process pool here only adds start-up
    under a parallel test run."""
    df = validate(workers=1, progress=False)
    assert len(df) == 8
    assert df["passed"].all(), df.to_string()
    means = df[df["check"].str.startswith("mean")]
    assert (means["rel_err"] < 0.02).all() and means["in_ci"].all()
