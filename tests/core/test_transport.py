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
