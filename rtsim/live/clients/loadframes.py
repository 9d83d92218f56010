"""What a load subscriber makes of the server's WebSocket text frames, whatever library
reads them off the socket (aiohttp in :mod:`.websocket`, picows in :mod:`.ws_picows`).

    frames = LoadFrames(got, gap, since=None, port=54321)
    frames.text(b'{"type":"message","id":"7","data":{...}}', read_at=time.monotonic())
    frames.last  # "7": the position to resume after if the connection drops

The frames are those of ``docs/protocol.md``: ``message`` (its ``data`` goes to ``got``,
its ``id`` becomes the resume position), ``gap`` (to ``gap``; its ``position`` becomes the
resume position), ``subscribed`` (its ``since`` is the resume position until a message
arrives) and ``degrade`` (raised as :class:`~.wire.Degraded` carrying the position). Other
frames (``ack``, ``presence``, ``error``) are not a load subscriber's business.

This is the load generator's hot path, one call per delivery. A broadcast reaches every
subscriber of its channel as the same bytes, so frames are decoded (orjson) through a
bounded per-process memo (:func:`decoded`): a worker process decodes each broadcast once,
not once per subscriber, and the decoded objects it hands out are shared, to be read only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from .wire import degraded_of

__all__ = ["MEMO_FRAMES", "LoadFrames", "LoadReader", "decoded"]

#: Distinct frames the decoding memo holds (least recently used dropped first): a worker's
#: subscribers read a broadcast within milliseconds of each other, so a few suffice even
#: with thousands of channels; 4,096 frames of ~200 bytes are about 2 MB.
MEMO_FRAMES = 4096


@functools.lru_cache(maxsize=MEMO_FRAMES)
def decoded(payload: bytes | str) -> Any:
    """``orjson.loads(payload)``, memoized: equal payloads give the *same* object, so the
    caller must not change it. Raises ``orjson.JSONDecodeError`` (a ``ValueError``) for
    a payload that is not JSON (not memoized). Like every load reader it reads an integer
    outside [-2**63, 2**64) as a float (orjson's range; ``json.loads`` keeps it exact): the
    load generator's own messages never hold one."""
    return orjson.loads(payload)


class LoadReader:
    """What one load subscriber's reader of its connection (frames: :class:`LoadFrames`,
    SSE events: :class:`~.loadevents.LoadEvents`) reports to and remembers (sans-I/O: no
    socket, no clock — the caller passes the time its bytes were read).

    ``got(data, read_at, port)`` is called per message, ``gap(obj)`` (if given) per
    ``gap``; ``since`` is the position the subscription resumes after (None: from now on)
    and ``port`` the connection's local TCP port (-1 if unknown) passed on to ``got``.
    :attr:`last` is the position to resume after at any moment; a reader that has found a
    message by other means (:func:`~.wsframes.ws_message`) sets it and calls :attr:`got`
    itself.
    """

    __slots__ = ("_gap", "got", "last", "port")

    def __init__(
        self,
        got: Callable[[Any, float, int], None],
        gap: Callable[[Mapping[str, Any]], None] | None = None,
        since: str | None = None,
        port: int = -1,
    ) -> None:
        self.got = got
        self._gap = gap
        self.last = since
        self.port = port


class LoadFrames(LoadReader):
    """One load subscriber's reading of its connection's WebSocket text frames (see
    :class:`LoadReader` for what it reports)."""

    __slots__ = ()

    def text(self, payload: bytes | str, read_at: float) -> None:
        """Handle one text frame's payload (UTF-8 JSON) read at ``read_at`` (monotonic s).
        The ``data`` passed to ``got`` and the object passed to ``gap`` are shared with the
        other subscribers that read the same frame (see :func:`decoded`): read only.

        Raises :class:`~.wire.Degraded` (resuming after :attr:`last`) for a ``degrade``
        frame and ``orjson.JSONDecodeError`` (a ``ValueError``) for a payload that is not
        JSON."""
        obj = decoded(payload)
        kind = obj.get("type")
        if kind == "message":
            self.last = obj.get("id", self.last)
            self.got(obj.get("data"), read_at, self.port)
        elif kind == "gap":
            self.last = obj.get("position", self.last)
            if self._gap is not None:
                self._gap(obj)
        elif kind == "subscribed" and self.last is None:
            self.last = obj.get("since")
        elif kind == "degrade":
            raise degraded_of(obj, self.last)
