"""A load subscriber's side of a WebSocket connection, sans-I/O: the upgrade request, the
server's frames read out of bytes, and the few masked frames a client sends (RFC 6455).

    ws = WsReader(LoadFrames(got, gap, since))
    ws.feed(data, read_at)   # the server's frames → ws.frames; returns bytes to send back
    ws.closed                # the close code once the server closed (None before)

It serves :mod:`.ws_raw` (the bare-Protocol subscriber). Like :func:`~.loadevents.sse_chunk`,
a read that is exactly one broadcast's whole frame is handled by one memoized lookup
(:func:`ws_message`); anything else (several frames, a frame split over reads, pings,
close, fragments) is parsed here frame by frame.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from typing import Any

from .loadframes import MEMO_FRAMES, LoadFrames, decoded

__all__ = [
    "WS_GUID",
    "WsReader",
    "client_frame",
    "upgrade_request",
    "ws_accept",
    "ws_message",
]

#: The GUID a server's ``Sec-WebSocket-Accept`` is derived with (RFC 6455 §1.3).
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def upgrade_request(host: str, path: str, key: str) -> bytes:
    """The HTTP/1.1 upgrade request for ``path`` on ``host`` with ``Sec-WebSocket-Key``
    ``key`` (base64 of 16 random bytes)."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def ws_accept(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer ``key`` with."""
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def client_frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """One final client frame of ``opcode``, masked with a random key (clients must mask)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n <= 0xFFFF:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    mask = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return head + key + masked


@functools.lru_cache(maxsize=MEMO_FRAMES)
def ws_message(data: bytes) -> tuple[str, Any] | None:
    """``(id, data)`` if ``data`` is exactly one final unmasked text frame holding a
    ``message`` frame with an ``id`` (the server's broadcast), else None. Memoized: equal
    reads give the *same* objects, so the caller must not change them."""
    if len(data) < 2 or data[0] != 0x81:
        return None
    n, off = data[1], 2
    if n == 126:
        n, off = int.from_bytes(data[2:4], "big"), 4
    elif n == 127:
        n, off = int.from_bytes(data[2:10], "big"), 10
    if off + n != len(data):
        return None
    try:
        obj = decoded(data[off:])
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("type") != "message" or "id" not in obj:
        return None
    return obj["id"], obj.get("data")


class WsReader:
    """Reads the server's frames for ``frames`` (a :class:`~.loadframes.LoadFrames`).

    :meth:`feed` returns the bytes to send back (a pong per ping, a close answering the
    server's close); :attr:`closed` is the server's close code once it closed (1005 for a
    close without one). Raises what ``frames`` raises (:class:`~.wire.Degraded`, a payload
    that is not JSON) and ``ValueError`` for a masked server frame or a continuation
    without a message before it."""

    __slots__ = ("_buf", "_parts", "closed", "frames")

    def __init__(self, frames: LoadFrames) -> None:
        self.frames = frames
        self.closed: int | None = None
        self._buf = b""
        self._parts: list[bytes] | None = None

    def feed(self, data: bytes, read_at: float) -> bytes:
        """Handle bytes read at ``read_at`` (monotonic s); the bytes to send back."""
        if not self._buf:
            hit = ws_message(data)
            if hit is not None:
                f = self.frames
                f.last = hit[0]
                f.got(hit[1], read_at, f.port)
                return b""
        buf = self._buf + data if self._buf else data
        out = []
        pos, end = 0, len(buf)
        while self.closed is None and end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b1 & 0x80:
                raise ValueError("the server sent a masked frame")
            n, off = b1 & 0x7F, pos + 2
            if n == 126:
                if end - off < 2:
                    break
                n, off = int.from_bytes(buf[off : off + 2], "big"), off + 2
            elif n == 127:
                if end - off < 8:
                    break
                n, off = int.from_bytes(buf[off : off + 8], "big"), off + 8
            if end - off < n:
                break
            out.append(self._frame(b0 & 0x0F, bool(b0 & 0x80), buf[off : off + n], read_at))
            pos = off + n
        self._buf = buf[pos:]
        return b"".join(out)

    def _frame(self, opcode: int, fin: bool, payload: bytes, read_at: float) -> bytes:
        if opcode == TEXT and fin and self._parts is None:
            self.frames.text(payload, read_at)
        elif opcode in (TEXT, CONTINUATION):
            if opcode == TEXT:
                self._parts = []
            if self._parts is None:
                raise ValueError("a continuation frame without a message before it")
            self._parts.append(payload)
            if fin:
                whole, self._parts = b"".join(self._parts), None
                self.frames.text(whole, read_at)
        elif opcode == PING:
            return client_frame(payload, PONG)
        elif opcode == CLOSE:
            self.closed = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            return client_frame(payload[:2], CLOSE)
        return b""  # binary and pong frames are not a load subscriber's business
