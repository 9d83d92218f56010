"""The client's transport table: each transport's client side, by core ``Transport``.

Adding a transport is one module in this package (a ``CLIENT`` :class:`~.wire.ClientTransport`)
plus one line here; :class:`~rtsim.live.clients.client.LiveClient` and the load generator
both look transports up in this table.
"""

from __future__ import annotations

from rtsim.core.transport import Transport

from . import longpoll, longpoll_raw, sse, sse_raw, websocket, ws_picows, ws_raw
from .wire import ClientTransport, LoadSubscriber

__all__ = [
    "CLIENT_TRANSPORTS",
    "LOAD_LP_CLIENTS",
    "LOAD_SSE_CLIENTS",
    "LOAD_WS_CLIENTS",
    "client_transport",
    "load_subscriber",
]

#: Transport -> its client side, best first (the LiveClient's default fallback order).
CLIENT_TRANSPORTS: dict[Transport, ClientTransport] = {
    t.transport: t for t in (websocket.CLIENT, sse.CLIENT, longpoll.CLIENT)
}

#: The load generator's WebSocket subscribers by client library (``LoadParams.ws_client``,
#: ``rtsim load --ws-client``): a bare asyncio Protocol (the default, the leanest: see
#: ``benchmarks/results/loadgen_cpu.md``), picows or aiohttp.
LOAD_WS_CLIENTS: dict[str, LoadSubscriber] = {
    "raw": ws_raw.load_subscriber,
    "picows": ws_picows.load_subscriber,
    "aiohttp": websocket.load_subscriber,
}

#: The load generator's SSE subscribers (``LoadParams.sse_client``, ``rtsim load
#: --sse-client``): a bare asyncio Protocol (the default, the leaner) or aiohttp.
LOAD_SSE_CLIENTS: dict[str, LoadSubscriber] = {
    "raw": sse_raw.load_subscriber,
    "aiohttp": sse.load_subscriber,
}

#: The load generator's long-polling subscribers (``LoadParams.lp_client``, ``rtsim load
#: --lp-client``): a bare asyncio Protocol on one keep-alive connection (the default, the
#: leaner) or aiohttp.
LOAD_LP_CLIENTS: dict[str, LoadSubscriber] = {
    "raw": longpoll_raw.load_subscriber,
    "aiohttp": longpoll.load_subscriber,
}


def load_subscriber(
    transport: Transport, ws_client: str = "raw", sse_client: str = "raw", lp_client: str = "raw"
) -> LoadSubscriber:
    """The load generator's subscriber for ``transport``: for WebSocket the one of
    ``ws_client`` (a key of :data:`LOAD_WS_CLIENTS`), for SSE the one of ``sse_client``
    (a key of :data:`LOAD_SSE_CLIENTS`), for long polling the one of ``lp_client`` (a key
    of :data:`LOAD_LP_CLIENTS`), else the transport's own. Raises ``ValueError`` for a
    transport or client there is none of."""
    for kind, name, table, chosen in (
        (Transport.WEBSOCKET, "ws_client", LOAD_WS_CLIENTS, ws_client),
        (Transport.SSE, "sse_client", LOAD_SSE_CLIENTS, sse_client),
        (Transport.LONG_POLLING, "lp_client", LOAD_LP_CLIENTS, lp_client),
    ):
        if transport is kind:
            try:
                return table[chosen]
            except KeyError:
                names = " or ".join(table)
                raise ValueError(f"{name} must be {names}, got {chosen!r}") from None
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
