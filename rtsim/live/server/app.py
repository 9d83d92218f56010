"""The live server: configuration, life cycle and routes of one aiohttp process.

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
``GET /yjs/{room}``    a Yjs room (y-websocket binary protocol; :mod:`rtsim.live.server.yjs`)
``/facilitator…``      the room's shared screen and step-down control (:mod:`.facilitator`)
``GET /``              the demo page (``rtsim/live/static/``)
``GET /favicon.ico``   the page's icon (SVG)
=====================  ==================================================================

Each transport is one module with a handler class (:data:`TRANSPORT_HANDLERS` is the one
registration of a transport); the app builds its route table from them. Every handler
admits its requests through the :class:`~rtsim.live.server.gate.Gate`. The server owns
the I/O and the clock; ids, replay and gaps come from the backplane (the core replay log
by default) and presence from the core tracker.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from rtsim.core.transport import Transport

from ..backplanes import Backplane, make_backplane
from ..errors import PortInUseError
from ..protocol import ProtocolError
from .auth import AuthError
from .config import ServerConfig
from .facilitator import FacilitatorService
from .gate import check_channel, json_response
from .longpoll import LongPollHandler
from .presence import PresenceService
from .sse import SseHandler
from .state import CLOSE_GOING_AWAY, Handler, ServerState, TransportHandler
from .websocket import WebSocketHandler
from .yjs import YjsService

__all__ = [
    "SERVED",
    "SERVER_KEY",
    "TRANSPORT_HANDLERS",
    "LiveServer",
    "ServerConfig",
    "broker_note",
    "create_app",
    "log_to_stderr",
    "run_server",
    "start_site",
]

#: The transport handlers, best first, one per module of this package: the one registration
#: of a transport on the server (each is built with the server's state and gives its routes).
TRANSPORT_HANDLERS: tuple[type[TransportHandler], ...] = (
    WebSocketHandler,
    SseHandler,
    LongPollHandler,
)
#: The transports this server serves (``ServerConfig.transports`` picks among them).
SERVED: tuple[Transport, ...] = tuple(h.transport for h in TRANSPORT_HANDLERS)

log = logging.getLogger("rtsim.live.server")


class LiveServer(ServerState):
    """One server: its shared state (:class:`~rtsim.live.server.state.ServerState`), the
    transport handlers, the Yjs rooms and the plain HTTP endpoints.

    Raises ``ValueError`` for a backplane URL or transport it cannot serve.
    """

    def __init__(self, config: ServerConfig, backplane: Backplane | None = None) -> None:
        super().__init__(
            config,
            backplane
            or make_backplane(
                config.backplane, max_len=config.replay_len, max_age_s=config.replay_age_s
            ),
            SERVED,
        )
        self.yjs = YjsService(self)
        self.handlers: list[Handler] = [cls(self) for cls in TRANSPORT_HANDLERS]
        self.handlers.append(self.yjs)
        self.hub.stages.grant_of = self.gate.grant  # a token, and only its channels
        self.hub.stages.refuse = self.gate.http_error
        self.handlers.append(self.hub.stages)  # GET /debug/stages (traced messages)
        self.handlers.append(FacilitatorService(self))  # /facilitator (the room's screen)

    # --- life cycle ----------------------------------------------------------------------
    async def on_startup(self, app: web.Application) -> None:
        self.backplane.on_feed_gap = self.hub.resync  # a broker's feed may skip messages
        await self.backplane.start(self.hub.on_message)
        self.presence = PresenceService(
            self.config.presence_timeout_s, self.hub.send_control, self.metrics
        )
        self.presence.start()
        self.overload.start()

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
        await self.overload.stop()
        for handler in self.handlers:
            await handler.close()
        if self.presence is not None:
            await self.presence.stop()
        await self.backplane.close()

    # --- plain endpoints ---------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "status": "ok" if self.backplane.healthy() else "degraded",
                "backplane": self.backplane.name,
                "epoch": self.backplane.epoch,
                "replay": "broker" if self.backplane.durable_replay else "local buffer only",
                "broker": getattr(self.backplane, "status", dict)(),
                "open_mode": self.config.open_mode,
                "overloaded": self.overload.overloaded,
                "transports": [t.value for t in self.transports],
                "connections": {
                    t.value: int(self.metrics.sample("rtsim_connections", {"transport": t.value}))
                    for t in self.served
                },
            }
        )

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"}
        )

    async def publish(self, request: web.Request) -> web.Response:
        gate = self.gate
        try:
            grant = gate.grant(request)
            body = await gate.json_body(request)
            extra = sorted(set(body) - {"channel", "data"})
            if extra:
                raise ProtocolError("bad_frame", f"unknown field(s): {', '.join(extra)}")
            if "data" not in body:
                raise ProtocolError("bad_frame", "give 'data'")
            channel = check_channel(body.get("channel"))
            env = await gate.publish(grant, channel, body["data"], peer=gate.peer(request))
        except (AuthError, ProtocolError) as exc:
            return gate.http_error(exc)
        return json_response({"id": env.id})

    async def presence_endpoint(self, request: web.Request) -> web.Response:
        """GET: snapshot of ``?channel=C``. POST ``{channel, client, state?, heartbeat?, leave?}``.

        A heartbeat (no ``state``, or ``heartbeat: true``) never changes a present state.
        """
        assert self.presence is not None
        try:
            grant = self.gate.grant(request)
            if request.method == "GET":
                channel = check_channel(request.query.get("channel"))
                grant.check_subscribe(channel)
                return json_response(self.presence.snapshot(channel))
            body = await self.gate.json_body(request)
            extra = sorted(set(body) - {"channel", "client", "state", "heartbeat", "leave"})
            if extra:
                raise ProtocolError("bad_frame", f"unknown field(s): {', '.join(extra)}")
            channel = check_channel(body.get("channel"))
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
            return json_response(self.presence.snapshot(channel))
        except (AuthError, ProtocolError) as exc:
            return self.gate.http_error(exc)


SERVER_KEY: web.AppKey[LiveServer] = web.AppKey("rtsim_server")

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
    """The aiohttp application of a server with ``config`` (its state: ``app[SERVER_KEY]``).

    ``backplane`` overrides the one ``config.backplane`` names. Raises ``ValueError`` for
    a backplane URL or a transport the server cannot serve.
    """
    config = config or ServerConfig()
    server = LiveServer(config, backplane)
    app = web.Application(client_max_size=config.max_frame_bytes)
    app[SERVER_KEY] = server
    app.on_startup.append(server.on_startup)
    app.on_shutdown.append(server.on_shutdown)
    app.on_cleanup.append(server.on_cleanup)
    app.router.add_routes(
        [
            web.post("/publish", server.publish),
            web.get("/presence", server.presence_endpoint),
            web.post("/presence", server.presence_endpoint),
            web.get("/metrics", server.metrics_endpoint),
            web.get("/healthz", server.healthz),
        ]
    )
    for handler in server.handlers:
        app.router.add_routes(handler.routes())
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
        # Long-lived objects of the imports and the app: frozen out of the cyclic GC, so a
        # full collection does not walk them while messages wait (the load generator's
        # workers measured a 60-160 ms stall per run from that; the server does the same).
        gc.collect()
        gc.freeze()
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
