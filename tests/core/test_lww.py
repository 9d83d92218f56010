from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsim.core.lww import (
    Entry,
    HybridClock,
    HybridTimestamp,
    LwwMap,
    Write,
    merge,
)

PROPS = settings(max_examples=200, deadline=None)

ts_st = st.builds(
    HybridTimestamp, st.integers(0, 5), st.integers(0, 3), st.sampled_from(["a", "b", "c"])
)
entry_st = st.builds(Entry, st.integers(0, 9), ts_st)
key_st = st.tuples(st.sampled_from(["r1", "r2"]), st.sampled_from(["f1", "f2", "f3"]))
state_st = st.dictionaries(key_st, entry_st, max_size=6)


def _norm(s: dict[Any, Entry]) -> dict[Any, Entry]:
    return dict(sorted(s.items()))


@PROPS
@given(state_st, state_st)
def test_merge_commutative(a: dict, b: dict) -> None:  # type: ignore[type-arg]
    # Equal timestamps imply the same write (one node never reuses a timestamp), so only
    # compare states where that holds.
    by_ts: dict[HybridTimestamp, Entry] = {}
    for e in [*a.values(), *b.values()]:
        if by_ts.setdefault(e.ts, e) != e:
            return
    assert _norm(merge(a, b)) == _norm(merge(b, a))


@PROPS
@given(state_st, state_st, state_st)
def test_merge_associative(a: dict, b: dict, c: dict) -> None:  # type: ignore[type-arg]
    assert _norm(merge(merge(a, b), c)) == _norm(merge(a, merge(b, c)))


@PROPS
@given(state_st)
def test_merge_idempotent(a: dict) -> None:  # type: ignore[type-arg]
    assert _norm(merge(a, a)) == _norm(a)


def test_hlc_rules_from_the_paper() -> None:
    c = HybridClock("n")
    assert c.send(1.0) == HybridTimestamp(1_000_000, 0, "n")
    assert c.send(1.0) == HybridTimestamp(1_000_000, 1, "n")  # same l: counter + 1
    assert c.send(0.5) == HybridTimestamp(1_000_000, 2, "n")  # physical clock behind
    # A message from a node whose clock is ahead.
    assert c.receive(HybridTimestamp(3_000_000, 4, "m"), 2.0) == HybridTimestamp(3_000_000, 5, "n")
    assert c.send(4.0) == HybridTimestamp(4_000_000, 0, "n")


@PROPS
@given(st.lists(st.tuples(st.integers(0, 2), st.floats(0, 10)), max_size=40))
def test_hlc_monotone_and_bounded(events: list[tuple[int, float]]) -> None:
    clocks = [HybridClock(str(i)) for i in range(3)]
    last = [HybridTimestamp(0, 0, str(i)) for i in range(3)]
    pt = 0.0
    for who, dt in events:
        pt += dt
        ts = clocks[who].send(pt)
        assert ts > last[who]
        last[who] = ts
        other = (who + 1) % 3
        r = clocks[other].receive(ts, pt)
        assert r > ts and r > last[other]
        last[other] = r
        assert r.l - round(pt * 1e6) == 0  # all share one physical clock: no drift


def test_overwritten_notice_goes_to_the_loser() -> None:
    a, b = LwwMap("alice"), LwwMap("bob")
    wa = a.set("card", "title", "A", now=1.0)
    wb = b.set("card", "title", "B", now=1.2)
    assert b.apply(wa, now=1.3) is None  # older write loses silently at bob
    notice = a.apply(wb, now=1.3)
    assert notice is not None and notice.loser == "alice" and notice.lost_value == "A"
    assert a.get("card", "title") == b.get("card", "title") == "B"


def test_tie_break_is_deterministic() -> None:
    a, b = LwwMap("a"), LwwMap("b")
    wa, wb = a.set("r", "f", 1, now=1.0), b.set("r", "f", 2, now=1.0)
    a.apply(wb, 1.0)
    b.apply(wa, 1.0)
    assert a.get("r", "f") == b.get("r", "f") == 2  # equal (l, c): higher node id wins


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        LwwMap("")
    with pytest.raises(ValueError):
        HybridClock("x").send(-1.0)
    m = LwwMap("a")
    with pytest.raises(ValueError):
        m.apply("nope", 0.0)  # type: ignore[arg-type]
    assert m.state == {}


def test_different_fields_both_survive() -> None:
    a, b = LwwMap("a"), LwwMap("b")
    wa, wb = a.set("r", "title", "T", 1.0), b.set("r", "due", "Fri", 1.0)
    assert a.apply(wb, 1.1) is None and b.apply(wa, 1.1) is None
    assert a.values() == b.values() == {("r", "title"): "T", ("r", "due"): "Fri"}
    assert isinstance(wa, Write)


def test_no_notice_when_the_winner_had_seen_our_value() -> None:
    a, b = LwwMap("a"), LwwMap("b")
    wa = a.set("r", "f", "mine", 1.0)
    b.apply(wa, 1.1)
    wb = b.set("r", "f", "edited after reading yours", 2.0)  # sequential, not concurrent
    assert a.apply(wb, 2.1) is None
    assert a.get("r", "f") == "edited after reading yours"
