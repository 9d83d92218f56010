"""The presence tracker and the throttle: properties (hypothesis) and examples."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsim.core import presence as pr
from rtsim.core.presence import (
    TRANSITIONS,
    Emitted,
    Input,
    Join,
    Leave,
    LeaveReason,
    MemberState,
    PresenceTracker,
    PresenceView,
    Throttle,
    Update,
)

TIMEOUT = 60.0


def drive_until(tr: PresenceTracker, t: float, out: list[pr.Event]) -> None:
    """Act as the caller's timer: fire expire() at every requested deadline up to ``t``."""
    while (d := tr.next_deadline()) is not None and d <= t:
        out.extend(tr.expire(d))


# --- the three properties of the issue ---------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(
    timeout=st.floats(1.0, 120.0),
    gaps=st.lists(st.tuples(st.floats(0.0, 0.999), st.floats(0.0, 1.0)), min_size=1, max_size=60),
)
def test_heartbeating_within_timeout_is_never_offline(
    timeout: float, gaps: list[tuple[float, float]]
) -> None:
    tr = PresenceTracker(timeout)
    events: list[pr.Event] = list(tr.join("doc", "alice", {"n": 1}, now=0.0))
    t = 0.0
    for g, probe in gaps:
        nxt = t + g * timeout  # strictly less than the timeout after the previous heartbeat
        events.extend(tr.expire(t + probe * (nxt - t)))  # an impatient caller's extra call
        drive_until(tr, nxt, events)  # the caller's timer, up to the next heartbeat
        t = nxt
        events.extend(tr.heartbeat("doc", "alice", now=t))
    drive_until(tr, t + 0.999 * timeout, events)
    assert [e for e in events if isinstance(e, Leave)] == []
    assert tr.members("doc") == ["alice"]


@settings(max_examples=200, deadline=None)
@given(
    timeout=st.floats(1.0, 120.0),
    beats=st.lists(st.floats(0.0, 0.99), min_size=0, max_size=20),
    probes=st.lists(st.floats(0.0, 5.0), max_size=30),
)
def test_a_client_that_stops_is_offline_exactly_once_within_timeout(
    timeout: float, beats: list[float], probes: list[float]
) -> None:
    tr = PresenceTracker(timeout)
    events: list[pr.Event] = list(tr.join("doc", "bob", now=0.0))
    t = 0.0
    for g in beats:
        t += g * timeout
        events.extend(tr.heartbeat("doc", "bob", now=t))
    last = t
    # The caller wakes at every timer request, and at random extra moments, for a long time.
    times = sorted({last + p * timeout for p in probes} | {last + 5 * timeout})
    for when in times:
        drive_until(tr, when, events)
        events.extend(tr.expire(when))
    leaves = [e for e in events if isinstance(e, Leave)]
    assert len(leaves) == 1
    assert leaves[0].reason is LeaveReason.EXPIRED
    assert leaves[0].client == "bob"
    assert last < leaves[0].at <= last + timeout
    assert tr.next_deadline() is None and len(tr) == 0


OPS = st.lists(
    st.tuples(
        st.sampled_from(["join", "update", "heartbeat", "leave", "expire", "snapshot"]),
        st.sampled_from(["r1", "r2"]),
        st.sampled_from(["a", "b", "c", "d"]),
        st.integers(0, 2),  # state value
        st.floats(0.0, 40.0),  # time step
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops=OPS)
def test_snapshot_plus_later_events_reconstructs_the_state(
    ops: list[tuple[str, str, str, int, float]],
) -> None:
    tr = PresenceTracker(TIMEOUT)
    views: list[PresenceView] = []  # subscribers, each started from a snapshot
    t = 0.0
    for op, res, client, val, dt in ops:
        t += dt
        events: list[pr.Event] = []
        drive_until(tr, t, events)
        if op == "join":
            events += tr.join(res, client, {"v": val}, now=t)
        elif op == "update":
            events += tr.update(res, client, {"v": val}, now=t)
        elif op == "heartbeat":
            events += tr.heartbeat(res, client, now=t)
        elif op == "leave":
            events += tr.leave(res, client, now=t)
        elif op == "expire":
            events += tr.expire(t)
        else:
            views.append(PresenceView.from_snapshot(tr.snapshot(res)))
        for ev in events:
            for v in views:
                if v.resource == ev.resource:
                    v.apply(ev)
    for v in views:
        assert v.members == dict(tr.snapshot(v.resource).members)


# --- examples ----------------------------------------------------------------------------------
def test_join_update_leave_events() -> None:
    tr = PresenceTracker(30)
    assert tr.join("doc", "a", {"name": "Ann"}, now=1.0) == [Join("doc", "a", {"name": "Ann"}, 1.0)]
    assert tr.join("doc", "a", {"name": "Ann"}, now=2.0) == []  # same state: just a heartbeat
    assert tr.update("doc", "a", {"name": "Ann", "typing": True}, now=3.0) == [
        Update("doc", "a", {"name": "Ann", "typing": True}, 3.0)
    ]
    assert tr.deadline("doc", "a") == 33.0
    assert tr.leave("doc", "a", now=4.0) == [Leave("doc", "a", LeaveReason.LEFT, 4.0)]
    assert tr.leave("doc", "a", now=5.0) == []  # a duplicate goodbye is harmless
    assert tr.next_deadline() is None
    assert tr.resources() == []


def test_expiry_then_heartbeat_rejoins() -> None:
    tr = PresenceTracker(10)
    tr.join("doc", "a", {"x": 1}, now=0.0)
    tr.join("doc", "b", now=5.0)
    assert tr.next_deadline() == 10.0
    assert tr.expire(9.99) == []
    assert tr.expire(10.0) == [Leave("doc", "a", LeaveReason.EXPIRED, 10.0)]
    assert tr.next_deadline() == 15.0
    # A false offline: a's late heartbeat re-creates it, with the state it sends along.
    assert tr.heartbeat("doc", "a", now=11.0, state={"x": 1}) == [Join("doc", "a", {"x": 1}, 11.0)]
    assert tr.members("doc") == ["b", "a"]
    assert tr.snapshot("doc").members == {"b": {}, "a": {"x": 1}}
    assert tr.state_of("doc", "a") is MemberState.PRESENT
    assert tr.state_of("other", "a") is MemberState.ABSENT


def test_same_client_in_two_resources_is_independent() -> None:
    tr = PresenceTracker(10)
    tr.join("r1", "a", now=0.0)
    tr.join("r2", "a", now=4.0)
    assert tr.expire(10.0) == [Leave("r1", "a", LeaveReason.EXPIRED, 10.0)]
    assert tr.count("r2") == 1 and tr.count("r1") == 0
    assert list(tr) == [("r2", "a")]


def test_transition_table_is_complete() -> None:
    assert set(TRANSITIONS) == {(s, i) for s in MemberState for i in Input}


def test_events_are_frozen_and_hashable() -> None:
    ev = Join("doc", "a", {"k": 1}, 0.0)
    with pytest.raises(AttributeError):
        ev.client = "b"  # type: ignore[misc]
    assert hash(ev) == hash(Join("doc", "a", {"k": 2}, 0.0))  # state does not take part


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda tr: PresenceTracker(0), "timeout_s must be > 0"),
        (lambda tr: PresenceTracker(math.inf), "timeout_s must be finite, got inf"),
        (lambda tr: tr.join("", "a", now=0.0), "resource must be a non-empty string"),
        (lambda tr: tr.join("doc", 3, now=0.0), "client must be a non-empty string"),
        (lambda tr: tr.join("doc", "a", [1], now=0.0), "state must be a mapping"),
        (lambda tr: tr.join("doc", "a", {1: 2}, now=0.0), "state keys must be strings"),
        (lambda tr: tr.update("doc", "a", None, now=0.0), "state must be a mapping"),
        (lambda tr: tr.expire(math.nan), "now must be finite"),
        (lambda tr: tr.expire("soon"), "now must be a number"),
        (lambda tr: tr.expire(50.0), "time went backwards"),
        (lambda tr: tr.snapshot(""), "resource must be a non-empty string"),
    ],
)
def test_bad_input_raises_a_clear_value_error(call: object, message: str) -> None:
    tr = PresenceTracker(10)
    tr.join("doc", "x", now=100.0)
    with pytest.raises(ValueError, match=message):
        call(tr)  # type: ignore[operator]


def test_view_rejects_events_of_another_resource() -> None:
    view = PresenceView("doc")
    with pytest.raises(ValueError, match="applied to a view of 'doc'"):
        view.apply(Join("other", "a", {}, 0.0))


# --- the throttle ------------------------------------------------------------------------------
def run_throttle(
    rate: float, offers: list[tuple[float, str, int]]
) -> tuple[list[Emitted[str, int]], Throttle[str, int]]:
    """Drive a throttle the way a caller does: flush at every requested time."""
    th: Throttle[str, int] = Throttle(rate)
    out: list[Emitted[str, int]] = []
    for t, key, value in offers:
        while (d := th.next_flush()) is not None and d <= t:
            out += th.flush(d)
        out += th.offer(key, value, t)
    while (d := th.next_flush()) is not None:
        out += th.flush(d)
    return out, th


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.5, 50.0),
    steps=st.lists(
        st.tuples(st.floats(0.0, 0.5), st.sampled_from(["a", "b", "c"])), min_size=1, max_size=120
    ),
)
def test_throttle_spacing_latest_value_and_accounting(
    rate: float, steps: list[tuple[float, str]]
) -> None:
    t = 0.0
    offers = []
    for i, (dt, key) in enumerate(steps):
        t += dt
        offers.append((t, key, i))
    out, th = run_throttle(rate, offers)
    interval = 1.0 / rate
    for key in {k for _, k, _ in offers}:
        sent = [e for e in out if e.key == key]
        offered = [v for _, k, v in offers if k == key]
        times = [e.at for e in sent]
        assert all(b - a >= interval * (1 - 1e-12) for a, b in itertools.pairwise(times))
        values = [e.value for e in sent]
        assert values == sorted(values)  # never an older value after a newer one
        assert values[-1] == offered[-1]  # the latest value always gets out
        assert len(sent) + sum(e.coalesced for e in sent) == len(offered)
    assert th.sent == len(out) and th.offered == len(offers) and th.pending() == 0


@settings(max_examples=200, deadline=None)
@given(
    cursor_hz=st.floats(1.0, 120.0),
    throttle_hz=st.floats(1.0, 60.0),
    phase=st.floats(0.0, 0.999),
    duration=st.floats(1.0, 20.0),
)
def test_throttle_of_a_steady_stream_sends_at_the_smaller_rate(
    cursor_hz: float, throttle_hz: float, phase: float, duration: float
) -> None:
    n = math.ceil((duration - phase / cursor_hz) * cursor_hz)
    offers = [(phase / cursor_hz + k / cursor_hz, "a", k) for k in range(n)]
    out, _ = run_throttle(throttle_hz, offers)
    sent_in_window = sum(1 for e in out if e.at < duration)
    expected = (duration - phase / cursor_hz) * min(cursor_hz, throttle_hz)
    assert abs(sent_in_window - expected) <= 1.0 + 1e-9


def test_throttle_coalesces_and_discards() -> None:
    th: Throttle[str, int] = Throttle(10)  # every 0.1 s
    assert th.offer("a", 1, 0.0) == [Emitted("a", 1, 0.0, 0)]
    assert th.offer("a", 2, 0.01) == []
    assert th.offer("a", 3, 0.02) == []
    assert th.next_flush() == pytest.approx(0.1)
    assert th.flush(0.05) == []
    assert th.flush(0.1) == [Emitted("a", 3, 0.1, 1)]
    assert th.offer("a", 4, 0.15) == []
    th.discard("a")  # its client left
    assert th.next_flush() is None
    assert th.offer("a", 5, 0.16) == [Emitted("a", 5, 0.16, 0)]  # a fresh slot


def test_throttle_rediscard_does_not_fire_early() -> None:
    th: Throttle[str, int] = Throttle(1)
    th.offer("a", 1, 0.0)
    th.offer("a", 2, 0.1)  # due at 1.0
    th.discard("a")
    th.offer("a", 3, 0.2)  # sent: a fresh slot
    assert th.offer("a", 4, 0.3) == []  # due at 1.2, not at the stale 1.0
    assert th.flush(1.0) == []
    assert th.flush(1.2) == [Emitted("a", 4, 1.2, 0)]


def test_an_infinite_rate_passes_everything_through() -> None:
    th: Throttle[str, int] = Throttle(math.inf)
    assert [th.offer("a", i, 1.0)[0].value for i in range(3)] == [0, 1, 2]
    assert th.next_flush() is None


@pytest.mark.parametrize("rate", [0, -1, math.nan, -math.inf, "5", True])
def test_throttle_rejects_bad_rates(rate: object) -> None:
    with pytest.raises(ValueError, match="rate_hz must be"):
        Throttle(rate)  # type: ignore[arg-type]


def test_throttle_rejects_time_going_backwards() -> None:
    th: Throttle[str, int] = Throttle(5)
    th.offer("a", 1, 2.0)
    with pytest.raises(ValueError, match="time went backwards"):
        th.offer("a", 2, 1.0)


def test_public_api() -> None:
    assert sorted(pr.__all__) == sorted(
        name for name in dir(pr) if not name.startswith("_") and name in pr.__all__
    )
    for name in pr.__all__:
        assert hasattr(pr, name)


# --- a heartbeat never erases state ------------------------------------------------------------
def test_a_heartbeat_without_state_after_a_false_offline_keeps_the_state() -> None:
    tr = PresenceTracker(10)
    tr.join("doc", "a", {"name": "Al"}, now=0.0)
    assert tr.expire(10.0) == [Leave("doc", "a", LeaveReason.EXPIRED, 10.0)]
    # The late heartbeat carries no state (SSE / long polling): a is back as it was.
    assert tr.heartbeat("doc", "a", now=12.0) == [Join("doc", "a", {"name": "Al"}, 12.0)]
    assert tr.snapshot("doc").members == {"a": {"name": "Al"}}


def test_a_departed_state_is_forgotten_after_timeout() -> None:
    tr = PresenceTracker(10)
    tr.join("doc", "a", {"name": "Al"}, now=0.0)
    tr.leave("doc", "a", now=1.0)
    tr.join("doc", "b", now=11.0)  # any later call forgets what left by 1 + 10 s
    assert tr.heartbeat("doc", "a", now=11.5) == [Join("doc", "a", {}, 11.5)]


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["beat", "beat+state", "update", "expire", "leave"]),
            st.floats(0.0, 30.0),
            st.integers(0, 3),
        ),
        max_size=50,
    )
)
def test_only_join_or_update_change_a_members_state(
    steps: list[tuple[str, float, int]],
) -> None:
    timeout = 10.0
    tr = PresenceTracker(timeout)
    now = 0.0
    tr.join("r", "c", {"v": -1}, now=now)
    last: dict[str, int] = {"v": -1}  # the state of the last join/update
    gone_at: float | None = None
    for kind, dt, v in steps:
        now += dt
        before = tr.snapshot("r").members.get("c")
        if kind == "update":
            tr.update("r", "c", {"v": v}, now=now)
            last, gone_at = {"v": v}, None
        elif kind == "expire":
            if tr.expire(now):
                gone_at = now
        elif kind == "leave":
            if tr.leave("r", "c", now=now):
                gone_at = now
        else:
            recent = gone_at is not None and now - gone_at < timeout
            was_present = before is not None
            sent = {"v": 99} if kind == "beat+state" else None
            tr.heartbeat("r", "c", now=now, state=sent)
            got = tr.snapshot("r").members["c"]
            if was_present:
                assert got == before == last  # a heartbeat never changes a present state
            elif sent is not None:
                assert got == sent  # re-created with what the heartbeat carried
                last = sent
            elif recent:
                assert got == last  # re-created with the state it had, not {}
            if not was_present:
                last, gone_at = got, None
