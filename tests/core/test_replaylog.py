from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsim.core.envelope import Envelope
from rtsim.core.replaylog import (
    CursorError,
    Gap,
    MalformedIdError,
    Messages,
    ReplayLog,
    UnknownIdError,
    advance_cursor,
    decode_cursor,
    encode_cursor,
    parse_id,
    split_epoch,
    with_epoch,
)

CHANNELS = st.sampled_from(["a", "b", "user:42", "room.x"])
# A script of appends: (channel, time step).
SCRIPTS = st.lists(
    st.tuples(CHANNELS, st.floats(min_value=0, max_value=5, allow_nan=False)),
    min_size=0,
    max_size=60,
)


def _run(script: list[tuple[str, float]], log: ReplayLog) -> dict[str, list[Envelope]]:
    """Append the script; return everything ever appended, per channel."""
    now = 0.0
    seen: dict[str, list[Envelope]] = {}
    for i, (ch, dt) in enumerate(script):
        now += dt
        seen.setdefault(ch, []).append(log.append(ch, {"i": i}, now))
    return seen


def test_append_and_read_basics() -> None:
    log = ReplayLog(max_len=3)
    e1 = log.append("news", "a", now=1.0)
    e2 = log.append("news", "b", now=2.0)
    assert (e1.id, e2.id) == ("1", "2")
    assert e1.ts == 1.0 and e1.channel == "news"
    r = log.read_after("news", "0")
    assert isinstance(r, Messages) and r.messages == (e1, e2) and r.last_id == "2"
    assert log.read_after("news", "2") == Messages("news", (), "2", epoch=log.epoch)
    assert log.latest_id("news") == "2" and log.latest_id("other") == "0"
    assert log.first_id("news") == "1" and log.first_id("other") is None


def test_gap_is_explicit() -> None:
    log = ReplayLog(max_len=2)
    for t in range(5):
        log.append("c", t, now=float(t))  # ids 1..5; holds 4, 5
    r = log.read_after("c", "1")
    assert isinstance(r, Gap) and r.is_gap
    assert r.missed == 2  # ids 2 and 3 are gone
    assert r.first_available_id == "4"
    assert [e.id for e in r.messages] == ["4", "5"] and r.last_id == "5"
    # id 3 itself was trimmed but nothing after it was: no gap
    r2 = log.read_after("c", "3")
    assert isinstance(r2, Messages) and [e.id for e in r2.messages] == ["4", "5"]
    assert log.trimmed == 3


def test_limit_and_more() -> None:
    log = ReplayLog(max_len=10)
    for t in range(5):
        log.append("c", t, now=0.0)
    r = log.read_after("c", "0", limit=2)
    assert [e.id for e in r.messages] == ["1", "2"] and r.more and r.last_id == "2"
    r = log.read_after("c", r.last_id, limit=10)
    assert [e.id for e in r.messages] == ["3", "4", "5"] and not r.more


def test_max_age_trimming() -> None:
    log = ReplayLog(max_len=100, max_age_s=10)
    log.append("c", 0, now=0.0)
    log.append("c", 1, now=5.0)
    log.append("c", 2, now=12.0)  # trims id 1 (ts 0 < 12 - 10)
    assert log.first_id("c") == "2"
    r = log.read_after("c", "0", now=30.0)  # everything is older than 20 s
    assert isinstance(r, Gap) and r.missed == 3 and r.first_available_id is None
    assert r.messages == () and r.last_id == "3"
    assert log.held() == 0
    assert log.trim(31.0) == 0


@pytest.mark.parametrize("bad", ["", "-1", "01", "1.0", "abc", " 1", "1-0", "9" * 19])
def test_malformed_ids(bad: str) -> None:
    log = ReplayLog()
    log.append("c", 0, now=0.0)
    with pytest.raises(MalformedIdError, match="decimal sequence number"):
        log.read_after("c", bad)


def test_non_string_id() -> None:
    with pytest.raises(MalformedIdError, match="must be a string"):
        parse_id(3)


def test_unknown_ids() -> None:
    log = ReplayLog()
    log.append("c", 0, now=0.0)
    with pytest.raises(UnknownIdError, match="latest id of channel 'c' is 1"):
        log.read_after("c", "2")
    with pytest.raises(UnknownIdError, match="no messages yet"):
        log.read_after("nobody", "1")
    assert isinstance(UnknownIdError("x"), ValueError)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_len must be an integer >= 1"):
        ReplayLog(max_len=0)
    with pytest.raises(ValueError, match="max_age_s must be > 0"):
        ReplayLog(max_age_s=-1)
    log = ReplayLog()
    log.append("c", 0, now=5.0)
    with pytest.raises(ValueError, match="time went backwards"):
        log.append("c", 0, now=4.0)
    with pytest.raises(ValueError, match="now must be a finite number"):
        log.append("c", 0, now=float("nan"))
    with pytest.raises(ValueError, match="limit must be >= 1"):
        log.read_after("c", "0", limit=0)
    with pytest.raises(ValueError, match="channel"):
        log.append("bad channel!", 0, now=6.0)


@settings(max_examples=200, deadline=None)
@given(script=SCRIPTS, max_len=st.integers(1, 8))
def test_ids_strictly_increasing_per_channel(script: list[tuple[str, float]], max_len: int) -> None:
    seen = _run(script, ReplayLog(max_len=max_len))
    for envs in seen.values():
        seqs = [int(e.id) for e in envs]
        assert seqs == list(range(1, len(envs) + 1))


@settings(max_examples=200, deadline=None)
@given(
    script=SCRIPTS,
    max_len=st.integers(1, 8),
    max_age=st.one_of(st.none(), st.floats(min_value=0.5, max_value=20)),
    data=st.data(),
)
def test_resume_returns_exactly_the_later_messages_or_a_gap(
    script: list[tuple[str, float]], max_len: int, max_age: float | None, data: st.DataObject
) -> None:
    log = ReplayLog(max_len=max_len, max_age_s=max_age)
    seen = _run(script, log)
    for ch, envs in seen.items():
        held = {e.id for e in envs[len(envs) - log.held(ch) :]}
        after = data.draw(st.integers(0, len(envs)), label=f"after[{ch}]")
        r = log.read_after(ch, str(after))
        later = envs[after:]
        trimmed_later = [e for e in later if e.id not in held]
        if trimmed_later:
            # Gap exactly when a message after the id was trimmed, and it counts them.
            assert isinstance(r, Gap)
            assert r.missed == len(trimmed_later)
            assert list(r.messages) == [e for e in later if e.id in held]
        else:
            assert isinstance(r, Messages)
            assert list(r.messages) == later  # exactly the later messages, in order
        # Resuming after any *held* id never reports a gap.
        for e in envs:
            if e.id in held:
                assert isinstance(log.read_after(ch, e.id), Messages)


@settings(max_examples=100, deadline=None)
@given(script=SCRIPTS, max_len=st.integers(1, 8), limit=st.integers(1, 5))
def test_paging_with_limit_reaches_the_end(
    script: list[tuple[str, float]], max_len: int, limit: int
) -> None:
    log = ReplayLog(max_len=max_len)
    seen = _run(script, log)
    for ch, envs in seen.items():
        got: list[Envelope] = []
        last = "0"
        while True:
            r = log.read_after(ch, last, limit)
            got.extend(r.messages)
            last = r.last_id
            if not r.more:
                break
        assert got == envs[-log.held(ch) :]
        assert last == log.latest_id(ch)


def test_cursor_roundtrip_and_read() -> None:
    log = ReplayLog()
    a1 = log.append("a", 1, now=0.0)
    log.append("b", 1, now=0.0)
    b2 = log.append("b", 2, now=0.0)
    cur = {"b": "1", "a": "0"}
    text = encode_cursor(cur)
    assert text == "a=0,b=1"
    assert decode_cursor(text) == cur
    res = log.read_cursor(decode_cursor(text))
    assert res["a"].messages == (a1,) and res["b"].messages == (b2,)
    assert advance_cursor(cur, b2) == {"a": "0", "b": "2"}
    assert advance_cursor({"b": "5"}, b2) == {"b": "5"}  # never moves back
    assert log.cursor(["a", "z"]) == {"a": f"{log.epoch}:1", "z": f"{log.epoch}:0"}
    assert decode_cursor("") == {} and encode_cursor({}) == ""


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a", "not of the form channel=id"),
        ("a=1,a=2", "names channel 'a' twice"),
        ("a=x", "decimal sequence number"),
        ("=1", "channel must not be empty"),
        ("a=1,", "not of the form"),
        ("a b=1", "characters outside"),
        ("a=1" * 5000, "too long"),
    ],
)
def test_cursor_errors(text: str, match: str) -> None:
    with pytest.raises(CursorError, match=match):
        decode_cursor(text)


def test_cursor_non_string_and_encode_errors() -> None:
    with pytest.raises(CursorError, match="must be a string"):
        decode_cursor(None)
    with pytest.raises(CursorError, match="cannot encode"):
        encode_cursor({"a": "-1"})
    with pytest.raises(CursorError, match="cannot encode"):
        encode_cursor({"a,b": "1"})


@given(
    st.dictionaries(
        st.from_regex(r"\A[A-Za-z0-9_\-:.@]{1,20}\Z"),
        st.integers(0, 10**12).map(str),
        max_size=10,
    )
)
def test_cursor_roundtrip_property(cur: dict[str, str]) -> None:
    text = encode_cursor(cur)
    assert "\n" not in text
    assert decode_cursor(text) == cur


# --- epochs ---------------------------------------------------------------------------------
def test_cursor_of_another_epoch_gets_an_epoch_gap_with_every_new_message() -> None:
    """Issue 14.2: 3 messages, a restart (a new log), 5 messages, resume from the old 3."""
    before = ReplayLog()
    for i in range(3):
        before.append("c", i, now=float(i))
    old_cursor = before.cursor(["c"])["c"]
    after = ReplayLog()
    assert after.epoch != before.epoch
    for i in range(5):
        after.append("c", 10 + i, now=float(i))
    r = after.read_after("c", old_cursor)
    assert isinstance(r, Gap) and r.reason == "epoch" and r.epoch == after.epoch
    assert [e.id for e in r.messages] == ["1", "2", "3", "4", "5"]
    assert [e.data for e in r.messages] == [10, 11, 12, 13, 14]
    assert (r.missed, r.first_available_id, r.resume_id, r.last_id) == (0, "1", "0", "5")
    # The same id in the current epoch is an ordinary resume.
    same = after.read_after("c", with_epoch(after.epoch, "3"))
    assert isinstance(same, Messages) and [e.id for e in same.messages] == ["4", "5"]


def test_epoch_gap_on_an_empty_or_trimmed_log() -> None:
    log = ReplayLog(max_len=2, epoch="now")
    empty = log.read_after("c", "then:7")  # an id ahead of anything: still a gap, not an error
    assert isinstance(empty, Gap) and empty.reason == "epoch"
    assert (empty.messages, empty.resume_id, empty.first_available_id) == ((), "0", None)
    for i in range(5):
        log.append("c", i, now=0.0)
    r = log.read_after("c", "then:1", limit=1)
    assert isinstance(r, Gap) and r.reason == "epoch" and r.missed == 3
    assert ([e.id for e in r.messages], r.resume_id, r.more) == (["4"], "3", True)
    trimmed = log.read_after("c", "now:1")
    assert isinstance(trimmed, Gap) and trimmed.reason == "trimmed" and trimmed.resume_id == "3"


def test_epoch_syntax_in_ids_and_cursors() -> None:
    assert split_epoch("ab_1:7") == ("ab_1", "7") and split_epoch("7") == (None, "7")
    assert with_epoch("e", "5-1") == "e:5-1" and with_epoch(None, "5") == "5"
    cur = {"team:x": "e1:3", "b": "9"}  # channel names may hold ':'; the id part is last
    assert decode_cursor(encode_cursor(cur)) == cur
    for bad in ("e-1:3", ":3", "e:x", "a:b:3"):
        with pytest.raises(MalformedIdError):
            ReplayLog().read_after("c", bad)
        with pytest.raises(CursorError):
            decode_cursor(f"c={bad}")
    with pytest.raises(ValueError, match="epoch"):
        ReplayLog(epoch="not ok")
    assert advance_cursor({"c": "e:3"}, Envelope("c", "4", None, 0.0)) == {"c": "e:4"}
