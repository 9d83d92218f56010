"""The client's transport table: each transport's client side, by core ``Transport``.

Adding a transport is one module in this package (a ``CLIENT`` :class:`~.wire.ClientTransport`)
plus one line here; :class:`~rtsim.live.clients.client.LiveClient` and the load generator
both look transports up in this table.
"""

from __future__ import annotations

from rtsim.core.transport import Transport

from . import longpoll, sse, websocket, ws_picows
from .wire import ClientTransport, LoadSubscriber

__all__ = ["CLIENT_TRANSPORTS", "LOAD_WS_CLIENTS", "client_transport", "load_subscriber"]

#: Transport -> its client side, best first (the LiveClient's default fallback order).
CLIENT_TRANSPORTS: dict[Transport, ClientTransport] = {
    t.transport: t for t in (websocket.CLIENT, sse.CLIENT, longpoll.CLIENT)
}

#: The load generator's WebSocket subscribers by client library (``LoadParams.ws_client``,
#: ``rtsim load --ws-client``): picows (the default, the leaner) or aiohttp.
LOAD_WS_CLIENTS: dict[str, LoadSubscriber] = {
    "picows": ws_picows.load_subscriber,
    "aiohttp": websocket.load_subscriber,
}


def load_subscriber(transport: Transport, ws_client: str = "picows") -> LoadSubscriber:
    """The load generator's subscriber for ``transport``: for WebSocket the one of
    ``ws_client`` (a key of :data:`LOAD_WS_CLIENTS`), else the transport's own. Raises
    ``ValueError`` for a transport or WebSocket client there is none of."""
    if transport is Transport.WEBSOCKET:
        try:
            return LOAD_WS_CLIENTS[ws_client]
        except KeyError:
            names = " or ".join(LOAD_WS_CLIENTS)
            raise ValueError(f"ws_client must be {names}, got {ws_client!r}") from None
    return client_transport(transport).load


def client_transport(transport: Transport) -> ClientTransport:
    """The client side of ``transport``; raises ``ValueError`` if there is none."""
    try:
        return CLIENT_TRANSPORTS[transport]
    except KeyError:
        served = ", ".join(t.value for t in CLIENT_TRANSPORTS)
        raise ValueError(
            f"transport {transport.value} is not supported by this client (choose {served})"
        ) from None
