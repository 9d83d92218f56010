"""The live asyncio server, its backplanes and the Python client.

    from rtsim.live import serve_in_background, LiveClient
    srv = serve_in_background()              # a server on 127.0.0.1, any free port
    async with LiveClient(srv.url, ["chat"]) as c: ...
    srv.stop()

``rtsim serve`` runs the same server from the command line; the wire protocol is in
``docs/protocol.md``. The package has three wings: :mod:`rtsim.live.server` (config, the
gate, one module per transport, hub, presence, metrics), :mod:`rtsim.live.backplanes`
(memory, Redis, NATS; :func:`make_backplane` is the one place that knows URL schemes) and
:mod:`rtsim.live.clients` (the client, the load generator :mod:`rtsim.live.clients.loadgen`
and the wire helpers they share); :mod:`.protocol` and :mod:`.errors` are shared by all three.
"""

from .background import BackgroundServer, serve_in_background
from .backplanes import Backplane, BackplaneUnavailable, MemoryBackplane, make_backplane
from .clients import GapNotice, LiveClient, LiveClientError, Message
from .errors import PortInUseError, ServerUnreachableError, require_server
from .server import LiveServer, ServerConfig, create_app, run_server
from .server.auth import Authenticator, Grant, make_token

__all__ = [
    "Authenticator",
    "BackgroundServer",
    "Backplane",
    "BackplaneUnavailable",
    "GapNotice",
    "Grant",
    "LiveClient",
    "LiveClientError",
    "LiveServer",
    "MemoryBackplane",
    "Message",
    "PortInUseError",
    "ServerConfig",
    "ServerUnreachableError",
    "create_app",
    "make_backplane",
    "make_token",
    "require_server",
    "run_server",
    "serve_in_background",
]
