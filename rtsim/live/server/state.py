"""What every part of one server shares: :class:`ServerState`.

The app (:mod:`.app`) builds it; each transport handler (:mod:`.websocket`, :mod:`.sse`,
:mod:`.longpoll`, :mod:`.yjs`) receives it and reads the config, the hub, presence and the
:class:`~rtsim.live.server.gate.Gate`. No handler calls another's methods.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, ClassVar, Protocol

from aiohttp import WSCloseCode, web

from rtsim.core.transport import Transport

from ..backplanes.base import Backplane, BackplaneCollector
from .auth import Authenticator
from .config import ServerConfig
from .gate import Gate
from .hub import Hub
from .metrics import Metrics
from .overload import OverloadMonitor
from .presence import PresenceService

__all__ = ["CLOSE_GOING_AWAY", "Handler", "ServerState", "TransportHandler"]

#: WebSocket close code when the server shuts down ("going away").
CLOSE_GOING_AWAY = int(WSCloseCode.GOING_AWAY)  # 1001


class Handler(Protocol):
    """A transport handler as the app registers it: its routes and what it must close."""

    def routes(self) -> list[web.RouteDef]: ...

    async def close(self) -> None: ...


class TransportHandler(Handler, Protocol):
    """A transport's server side: built with the server's state; ``transport`` names it."""

    transport: ClassVar[Transport]

    def __init__(self, state: ServerState) -> None: ...


class ServerState:
    """Config, backplane, metrics, hub, gate and presence of one server, and its open sockets.

    Args:
        config: the server's configuration.
        backplane: the message bus (already built; the app makes it from ``config``).
        served: the transports this server serves (``config.transports`` must be a subset).

    Raises ``ValueError`` if ``config.transports`` names a transport not in ``served``.
    """

    def __init__(
        self, config: ServerConfig, backplane: Backplane, served: Sequence[Transport]
    ) -> None:
        enabled = config.transports if config.transports is not None else tuple(served)
        unknown = [t.value for t in enabled if t not in served]
        if unknown:
            raise ValueError(
                f"transports must be a non-empty subset of {tuple(t.value for t in served)},"
                f" got {tuple(t.value for t in enabled)}"
            )
        self.config = config
        self.served = tuple(served)
        self.transports: tuple[Transport, ...] = tuple(enabled)  # enabled ones
        self.metrics = Metrics(self.served)
        self.backplane = backplane
        self.metrics.registry.register(BackplaneCollector(backplane))
        self.hub = Hub(backplane, self.metrics)
        self.auth = Authenticator(config.secret)
        self.gate = Gate(
            self.auth,
            backplane,
            self.metrics,
            self.transports,
            config.max_connections,
            config.max_frame_bytes,
            config.max_connections_per_ip,
            config.publish_rate_per_ip,
        )
        self.gate.stages = self.hub.stages  # traced publishes: receive time
        self.presence: PresenceService | None = None  # started with the app
        self.sockets: set[web.WebSocketResponse] = set()  # open /ws and /yjs connections
        self.shutting_down = False
        self.tasks: set[asyncio.Task[None]] = set()  # background tasks kept alive
        self.overload = OverloadMonitor(self.config, self.metrics, self.hub)  # started with the app

    @property
    def active(self) -> int:
        """Open connections plus waiting long polls (what ``max_connections`` limits)."""
        return self.gate.active

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a background task the server keeps a reference to."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
