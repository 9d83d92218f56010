"""The pure parsers of the wire protocol, with examples and hypothesis fuzzing."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsim.live.protocol import (
    Heartbeat,
    PresenceSet,
    ProtocolError,
    Publish,
    Subscribe,
    Unsubscribe,
    message_frame,
    parse_channels,
    parse_client_frame,
    parse_resume,
    parse_timeout,
)


def test_valid_frames() -> None:
    assert parse_client_frame('{"type":"subscribe","channel":"a"}') == Subscribe("a")
    assert parse_client_frame('{"type":"subscribe","channel":"a","since":"4"}') == Subscribe(
        "a", "4"
    )
    assert parse_client_frame('{"type":"unsubscribe","channel":"a"}') == Unsubscribe("a")
    assert parse_client_frame('{"type":"publish","channel":"a","data":[1],"ref":7}') == Publish(
        "a", [1], 7
    )
    assert parse_client_frame('{"type":"heartbeat"}') == Heartbeat()
    assert parse_client_frame('{"type":"presence","channel":"a","state":{"n":1}}') == PresenceSet(
        "a", {"n": 1}
    )


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{", "bad_json"),
        ("[]", "bad_frame"),
        ('{"type":"nope"}', "unknown_type"),
        ('{"channel":"a"}', "unknown_type"),
        ('{"type":"subscribe"}', "bad_frame"),
        ('{"type":"subscribe","channel":"a b"}', "bad_channel"),
        ('{"type":"subscribe","channel":"a","since":"-1"}', "bad_cursor"),
        ('{"type":"subscribe","channel":"a","since":5}', "bad_cursor"),
        ('{"type":"subscribe","channel":"a","extra":1}', "bad_frame"),
        ('{"type":"publish","channel":"a"}', "bad_frame"),
        ('{"type":"publish","channel":"a","data":1,"ref":true}', "bad_frame"),
        ('{"type":"presence","channel":"a","state":[1]}', "bad_frame"),
        ("[" * 100000, "too_big"),
        ("[" * 60000, "bad_json"),
    ],
)
def test_invalid_frames(text: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(text)
    assert info.value.code == code


def test_binary_frames_are_refused() -> None:
    with pytest.raises(ProtocolError, match="binary"):
        parse_client_frame(b"{}")


def test_error_keeps_the_ref() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_frame('{"type":"publish","channel":"*","data":1,"ref":"r1"}')
    assert info.value.ref == "r1"


def test_message_frame_splices_the_type_in() -> None:
    out = json.loads(message_frame(b'{"channel":"a","id":"1","data":null,"ts":1.0}'))
    assert out == {"type": "message", "channel": "a", "id": "1", "data": None, "ts": 1.0}


def test_query_parsers() -> None:
    assert parse_channels(["a", "b", "a"], 5) == ["a", "b"]
    with pytest.raises(ProtocolError, match="at least one"):
        parse_channels([], 5)
    with pytest.raises(ProtocolError) as info:
        parse_channels([f"c{i}" for i in range(6)], 5)
    assert info.value.code == "too_many_subscriptions"
    assert parse_timeout(None, 25, 60) == 25
    assert parse_timeout("0.5", 25, 60) == 0.5
    for bad in ("x", "-1", "nan", "inf", "61", "1" * 40):
        with pytest.raises(ProtocolError):
            parse_timeout(bad, 25, 60)
    assert parse_resume(None, ["a"]) is None
    assert parse_resume("7", ["a"]) == {"a": "7"}
    assert parse_resume("a=3,b=4", ["a", "b"]) == {"a": "3", "b": "4"}
    for bad in ("7", "a=x", "c=1", "a=1,a=2", "=", ",", "a=01"):
        with pytest.raises(ProtocolError):
            parse_resume(bad, ["a", "b"])


# --- fuzzing: any input gives a frame or a ProtocolError, never anything else --------------
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_frames = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["subscribe", "unsubscribe", "publish", "heartbeat", "presence", "x"]
        )
    },
    optional={
        "channel": st.text(max_size=10) | _json,
        "since": st.text(max_size=6) | _json,
        "data": _json,
        "ref": _json,
        "state": _json,
    },
)


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_fuzz_frame_text(text: str) -> None:
    with contextlib.suppress(ProtocolError):
        parse_client_frame(text)


@settings(max_examples=300)
@given(_frames)
def test_fuzz_frame_structure(obj: dict[str, object]) -> None:
    try:
        frame = parse_client_frame(json.dumps(obj))
    except ProtocolError as exc:
        assert exc.code and exc.message
        return
    assert isinstance(frame, Subscribe | Unsubscribe | Publish | Heartbeat | PresenceSet)


@settings(max_examples=300)
@given(
    st.lists(st.text(max_size=12), max_size=4),
    st.one_of(st.none(), st.text(max_size=30)),
    st.one_of(st.none(), st.text(max_size=10)),
)
def test_fuzz_query(channels: list[str], resume: str | None, timeout: str | None) -> None:
    try:
        chans = parse_channels(channels, 3)
        cursor = parse_resume(resume, chans)
        t = parse_timeout(timeout, 1.0, 60.0)
    except ProtocolError:
        return
    assert 1 <= len(chans) <= 3
    assert cursor is None or set(cursor) <= set(chans)
    assert 0 <= t <= 60
