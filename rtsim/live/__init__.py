"""The live asyncio server, its backplanes and a Python client.

    from rtsim.live import serve_in_background, LiveClient
    srv = serve_in_background()              # a server on 127.0.0.1, any free port
    ...
    srv.stop()

``rtsim serve`` runs the same server from the command line; the wire protocol is in
``docs/protocol.md``.
"""

from .background import BackgroundServer, serve_in_background
from .backplanes import Backplane, MemoryBackplane, make_backplane
from .server import LiveServer, ServerConfig, create_app, run_server
from .server.auth import Authenticator, Grant, make_token

__all__ = [
    "Authenticator",
    "BackgroundServer",
    "Backplane",
    "Grant",
    "LiveServer",
    "MemoryBackplane",
    "ServerConfig",
    "create_app",
    "make_backplane",
    "make_token",
    "run_server",
    "serve_in_background",
]
