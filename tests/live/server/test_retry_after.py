"""Every 429 and 503 says when to come back: ``Retry-After`` and ``retry_after_s`` (issue 14).

Refusals: the global connection limit and the per-address one (WebSocket, SSE, long poll,
Yjs), the per-address publish rate (HTTP publish, WebSocket publish frame), the broker
being down (publish), and overload (degrade). Each answer has the header (whole seconds,
at least 1) and the same wait in the JSON error object (or the WebSocket error frame).
"""

from __future__ import annotations

import math
from typing import Any

import aiohttp
import pytest

from rtsim.live.server import ServerConfig

from ..broker_fixtures import free_port
from ..conftest import Serve, wait_until, ws_until

STREAMS = {
    "websocket": "/ws",
    "sse": "/sse?channel=c",
    "long-polling": "/poll?channel=c&timeout=5",
    "yjs": "/yjs/room",
}


async def _refusal(r: aiohttp.ClientResponse, status: int, code: str) -> float:
    body: dict[str, Any] = await r.json()
    assert r.status == status, body
    assert body["error"]["code"] == code
    wait = float(body["error"]["retry_after_s"])
    assert wait > 0
    assert int(r.headers["Retry-After"]) == max(1, math.ceil(wait))
    return wait


async def _hold(http: aiohttp.ClientSession, url: str) -> Any:
    """One open connection (a WebSocket) that counts against the limits."""
    return await http.ws_connect(url.replace("http", "ws", 1) + "/ws")


@pytest.mark.parametrize(
    ("limit", "code", "status"),
    [
        ({"max_connections": 1}, "too_many_connections", 503),
        ({"max_connections_per_ip": 1}, "too_many_connections_per_ip", 429),
    ],
)
async def test_a_connection_refused_by_a_limit_says_when_to_retry_on_every_entry_point(
    limit: dict[str, int], code: str, status: int, serve: Serve, http: aiohttp.ClientSession
) -> None:
    srv = serve(config=ServerConfig(port=0, **limit))  # type: ignore[arg-type]
    ws = await _hold(http, srv.url)
    await wait_until(lambda: srv.metric("rtsim_connections", {"transport": "websocket"}) == 1)
    for path in STREAMS.values():
        async with http.get(srv.url + path) as r:
            assert await _refusal(r, status, code) == 1.0, path
    await ws.close()


async def test_a_publish_over_the_per_address_rate_says_when_to_retry(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    srv = serve(config=ServerConfig(port=0, publish_rate_per_ip=2.0))
    statuses = []
    for i in range(4):
        async with http.post(srv.url + "/publish", json={"channel": "c", "data": i}) as r:
            statuses.append(r.status)
            if r.status == 429:
                wait = await _refusal(r, 429, "too_many_publishes_per_ip")
                assert wait <= 0.5 + 1e-6  # one token of a 2/s bucket
    assert statuses == [200, 200, 429, 429]
    ws = await _hold(http, srv.url)
    await ws.send_json({"type": "publish", "channel": "c", "data": "x", "ref": 1})
    err = await ws_until(ws, "error", ref=1)
    assert err["code"] == "too_many_publishes_per_ip"
    assert 0 < err["retry_after_s"] <= 0.5 + 1e-6
    await ws.close()


async def test_a_publish_while_the_broker_is_down_says_when_to_retry(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    dead = f"redis-streams://127.0.0.1:{free_port()}?prefix=none"
    srv = serve(config=ServerConfig(port=0, backplane=dead))
    async with http.post(srv.url + "/publish", json={"channel": "c", "data": 1}) as r:
        assert await _refusal(r, 503, "backplane_unavailable") == 1.0


async def test_a_connection_refused_while_degraded_says_when_to_retry(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    srv = serve(config=ServerConfig(port=0, degrade_poll_s=3.0))
    async with http.post(srv.url + "/facilitator/room", json={"transport": "polling"}) as r:
        assert r.status == 200, await r.text()
    for name in ("websocket", "sse"):
        async with http.get(srv.url + STREAMS[name]) as r:
            assert await _refusal(r, 503, "degraded") == 3.0
