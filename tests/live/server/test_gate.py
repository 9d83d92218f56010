"""The gate: every transport, the Yjs rooms included, is admitted and counted the same way."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from rtsim.core.transport import Transport
from rtsim.live.clients.transports import CLIENT_TRANSPORTS
from rtsim.live.server import SERVED, SERVER_KEY, ServerConfig, create_app
from rtsim.live.server.app import TRANSPORT_HANDLERS

from ..conftest import Serve, wait_until

WS = {"transport": "websocket"}


async def test_yjs_rooms_count_as_websocket_connections(serve: Serve, http) -> None:
    srv = serve()
    async with http.ws_connect(srv.url.replace("http", "ws") + "/yjs/gate-room") as yjs:
        await wait_until(lambda: srv.metric("rtsim_connections", WS) == 1)
        assert srv.server.active == 1
        assert srv.metric("rtsim_connections_opened_total", WS) == 1
        await yjs.close()
    await wait_until(lambda: srv.metric("rtsim_connections", WS) == 0)
    assert srv.server.active == 0


async def test_a_full_server_refuses_yjs_and_counts_it(serve: Serve, http) -> None:
    srv = serve(max_connections=1)
    async with http.ws_connect(srv.url.replace("http", "ws") + "/ws"):
        await wait_until(lambda: srv.server.active == 1)
        async with http.get(srv.url + "/yjs/full") as r:
            assert r.status == 503
            assert (await r.json())["error"]["code"] == "too_many_connections"
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(srv.url.replace("http", "ws") + "/yjs/full")
        assert err.value.status == 503
    assert srv.metric("rtsim_rejected_total", {"reason": "too_many_connections"}) == 2
    assert srv.metric("rtsim_protocol_errors_total", {"code": "too_many_connections"}) == 2


async def test_yjs_follows_the_websocket_switch(serve: Serve, http) -> None:
    srv = serve(transports=("sse",))
    async with http.get(srv.url + "/yjs/off") as r:
        assert r.status == 404
        assert (await r.json())["error"]["code"] == "transport_disabled"
    async with http.get(srv.url + "/ws") as r:
        assert r.status == 404
    assert srv.metric("rtsim_protocol_errors_total", {"code": "transport_disabled"}) == 2


async def test_yjs_refuses_a_bad_room_name_through_the_gate(serve: Serve, http) -> None:
    srv = serve()
    async with http.get(srv.url + "/yjs/" + "x" * 300) as r:
        assert r.status == 400
        assert (await r.json())["error"]["code"] == "bad_channel"
    assert srv.metric("rtsim_protocol_errors_total", {"code": "bad_channel"}) == 1


def test_config_carries_transports_as_the_core_enum() -> None:
    cfg = ServerConfig(transports=("sse", "websocket", "sse"))  # type: ignore[arg-type]
    assert cfg.transports == (Transport.SSE, Transport.WEBSOCKET)
    assert all(isinstance(t, Transport) for t in cfg.transports)
    with pytest.raises(ValueError, match="carrier-pigeon"):
        ServerConfig(transports=("carrier-pigeon",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        ServerConfig(transports=())
    with pytest.raises(ValueError, match="subset"):
        create_app(ServerConfig(transports=(Transport.POLLING,)))


def test_the_route_table_comes_from_the_transport_handlers() -> None:
    app = create_app(ServerConfig(port=0))
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert tuple(h.transport for h in TRANSPORT_HANDLERS) == SERVED
    for handler in app[SERVER_KEY].handlers:  # the transports and the Yjs rooms
        for route in handler.routes():
            assert isinstance(route, web.RouteDef) and route.path in paths
    # The server and the client speak the same transports.
    assert set(SERVED) == set(CLIENT_TRANSPORTS)
