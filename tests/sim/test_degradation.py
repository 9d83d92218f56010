"""The simulated server degrades its clients with the live server's own detector."""

from __future__ import annotations

import itertools

import pytest

from rtsim.sim.reconnect import DegradeParams, simulate_degradation

BASE = DegradeParams(clients=300, duration_s=10, push_us=50)  # 300 x 50 us = 15 ms/message


def test_degraded_clients_respond_to_load() -> None:
    light = simulate_degradation(DegradeParams(**{**BASE.__dict__, "rate": 5})).summary
    heavy = simulate_degradation(DegradeParams(**{**BASE.__dict__, "rate": 200})).summary
    assert light["degraded_clients"] == 0 and light["overload_changes"] == 0
    assert heavy["degraded_clients"] > 0 and heavy["overloaded_s"] > 0
    for s in (light, heavy):  # every client gets every message: polling is lossless
        assert s["lost"] == 0
        assert s["delivered"] == s["clients"] * s["messages"]


def test_degrading_beats_falling_behind() -> None:
    on = simulate_degradation(DegradeParams(**{**BASE.__dict__, "rate": 200})).summary
    off = simulate_degradation(
        DegradeParams(**{**BASE.__dict__, "rate": 200, "overload_lag_ms": 0})
    ).summary
    assert off["degraded_clients"] == 0
    assert on["p50_ms"] < off["p50_ms"]


def test_changes_respect_the_hold_time() -> None:
    r = simulate_degradation(DegradeParams(**{**BASE.__dict__, "rate": 200, "hold_s": 3}))
    times = list(r.overload["time"])
    assert len(times) >= 1
    assert all(b - a >= 3 for a, b in itertools.pairwise(times))


def test_bad_params_are_refused() -> None:
    with pytest.raises(ValueError):
        DegradeParams(degrade_poll_s=0)
