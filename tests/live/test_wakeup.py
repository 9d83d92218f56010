"""The wake-up probe: a real child process on loopback, figures per idle gap."""

import math

import pytest

from rtsim.live.wakeup import measure_wakeup


def test_probe_reports_latency_and_cpu_per_gap() -> None:
    w = measure_wakeup(gaps_ms=(5.0, 0.5), samples=5)
    assert w.gaps_ms == [0.5, 5.0]
    assert all(math.isfinite(x) and 0 < x < 1000 for x in w.latency_ms)
    assert all(math.isfinite(x) and x >= 0 for x in w.cpu_us)
    assert w.cpu_at(0.5) == 0.0  # the shortest gap is the baseline


@pytest.mark.parametrize("gaps", [(), (0.0, 1.0), (-1.0,)])
def test_bad_gaps(gaps: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        measure_wakeup(gaps_ms=gaps)


def test_wakeup_cpu_is_beyond_the_shortest_gap_and_never_negative() -> None:
    from rtsim.core.stages import Wakeup

    # A longer gap that measured cheaper (noise: CI's flaky case, 5 samples on a busy
    # machine) costs 0 beyond the shortest gap, not its difference to the cheapest.
    w = Wakeup(gaps_ms=[5.0, 0.5, 50.0], latency_ms=[0.2, 0.1, 0.3], cpu_us=[90.0, 100.0, 160.0])
    assert w.cpu_at(0.5) == 0.0
    assert w.cpu_at(5.0) == 0.0
    assert w.cpu_at(50.0) == 60.0
    assert w.cpu_at(500.0) == 60.0  # beyond the longest probed gap: the longest's
