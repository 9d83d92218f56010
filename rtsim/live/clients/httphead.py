"""The head of an HTTP/1.1 answer (status line and headers), read out of bytes: what the
load generator's bare-Protocol subscribers (:mod:`.sse_raw`, :mod:`.ws_raw`) need of the
server's answer to their one request (sans-I/O).

    head = read_head(b"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\n\\r\\n")
    head.status, head.headers["upgrade"], head.rest  # 101, "websocket", b""
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_HEAD", "Head", "read_head"]

#: Bytes an answer's status line and headers may take.
MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class Head:
    """An answer's ``status``, its ``headers`` (names lower-cased; a repeated header's
    last value) and the bytes that followed the head (``rest``: the body's start)."""

    status: int
    headers: dict[str, str]
    rest: bytes

    def body_complete(self, body: bytes) -> bytes | None:
        """``body`` cut to ``Content-Length`` once that many bytes are in, else None
        (None too without ``Content-Length``: such a body ends with the connection)."""
        length = self.headers.get("content-length", "")
        if length.isdigit() and len(body) >= int(length):
            return body[: int(length)]
        return None


def read_head(buf: bytes) -> Head | None:
    """The head at the start of ``buf``, or None while it is incomplete. Raises
    ``ValueError`` for bytes that are not an HTTP answer or a head over :data:`MAX_HEAD`."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise ValueError(f"an answer head longer than {MAX_HEAD} bytes")
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Head(int(parts[1]), headers, buf[end + 4 :])
