"""An open /ws socket outlives its HTTP request: aiohttp's request task has ended, and the
upgrade request's headers and HTTP parser are gone, while the socket works as before."""

from __future__ import annotations

import gc
import secrets
from typing import Any

from aiohttp import web
from aiohttp.http_parser import RawRequestMessage

from rtsim.live.server.wsdetach import DetachedWebSocket

from ..conftest import publish, subscribe, wait_until, ws_collect


def _held(value: str) -> bool:
    """Does the server still hold a parsed request with header X-Probe: value? (Only
    server-side objects: the client in this process keeps its own request headers.)"""
    gc.collect()
    for o in gc.get_objects():
        if isinstance(o, RawRequestMessage | web.BaseRequest) and o.headers.get("X-Probe") == value:
            return True
    return False


async def test_socket_outlives_its_request_and_drops_the_upgrade_headers(srv, http) -> None:
    probe = secrets.token_hex(16)
    ws = await http.ws_connect(srv.ws_url, headers={"X-Probe": probe})
    try:
        await subscribe(ws, "room")
        socks: list[Any] = list(srv.server.sockets)
        assert len(socks) == 1 and isinstance(socks[0], DetachedWebSocket)
        server_ws = socks[0]
        assert server_ws.detached
        request = server_ws._req
        # aiohttp's request task for this connection has ended...
        await wait_until(lambda: request.task is None or request.task.done())
        # ...its HTTP parser is released, and the headers are no longer held anywhere.
        assert request.protocol._parser is None
        assert len(request.headers) == 0
        assert not _held(probe)
        # The socket still works both ways, and the transport is the connection's again.
        assert request.transport is not None and not request.transport.is_closing()
        for i in range(3):
            await publish(http, srv.url, "room", i)
        assert [m["data"] for m in await ws_collect(ws, 3)] == [0, 1, 2]
        await ws.send_json({"type": "publish", "channel": "room", "data": "x", "ref": "r1"})
        got = await ws_collect(ws, 1)
        assert got[0]["data"] == "x"
    finally:
        await ws.close()
    assert ws.close_code == 1000
    await wait_until(lambda: not srv.server.sockets and not srv.server.hub.subs.get("room"))


async def test_a_plain_http_get_of_ws_is_still_refused(srv, http) -> None:
    async with http.get(srv.ws_url.replace("ws://", "http://")) as r:
        assert r.status == 400
