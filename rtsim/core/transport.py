"""Transports and their framing: what each one puts on the wire around a message.

The byte counts here are used by the simulation (bytes per message) and the formatting
functions by the live server, so both sides agree on what a frame costs.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CASCADE",
    "Transport",
    "format_sse_event",
    "parse_transport",
    "sse_event_overhead",
    "ws_frame_header_len",
]


class Transport(StrEnum):
    """The four ways a server can get a message to a browser, best first."""

    WEBSOCKET = "websocket"
    SSE = "sse"
    LONG_POLLING = "long-polling"
    POLLING = "polling"

    @property
    def persistent(self) -> bool:
        """True for transports that keep one connection open (no request per message)."""
        return self in (Transport.WEBSOCKET, Transport.SSE)


#: The degradation order of the article (claim C20): WebSocket → SSE → long polling → polling.
CASCADE: tuple[Transport, ...] = (
    Transport.WEBSOCKET,
    Transport.SSE,
    Transport.LONG_POLLING,
    Transport.POLLING,
)


def parse_transport(value: str | Transport) -> Transport:
    """Return the :class:`Transport` named ``value``; raise ``ValueError`` listing the choices."""
    if isinstance(value, Transport):
        return value
    try:
        return Transport(str(value).strip().lower().replace("_", "-"))
    except ValueError:
        choices = ", ".join(t.value for t in Transport)
        raise ValueError(f"unknown transport {value!r}; choose one of: {choices}") from None


def ws_frame_header_len(payload_len: int, *, masked: bool = False) -> int:
    """Bytes of WebSocket framing for one frame (RFC 6455 §5.2).

    2 bytes for payloads under 126 B, 4 up to 65,535 B, 10 beyond; a client→server frame
    adds a 4-byte masking key.
    """
    if payload_len < 0:
        raise ValueError(f"payload_len must be >= 0, got {payload_len}")
    if payload_len < 126:
        n = 2
    elif payload_len <= 0xFFFF:
        n = 4
    else:
        n = 10
    return n + (4 if masked else 0)


def format_sse_event(
    data: str, *, id: str | None = None, event: str | None = None, retry_ms: int | None = None
) -> bytes:
    """One ``text/event-stream`` event (WHATWG HTML §9.2), ready to write.

    Multi-line data is split into several ``data:`` lines, as the spec requires.
    """
    lines: list[str] = []
    if retry_ms is not None:
        if retry_ms < 0:
            raise ValueError(f"retry_ms must be >= 0, got {retry_ms}")
        lines.append(f"retry: {retry_ms}")
    if id is not None:
        if "\n" in id or "\r" in id or "\0" in id:
            raise ValueError("an SSE id must not contain newlines or NUL")
        lines.append(f"id: {id}")
    if event is not None:
        if "\n" in event or "\r" in event:
            raise ValueError("an SSE event name must not contain newlines")
        lines.append(f"event: {event}")
    for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        lines.append(f"data: {line}")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def sse_event_overhead(id_len: int) -> int:
    """Bytes an SSE event adds around single-line data: ``id: …\\n`` + ``data: `` + ``\\n\\n``."""
    if id_len < 0:
        raise ValueError(f"id_len must be >= 0, got {id_len}")
    return len("id: \n") + id_len + len("data: ") + len("\n\n")
