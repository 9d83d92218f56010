"""What a load subscriber makes of the server's WebSocket text frames, whatever library
reads them off the socket (aiohttp in :mod:`.websocket`, picows in :mod:`.ws_picows`).

    frames = LoadFrames(got, gap, since=None, port=54321)
    frames.text(b'{"type":"message","id":"7","data":{...}}', read_at=time.monotonic())
    frames.last  # "7": the position to resume after if the connection drops

The frames are those of ``docs/protocol.md``: ``message`` (its ``data`` goes to ``got``,
its ``id`` becomes the resume position), ``gap`` (to ``gap``; its ``position`` becomes the
resume position), ``subscribed`` (its ``since`` is the resume position until a message
arrives) and ``degrade`` (raised as :class:`~.wire.Degraded` carrying the position). Other
frames (``ack``, ``presence``, ``error``) are not a load subscriber's business. Frames are
decoded with orjson: this is the load generator's hot path, one call per delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from .wire import degraded_of

__all__ = ["LoadFrames"]


class LoadFrames:
    """One load subscriber's reading of its connection's frames (sans-I/O: no socket, no
    clock — the caller passes the time its bytes were read).

    ``got(data, read_at, port)`` is called per ``message`` frame, ``gap(obj)`` (if given)
    per ``gap`` frame; ``since`` is the position the subscription resumes after (None: from
    now on) and ``port`` the connection's local TCP port (-1 if unknown) passed on to
    ``got``. :attr:`last` is the position to resume after at any moment.
    """

    __slots__ = ("_gap", "_got", "last", "port")

    def __init__(
        self,
        got: Callable[[Any, float, int], None],
        gap: Callable[[Mapping[str, Any]], None] | None = None,
        since: str | None = None,
        port: int = -1,
    ) -> None:
        self._got = got
        self._gap = gap
        self.last = since
        self.port = port

    def text(self, payload: bytes | bytearray | memoryview | str, read_at: float) -> None:
        """Handle one text frame's payload (UTF-8 JSON) read at ``read_at`` (monotonic s).

        Raises :class:`~.wire.Degraded` (resuming after :attr:`last`) for a ``degrade``
        frame and ``orjson.JSONDecodeError`` (a ``ValueError``) for a payload that is not
        JSON."""
        obj = orjson.loads(payload)
        kind = obj.get("type")
        if kind == "message":
            self.last = obj.get("id", self.last)
            self._got(obj.get("data"), read_at, self.port)
        elif kind == "gap":
            self.last = obj.get("position", self.last)
            if self._gap is not None:
                self._gap(obj)
        elif kind == "subscribed" and self.last is None:
            self.last = obj.get("since")
        elif kind == "degrade":
            raise degraded_of(obj, self.last)
