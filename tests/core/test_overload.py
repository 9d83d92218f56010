"""The overload detector: hysteresis, hold time, and the policy's degrade/recover moves."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsim.core.overload import Change, OverloadDetector
from rtsim.core.reconnect import (
    Connect,
    Degrade,
    FellBack,
    InvalidTransition,
    Opened,
    ReconnectPolicy,
    Recover,
    SetTimer,
    Start,
    State,
    TimerFired,
)
from rtsim.core.transport import Transport


def feed(d: OverloadDetector, lags: list[float], t0: float = 0.0, dt: float = 0.1) -> list[Change]:
    out = []
    for i, lag in enumerate(lags):
        c = d.sample(t0 + i * dt, lag)
        if c is not None:
            out.append(c)
    return out


def test_enters_only_after_k_high_samples() -> None:
    d = OverloadDetector(enter_lag_ms=100, enter_samples=3, hold_s=0)
    assert feed(d, [500, 500, 10, 500, 500]) == []  # runs of 2 only
    assert not d.overloaded
    assert d.sample(1.0, 500) is not None  # the third in a row
    assert d.overloaded


def test_leaves_only_below_the_lower_threshold() -> None:
    d = OverloadDetector(enter_lag_ms=100, enter_samples=1, exit_samples=2, hold_s=0)
    assert d.exit_lag_ms == 50
    assert d.sample(0.0, 150) == Change(True, 0.0)
    # Between the thresholds (50..100 ms) is neither: it stays overloaded.
    assert feed(d, [80] * 50, t0=1.0) == []
    assert d.overloaded
    changes = feed(d, [40, 40], t0=10.0)
    assert [c.overloaded for c in changes] == [False]


def test_queue_fill_counts_as_load() -> None:
    d = OverloadDetector(enter_samples=1, hold_s=0)
    assert d.sample(0.0, 0.0, queue_fill=0.9) is not None
    assert d.sample(0.1, 0.0, queue_fill=0.3) is None  # not yet low enough to leave
    assert d.overloaded


def test_hold_time_delays_the_way_back() -> None:
    d = OverloadDetector(enter_lag_ms=100, enter_samples=1, exit_samples=1, hold_s=5)
    assert d.sample(0.0, 500) is not None
    assert d.sample(1.0, 0) is None  # low, but within the hold
    assert d.overloaded
    assert d.sample(5.0, 0) == Change(False, 5.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"enter_lag_ms": 0},
        {"enter_lag_ms": float("nan")},
        {"enter_lag_ms": 100, "exit_lag_ms": 200},
        {"enter_queue_fill": 0.1, "exit_queue_fill": 0.5},
        {"enter_samples": 0},
        {"hold_s": -1},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        OverloadDetector(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    lags=st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=300),
    steps=st.lists(st.floats(0.001, 2.0), min_size=1, max_size=300),
    hold=st.floats(0, 10),
    k_in=st.integers(1, 5),
    k_out=st.integers(1, 5),
)
def test_never_flaps_faster_than_its_hold_time(
    lags: list[float], steps: list[float], hold: float, k_in: int, k_out: int
) -> None:
    d = OverloadDetector(enter_samples=k_in, exit_samples=k_out, hold_s=hold)
    now = 0.0
    changes: list[Change] = []
    for i, lag in enumerate(lags):
        now += steps[i % len(steps)]
        c = d.sample(now, lag)
        if c is not None:
            changes.append(c)
    for a, b in itertools.pairwise(changes):
        assert b.at - a.at >= hold
        assert a.overloaded != b.overloaded  # every change is a real change
    assert d.changes == len(changes)
    if changes:
        assert d.overloaded == changes[-1].overloaded


# --- the client's side: the reconnect policy's polling rung ---------------------------
def open_policy() -> ReconnectPolicy:
    p = ReconnectPolicy(rng=np.random.default_rng(0), cascade=(Transport.WEBSOCKET, Transport.SSE))
    p.handle(Start(), 0.0)
    p.handle(Opened(), 0.0)
    return p


def test_degrade_polls_at_the_servers_interval_then_recovers_to_the_top() -> None:
    p = open_policy()
    actions = p.handle(Degrade(7.0), 1.0)
    assert FellBack(Transport.WEBSOCKET, Transport.POLLING) in actions
    timer = next(a for a in actions if isinstance(a, SetTimer))
    assert 0 <= timer.delay <= 7.0
    assert p.poll_interval_s == 7.0
    assert p.handle(TimerFired(), timer.at) == [Connect(Transport.POLLING, 0)]
    p.handle(Opened(), timer.at)
    p.handle(Recover(), timer.at + 7)
    assert p.state is State.WAITING
    connect = p.handle(TimerFired(), timer.at + 8)
    assert connect == [Connect(Transport.WEBSOCKET, 0)]


def test_a_503_degrade_while_connecting_also_polls() -> None:
    p = ReconnectPolicy(rng=np.random.default_rng(1))
    p.handle(Start(), 0.0)
    p.handle(Degrade(None), 0.1)  # keeps the policy's own interval
    assert p.transport is Transport.POLLING and p.poll_interval_s == 5.0
    with pytest.raises(InvalidTransition):
        p.handle(Recover(), 0.2)  # only an open poll loop can hear of recovery
