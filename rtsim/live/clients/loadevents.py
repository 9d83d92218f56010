"""What a load subscriber makes of the server's SSE stream body, whatever reads it off the
socket (sans-I/O: bytes in, calls out; the caller passes the time the bytes were read).

    events = LoadEvents(got, gap, since="load-x-0=ab12:6", port=54321)
    events.chunked(b"5c\\r\\nid: load-x-0=ab12:7\\ndata: {...}\\n\\n\\r\\n", read_at=now)
    events.last  # "load-x-0=ab12:7": the Last-Event-ID to resume with if the stream drops

The body is HTTP/1.1 chunked (:meth:`chunked`) or, without ``Transfer-Encoding``, read
until the connection closes (:meth:`plain`). Events are those of ``docs/protocol.md``:
``message`` (its envelope's ``data`` goes to ``got``), ``gap`` (to ``gap``) and ``degrade``
(raised as :class:`~.wire.Degraded` carrying :attr:`LoadEvents.last`); the others are not
a load subscriber's business. :attr:`LoadEvents.last` follows every ``id:`` field, as an
EventSource's ``Last-Event-ID`` does.

The server writes each broadcast as one chunk holding one event, the same bytes to every
subscriber of the channel. Such a chunk is read by :func:`sse_message` (memoized: decoded
once per worker process, see :func:`~.loadframes.decoded`); anything else — comments,
``retry:``, named events, events split over chunks — goes through the core's
:class:`~rtsim.core.transport.SseDecoder`, which reads it as a browser would.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from rtsim.core.transport import SseDecoder

from .loadframes import MEMO_FRAMES, LoadReader
from .wire import degraded_of

__all__ = ["LoadEvents", "sse_chunk", "sse_message"]


@functools.lru_cache(maxsize=MEMO_FRAMES)
def sse_message(event: bytes) -> tuple[str, Any] | None:
    """``(id, envelope)`` of ``event`` if it is exactly one unnamed event of an ``id:`` line
    and one ``data:`` line (``b"id: I\\ndata: D\\n\\n"``, LF line ends, no comment, no
    ``retry:``), its data JSON; None for anything else. Memoized: equal events give the
    *same* envelope object, so the caller must not change it. What it returns is what
    :class:`~rtsim.core.transport.SseDecoder` and a JSON decoder make of such an event."""
    if not event.startswith(b"id: ") or not event.endswith(b"\n\n") or b"\r" in event:
        return None
    nl = event.find(b"\n", 4)
    if not event.startswith(b"data: ", nl + 1) or event.find(b"\n", nl + 7) != len(event) - 2:
        return None
    head = event[4:nl]
    if b"\0" in head:  # an id with NUL is ignored by the decoder
        return None
    try:
        last_id = head.decode("utf-8")
        obj = orjson.loads(event[nl + 7 : -2])
    except ValueError:  # not UTF-8 (the decoder would replace) or not JSON
        return None
    return last_id, obj


@functools.lru_cache(maxsize=MEMO_FRAMES)
def sse_chunk(data: bytes) -> tuple[str, Any] | None:
    """:func:`sse_message` of ``data`` if it is exactly one HTTP/1.1 chunk (``SIZE\r\n``,
    the event, ``\r\n``; no extension) holding such an event, else None. Memoized
    likewise: a read of a broadcast's whole chunk is handled with one lookup."""
    crlf = data.find(b"\r\n", 0, 18)
    if crlf < 1 or not data.endswith(b"\r\n"):
        return None
    try:
        size = int(data[:crlf], 16)
    except ValueError:
        return None
    if size == 0 or crlf + 4 + size != len(data):
        return None
    return sse_message(data[crlf + 2 : -2])


class LoadEvents(LoadReader):
    """One load subscriber's reading of its SSE stream body (see
    :class:`~.loadframes.LoadReader` for what it reports: ``data`` is the envelope's,
    shared with the other subscribers that read the same event, read only; ``since`` and
    :attr:`last` are ``Last-Event-ID`` values). :attr:`ended` turns true when a chunked
    body's last chunk arrives.
    """

    __slots__ = ("_buf", "_decoder", "_idle", "ended")

    def __init__(
        self,
        got: Callable[[Any, float, int], None],
        gap: Callable[[Mapping[str, Any]], None] | None = None,
        since: str | None = None,
        port: int = -1,
    ) -> None:
        super().__init__(got, gap, since, port)
        self.ended = False
        self._buf = b""
        self._decoder = SseDecoder()
        self._idle = False  # between chunks and between events (the fast path applies)

    def chunked(self, data: bytes, read_at: float) -> None:
        """Handle bytes of a chunked body read at ``read_at`` (monotonic s). Raises
        :class:`~.wire.Degraded` for a ``degrade`` event and ``ValueError`` for a chunk
        header that is not hexadecimal or an event's data that is not JSON."""
        if self._idle:  # the common case: a read is one broadcast's whole chunk
            hit = sse_chunk(data)
            if hit is not None:
                self.last = hit[0]
                self.got(hit[1].get("data"), read_at, self.port)
                return
        buf = self._buf + data if self._buf else data
        pos, n = 0, len(buf)
        while not self.ended:
            crlf = buf.find(b"\r\n", pos)
            if crlf < 0:
                break
            size = int(buf[pos:crlf].partition(b";")[0], 16)  # chunk extensions ignored
            end = crlf + 2 + size
            if n < end + 2:
                break
            if size == 0:
                self.ended = True
            else:
                self._event(buf[crlf + 2 : end], read_at)
            pos = end + 2
        self._buf = buf[pos:]
        self._idle = not self._buf and self._decoder.idle

    def plain(self, data: bytes, read_at: float) -> None:
        """Handle bytes of a body that is not chunked (read until the connection closes);
        raises as :meth:`chunked`."""
        self._decode(data, read_at)

    def _event(self, chunk: bytes, read_at: float) -> None:
        if self._decoder.idle:
            hit = sse_message(chunk)
            if hit is not None:
                self.last = hit[0]
                self.got(hit[1].get("data"), read_at, self.port)
                return
        self._decode(chunk, read_at)

    def _decode(self, data: bytes, read_at: float) -> None:
        decoder = self._decoder
        if self.last is not None and decoder.idle:
            decoder.last_event_id = self.last  # moved on by the fast path meanwhile
        for ev in decoder.feed(data):
            obj = orjson.loads(ev.data)
            if ev.event == "degrade":
                raise degraded_of(obj, self.last)
            if ev.event == "message":
                self.got(obj.get("data"), read_at, self.port)
            elif ev.event == "gap" and self._gap is not None:
                self._gap(obj)
            self.last = ev.last_event_id or self.last
        self.last = decoder.last_event_id or self.last
