import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtsim.core.envelope import Envelope, EnvelopeError, decode, encode, validate_channel

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=10,
)
channels = st.from_regex(r"[A-Za-z0-9_\-:.@]{1,40}", fullmatch=True)


@given(
    channel=channels,
    id=st.text(min_size=1, max_size=20),
    data=json_values,
    ts=st.floats(-1e12, 1e12),
)
def test_round_trip(channel: str, id: str, data: object, ts: float) -> None:
    env = Envelope(channel=channel, id=id, data=data, ts=ts)
    assert decode(encode(env)) == env
    assert decode(encode(env).decode()) == env


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe", "not valid UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"channel": "a", "id": "1", "data": 1}', "missing field(s): ts"),
        (b'{"channel": "a", "id": "1", "data": 1, "ts": 0, "x": 2}', "unknown field(s): x"),
        (b'{"channel": "", "id": "1", "data": 1, "ts": 0}', "channel must not be empty"),
        (b'{"channel": "a b", "id": "1", "data": 1, "ts": 0}', "characters outside"),
        (b'{"channel": 3, "id": "1", "data": 1, "ts": 0}', "channel must be a string"),
        (b'{"channel": "a", "id": "", "data": 1, "ts": 0}', "id must be a non-empty string"),
        (b'{"channel": "a", "id": "1", "data": 1, "ts": "now"}', "ts must be a number"),
        (b'{"channel": "a", "id": "1", "data": 1, "ts": true}', "ts must be a number"),
        (b'{"channel": "a", "id": "1", "data": 1, "ts": NaN}', "ts must be finite"),
    ],
)
def test_malformed_input_says_what_is_wrong(raw: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode(raw)


def test_envelope_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode(b"")


def test_decode_rejects_other_types() -> None:
    with pytest.raises(EnvelopeError, match="bytes or str"):
        decode(123)  # type: ignore[arg-type]


def test_encode_rejects_non_json_data() -> None:
    with pytest.raises(EnvelopeError, match="not JSON-serialisable"):
        encode(Envelope(channel="a", id="1", data={1, 2}, ts=0.0))
    with pytest.raises(EnvelopeError, match="not JSON-serialisable"):
        encode(Envelope(channel="a", id="1", data=float("nan"), ts=0.0))


def test_encoding_is_compact_utf8_json() -> None:
    raw = encode(Envelope(channel="room:1", id="7", data={"text": "héllo"}, ts=1.5))
    assert raw == '{"channel":"room:1","id":"7","data":{"text":"héllo"},"ts":1.5}'.encode()
    assert json.loads(raw) == {"channel": "room:1", "id": "7", "data": {"text": "héllo"}, "ts": 1.5}


def test_channel_length_limit() -> None:
    assert validate_channel("a" * 200) == "a" * 200
    with pytest.raises(EnvelopeError, match="at most 200"):
        validate_channel("a" * 201)


@pytest.mark.parametrize(
    "value",
    [
        json.loads('"\\ud800"'),
        {"a": [1, {"b": json.loads('"x\\udfff"')}]},
        {json.loads('"\\ud83d"'): 1},  # a key: half an emoji
        [float("nan")],
        {"x": object()},
    ],
)
def test_check_sendable_refuses_what_cannot_be_sent(value: object) -> None:
    from rtsim.core.envelope import check_sendable

    with pytest.raises(EnvelopeError):
        check_sendable(value)


def test_check_sendable_names_the_surrogate_and_accepts_real_text() -> None:
    from rtsim.core.envelope import check_sendable

    with pytest.raises(EnvelopeError, match=r"U\+D800"):
        check_sendable({"k": json.loads('"\\ud800"')}, "state")
    check_sendable({"name": "Zoë 😀", "n": [1, 2.5, None, True]})  # a full pair is fine
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(EnvelopeError, match="deeply"):
        check_sendable(deep)
