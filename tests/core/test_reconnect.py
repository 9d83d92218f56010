import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtsim.core.backoff import Backoff, Jitter
from rtsim.core.reconnect import (
    TRANSITIONS,
    Connect,
    Degrade,
    Failed,
    FellBack,
    Healthy,
    InvalidTransition,
    Lost,
    Opened,
    ReconnectPolicy,
    Recover,
    SetTimer,
    StableAt,
    Start,
    State,
    Stop,
    TimerFired,
    rank,
)
from rtsim.core.transport import CASCADE, Transport


def policy(**kw: object) -> ReconnectPolicy:
    return ReconnectPolicy(rng=np.random.default_rng(0), **kw)  # type: ignore[arg-type]


def test_connects_first_with_websocket() -> None:
    p = policy()
    assert p.handle(Start(), 0.0) == [Connect(Transport.WEBSOCKET, 0)]
    assert p.state is State.CONNECTING
    assert p.handle(Opened(), 0.1) == [StableAt(0.1 + p.stable_after_s)]
    assert p.state is State.OPEN


def test_falls_back_down_the_cascade_and_stays_on_polling() -> None:
    p = policy(failures_before_fallback=2, backoff=Backoff(1, 30, jitter=Jitter.NONE))
    now = 0.0
    seen = []
    actions = p.handle(Start(), now)
    for _ in range(12):
        seen.append(p.transport)
        actions = p.handle(Failed("blocked"), now)
        timer = next(a for a in actions if isinstance(a, SetTimer))
        now = timer.at
        actions = p.handle(TimerFired(), now)
        assert isinstance(actions[0], Connect)
    assert seen[:7] == [Transport.WEBSOCKET] * 2 + [Transport.SSE] * 2 + [
        Transport.LONG_POLLING
    ] * 2 + [Transport.POLLING]
    assert p.transport is Transport.POLLING  # the last rung: keeps retrying with backoff


def test_fallback_is_announced() -> None:
    p = policy(failures_before_fallback=1)
    p.handle(Start(), 0)
    actions = p.handle(Failed(), 0)
    assert actions[0] == FellBack(Transport.WEBSOCKET, Transport.SSE)
    assert isinstance(actions[1], SetTimer)


def test_backoff_grows_then_resets_after_success() -> None:
    p = policy(cascade=[Transport.WEBSOCKET], backoff=Backoff(1, 30, jitter=Jitter.NONE))
    p.handle(Start(), 0)
    delays = []
    for _ in range(5):
        (t,) = p.handle(Failed(), 0)
        assert isinstance(t, SetTimer)
        delays.append(t.delay)
        p.handle(TimerFired(), 0)
    assert delays == [2, 4, 8, 16, 30]
    p.handle(Opened(), 0)
    (t,) = p.handle(Lost(), 100)
    assert isinstance(t, SetTimer) and t.delay == 1 and t.at == 101


def test_invalid_transition_raises_value_error() -> None:
    p = policy()
    with pytest.raises(InvalidTransition, match="Opened is not accepted in state 'idle'"):
        p.handle(Opened(), 0)
    assert isinstance(InvalidTransition("x"), ValueError)


def test_stop_closes_from_every_live_state() -> None:
    for state in (State.IDLE, State.CONNECTING, State.OPEN, State.WAITING):
        assert TRANSITIONS[(state, Stop)][0] is State.CLOSED
    p = policy()
    p.handle(Stop(), 0)
    with pytest.raises(InvalidTransition):
        p.handle(Start(), 0)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"cascade": []}, "at least one"),
        ({"cascade": ["sse", "sse"]}, "must not repeat"),
        ({"failures_before_fallback": 0}, "failures_before_fallback"),
        ({"poll_interval_s": 0}, "poll_interval_s"),
        ({"stable_after_s": -1}, "stable_after_s"),
        ({"stable_after_s": float("inf")}, "stable_after_s"),
        ({"cascade": ["smoke"]}, "smoke"),
    ],
)
def test_invalid_parameters(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        policy(**kw)


@given(st.lists(st.sampled_from(["fail", "open", "lose"]), max_size=60), st.integers(0, 1000))
def test_random_event_sequences_keep_invariants(script: list[str], seed: int) -> None:
    p = ReconnectPolicy(rng=np.random.default_rng(seed))
    now = 0.0
    p.handle(Start(), now)
    for step in script:
        if p.state is State.CONNECTING:
            event = Opened() if step == "open" else Failed()
        elif p.state is State.OPEN:
            event = Lost()
        else:
            event = TimerFired()
        for a in p.handle(event, now):
            if isinstance(a, SetTimer):
                assert a.at >= now and 0 <= a.delay <= p.backoff.cap_s
                now = a.at
        assert 0 <= p.level < len(p.cascade)
        # The level only ever goes down the cascade.
    levels = [p.cascade.index(t) for t in p.cascade[: p.level + 1]]
    assert levels == sorted(levels)


# --- flapping: the backoff restarts only after a stable connection ---------------------------
FLAP = {"cascade": [Transport.WEBSOCKET], "backoff": Backoff(0.05, 2.0, jitter=Jitter.NONE)}


def test_a_server_that_closes_at_once_gets_growing_delays() -> None:
    # The example: accept, then close at once (1013), about 30 ms per round.
    p = policy(**FLAP, stable_after_s=5.0)
    p.handle(Start(), 0.0)
    now, delays = 0.0, []
    for _ in range(8):
        p.handle(Opened(), now)
        (t,) = p.handle(Lost("1013"), now + 0.03)
        assert isinstance(t, SetTimer)
        delays.append(t.delay)
        now = t.at
        (c,) = p.handle(TimerFired(), now)
        assert isinstance(c, Connect) and c.attempt == len(delays)
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]  # ceiling(1), ceiling(2), …


def test_stable_after_zero_resets_on_every_open() -> None:
    p = policy(**FLAP, stable_after_s=0.0)
    p.handle(Start(), 0.0)
    now = 0.0
    assert p.handle(Opened(), now) == []
    for _ in range(3):
        (t,) = p.handle(Lost(), now + 0.001)
        assert isinstance(t, SetTimer) and t.delay == 0.05
        now = t.at
        p.handle(TimerFired(), now)
        p.handle(Opened(), now)


def test_healthy_before_stable_after_changes_nothing_after_resets() -> None:
    p = policy(**FLAP, stable_after_s=5.0)
    p.handle(Start(), 0.0)
    for _ in range(3):
        p.handle(Failed(), 0.0)
        p.handle(TimerFired(), 0.0)
    assert p.attempt == 3
    p.handle(Opened(), 10.0)
    p.handle(Healthy(), 14.9)
    assert p.attempt == 3 and p.state is State.OPEN
    p.handle(Healthy(), 15.0)
    assert p.attempt == 0
    (t,) = p.handle(Lost(), 15.1)  # reset already: the first delay again
    assert isinstance(t, SetTimer) and t.delay == 0.05


@given(
    st.lists(
        st.tuples(st.floats(0.0, 4.999), st.sampled_from(["lost", "fail"])),
        min_size=1,
        max_size=40,
    ),
    st.floats(5.001, 1000.0),  # clear of float rounding at exactly stable_after_s
    st.integers(0, 1000),
)
def test_short_connections_never_lower_the_delay_and_a_healthy_one_resets(
    script: list[tuple[float, str]], healthy_for: float, seed: int
) -> None:
    stable = 5.0
    p = ReconnectPolicy(
        rng=np.random.default_rng(seed),
        cascade=[Transport.WEBSOCKET],
        backoff=Backoff(0.05, 2.0, jitter=Jitter.NONE),
        stable_after_s=stable,
    )
    now = 0.0
    p.handle(Start(), now)
    last = 0.0
    for up_for, how in script:
        if how == "lost":  # opened, then closed before stable_after_s
            p.handle(Opened(), now)
            now += up_for
            p.handle(Healthy(), now)  # a heartbeat too early changes nothing
            (t,) = p.handle(Lost(), now)
        else:  # the attempt failed outright
            now += up_for
            (t,) = p.handle(Failed(), now)
        assert isinstance(t, SetTimer)
        assert t.delay >= last  # never lower
        last = t.delay
        now = t.at
        p.handle(TimerFired(), now)
    p.handle(Opened(), now)
    (t,) = p.handle(Lost(), now + healthy_for)
    assert isinstance(t, SetTimer) and t.delay == p.backoff.ceiling(0)


# --- the server's ceiling (overload, or a facilitator stepping the room) ----------------------
LIVE = (Transport.WEBSOCKET, Transport.SSE, Transport.LONG_POLLING)  # LiveClient's cascade


def opened(p: ReconnectPolicy, now: float = 0.0) -> None:
    """Connect (from idle or after a timer) and open."""
    p.handle(Start() if p.state is State.IDLE else TimerFired(), now)
    p.handle(Opened(), now)


def move(p: ReconnectPolicy, event: Degrade | Recover, now: float = 0.0) -> list[object]:
    """Apply a server move to an open connection; the actions up to the next Connect."""
    actions: list[object] = list(p.handle(event, now))
    timer = next(a for a in actions if isinstance(a, SetTimer))
    actions += p.handle(TimerFired(), timer.at)
    return actions


def test_a_ceiling_moves_the_client_to_the_rung_named_and_back_up() -> None:
    p = policy(cascade=LIVE)
    opened(p)
    seen = []
    for event in (
        Degrade(None, Transport.SSE),
        Degrade(None, Transport.LONG_POLLING),
        Degrade(2.0, Transport.POLLING),
        Recover(Transport.LONG_POLLING),
        Recover(Transport.SSE),
        Recover(),
    ):
        old = p.transport
        actions = move(p, event)
        connect = actions[-1]
        assert isinstance(connect, Connect)
        seen.append(connect.transport)
        if isinstance(event, Degrade):  # announced as a fallback, never counted as a failure
            assert FellBack(old, connect.transport) in actions
            assert connect.attempt == 0
        p.handle(Opened(), 0)
    assert seen == [
        Transport.SSE,
        Transport.LONG_POLLING,
        Transport.POLLING,
        Transport.LONG_POLLING,
        Transport.SSE,
        Transport.WEBSOCKET,
    ]
    assert p.ceiling is None and not p.degraded
    assert p.poll_interval_s == 2.0  # the server's interval, kept


def test_the_polling_rung_starts_within_one_interval_other_rungs_within_one_backoff() -> None:
    for seed in range(20):
        p = ReconnectPolicy(rng=np.random.default_rng(seed), cascade=LIVE, backoff=Backoff(0.5, 9))
        opened(p)
        (_, timer) = p.handle(Degrade(None, Transport.SSE), 0)
        assert isinstance(timer, SetTimer) and 0 <= timer.delay <= 0.5
        p.handle(TimerFired(), timer.at)
        p.handle(Opened(), timer.at)
        (_, timer) = p.handle(Degrade(7.0, Transport.POLLING), 10)
        assert isinstance(timer, SetTimer) and 0 <= timer.delay <= 7.0


def test_below_the_ceiling_the_usual_fallback_goes_on() -> None:
    """A ceiling is a ceiling: SSE blocked under an SSE ceiling still falls to long polling,
    and a client that had already fallen below the ceiling stays where it is."""
    p = policy(cascade=LIVE, failures_before_fallback=1)
    opened(p)
    move(p, Degrade(None, Transport.SSE))
    assert p.transport is Transport.SSE
    actions = p.handle(Failed("sse blocked"), 0)
    assert actions[0] == FellBack(Transport.SSE, Transport.LONG_POLLING)
    assert p.transport is Transport.LONG_POLLING
    # On the polling rung (not in this cascade) there is nothing to fall back to.
    q = policy(cascade=LIVE, failures_before_fallback=1)
    opened(q)
    move(q, Degrade(1.0))
    actions = q.handle(Failed("poll failed"), 0)
    assert not any(isinstance(a, FellBack) for a in actions)
    assert q.transport is Transport.POLLING
    # Already on long polling by itself: an SSE ceiling changes nothing.
    r = policy(cascade=(Transport.LONG_POLLING,))
    opened(r)
    move(r, Degrade(None, Transport.SSE))
    assert r.transport is Transport.LONG_POLLING and r.degraded


def test_rank_orders_the_cascade() -> None:
    assert [rank(t) for t in CASCADE] == [0, 1, 2, 3]
