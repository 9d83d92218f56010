"""An upgraded WebSocket that outlives its HTTP request handler (less memory per socket).

aiohttp serves each connection with a request task that runs the route's handler, and it
keeps the parsed upgrade request, its HTTP parser and that task's coroutines for as long
as the handler runs — for a WebSocket, its whole life (about 5 KiB of an idle socket's
16 KiB here, see ``benchmarks/results/ws_memory_profile.md``). A handler that upgrades
with :class:`DetachedWebSocket`, hands the socket to a reader task of its own and then
calls :func:`detach` may return at once: aiohttp finishes the request (without closing
the socket) and drops what only the HTTP exchange needed.

What stays is aiohttp's: the connection's protocol object (now only routing bytes to the
WebSocket frame parser), the WebSocketResponse with its reader queue, writer and
heartbeat, and the transport. Framing, ping/pong, close handshake and size limits are all
still aiohttp's.

:func:`detach` touches a few private attributes of aiohttp's request handler and
request (checked with ``getattr``; with an aiohttp that lacks one, that part of the saving
is simply not made). ``tests/live/server/test_ws_detach.py`` checks that each one is
released with the aiohttp installed.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp._websocket.reader import WebSocketDataQueue
from aiohttp.http import WebSocketReader
from aiohttp.streams import EofStream
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["DetachedWebSocket", "Inbox", "detach", "own_inbox"]

#: Stands in for the request's headers once the upgrade is done (shared, empty).
_NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
#: Stands in for the request handler's queue of parsed HTTP requests: after an upgrade no
#: more are parsed (bytes go to the WebSocket parser), so it stays empty (maxlen 0).
_NO_MESSAGES: deque[Any] = deque(maxlen=0)
#: The inbox of every socket with nothing received and unread (maxlen 0, like _NO_MESSAGES).
_NOTHING: deque[Any] = deque(maxlen=0)
#: A WebSocket writer's source of mask keys, shared (a server's writers never mask).
_MASK_BITS = functools.partial(random.getrandbits, 32)
_OVERHEAD = 64  # bytes counted per queued message besides its payload (as aiohttp does)


class DetachedWebSocket(web.WebSocketResponse):
    """A :class:`aiohttp.web.WebSocketResponse` that stays open when its handler returns.

    aiohttp closes a response's socket in ``write_eof()`` once the handler returns; after
    :func:`detach` this one does not — whoever reads it closes it (``close()``), as before.
    Until then (e.g. the client left during the handshake) it behaves as its base class.
    """

    # A slot, not a __dict__ entry: the base class's instances already have 29 of these,
    # and past 30 CPython stops sharing the keys (296 B per socket becomes 1.5 KiB).
    __slots__ = ("detached",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.detached = False

    async def write_eof(self) -> None:  # type: ignore[override]
        if self.detached:
            return
        await super().write_eof()


def detach(request: web.Request, ws: DetachedWebSocket) -> bool:
    """Let ``ws`` (prepared on ``request``) outlive its handler; call just before returning.

    Returns False (and changes nothing) if it cannot: the handler must then keep running
    until the socket closes, as with a plain WebSocketResponse. On True the handler
    returns ``ws`` right after; a task of the caller's own reads the socket.

    aiohttp's request task ends once the handler returns; as it ends it closes the
    connection's transport unless the connection is marked force-closed (which would
    also make it drop incoming bytes), so the connection's protocol is shown no transport
    until that task has ended, then given it back (unless the socket closed meanwhile).
    Also released, as an upgraded socket never uses them again:

    * the HTTP request parser and the handler's queue of parsed requests — after the
      upgrade aiohttp feeds the socket's bytes to the WebSocket frame parser only;
    * the upgrade request's headers (the request object stays: the response uses it
      to reach the transport). Read anything needed from them before this call.
    """
    proto: Any = request.protocol
    task = request.task
    transport = getattr(proto, "transport", None)
    if (
        not isinstance(task, asyncio.Task)
        or task.done()
        or transport is None
        or getattr(proto, "_payload_parser", None) is None  # not upgraded
    ):
        return False
    ws.detached = True
    proto.transport = None

    def give_back(_: object) -> None:
        if proto.transport is None and not transport.is_closing():
            proto.transport = transport

    task.add_done_callback(give_back)
    writer: Any = getattr(ws, "_writer", None)
    if getattr(writer, "use_mask", True) is False and hasattr(writer, "get_random_bits"):
        writer.get_random_bits = _MASK_BITS  # a server never masks: one shared (264 B each)
    if hasattr(proto, "_parser"):
        proto._parser = None
    msgs = getattr(proto, "_messages", None)
    if isinstance(msgs, deque) and not msgs:
        proto._messages = _NO_MESSAGES
    req: Any = request
    message = getattr(req, "_message", None)
    if message is not None and hasattr(message, "_replace"):
        req._message = message._replace(headers=_NO_HEADERS, raw_headers=())
        if hasattr(req, "_headers"):
            req._headers = _NO_HEADERS
        cache = getattr(req, "_cache", None)
        if isinstance(cache, dict):
            cache.pop("headers", None)
            cache.pop("raw_headers", None)
    return True


class Inbox(WebSocketDataQueue):  # type: ignore[misc]
    """Where aiohttp's frame parser puts a socket's messages, in place of its own queue.

    The same interface (``feed_data``, ``feed_eof``, ``set_exception``, ``read``), so
    ``WebSocketResponse.receive()`` and ``close()`` work unchanged. The differences: with
    nothing unread it holds no deque of its own (a shared empty one), and when a message,
    the end of the stream or an error arrives while no one is waiting in :meth:`read`,
    it calls ``wake()`` — so the socket needs no task parked on it while idle: the
    owner starts a reader when woken and lets it end once :meth:`ready` is False.
    Reading from the transport pauses above ``limit`` bytes unread, as aiohttp's does.
    """

    __slots__ = ("_end", "_err", "_limit_b", "_msgs", "_proto", "_unread", "_waiting", "_wake")

    def __init__(self, protocol: Any, limit: int, wake: Callable[[], None]) -> None:
        # The base class's __init__ is not called: it would allocate its own deque.
        self._msgs: deque[tuple[Any, int]] = _NOTHING
        self._waiting: asyncio.Future[None] | None = None
        self._end = False
        self._err: BaseException | None = None
        self._proto = protocol
        self._unread = 0
        self._limit_b = limit
        self._wake = wake

    def ready(self) -> bool:
        """True if :meth:`read` would return (or raise) at once."""
        return bool(self._msgs) or self._end

    def is_eof(self) -> bool:
        return self._end

    def exception(self) -> BaseException | None:
        return self._err

    def _arrived(self) -> None:
        w = self._waiting
        if w is not None:
            self._waiting = None
            if not w.done():
                w.set_result(None)
        else:
            self._wake()

    def feed_data(self, data: Any, size: int) -> None:
        q = self._msgs
        if q is _NOTHING:
            q = self._msgs = deque()
        q.append((data, size))
        self._unread += size + _OVERHEAD
        if self._unread > self._limit_b and not self._proto._reading_paused:
            self._proto.pause_reading()
        self._arrived()

    def feed_eof(self) -> None:
        self._end = True
        self._arrived()

    def set_exception(self, exc: BaseException, exc_cause: BaseException | None = None) -> None:
        self._end = True
        self._err = exc
        if exc_cause is not None and exc_cause is not exc and exc.__cause__ is None:
            exc.__cause__ = exc_cause
        self._arrived()

    async def read(self) -> Any:
        if not self._msgs and not self._end:
            w = self._waiting = asyncio.get_running_loop().create_future()
            try:
                await w
            except (asyncio.CancelledError, TimeoutError):
                self._waiting = None
                raise
        q = self._msgs
        if q:
            data, size = q.popleft()
            if not q:
                self._msgs = _NOTHING
            self._unread -= size + _OVERHEAD
            if self._unread < self._limit_b and self._proto._reading_paused:
                self._proto.resume_reading()
            return data
        if self._err is not None:
            raise self._err
        raise EofStream


def own_inbox(
    request: web.Request, ws: web.WebSocketResponse, wake: Callable[[], None]
) -> Inbox | None:
    """Give ``ws`` (just prepared on ``request``, nothing awaited since) an :class:`Inbox`.

    A new aiohttp frame parser (same limits) feeds it; anything aiohttp's own queue
    already holds is moved over. None (nothing changed) if ``ws`` is not as expected.
    """
    proto: Any = request.protocol
    old_q: Any = getattr(ws, "_reader", None)
    old_parser = getattr(ws, "_parser", None)
    if (
        not isinstance(old_q, WebSocketDataQueue)
        or old_parser is None
        or getattr(proto, "_payload_parser", None) is not old_parser
        or ws.compress
    ):
        return None
    inbox = Inbox(proto, old_q._limit, wake)
    parser = WebSocketReader(inbox, ws._max_msg_size, compress=False, decode_text=True)
    proto._payload_parser = parser
    ws._parser = parser
    ws._reader = inbox
    for data, size in old_q._buffer:  # what came with the upgrade request, if anything
        inbox.feed_data(data, size)
    return inbox
