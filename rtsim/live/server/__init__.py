"""The live server: configuration, admission (the gate), the transports and fan-out.

:mod:`.app` builds the aiohttp application from the transport handlers
(:data:`~.app.TRANSPORT_HANDLERS`: :mod:`.websocket`, :mod:`.sse`, :mod:`.longpoll`) plus
the Yjs rooms (:mod:`.yjs`); all of them admit requests through :mod:`.gate` and share
:class:`~.state.ServerState` (config, backplane, :mod:`.hub`, :mod:`.presence`,
:mod:`.metrics`). Tokens are :mod:`.auth`'s.
"""

from .app import (
    SERVED,
    SERVER_KEY,
    LiveServer,
    broker_note,
    create_app,
    log_to_stderr,
    run_server,
    start_site,
)
from .config import ServerConfig

__all__ = [
    "SERVED",
    "SERVER_KEY",
    "LiveServer",
    "ServerConfig",
    "broker_note",
    "create_app",
    "log_to_stderr",
    "run_server",
    "start_site",
]
