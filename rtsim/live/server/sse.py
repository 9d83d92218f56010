"""Server-Sent Events at ``GET /sse?channel=C[&channel=C2…]``: ``text/event-stream``, resumable.

The stream starts with ``retry:`` and an id-only event carrying the start cursor, then
one presence snapshot per channel, then messages (``id:`` is the cursor of every channel,
``"a=EPOCH:3,b=EPOCH:7"``, see docs/protocol.md). A client resumes with ``Last-Event-ID``
(or ``?last_event_id=``); a cursor from another epoch gets ``event: gap`` (reason
``"epoch"``) and every message held, and the stream goes on in the current epoch. A
single-channel chunked stream takes the hub's direct-write fast path: while nothing is
queued for it, a broadcast's pre-framed event bytes go straight to the socket.

When the connection's token expires the stream ends with an ``error`` event
``{"type": "error", "code": "token_expired", "message"}``; the client reconnects with a
fresh token and its ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from aiohttp import web

from rtsim.core.replaylog import ReplayLogError, encode_cursor
from rtsim.core.transport import Transport

from ..protocol import ProtocolError, error_frame, parse_channels, parse_resume
from .auth import AuthError
from .gate import TOKEN_EXPIRED
from .hub import Broadcast, Control, Replay, Subscriber
from .state import ServerState

__all__ = ["EXPIRED_EVENT", "TRANSPORT", "SseHandler"]

TRANSPORT = Transport.SSE

#: The last event of a stream whose token expired.
EXPIRED_EVENT = (
    b"event: error\ndata: "
    + error_frame(TOKEN_EXPIRED, "the token has expired; reconnect with a new one").encode()
    + b"\n\n"
)


class SseHandler:
    """The ``/sse`` endpoint of one server (``state``: the server's shared state)."""

    transport: ClassVar[Transport] = TRANSPORT

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/sse", self.sse)]

    async def close(self) -> None:
        """Nothing of its own: streams end when the server closes their subscribers."""

    async def sse(self, request: web.Request) -> web.StreamResponse:
        st = self.state
        cfg, gate, hub = st.config, st.gate, st.hub
        sub = Subscriber(TRANSPORT, cfg.send_queue)
        peer = gate.peer(request)

        def overflow(s: Subscriber) -> None:
            gate.slow_consumer(TRANSPORT)
            if request.transport is not None:
                request.transport.abort()  # the stream ends; the client resumes from its id

        sub.on_overflow = overflow
        cursor: dict[str, str] = {}
        try:
            grant = gate.admit(request, TRANSPORT)
            if st.overload.refuses(TRANSPORT):  # step down (503 with the level, interval)
                return st.overload.refusal()
            channels = parse_channels(request.query.getall("channel", []), cfg.max_subscriptions)
            for ch in channels:
                grant.check_subscribe(ch)
            resume_text = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
            resume = parse_resume(resume_text, channels) or {}
            for ch in channels:
                cursor[ch] = await hub.subscribe(sub, ch, resume.get(ch))
        except (AuthError, ProtocolError, ReplayLogError) as exc:
            hub.unsubscribe_all(sub)
            return gate.http_error(exc)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        gate.opened(TRANSPORT, peer)
        # At the token's exp the writer sends EXPIRED_EVENT and the stream ends.
        expiry = gate.on_expiry(grant, TRANSPORT, lambda: sub.close(TOKEN_EXPIRED))
        try:
            await resp.prepare(request)
            # An id-only event: the stream's start cursor, so that a client that
            # reconnects before any message resumes from here (not "from now").
            first = f"retry: {cfg.retry_ms}\nid: {encode_cursor(cursor)}\n\n".encode()
            if st.presence is not None:
                for ch in channels:
                    snap = Control(st.presence.snapshot(ch))
                    first += b"event: presence\ndata: " + snap.text.encode() + b"\n\n"
            await resp.write(first)
            transport = request.transport
            if (
                len(channels) == 1
                and resp.headers.get("Transfer-Encoding") == "chunked"
                and all(hasattr(transport, a) for a in ("write", "get_write_buffer_size"))
            ):
                # One channel: every connection gets the same event bytes, so broadcasts
                # may be written straight to the socket as chunks while nothing is queued.
                sub.use_direct(transport, sse=True)
            await self._writer(sub, resp, cursor)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:  # e.g. an event that cannot be encoded: end this stream only
            hub.send_failed(sub)
        finally:
            if expiry is not None:
                expiry.cancel()
            sub.close("stream ended")
            hub.unsubscribe_all(sub)
            gate.closed(TRANSPORT, peer)
        return resp

    async def _writer(
        self, sub: Subscriber, resp: web.StreamResponse, cursor: dict[str, str]
    ) -> None:
        loop = asyncio.get_running_loop()
        latency = self.state.metrics.latency_by[TRANSPORT]
        deliveries = self.state.metrics.deliveries_by[TRANSPORT]
        single = len(cursor) == 1
        keepalive = self.state.config.keepalive_s
        while True:
            if not await sub.wait(keepalive):
                await resp.write(b": keep-alive\n\n")
                continue
            if sub.closed:
                if sub.close_reason == TOKEN_EXPIRED:
                    await resp.write(EXPIRED_EVENT)
                return
            chunks: list[bytes] = []
            traced: list[Broadcast] = []
            now = loop.time()
            n = 0
            while sub.queue:
                item = sub.pop()
                if isinstance(item, Control):
                    data = b"data: " + item.text.encode() + b"\n\n"
                    head = b"event: " + str(item.obj["type"]).encode() + b"\n"
                    if item.advance is not None:
                        cursor[item.advance[0]] = item.advance[1]
                        head += b"id: " + encode_cursor(cursor).encode() + b"\n"
                    chunks.append(head + data)
                    continue
                replay = isinstance(item, Replay)
                b: Broadcast = item.b if isinstance(item, Replay) else item
                cursor[b.channel] = b.position
                if single:
                    chunks.append(b.sse_single)
                else:
                    chunks.append(b"id: " + encode_cursor(cursor).encode() + b"\n" + b.sse_data)
                if not replay:
                    latency.observe(now - b.env.ts)
                    if b.trace is not None:
                        traced.append(b)
                n += 1
            deliveries.inc(n)
            for b in traced:
                self.state.hub.written(sub, b)  # handed to the socket now
            await resp.write(b"".join(chunks))
