"""Token expiry: every open connection ends at its token's ``exp``, with the right signal.

The issue's example as a fixed case: a token with ``exp = now + 2 s`` on a WebSocket, an
SSE stream, a held long poll and a Yjs room — each ends soon after ``exp`` (never before)
with close 4001 ``token_expired`` / an SSE ``error`` event with code ``token_expired`` / a
401 ``token_expired``.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from rtsim.live.server.auth import Authenticator, make_token

from ..conftest import Serve, SseReader, publish, subscribe, wait_until, ws_until

S = "k" * 32
TTL_S = 2.0
#: "Does not hang": how long after exp a connection may take to end (generous).
BOUND_S = 10.0
#: The timer fires at exp; a little slack for clock granularity.
EARLY_S = 0.25


def short_token(user: str = "alice") -> tuple[str, float]:
    """A token that expires about ``TTL_S`` from now, and its ``exp`` (UNIX seconds)."""
    token = make_token(S, user, "*", "*", TTL_S)
    exp = float(Authenticator(S).grant(token).expires_at or 0)
    return token, exp


def long_token() -> dict[str, str]:
    return {"Authorization": "Bearer " + make_token(S, "pub", "*", "*", 3600)}


def test_a_grant_carries_its_tokens_exp_plus_leeway() -> None:
    now = time.time()
    token = make_token(S, "u", "*", "*", 100, now=now)
    assert Authenticator(S).grant(token).expires_at == int(now + 100)
    assert Authenticator(S, leeway_s=5).grant(token).expires_at == int(now + 100) + 5
    assert Authenticator(None).grant(None).expires_at is None  # open mode: no expiry


async def test_websocket_closes_at_exp_with_4001_token_expired(serve: Serve, http) -> None:
    srv = serve(secret=S)
    token, exp = short_token()
    async with http.ws_connect(
        srv.url.replace("http", "ws") + "/ws", params={"token": token}
    ) as ws:
        await subscribe(ws, "c")
        await publish(http, srv.url, "c", {"n": 1}, headers=long_token())
        assert (await ws_until(ws, "message"))["data"] == {"n": 1}  # open before exp
        while True:
            msg = await ws.receive(timeout=exp - time.time() + BOUND_S)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
        ended = time.time()
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert (msg.data, msg.extra) == (4001, "token_expired")
    assert ended >= exp - EARLY_S
    assert srv.metric("rtsim_token_expired_total", {"transport": "websocket"}) == 1
    await wait_until(lambda: srv.metric("rtsim_connections", {"transport": "websocket"}) == 0)


async def test_sse_stream_ends_with_a_token_expired_error_event(serve: Serve, http) -> None:
    srv = serve(secret=S)
    token, exp = short_token()
    timeout = aiohttp.ClientTimeout(total=exp - time.time() + BOUND_S)
    async with http.get(
        srv.url + "/sse", params={"channel": "c", "token": token}, timeout=timeout
    ) as r:
        assert r.status == 200
        reader = SseReader(r)
        await publish(http, srv.url, "c", {"n": 1}, headers=long_token())
        assert json.loads((await reader.next()).data)["data"] == {"n": 1}
        reader_wait = exp - time.time() + BOUND_S
        ev = await asyncio.wait_for(reader.next("error"), reader_wait)
        ended = time.time()
        assert json.loads(ev.data)["code"] == "token_expired"
        assert await r.content.read() == b""  # and the stream is over
    assert ended >= exp - EARLY_S
    assert srv.metric("rtsim_token_expired_total", {"transport": "sse"}) == 1


async def test_a_held_long_poll_is_answered_401_token_expired(serve: Serve, http) -> None:
    srv = serve(secret=S)
    token, exp = short_token()
    start = {"channel": "c", "timeout": 0, "token": token}
    async with http.get(srv.url + "/poll", params=start) as r:
        body = await r.json()
        assert r.status == 200, body
        cursor = body["cursor"]
    hold = 25  # far beyond exp: a poll that merely timed out would answer 200
    async with http.get(
        srv.url + "/poll",
        params={"channel": "c", "after": cursor, "timeout": hold, "token": token},
        timeout=aiohttp.ClientTimeout(total=hold + BOUND_S),
    ) as r:
        ended = time.time()
        assert r.status == 401
        assert (await r.json())["error"]["code"] == "token_expired"
    assert ended >= exp - EARLY_S
    assert srv.metric("rtsim_token_expired_total", {"transport": "long-polling"}) == 1
    assert srv.metric("rtsim_connections", {"transport": "long-polling"}) == 0


async def test_a_yjs_room_socket_closes_at_exp(serve: Serve, http) -> None:
    srv = serve(secret=S)
    token, exp = short_token()
    url = srv.url.replace("http", "ws") + "/yjs/expiring"
    async with http.ws_connect(url, params={"token": token}) as ws:
        while True:
            msg = await ws.receive(timeout=exp - time.time() + BOUND_S)
            if msg.type is not aiohttp.WSMsgType.BINARY:
                break
    assert (msg.type, msg.data, msg.extra) == (aiohttp.WSMsgType.CLOSE, 4001, "token_expired")
    assert srv.metric("rtsim_token_expired_total", {"transport": "websocket"}) == 1


async def test_a_connection_that_closes_first_cancels_its_timer(serve: Serve, http) -> None:
    srv = serve(secret=S)
    token, exp = short_token()
    async with http.ws_connect(srv.url.replace("http", "ws") + "/ws", params={"token": token}):
        pass
    await asyncio.sleep(max(0.0, exp - time.time()) + 0.5)
    assert srv.metric("rtsim_token_expired_total", {"transport": "websocket"}) == 0
