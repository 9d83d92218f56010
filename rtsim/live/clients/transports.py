"""The client's transport table: each transport's client side, by core ``Transport``.

Adding a transport is one module in this package (a ``CLIENT`` :class:`~.wire.ClientTransport`)
plus one line here; :class:`~rtsim.live.clients.client.LiveClient` and the load generator
both look transports up in this table.
"""

from __future__ import annotations

from rtsim.core.transport import Transport

from . import longpoll, sse, websocket
from .wire import ClientTransport

__all__ = ["CLIENT_TRANSPORTS", "client_transport"]

#: Transport -> its client side, best first (the LiveClient's default fallback order).
CLIENT_TRANSPORTS: dict[Transport, ClientTransport] = {
    t.transport: t for t in (websocket.CLIENT, sse.CLIENT, longpoll.CLIENT)
}


def client_transport(transport: Transport) -> ClientTransport:
    """The client side of ``transport``; raises ``ValueError`` if there is none."""
    try:
        return CLIENT_TRANSPORTS[transport]
    except KeyError:
        served = ", ".join(t.value for t in CLIENT_TRANSPORTS)
        raise ValueError(
            f"transport {transport.value} is not supported by this client (choose {served})"
        ) from None
