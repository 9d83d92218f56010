"""WebSocket at ``GET /ws``: JSON text frames — subscribe, unsubscribe, publish, heartbeat,
presence (client → server); message, subscribed, unsubscribed, ack, gap, presence, error
(server → client). See ``docs/protocol.md``.

Close codes: 1008 after ``max_errors`` consecutive protocol errors, 1009 for a frame over
``max_frame_bytes`` (aiohttp sends it), 1013 when the send queue overflowed (the client
resumes with ``since``), 1011 when a send to it raised (``rtsim_send_failures_total``; the
other connections are unaffected), 4001 with reason ``token_expired`` when the connection's
token expires (the client reconnects with a fresh token and resumes with ``since``), 1001
when the server shuts down. Frames are uncompressed, so the
hub may write a broadcast's pre-framed bytes straight to an idle socket.

Memory per idle socket: after the upgrade the route handler returns (:mod:`.wsdetach`),
so aiohttp's request task, the parsed upgrade request and its HTTP parser are not kept for
the socket's life. An idle socket has no task at all: aiohttp's frame parser puts what
arrives in an :class:`~.wsdetach.Inbox`, which starts a reader task when something
arrives, and that task ends once it has read everything; a writer task likewise runs only
while something is queued. The connection's state is one slotted :class:`_Conn`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, ClassVar

from aiohttp import WSMsgType, web

from rtsim.core.replaylog import ReplayLogError
from rtsim.core.transport import Transport

from ..backplanes.base import BackplaneUnavailable
from ..protocol import (
    ClientFrame,
    Heartbeat,
    PresenceSet,
    ProtocolError,
    Publish,
    Subscribe,
    Unsubscribe,
    error_frame,
    parse_client_frame,
)
from .auth import AuthError, Grant
from .fastlane import idle, send_idle
from .gate import CLOSE_TOKEN_EXPIRED, TOKEN_EXPIRED, retry_after_of
from .hub import RESYNC, Control, Replay, Subscriber
from .state import CLOSE_GOING_AWAY, ServerState
from .wsdetach import DetachedWebSocket, Inbox, detach, own_inbox

__all__ = [
    "CLOSE_INTERNAL",
    "CLOSE_POLICY",
    "CLOSE_SLOW",
    "CLOSE_TOKEN_EXPIRED",
    "CLOSE_TOO_BIG",
    "TOKEN_EXPIRED",
    "TRANSPORT",
    "WebSocketHandler",
]

TRANSPORT = Transport.WEBSOCKET

#: WebSocket close codes used by the server.
CLOSE_POLICY = 1008  # too many protocol errors
CLOSE_TOO_BIG = 1009  # a frame over the size limit (aiohttp sends it)
CLOSE_SLOW = 1013  # "try again later": the send queue overflowed; resume with since
# ... also when a subscribe found the broker unreachable (the client resubscribes later)
BACKPLANE_DOWN = "backplane unavailable"
CLOSE_INTERNAL = 1011  # a send to this connection raised (only this one is dropped)

#: What ``async for msg in ws`` stops at (the reader calls ``receive()`` itself).
_END = frozenset((WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED))
_NO_PRESENCE: dict[str, dict[str, Any]] = {}  # read-only stand-in while none is set


class WebSocketHandler:
    """The ``/ws`` endpoint of one server (``state``: the server's shared state)."""

    transport: ClassVar[Transport] = TRANSPORT

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._seq = 0
        self._readers: set[asyncio.Task[None]] = set()  # of the sockets being read now

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/ws", self.websocket)]

    async def close(self) -> None:
        """Wait (up to ``close_grace_s``) for the sockets' readers to end, then cancel the rest.

        The app has closed every socket in ``state.sockets`` by then (its shutdown).
        """
        for _ in range(2):  # a socket closed just now starts its reader on the next turn
            await asyncio.sleep(0)
            readers = list(self._readers)
            if readers:
                _, pending = await asyncio.wait(readers, timeout=self.state.config.close_grace_s)
                for t in pending:
                    t.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=self.state.config.close_grace_s)

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        st = self.state
        cfg, gate = st.config, st.gate
        try:
            grant = gate.admit(request, TRANSPORT)
        except (AuthError, ProtocolError) as exc:
            return gate.http_error(exc)
        if st.overload.refuses(TRANSPORT):  # step down (503 with the level and interval)
            return st.overload.refusal()
        transport = request.transport  # kept: after the upgrade the request may not expose it
        peer = gate.peer(request)
        ws = DetachedWebSocket(
            max_msg_size=cfg.max_frame_bytes,
            heartbeat=cfg.ws_ping_s,
            compress=False,
            autoping=False,  # the reader answers pings: a pong may then end an idle reader
        )
        try:
            await ws.prepare(request)
        except ConnectionError:
            return ws  # the client left during the handshake
        st.sockets.add(ws)
        self._seq += 1
        sub = Subscriber(TRANSPORT, cfg.send_queue)
        # Uncompressed, so whole frames may be written directly. (Duck-typed: uvloop's
        # transports do not subclass asyncio.WriteTransport.)
        if all(hasattr(transport, a) for a in ("write", "get_write_buffer_size", "is_closing")):
            sub.use_direct(transport)
        gate.opened(TRANSPORT, peer)
        conn = _Conn(self, ws, sub, transport, grant, f"{grant.user}:ws{self._seq}", peer)
        sub.on_wake = conn.wake  # no writer task until something is queued
        sub.on_overflow = conn.overflow
        sub.on_fail = conn.failed
        conn.expiry = gate.on_expiry(grant, TRANSPORT, conn.expired)
        if not detach(request, ws):  # (not on an aiohttp server): read it from here
            await self._serve(conn)
            return ws
        # This handler returns now (aiohttp's request task, the parsed upgrade request and
        # its HTTP parser go); a reader task runs whenever something has arrived.
        conn.inbox = own_inbox(request, ws, conn.read)
        if conn.inbox is None:
            conn.read()  # (an aiohttp that differs): one reader for the socket's life
        return ws

    async def _serve(self, conn: _Conn) -> None:
        """Read the socket's frames until it closes, then clean up and close it — or, with
        an inbox, until nothing more has arrived (the next arrival starts it again)."""
        st = self.state
        ws, sub, inbox = conn.ws, conn.sub, conn.inbox
        ended = True
        try:
            while True:
                if inbox is not None and not inbox.ready():
                    ended = False
                    return
                msg = await ws.receive()
                kind, data = msg.type, msg.data
                del msg  # nothing of a frame is kept while the socket is idle
                if kind in _END or sub.closed:
                    break
                if kind is WSMsgType.PING:
                    await ws.pong(data)
                    data = None
                    continue
                if kind is WSMsgType.PONG:
                    data = None
                    continue
                if kind is WSMsgType.TEXT:
                    frame: ClientFrame | None = None
                    try:
                        frame = parse_client_frame(data, st.config.max_frame_bytes)
                        await self._frame(frame, conn)
                        conn.errors = 0
                    except (ProtocolError, AuthError, ReplayLogError) as exc:
                        conn.errors += 1
                        self._error(sub, exc)
                        if isinstance(exc, BackplaneUnavailable) and isinstance(frame, Subscribe):
                            # Not subscribed: close (1013) so that the client reconnects and
                            # resubscribes from its cursor, instead of staying unsubscribed.
                            sub.close(BACKPLANE_DOWN)
                            break
                    frame = data = None
                elif kind is WSMsgType.BINARY:
                    data = None
                    conn.errors += 1
                    self._error(sub, ProtocolError("binary_frame", "send JSON text frames"))
                else:  # ERROR: e.g. a frame over the size limit (aiohttp closes with 1009)
                    st.metrics.errors.labels("too_big_or_invalid").inc()
                    break
                if conn.errors >= st.config.max_errors:
                    sub.close("too many errors")
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if conn.reader is asyncio.current_task():
                conn.reader = None
            if ended and not conn.ended:
                conn.ended = True  # no reader starts again
                await self._closed(conn)

    async def _closed(self, conn: _Conn) -> None:
        """The socket's reader ended: unsubscribe, leave presence, close it."""
        st = self.state
        sub, ws = conn.sub, conn.ws
        if conn.expiry is not None:
            conn.expiry.cancel()
        slow = sub.closed and sub.close_reason == "slow consumer"
        if not sub.closed:
            sub.close("client closed")
        st.hub.unsubscribe_all(sub)
        if st.presence is not None and conn.presence:
            for ch in conn.presence:
                st.presence.leave(ch, conn.member)
        st.gate.closed(TRANSPORT, conn.peer)
        st.sockets.discard(ws)
        if not slow:
            writer = conn.writer
            if sub.close_reason in ("too many errors", BACKPLANE_DOWN) and writer is not None:
                # Let the writer flush the error frames first.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(writer), st.config.close_grace_s)
            code = CLOSE_TOKEN_EXPIRED if sub.close_reason == TOKEN_EXPIRED else CLOSE_POLICY
            if sub.close_reason == BACKPLANE_DOWN:
                code = CLOSE_SLOW
            await self._kill(conn, code, sub.close_reason)

    async def _kill(self, conn: _Conn, code: int, reason: str) -> None:
        """Stop the writer and close the WebSocket (with ``code`` unless the client closed)."""
        ws, transport, writer = conn.ws, conn.transport, conn.writer
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(BaseException):
                await writer
        if not ws.closed:
            if reason in (
                "slow consumer",
                "too many errors",
                "send failed",
                TOKEN_EXPIRED,
                BACKPLANE_DOWN,
            ):
                closing = ws.close(code=code, message=reason.encode())
            elif self.state.shutting_down:
                closing = ws.close(code=CLOSE_GOING_AWAY, message=b"server shutdown")
            else:
                closing = ws.close()
            # BaseException: a close that was waiting on the cancelled writer's drain raises
            # CancelledError; the transport is dealt with below either way.
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(closing, self.state.config.close_grace_s)
        if code == CLOSE_SLOW and isinstance(transport, asyncio.WriteTransport):
            transport.abort()  # whatever is still buffered for it is dropped

    def _error(self, sub: Subscriber, exc: Exception) -> None:
        if isinstance(exc, ProtocolError | AuthError):
            code, message = exc.code, exc.message
        else:
            code, message = "bad_cursor", str(exc)
        ref = exc.ref if isinstance(exc, ProtocolError) else None
        self.state.metrics.errors.labels(code).inc()
        sub.send(Control(json.loads(error_frame(code, message, ref, retry_after_of(exc)))))

    async def _frame(self, frame: ClientFrame, conn: _Conn) -> None:
        st = self.state
        presence, hub = st.presence, st.hub
        grant, sub, member = conn.grant, conn.sub, conn.member
        presence_state = conn.presence if conn.presence is not None else _NO_PRESENCE
        if isinstance(frame, Subscribe):
            grant.check_subscribe(frame.channel)
            if frame.channel in sub.last or frame.channel in sub.pending:
                hub.unsubscribe(sub, frame.channel)  # re-subscribe: start over
            elif len(sub.last) + len(sub.pending) >= st.config.max_subscriptions:
                raise ProtocolError(
                    "too_many_subscriptions",
                    f"at most {st.config.max_subscriptions} channels per connection",
                )
            start = await hub.subscribe(sub, frame.channel, frame.since)
            if presence is not None:
                sub.send(Control(presence.snapshot(frame.channel)))
            sub.send(Control({"type": "subscribed", "channel": frame.channel, "since": start}))
        elif isinstance(frame, Unsubscribe):
            hub.unsubscribe(sub, frame.channel)
            if presence is not None and presence_state.pop(frame.channel, None) is not None:
                presence.leave(frame.channel, member)
            sub.send(Control({"type": "unsubscribed", "channel": frame.channel}))
        elif isinstance(frame, Publish):
            try:
                env = await st.gate.publish(grant, frame.channel, frame.data, peer=conn.peer)
            except (AuthError, ProtocolError) as exc:
                if isinstance(exc, ProtocolError):
                    exc.ref = frame.ref
                    raise
                raise ProtocolError(exc.code, exc.message, ref=frame.ref) from None
            sub.send(
                Control({"type": "ack", "ref": frame.ref, "channel": env.channel, "id": env.id})
            )
        elif isinstance(frame, Heartbeat):
            if presence is not None:
                for ch, state in presence_state.items():
                    presence.heartbeat(ch, member, state)
        elif isinstance(frame, PresenceSet):
            grant.check_subscribe(frame.channel)
            assert presence is not None
            if frame.channel not in presence_state and len(presence_state) >= (
                st.config.max_subscriptions
            ):
                raise ProtocolError("too_many_subscriptions", "too many presence channels")
            if conn.presence is None:
                conn.presence = {}  # made at the first presence frame
            conn.presence[frame.channel] = frame.state
            presence.set(frame.channel, member, frame.state)

    async def _writer(self, conn: _Conn) -> None:
        """Drain the queue, then end: the next queued item starts a new writer."""
        sub, ws = conn.sub, conn.ws
        loop = asyncio.get_running_loop()
        latency = self.state.metrics.latency_by[TRANSPORT]
        deliveries = self.state.metrics.deliveries_by[TRANSPORT]
        text = WSMsgType.TEXT
        try:
            while sub.queue:
                if sub.closed and sub.close_reason not in ("too many errors", BACKPLANE_DOWN):
                    return
                now = loop.time()
                n = 0
                while sub.queue:
                    item = sub.pop()
                    if isinstance(item, Control):
                        await ws.send_frame(item.text.encode(), text)
                        continue
                    live = not isinstance(item, Replay)
                    b = item if not isinstance(item, Replay) else item.b
                    if live and b.trace is not None:
                        self.state.hub.written(sub, b)  # handed to the socket now
                    sock, t = sub.sock, sub.direct
                    if sock is not None and idle(t):
                        send_idle(sock, t, b.ws_wire)  # the fast lane (see .fastlane)
                    else:
                        await ws.send_frame(b.ws, text)
                    if live:
                        latency.observe(now - b.env.ts)
                    n += 1
                deliveries.inc(n)
        except (ConnectionError, RuntimeError):
            sub.close("send failed")
        except Exception:  # e.g. a frame that cannot be encoded: drop this connection only
            self.state.hub.send_failed(sub)
        finally:
            conn.writer = None


class _Conn:
    """One WebSocket's parts that its callbacks need (bound methods, not closures).

    :attr:`writer` is the task draining the subscriber's queue, or None while nothing is
    queued — an idle socket has no writer task (the hub writes to it directly). Slotted,
    and it holds what the socket's reader needs instead of the reader's locals.
    """

    __slots__ = (
        "ended",
        "errors",
        "expiry",
        "grant",
        "handler",
        "inbox",
        "member",
        "peer",
        "presence",
        "reader",
        "sub",
        "transport",
        "writer",
        "ws",
    )

    def __init__(
        self,
        handler: WebSocketHandler,
        ws: web.WebSocketResponse,
        sub: Subscriber,
        transport: asyncio.BaseTransport | None,
        grant: Grant,
        member: str,
        peer: str,
    ) -> None:
        self.handler = handler
        self.ws = ws
        self.sub = sub
        self.transport = transport
        self.grant = grant
        self.member = member  # this connection's presence identity, "USER:wsN"
        self.peer = peer
        self.writer: asyncio.Task[None] | None = None
        self.reader: asyncio.Task[None] | None = None  # reading what arrived, if anything
        self.inbox: Inbox | None = None  # None: one reader runs for the socket's life
        self.ended = False  # the socket is closed (or closing) and cleaned up
        self.errors = 0  # consecutive protocol errors
        self.expiry: asyncio.TimerHandle | None = None  # the token's expiry timer
        #: presence state set on this connection, by channel (None until the first)
        self.presence: dict[str, dict[str, Any]] | None = None

    def read(self) -> None:
        """Something arrived (or the socket ended): start a reader if none runs."""
        if self.reader is None and not self.ended:
            h = self.handler
            t = self.reader = asyncio.get_running_loop().create_task(h._serve(self))
            h._readers.add(t)
            t.add_done_callback(h._readers.discard)

    def wake(self) -> None:
        """Something was queued (or the subscriber closed): start a writer if none runs."""
        w = self.writer
        if (w is None or w.done()) and self.sub.queue and not self.sub.closed:
            self.writer = asyncio.get_running_loop().create_task(self.handler._writer(self))

    def overflow(self, s: Subscriber) -> None:
        st = self.handler.state
        st.gate.slow_consumer(TRANSPORT)
        st.spawn(self.handler._kill(self, CLOSE_SLOW, s.close_reason))

    def failed(self, s: Subscriber) -> None:
        # RESYNC: the server's feed skipped messages; the client resumes with its cursor.
        code = CLOSE_SLOW if s.close_reason == RESYNC else CLOSE_INTERNAL
        self.handler.state.spawn(self.handler._kill(self, code, s.close_reason))

    def expired(self) -> None:
        self.sub.close(TOKEN_EXPIRED)  # nothing more is sent to it
        self.handler.state.spawn(self.handler._kill(self, CLOSE_TOKEN_EXPIRED, TOKEN_EXPIRED))
