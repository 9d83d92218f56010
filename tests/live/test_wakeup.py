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
