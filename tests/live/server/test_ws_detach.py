"""An open /ws socket outlives its HTTP request: aiohttp's request task has ended, and the
upgrade request's headers and HTTP parser are gone, while the socket works as before."""

from __future__ import annotations

import asyncio
import gc
import secrets
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_parser import RawRequestMessage

from rtsim.live.server import wsdetach
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
        assert server_ws._writer.get_random_bits is wsdetach._MASK_BITS  # one, shared
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


def _readers(srv: Any, channel: str) -> list[bool]:
    """Per subscriber of ``channel``: is a reader task running for its socket now?"""
    return [s.on_wake.__self__.reader is not None for s in srv.server.hub.subs.get(channel, {})]


async def test_an_idle_socket_has_no_reader_task(srv, http) -> None:
    wss = [await http.ws_connect(srv.ws_url) for _ in range(3)]
    try:
        for ws in wss:
            await subscribe(ws, "idle")
        await wait_until(lambda: _readers(srv, "idle") == [False, False, False])
        # A frame from one client starts a reader for that socket only, which ends again.
        await wss[1].send_json({"type": "publish", "channel": "idle", "data": 7, "ref": "a"})
        for ws in wss:
            assert [m["data"] for m in await ws_collect(ws, 1)] == [7]
        await wait_until(lambda: _readers(srv, "idle") == [False, False, False])
    finally:
        for ws in wss:
            await ws.close()


CLOSING = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


async def test_pings_are_answered_and_a_silent_client_is_dropped(serve, http) -> None:
    srv = serve(ws_ping_s=0.2)
    # The client's ping gets the server's pong (the reader answers, not aiohttp's autoping).
    ws = await http.ws_connect(srv.ws_url, autoping=False)
    await ws.ping(b"hello")
    msg = await ws.receive(timeout=5)
    while msg.type is aiohttp.WSMsgType.PING:  # the server's own heartbeat
        msg = await ws.receive(timeout=5)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"hello")
    # A client that answers the server's pings stays; one that never does is dropped.
    alive = await http.ws_connect(srv.ws_url)  # autoping: answers pings while receiving
    await subscribe(alive, "hb")
    await wait_until(lambda: len(srv.server.sockets) == 2)
    silent = ws  # never reads again, so never answers the server's pings

    async def keep_reading() -> None:  # aiohttp answers pings only while receiving
        while (await alive.receive()).type not in CLOSING:
            pass

    reader = asyncio.create_task(keep_reading())
    try:
        await wait_until(lambda: len(srv.server.sockets) == 1, timeout=10)
        await asyncio.sleep(1.0)  # five more ping periods: the answering client stays
        assert len(srv.server.sockets) == 1 and not alive.closed
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    await alive.close()
    await silent.close()
