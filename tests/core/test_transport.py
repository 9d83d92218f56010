import pytest

from rtsim.core.transport import (
    CASCADE,
    Transport,
    format_sse_event,
    parse_transport,
    sse_event_overhead,
    ws_frame_header_len,
)


def test_cascade_is_the_articles_order() -> None:
    assert [t.value for t in CASCADE] == ["websocket", "sse", "long-polling", "polling"]
    assert Transport.WEBSOCKET.persistent and Transport.SSE.persistent
    assert not Transport.LONG_POLLING.persistent and not Transport.POLLING.persistent


@pytest.mark.parametrize("text", ["websocket", "SSE", "long_polling", " polling "])
def test_parse_transport(text: str) -> None:
    assert parse_transport(text) in CASCADE


def test_parse_transport_lists_choices() -> None:
    with pytest.raises(ValueError, match="choose one of: websocket, sse, long-polling, polling"):
        parse_transport("carrier-pigeon")


@pytest.mark.parametrize(
    ("n", "masked", "expected"),
    [
        (0, False, 2),
        (125, False, 2),
        (126, False, 4),
        (65535, False, 4),
        (65536, False, 10),
        (10, True, 6),
        (70000, True, 14),
    ],
)
def test_ws_frame_header_rfc6455(n: int, masked: bool, expected: int) -> None:
    assert ws_frame_header_len(n, masked=masked) == expected


def test_ws_frame_header_rejects_negative() -> None:
    with pytest.raises(ValueError, match="payload_len must be >= 0"):
        ws_frame_header_len(-1)


def test_sse_event_format() -> None:
    assert format_sse_event("hi", id="5") == b"id: 5\ndata: hi\n\n"
    assert format_sse_event("a\nb", id="1", event="m", retry_ms=3000) == (
        b"retry: 3000\nid: 1\nevent: m\ndata: a\ndata: b\n\n"
    )
    assert len(format_sse_event("x" * 50, id="12345")) == 50 + sse_event_overhead(5)


@pytest.mark.parametrize("bad", ["1\n2", "a\rb", "x\0"])
def test_sse_id_cannot_break_framing(bad: str) -> None:
    with pytest.raises(ValueError, match="id must not contain"):
        format_sse_event("x", id=bad)


# --- SSE decoding ------------------------------------------------------------------------
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rtsim.core.transport import SseDecoder, SseEvent  # noqa: E402


def test_sse_decoder_reads_what_format_sse_event_writes() -> None:
    raw = format_sse_event("a\nb", id="c=1", event="gap", retry_ms=500) + b": keep\n\n"
    raw += format_sse_event("x", id="c=2")
    d = SseDecoder()
    assert d.feed(raw) == [
        SseEvent("a\nb", "gap", "c=1", 500),
        SseEvent("x", "message", "c=2", 500),
    ]
    assert d.last_event_id == "c=2"


def test_sse_decoder_id_only_event_moves_the_id_without_dispatching() -> None:
    d = SseDecoder()
    assert d.feed(b"retry: 10\nid: a=5\n\n") == []
    assert d.last_event_id == "a=5" and d.retry_ms == 10


def test_sse_decoder_handles_cr_and_crlf_split_anywhere() -> None:
    raw = b"data: one\r\n\r\ndata: two\r\rdata: three\n\n"
    for cut in range(len(raw) + 1):
        d = SseDecoder()
        events = d.feed(raw[:cut]) + d.feed(raw[cut:])
        assert [e.data for e in events] == ["one", "two", "three"]


def test_sse_decoder_bounds_a_line() -> None:
    d = SseDecoder(max_line=10)
    with pytest.raises(ValueError, match="longer than"):
        d.feed(b"data: " + b"x" * 20)


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=50)


@given(
    st.lists(st.tuples(_text, st.from_regex(r"[a-z]=[0-9]{1,3}", fullmatch=True)), max_size=5),
    st.integers(1, 30),
)
def test_sse_round_trip_in_any_chunking(events: list[tuple[str, str]], size: int) -> None:
    raw = b"".join(format_sse_event(data, id=i) for data, i in events)
    d = SseDecoder()
    out: list[SseEvent] = []
    for k in range(0, len(raw), size):
        out += d.feed(raw[k : k + size])
    assert [(e.data, e.last_event_id) for e in out] == [
        (data.replace("\r\n", "\n"), i) for data, i in events
    ]


@given(st.binary(max_size=300))
def test_sse_decoder_never_fails_on_garbage(raw: bytes) -> None:
    SseDecoder().feed(raw)


@pytest.mark.parametrize("n", [0, 1, 125, 126, 4000, 65535, 65536, 200_000])
def test_ws_frame_matches_the_websockets_library(n: int) -> None:
    from websockets.frames import Frame, Opcode

    from rtsim.core.transport import ws_frame

    payload = bytes(range(256)) * (n // 256) + bytes(n % 256)
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert ws_frame(payload) == expected
    binary = Frame(Opcode.BINARY, payload).serialize(mask=False, extensions=[])
    assert ws_frame(payload, opcode=0x2) == binary
    assert len(ws_frame(payload)) == n + ws_frame_header_len(n)


def test_ws_frame_rejects_other_opcodes() -> None:
    from rtsim.core.transport import ws_frame

    with pytest.raises(ValueError, match="opcode must be"):
        ws_frame(b"x", opcode=0x9)
