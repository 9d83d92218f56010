"""Transports and their framing: what each one puts on the wire around a message.

The byte counts here are used by the simulation (bytes per message) and the formatting
functions by the live server, so both sides agree on what a frame costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "CASCADE",
    "LONG_POLL_HOLD_S",
    "SseDecoder",
    "SseEvent",
    "Transport",
    "format_sse_event",
    "parse_transport",
    "sse_event_overhead",
    "ws_frame",
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


#: How long a long poll is held open without a message before it is answered empty, seconds.
#: 25 s: under the 30 s idle timeout common in proxies and load balancers, so the empty answer
#: arrives before an intermediary cuts the request. The model, the live server, the Python
#: client and the load generator all use this one value.
LONG_POLL_HOLD_S = 25.0


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


def ws_frame(payload: bytes, *, opcode: int = 0x1) -> bytes:
    """A complete, unmasked, final server→client WebSocket frame (RFC 6455 §5.2).

    The live server frames a broadcast once and writes these same bytes to every
    connection. ``opcode`` 0x1 is text, 0x2 binary.
    """
    if opcode not in (0x1, 0x2):
        raise ValueError(f"opcode must be 0x1 (text) or 0x2 (binary), got {opcode:#x}")
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        header = bytes((first, n))
    elif n <= 0xFFFF:
        header = bytes((first, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, 127)) + n.to_bytes(8, "big")
    return header + payload


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


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched ``text/event-stream`` event.

    ``last_event_id`` is the stream's last event id *after* this event (the value an
    EventSource sends back as ``Last-Event-ID``); ``retry_ms`` is the latest ``retry:`` hint.
    """

    data: str
    event: str = "message"
    last_event_id: str = ""
    retry_ms: int | None = None


class SseDecoder:
    """Incremental ``text/event-stream`` parser (WHATWG HTML §9.2.6), sans-I/O.

    Feed it bytes as they arrive; it returns the events completed so far. Like a browser,
    it updates :attr:`last_event_id` on every ``id:`` field (an event with no ``data`` only
    moves the id and is not returned), ignores comments and unknown fields, and accepts
    CRLF, LF or CR line ends. ``max_line`` bounds the memory a peer can make it hold.
    """

    def __init__(self, max_line: int = 1 << 20) -> None:
        self.last_event_id = ""
        self.retry_ms: int | None = None
        self._max_line = max_line
        self._buf = b""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._skip_lf = False
        self._bom_checked = False

    @property
    def idle(self) -> bool:
        """True between events: no partial line or field is held and the stream's start
        (a byte order mark) is behind it, so an event that arrives whole can be read by
        someone else (a fast path) with :attr:`last_event_id` then set by hand, and the
        decoder would have read it the same way."""
        return (
            self._bom_checked
            and not self._buf
            and not self._data
            and not self._event
            and self._id is None
            and not self._skip_lf
        )

    def feed(self, chunk: bytes) -> list[SseEvent]:
        buf = self._buf + chunk
        if not self._bom_checked and len(buf) >= 3:
            self._bom_checked = True
            if buf.startswith(b"\xef\xbb\xbf"):
                buf = buf[3:]
        out: list[SseEvent] = []
        start = 0
        n = len(buf)
        while start < n:
            if self._skip_lf:
                self._skip_lf = False
                if buf[start : start + 1] == b"\n":
                    start += 1
                    continue
            cr = buf.find(b"\r", start)
            lf = buf.find(b"\n", start)
            ends = [i for i in (cr, lf) if i >= 0]
            if not ends:
                break
            end = min(ends)
            line = buf[start:end]
            if buf[end : end + 1] == b"\r":
                if end + 1 < n:
                    if buf[end + 1 : end + 2] == b"\n":
                        end += 1
                else:
                    self._skip_lf = True
            start = end + 1
            ev = self._line(line.decode("utf-8", errors="replace"))
            if ev is not None:
                out.append(ev)
        self._buf = buf[start:]
        if len(self._buf) > self._max_line:
            raise ValueError(f"SSE line longer than {self._max_line} bytes")
        return out

    def _line(self, line: str) -> SseEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        if self._id is not None:
            self.last_event_id = self._id
            self._id = None
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SseEvent(
            data="\n".join(data),
            event=event or "message",
            last_event_id=self.last_event_id,
            retry_ms=self.retry_ms,
        )
