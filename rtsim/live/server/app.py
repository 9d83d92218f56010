"""The live server: one aiohttp process with WebSocket, SSE and long polling.

    app = create_app(ServerConfig(secret="s3cret"))   # an aiohttp Application
    run_server(ServerConfig(port=8765))               # what ``rtsim serve`` does

Endpoints (the wire protocol is documented in ``docs/protocol.md``):

=====================  ==================================================================
``POST /publish``      ``{"channel", "data"}`` → ``{"id"}``
``GET /sse``           ``?channel=C[&channel=C2…]`` → ``text/event-stream``, resumable
``GET /ws``            JSON text frames: subscribe, unsubscribe, publish, heartbeat, presence
``GET /poll``          ``?channel=C&after=CURSOR&timeout=S`` → ``{"messages", "cursor"}``
``GET|POST /presence`` presence snapshot / heartbeat for SSE and long-polling clients
``GET /metrics``       Prometheus text
``GET /healthz``       ``{"status": "ok", …}``
``GET /yjs/{room}``    a Yjs room (y-websocket binary protocol; :mod:`rtsim.live.yjs`)
``GET /``              the demo page (``rtsim/live/static/``)
``GET /favicon.ico``   the page's icon (SVG)
=====================  ==================================================================

The server owns the I/O and the clock; ids, replay and gaps come from the backplane
(the core replay log by default) and presence from the core tracker.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import logging
import math
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from rtsim.core.envelope import EnvelopeError, validate_channel
from rtsim.core.replaylog import Gap, ReplayLogError, encode_cursor
from rtsim.core.transport import LONG_POLL_HOLD_S

from ..backplanes import Backplane, make_backplane
from ..backplanes.base import BackplaneCollector
from ..errors import PortInUseError
from ..protocol import (
    ClientFrame,
    Heartbeat,
    PresenceSet,
    ProtocolError,
    Publish,
    Subscribe,
    Unsubscribe,
    error_frame,
    parse_channels,
    parse_client_frame,
    parse_resume,
    parse_timeout,
)
from .auth import Authenticator, AuthError, Grant, check_secret
from .hub import Broadcast, Control, Hub, Replay, Subscriber
from .metrics import TRANSPORTS, Metrics
from .presence import PresenceService
from .yjs import YjsService

__all__ = ["SERVER_KEY", "LiveServer", "ServerConfig", "create_app", "run_server"]

#: WebSocket close codes used by the server.
CLOSE_POLICY = 1008  # too many protocol errors
CLOSE_TOO_BIG = 1009  # a frame over the size limit (aiohttp sends it)
CLOSE_SLOW = 1013  # "try again later": the send queue overflowed; resume with since
CLOSE_GOING_AWAY = int(WSCloseCode.GOING_AWAY)  # 1001: the server shuts down

log = logging.getLogger("rtsim.live.server")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``rtsim serve`` can set. Invalid values raise ``ValueError``."""

    host: str = "127.0.0.1"
    port: int = 8765
    secret: str | None = None
    backplane: str = "memory"
    replay_len: int = 1000  # messages kept per channel for resume
    replay_age_s: float | None = None
    max_frame_bytes: int = 65536  # WebSocket frames and HTTP bodies
    send_queue: int = 1024  # messages queued per connection before it counts as slow
    max_subscriptions: int = 100  # channels per connection
    max_connections: int = 10000  # WebSocket + SSE + waiting long polls
    max_errors: int = 20  # consecutive protocol errors before a WebSocket is closed
    presence_timeout_s: float = 60.0  # C17: offline after 60 s without a heartbeat
    keepalive_s: float = 15.0  # SSE comment keep-alive interval
    retry_ms: int = 2000  # SSE retry: hint
    poll_timeout_s: float = LONG_POLL_HOLD_S  # default long-poll hold
    poll_timeout_max_s: float = 60.0
    poll_batch: int = 1000  # messages per long-poll answer and channel
    ws_ping_s: float | None = 30.0  # WebSocket ping interval (None: off)
    close_grace_s: float = 2.0  # how long a close frame to a slow client may take
    transports: tuple[str, ...] = TRANSPORTS  # enabled transports
    allow_open_remote: bool = field(default=False, repr=False)  # only for tests of the refusal

    def __post_init__(self) -> None:
        if not (0 <= self.port <= 65535):
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if self.secret is not None:
            check_secret(self.secret)
        if self.secret is None and not _is_loopback(self.host) and not self.allow_open_remote:
            raise ValueError(
                f"refusing open mode (no --secret) on non-loopback address {self.host!r};"
                " give --secret S or bind to 127.0.0.1"
            )
        for name in ("replay_len", "max_frame_bytes", "send_queue", "max_subscriptions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_connections", "max_errors", "poll_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("presence_timeout_s", "keepalive_s", "poll_timeout_max_s", "close_grace_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be > 0, got {v}")
        if not (0 <= self.poll_timeout_s <= self.poll_timeout_max_s):
            raise ValueError(
                f"poll_timeout_s must be in 0..poll_timeout_max_s, got {self.poll_timeout_s}"
            )
        if self.retry_ms < 0:
            raise ValueError(f"retry_ms must be >= 0, got {self.retry_ms}")
        unknown = set(self.transports) - set(TRANSPORTS)
        if unknown or not self.transports:
            raise ValueError(
                f"transports must be a non-empty subset of {TRANSPORTS}, got {self.transports}"
            )

    @property
    def open_mode(self) -> bool:
        return self.secret is None


SERVER_KEY: web.AppKey[LiveServer] = web.AppKey("rtsim_server")


def _json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(obj, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def _loads(raw: str | bytes) -> Any:
    """``json.loads`` that rejects NaN/Infinity (they cannot be sent on as JSON)."""

    def bad_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    return json.loads(raw, parse_constant=bad_constant)


class LiveServer:
    """The server's state: config, backplane, hub, presence, metrics and the handlers."""

    def __init__(self, config: ServerConfig, backplane: Backplane | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.backplane = backplane or make_backplane(
            config.backplane, max_len=config.replay_len, max_age_s=config.replay_age_s
        )
        self.metrics.registry.register(BackplaneCollector(self.backplane))
        self.hub = Hub(self.backplane, self.metrics)
        self.auth = Authenticator(config.secret)
        self.presence: PresenceService | None = None
        self.active = 0  # streaming connections + waiting long polls
        self._ws_seq = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.sockets: set[web.WebSocketResponse] = set()  # open /ws and /yjs connections
        self.shutting_down = False
        self.yjs = YjsService(self)

    # --- life cycle ----------------------------------------------------------------------
    async def on_startup(self, app: web.Application) -> None:
        await self.backplane.start(self.hub.on_message)
        self.presence = PresenceService(
            self.config.presence_timeout_s, self.hub.send_control, self.metrics
        )
        self.presence.start()

    async def on_shutdown(self, app: web.Application) -> None:
        """End every connection promptly: WebSockets (``/ws``, ``/yjs``) close with 1001
        "going away", SSE streams end, waiting long polls answer (with what they have)."""
        self.shutting_down = True
        for subs in list(self.hub.subs.values()):
            for s in list(subs):
                s.close("server shutdown")  # wakes the writers: SSE streams end
        for waiting in list(self.hub.waiters.values()):
            for fut in list(waiting):
                if not fut.done():
                    fut.set_result(None)  # the long poll answers now
        closing = [
            asyncio.wait_for(
                ws.close(code=CLOSE_GOING_AWAY, message=b"server shutdown"),
                self.config.close_grace_s,
            )
            for ws in list(self.sockets)
            if not ws.closed
        ]
        await asyncio.gather(*closing, return_exceptions=True)

    async def on_cleanup(self, app: web.Application) -> None:
        await self.yjs.close()
        if self.presence is not None:
            await self.presence.stop()
        await self.backplane.close()

    # --- helpers -------------------------------------------------------------------------
    def _error(self, code: str, message: str, status: int) -> web.Response:
        self.metrics.errors.labels(code).inc()
        return _json_response({"error": {"code": code, "message": message}}, status)

    def _grant(self, request: web.Request) -> Grant:
        token = self.auth.token_from(
            request.headers.get("Authorization"), request.query.get("token")
        )
        return self.auth.grant(token)

    def _admit(self, transport: str) -> None:
        if transport not in self.config.transports:
            raise ProtocolError("transport_disabled", f"{transport} is disabled on this server")
        if self.active >= self.config.max_connections:
            self.metrics.rejected.labels("too_many_connections").inc()
            raise ProtocolError(
                "too_many_connections",
                f"the server holds its maximum of {self.config.max_connections} connections",
            )

    def _open(self, transport: str) -> None:
        self.active += 1
        self.metrics.connections_by[transport].inc()
        self.metrics.connections_opened.labels(transport).inc()

    def _closed(self, transport: str) -> None:
        self.active -= 1
        self.metrics.connections_by[transport].dec()

    def _on_overflow(self, sub: Subscriber) -> None:
        self.metrics.slow_drops.labels(sub.transport).inc()

    def _http_error(self, exc: Exception) -> web.Response:
        if isinstance(exc, AuthError):
            return self._error(exc.code, exc.message, exc.status)
        if isinstance(exc, ProtocolError):
            status = {
                "transport_disabled": 404,
                "too_many_connections": 503,
                "backplane_unavailable": 503,
                "too_big": 413,
            }.get(exc.code, 400)
            return self._error(exc.code, exc.message, status)
        if isinstance(exc, ReplayLogError):
            return self._error("bad_cursor", str(exc), 400)
        raise exc

    # --- plain endpoints ---------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        return _json_response(
            {
                "status": "ok" if self.backplane.healthy() else "degraded",
                "backplane": self.backplane.name,
                "replay": "broker" if self.backplane.durable_replay else "local buffer only",
                "broker": getattr(self.backplane, "status", dict)(),
                "open_mode": self.config.open_mode,
                "transports": list(self.config.transports),
                "connections": {
                    t: int(self.metrics.sample("rtsim_connections", {"transport": t}))
                    for t in TRANSPORTS
                },
            }
        )

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"}
        )

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        if request.content_length is not None and request.content_length > (
            self.config.max_frame_bytes
        ):
            raise ProtocolError("too_big", f"body is larger than {self.config.max_frame_bytes} B")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ProtocolError(
                "too_big", f"body is larger than {self.config.max_frame_bytes} B"
            ) from None
        try:
            obj = _loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ProtocolError("bad_json", f"body is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ProtocolError("bad_json", "body must be a JSON object")
        return obj

    async def publish(self, request: web.Request) -> web.Response:
        try:
            grant = self._grant(request)
            body = await self._json_body(request)
            extra = sorted(set(body) - {"channel", "data"})
            if extra:
                raise ProtocolError("bad_frame", f"unknown field(s): {', '.join(extra)}")
            if "data" not in body:
                raise ProtocolError("bad_frame", "give 'data'")
            channel = _channel(body.get("channel"))
            grant.check_publish(channel)
            env = await self._publish(channel, body["data"])
        except (AuthError, ProtocolError) as exc:
            return self._http_error(exc)
        return _json_response({"id": env.id})

    async def _publish(self, channel: str, data: Any) -> Any:
        try:
            json.dumps(data, allow_nan=False)
        except (ValueError, TypeError, RecursionError) as exc:
            raise ProtocolError("bad_json", f"data cannot be sent as JSON: {exc}") from None
        env = await self.backplane.publish(channel, data)
        self.metrics.published.inc()
        return env

    async def presence_endpoint(self, request: web.Request) -> web.Response:
        """GET: snapshot of ``?channel=C``. POST ``{channel, client, state?, heartbeat?, leave?}``.

        A heartbeat (no ``state``, or ``heartbeat: true``) never changes a present state.
        """
        assert self.presence is not None
        try:
            grant = self._grant(request)
            if request.method == "GET":
                channel = _channel(request.query.get("channel"))
                grant.check_subscribe(channel)
                return _json_response(self.presence.snapshot(channel))
            body = await self._json_body(request)
            extra = sorted(set(body) - {"channel", "client", "state", "heartbeat", "leave"})
            if extra:
                raise ProtocolError("bad_frame", f"unknown field(s): {', '.join(extra)}")
            channel = _channel(body.get("channel"))
            grant.check_subscribe(channel)
            client = body.get("client")
            if not isinstance(client, str) or not 0 < len(client) <= 128:
                raise ProtocolError("bad_frame", "client must be a string of 1..128 characters")
            member = f"{grant.user}:{client}"
            state = body.get("state")
            if state is not None and not isinstance(state, dict):
                raise ProtocolError("bad_frame", "state must be a JSON object")
            if body.get("leave") is True:
                self.presence.leave(channel, member)
            elif state is not None and body.get("heartbeat") is not True:
                self.presence.set(channel, member, state)
            else:  # a heartbeat keeps the state; its own only restores a false offline
                self.presence.heartbeat(channel, member, state)
            return _json_response(self.presence.snapshot(channel))
        except (AuthError, ProtocolError) as exc:
            return self._http_error(exc)

    # --- SSE -----------------------------------------------------------------------------
    async def sse(self, request: web.Request) -> web.StreamResponse:
        cfg = self.config
        sub = Subscriber("sse", cfg.send_queue)

        def overflow(s: Subscriber) -> None:
            self._on_overflow(s)
            if request.transport is not None:
                request.transport.abort()  # the stream ends; the client resumes from its id

        sub.on_overflow = overflow
        cursor: dict[str, str] = {}
        try:
            self._admit("sse")
            grant = self._grant(request)
            channels = parse_channels(request.query.getall("channel", []), cfg.max_subscriptions)
            for ch in channels:
                grant.check_subscribe(ch)
            resume_text = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
            resume = parse_resume(resume_text, channels) or {}
            for ch in channels:
                cursor[ch] = await self.hub.subscribe(sub, ch, resume.get(ch))
        except (AuthError, ProtocolError, ReplayLogError) as exc:
            self.hub.unsubscribe_all(sub)
            return self._http_error(exc)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        self._open("sse")
        try:
            await resp.prepare(request)
            # An id-only event: the stream's start cursor, so that a client that
            # reconnects before any message resumes from here (not "from now").
            first = f"retry: {cfg.retry_ms}\nid: {encode_cursor(cursor)}\n\n".encode()
            if self.presence is not None:
                for ch in channels:
                    snap = Control(self.presence.snapshot(ch))
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
                sub.direct_sse = True
                sub.direct = transport
            await self._sse_writer(sub, resp, cursor, request)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            sub.close("stream ended")
            self.hub.unsubscribe_all(sub)
            self._closed("sse")
        return resp

    async def _sse_writer(
        self,
        sub: Subscriber,
        resp: web.StreamResponse,
        cursor: dict[str, str],
        request: web.Request,
    ) -> None:
        loop = asyncio.get_running_loop()
        latency = self.metrics.latency_by["sse"]
        deliveries = self.metrics.deliveries_by["sse"]
        single = len(cursor) == 1
        keepalive = self.config.keepalive_s
        while True:
            if not await sub.wait(keepalive):
                await resp.write(b": keep-alive\n\n")
                continue
            if sub.closed:
                return
            chunks: list[bytes] = []
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
                cursor[b.channel] = b.env.id
                if single:
                    chunks.append(b.sse_single)
                else:
                    chunks.append(b"id: " + encode_cursor(cursor).encode() + b"\n" + b.sse_data)
                if not replay:
                    latency.observe(now - b.env.ts)
                n += 1
            deliveries.inc(n)
            await resp.write(b"".join(chunks))

    # --- WebSocket -----------------------------------------------------------------------
    async def websocket(self, request: web.Request) -> web.StreamResponse:
        cfg = self.config
        try:
            self._admit("websocket")
            grant = self._grant(request)
        except (AuthError, ProtocolError) as exc:
            return self._http_error(exc)
        transport = request.transport  # kept: after the upgrade the request may not expose it
        ws = web.WebSocketResponse(
            max_msg_size=cfg.max_frame_bytes,
            heartbeat=cfg.ws_ping_s,
            compress=False,
            autoping=True,
        )
        try:
            await ws.prepare(request)
        except ConnectionError:
            return ws  # the client left during the handshake
        self.sockets.add(ws)
        self._ws_seq += 1
        member = f"{grant.user}:ws{self._ws_seq}"
        sub = Subscriber("websocket", cfg.send_queue)
        # Uncompressed, so whole frames may be written directly. (Duck-typed: uvloop's
        # transports do not subclass asyncio.WriteTransport.)
        if all(hasattr(transport, a) for a in ("write", "get_write_buffer_size", "is_closing")):
            sub.direct = transport
        presence_state: dict[str, dict[str, Any]] = {}
        self._open("websocket")
        loop = asyncio.get_running_loop()
        writer = loop.create_task(self._ws_writer(sub, ws))

        def overflow(s: Subscriber) -> None:
            self._on_overflow(s)
            task = loop.create_task(
                self._ws_kill(ws, writer, transport, CLOSE_SLOW, s.close_reason)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        sub.on_overflow = overflow
        errors = 0
        try:
            async for msg in ws:
                if sub.closed:
                    break
                if msg.type is WSMsgType.TEXT:
                    try:
                        frame = parse_client_frame(msg.data, cfg.max_frame_bytes)
                        await self._ws_frame(frame, grant, sub, member, presence_state)
                        errors = 0
                    except (ProtocolError, AuthError, ReplayLogError) as exc:
                        errors += 1
                        self._ws_error(sub, exc)
                elif msg.type is WSMsgType.BINARY:
                    errors += 1
                    self._ws_error(sub, ProtocolError("binary_frame", "send JSON text frames"))
                else:  # ERROR: e.g. a frame over the size limit (aiohttp closes with 1009)
                    self.metrics.errors.labels("too_big_or_invalid").inc()
                    break
                if errors >= cfg.max_errors:
                    sub.close("too many errors")
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            slow = sub.closed and sub.close_reason == "slow consumer"
            if not sub.closed:
                sub.close("client closed")
            self.hub.unsubscribe_all(sub)
            if self.presence is not None:
                for ch in presence_state:
                    self.presence.leave(ch, member)
            self._closed("websocket")
            self.sockets.discard(ws)
            if not slow:
                if sub.close_reason == "too many errors":
                    # Let the writer flush the error frames first.
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(asyncio.shield(writer), cfg.close_grace_s)
                await self._ws_kill(ws, writer, transport, CLOSE_POLICY, sub.close_reason)
        return ws

    async def _ws_kill(
        self,
        ws: web.WebSocketResponse,
        writer: asyncio.Task[None],
        transport: asyncio.BaseTransport | None,
        code: int,
        reason: str,
    ) -> None:
        """Stop the writer and close the WebSocket (with ``code`` unless the client closed)."""
        writer.cancel()
        with contextlib.suppress(BaseException):
            await writer
        if not ws.closed:
            if reason in ("slow consumer", "too many errors"):
                closing = ws.close(code=code, message=reason.encode())
            elif self.shutting_down:
                closing = ws.close(code=CLOSE_GOING_AWAY, message=b"server shutdown")
            else:
                closing = ws.close()
            # BaseException: a close that was waiting on the cancelled writer's drain raises
            # CancelledError; the transport is dealt with below either way.
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(closing, self.config.close_grace_s)
        if code == CLOSE_SLOW and isinstance(transport, asyncio.WriteTransport):
            transport.abort()  # whatever is still buffered for it is dropped

    def _ws_error(self, sub: Subscriber, exc: Exception) -> None:
        if isinstance(exc, ProtocolError | AuthError):
            code, message = exc.code, exc.message
        else:
            code, message = "bad_cursor", str(exc)
        ref = exc.ref if isinstance(exc, ProtocolError) else None
        self.metrics.errors.labels(code).inc()
        sub.send(Control(json.loads(error_frame(code, message, ref))))

    async def _ws_frame(
        self,
        frame: ClientFrame,
        grant: Grant,
        sub: Subscriber,
        member: str,
        presence_state: dict[str, dict[str, Any]],
    ) -> None:
        if isinstance(frame, Subscribe):
            grant.check_subscribe(frame.channel)
            if frame.channel in sub.last or frame.channel in sub.pending:
                self.hub.unsubscribe(sub, frame.channel)  # re-subscribe: start over
            elif len(sub.last) + len(sub.pending) >= self.config.max_subscriptions:
                raise ProtocolError(
                    "too_many_subscriptions",
                    f"at most {self.config.max_subscriptions} channels per connection",
                )
            start = await self.hub.subscribe(sub, frame.channel, frame.since)
            if self.presence is not None:
                sub.send(Control(self.presence.snapshot(frame.channel)))
            sub.send(Control({"type": "subscribed", "channel": frame.channel, "since": start}))
        elif isinstance(frame, Unsubscribe):
            self.hub.unsubscribe(sub, frame.channel)
            if self.presence is not None and presence_state.pop(frame.channel, None) is not None:
                self.presence.leave(frame.channel, member)
            sub.send(Control({"type": "unsubscribed", "channel": frame.channel}))
        elif isinstance(frame, Publish):
            try:
                grant.check_publish(frame.channel)
                env = await self._publish(frame.channel, frame.data)
            except (AuthError, ProtocolError) as exc:
                if isinstance(exc, ProtocolError):
                    exc.ref = frame.ref
                    raise
                raise ProtocolError(exc.code, exc.message, ref=frame.ref) from None
            sub.send(
                Control({"type": "ack", "ref": frame.ref, "channel": env.channel, "id": env.id})
            )
        elif isinstance(frame, Heartbeat):
            if self.presence is not None:
                for ch, state in presence_state.items():
                    self.presence.heartbeat(ch, member, state)
        elif isinstance(frame, PresenceSet):
            grant.check_subscribe(frame.channel)
            assert self.presence is not None
            if frame.channel not in presence_state and len(presence_state) >= (
                self.config.max_subscriptions
            ):
                raise ProtocolError("too_many_subscriptions", "too many presence channels")
            presence_state[frame.channel] = frame.state
            self.presence.set(frame.channel, member, frame.state)

    async def _ws_writer(self, sub: Subscriber, ws: web.WebSocketResponse) -> None:
        loop = asyncio.get_running_loop()
        latency = self.metrics.latency_by["websocket"]
        deliveries = self.metrics.deliveries_by["websocket"]
        text = WSMsgType.TEXT
        try:
            while True:
                await sub.wait()
                if sub.closed and sub.close_reason != "too many errors":
                    return
                if not sub.queue:
                    if sub.closed:
                        return
                    continue
                now = loop.time()
                n = 0
                while sub.queue:
                    item = sub.pop()
                    if isinstance(item, Control):
                        await ws.send_frame(item.text.encode(), text)
                        continue
                    if isinstance(item, Replay):
                        await ws.send_frame(item.b.ws, text)
                    else:
                        await ws.send_frame(item.ws, text)
                        latency.observe(now - item.env.ts)
                    n += 1
                deliveries.inc(n)
        except (ConnectionError, RuntimeError):
            sub.close("send failed")

    # --- long polling --------------------------------------------------------------------
    async def poll(self, request: web.Request) -> web.Response:
        cfg = self.config
        try:
            self._admit("long-polling")
            grant = self._grant(request)
            channels = parse_channels(request.query.getall("channel", []), cfg.max_subscriptions)
            for ch in channels:
                grant.check_subscribe(ch)
            resume = parse_resume(request.query.get("after"), channels) or {}
            timeout = parse_timeout(
                request.query.get("timeout"), cfg.poll_timeout_s, cfg.poll_timeout_max_s
            )
            cursor = {
                ch: resume[ch] if ch in resume else await self.backplane.latest_id(ch)
                for ch in channels
            }
            fut = self.hub.add_waiter(channels)
            try:
                body = await self._collect(cursor)
                if body is None and timeout > 0:
                    self._open("long-polling")
                    try:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(fut, timeout)
                    finally:
                        self._closed("long-polling")
                    body = await self._collect(cursor)
            finally:
                self.hub.remove_waiter(channels, fut)
        except (AuthError, ProtocolError, ReplayLogError) as exc:
            return self._http_error(exc)
        if body is None:
            body = b'{"messages":[],"cursor":' + json.dumps(encode_cursor(cursor)).encode() + b"}"
        return web.Response(body=body, content_type="application/json")

    async def _collect(self, cursor: dict[str, str]) -> bytes | None:
        """Read every channel after its cursor; the answer's bytes, or None if nothing new."""
        loop = asyncio.get_running_loop()
        latency = self.metrics.latency_by["long-polling"]
        parts: list[bytes] = []
        gaps: list[dict[str, Any]] = []
        for ch, after in cursor.items():
            result = await self.backplane.read_after(ch, after, self.config.poll_batch)
            if isinstance(result, Gap):
                self.metrics.gaps.inc()
                gaps.append(
                    {
                        "channel": ch,
                        "since": after,
                        "missed": result.missed,
                        "first_available_id": result.first_available_id,
                    }
                )
            now = loop.time()
            for env in result.messages:
                parts.append(self.hub.broadcast_for(env).json)
                latency.observe(now - env.ts)
            cursor[ch] = result.last_id
        if not parts and not gaps:
            return None
        self.metrics.deliveries_by["long-polling"].inc(len(parts))
        out = b'{"messages":[' + b",".join(parts) + b'],"cursor":'
        out += json.dumps(encode_cursor(cursor)).encode()
        if gaps:
            out += b',"gaps":' + json.dumps(gaps).encode()
        return out + b"}"


def _channel(value: object) -> str:
    try:
        return validate_channel(value)
    except EnvelopeError as exc:
        raise ProtocolError("bad_channel", str(exc)) from None


STATIC_DIR = Path(__file__).parents[1] / "static"


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def _favicon(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        STATIC_DIR / "favicon.svg",
        headers={"Content-Type": "image/svg+xml", "Cache-Control": "max-age=86400"},
    )


def create_app(
    config: ServerConfig | None = None, backplane: Backplane | None = None
) -> web.Application:
    """The aiohttp application of a server with ``config`` (its state: ``app[SERVER_KEY]``)."""
    config = config or ServerConfig()
    server = LiveServer(config, backplane)
    app = web.Application(client_max_size=config.max_frame_bytes)
    app[SERVER_KEY] = server
    app.on_startup.append(server.on_startup)
    app.on_shutdown.append(server.on_shutdown)
    app.on_cleanup.append(server.on_cleanup)
    app.router.add_post("/publish", server.publish)
    app.router.add_get("/sse", server.sse)
    app.router.add_get("/ws", server.websocket)
    app.router.add_get("/poll", server.poll)
    app.router.add_get("/presence", server.presence_endpoint)
    app.router.add_post("/presence", server.presence_endpoint)
    app.router.add_get("/metrics", server.metrics_endpoint)
    app.router.add_get("/healthz", server.healthz)
    app.router.add_get("/yjs/{room}", server.yjs.handle)
    app.router.add_get("/", _index)
    app.router.add_get("/favicon.ico", _favicon)
    app.router.add_get("/favicon.svg", _favicon)
    app.router.add_static("/static/", STATIC_DIR)
    return app


async def start_site(
    config: ServerConfig, backplane: Backplane | None = None
) -> tuple[web.AppRunner, str]:
    """Start serving ``config`` on the running loop; returns the runner and the base URL.

    Raises :class:`~rtsim.live.errors.PortInUseError` if ``config.port`` is taken (other
    ``OSError`` for an address that cannot be bound, e.g. one not on this host).
    """
    app = create_app(config, backplane)
    # handler_cancellation: a client that goes away cancels its handler at once, so an idle
    # SSE stream or a waiting long poll is cleaned up without waiting for a keep-alive.
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=config.close_grace_s, handler_cancellation=True
    )
    sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(config.host, config.port) from None
        raise OSError(
            exc.errno, f"cannot listen on {config.host}:{config.port}: {exc.strerror}"
        ) from None
    try:
        await runner.setup()
    except BaseException:
        sock.close()
        raise
    site = web.SockSite(runner, sock, backlog=1024)
    await site.start()
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{port}"


def log_to_stderr(prefix: str = "rtsim serve: ") -> None:
    """Show the live server's state changes (``rtsim.live`` loggers, INFO and up) on stderr,
    one line each, as ``{prefix}{message}`` (idempotent; what ``rtsim serve`` does)."""
    logger = logging.getLogger("rtsim.live")
    if any(getattr(h, "_rtsim_stderr", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(prefix.replace("%", "%%") + "%(message)s"))
    handler._rtsim_stderr = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def broker_note(server: LiveServer) -> str | None:
    """One line if the server started with its broker unreachable (None when all is well)."""
    bp = server.backplane
    if bp.healthy():
        return None
    status: dict[str, Any] = getattr(bp, "status", dict)()
    why = f" ({status['last_error']})" if status.get("last_error") else ""
    return (
        f"the {bp.name} broker at {status.get('broker', '?')} is unreachable{why};"
        " serving anyway and retrying in the background (/healthz: degraded,"
        " publish: 503 until it is back)"
    )


def run_server(
    config: ServerConfig, ready: Callable[[str], Awaitable[None] | None] | None = None
) -> None:
    """Serve until SIGINT/SIGTERM (what ``rtsim serve`` does). ``ready(url)`` once bound.

    On a signal every connection is ended (see :meth:`LiveServer.on_shutdown`) and the
    process returns within about ``config.close_grace_s`` seconds. A broker backplane that
    is unreachable at start is reported once (a log line after ``ready``), then once per
    change of state. Raises :class:`~rtsim.live.errors.PortInUseError` if the port is taken.
    """

    async def main() -> None:
        runner, url = await start_site(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            if ready is not None:
                r = ready(url)
                if r is not None:
                    await r
            note = broker_note(runner.app[SERVER_KEY])
            if note is not None:
                log.warning("%s", note)
            await stop.wait()
        finally:
            await runner.cleanup()

    log_to_stderr()
    asyncio.run(main())
