"""Clients of the live server: :class:`LiveClient`, the load generator (:mod:`.loadgen`) and
one module per transport (:mod:`.websocket`, :mod:`.sse`, :mod:`.longpoll`, listed in
:data:`~.transports.CLIENT_TRANSPORTS`) built on the shared :mod:`.wire` helpers."""

from .client import GapNotice, LiveClient, LiveClientError, Message
from .transports import CLIENT_TRANSPORTS

__all__ = [
    "CLIENT_TRANSPORTS",
    "GapNotice",
    "LiveClient",
    "LiveClientError",
    "Message",
]
