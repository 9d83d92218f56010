"""The warm-up law (rtsim.sim.warmup): fitted back from runs made by a known law, and
charged in the stage model as a slower start that warms up over the burst's work."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from rtsim.sim.stage_calibration import CpuRun
from rtsim.sim.stages import simulate_stages
from rtsim.sim.warmup import extra_us, fit_warmup, hot_work_us, warmup_amplitude

from .test_stages import _EXACT, FLAT

UNIT, TAU = 10.0, 4000.0  # µs per delivery when busy; µs of work to warm up by 1/e


def _run(rate: float, n: int, amp: float) -> CpuRun:
    """Two seconds at ``rate`` to ``n`` subscribers whose server pays the law at ``amp``."""
    m = round(rate * 2)
    w = n * UNIT
    per_msg = w + amp * TAU * (1 - math.exp(-w / TAU))
    return CpuRun(rate, n, 2, m, m * per_msg * 1e-6, m * 10e-6 * n / 2 + m * 5e-6, m * 5e-6)


def test_extra_is_a_factor_for_short_bursts_and_a_lump_for_long_ones() -> None:
    assert extra_us(0.5, TAU, 0.0, 10.0) == pytest.approx(0.5 * 10.0, rel=1e-2)
    assert extra_us(0.5, TAU, 0.0, 1e9) == pytest.approx(0.5 * TAU)
    # Split anywhere, the parts add up to the whole (the state carries across jobs).
    whole = extra_us(0.5, TAU, 0.0, 3000.0)
    assert extra_us(0.5, TAU, 0.0, 1000.0) + extra_us(0.5, TAU, 1000.0, 2000.0) == (
        pytest.approx(whole)
    )
    assert extra_us(0.0, TAU, 0.0, 100.0) == 0.0
    w = hot_work_us(2000.0 + whole * 2000.0 / 3000.0, 0.5, TAU)
    assert w + extra_us(0.5, TAU, 0.0, w) == pytest.approx(2000.0 + whole * 2000.0 / 3000.0)


def test_fit_recovers_the_law_from_runs_at_several_rates_and_two_sizes() -> None:
    """Runs at 200 subscribers (gaps about 1, 8 and 37 ms) and one at 1,000 that slept as
    long as the 37 ms one: busy cost, τ and the amplitudes come back; neither a factor
    (5.2 against 3.3 µs per delivery more after the same sleep) nor a fixed burst (1.3
    against 2.9 ms) fits that pair."""
    runs = [_run(450.0, 200, 0.0), _run(100.0, 200, 0.1), _run(25.0, 200, 0.6)]
    runs.append(_run(20.0, 1000, 0.6))
    assert 1.0 / 1.5 < runs[2].gap_ms("server") / runs[3].gap_ms("server") < 1.5
    law = fit_warmup(runs)["server"]
    gaps, amps, (tau,), (unit,) = law
    assert unit == pytest.approx(UNIT)
    assert tau == pytest.approx(TAU, rel=1e-6)
    assert amps == pytest.approx([0.0, 0.1, 0.6, 0.6], abs=1e-6)
    assert gaps == sorted(gaps)
    assert warmup_amplitude(law, 0.0) == 0.0
    assert warmup_amplitude(law, 1e6) == pytest.approx(0.6)
    assert fit_warmup(runs[:2]) == {}


def test_a_fan_out_after_a_sleep_starts_slow_and_warms_up() -> None:
    """One message to 200 subscribers reaches a server that slept: with A = 1 and τ = 2 ms
    of work the first deliveries take twice their 100 µs and the last ones about their
    own; the fan-out ends about A·τ = 2 ms later, and the server is charged
    A·τ·(1 − e^(−W/τ)) more CPU for the fan-out's W = 20 ms."""
    law = {"server": [[0.1, 1000.0], [1.0, 1.0], [2000.0], [100.0]]}
    cal = replace(FLAT, warmup=law, costs={**FLAT.costs})
    warm = simulate_stages(cal, "websocket", 200, 10.0, 0.1, **_EXACT)
    cold = simulate_stages(FLAT, "websocket", 200, 10.0, 0.1, **_EXACT)
    first = warm[warm["trace"] == 0].sort_values("position")["fanout_to_write"].to_numpy()
    steps = np.diff(first)
    # The second delivery, after 200 µs of work (the receipt's and the first delivery's).
    assert steps[0] == pytest.approx(0.1 + extra_us(1.0, 2000.0, 200.0, 100.0) * 1e-3, rel=1e-6)
    assert steps[0] > 1.8 * 0.1
    assert steps[-1] == pytest.approx(0.1, rel=0.01)
    base = cold[cold["trace"] == 0]["fanout_to_write"].max()
    extra_ms = first[-1] - base
    # The receipt's 0.1 ms of work came first (it moved the fan-out's start instead).
    assert extra_ms == pytest.approx(extra_us(1.0, 2000.0, 100.0, 20_000.0) * 1e-3, rel=1e-6)
    w = 200 * 100.0 + 100.0  # the deliveries and the receipt's 0.1 ms
    assert warm.attrs["cpu_s"]["server"] - cold.attrs["cpu_s"]["server"] == pytest.approx(
        extra_us(1.0, 2000.0, 0.0, w) * 1e-6, rel=1e-6
    )
    # The warmth switch turns it off (one mechanism: work after a sleep costs more).
    off = simulate_stages(cal, "websocket", 200, 10.0, 0.1, warmth=False, **_EXACT)
    np.testing.assert_allclose(off["end_to_end"], cold["end_to_end"])
