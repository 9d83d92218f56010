"""The facilitator's control and screen (issue 15.6): who may step the room, what a step
does to new and open connections of every transport, and the figures the screen shows."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from rtsim.core.transport import Transport
from rtsim.live.clients.client import LiveClient, Message
from rtsim.live.server.auth import make_token

from ..conftest import Serve, SseReader, publish, subscribe, wait_until, ws_until

SECRET = "f" * 32
POLL_S = 0.4


async def step(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], credential: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    async with http.post(url + "/facilitator/room", json=body, headers=headers) as r:
        return r.status, await r.json()


async def room(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url + "/facilitator/room") as r:
        assert r.status == 200
        return dict(await r.json())


# --- who may step the room ---------------------------------------------------------------------
async def test_only_the_secret_or_an_admin_token_may_step_the_room(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    srv = serve(secret=SECRET)
    admin = make_token(SECRET, "host", admin=True)
    learner = make_token(SECRET, "ada", subscribe="chat:*", publish="chat:*")
    expired = make_token(SECRET, "host", admin=True, ttl_s=1, now=time.time() - 10)
    forged = make_token("x" * 32, "host", admin=True)
    down = {"step": "down"}
    refusals = [
        (None, 401, "no_token"),
        (learner, 403, "forbidden"),
        (expired, 401, "token_expired"),
        (forged, 401, "invalid_token"),
        ("not the secret", 401, "invalid_token"),
    ]
    for credential, status, code in refusals:
        got, body = await step(http, srv.url, down, credential)
        assert (got, body["error"]["code"]) == (status, code), credential
    # A token in the query string does not count (a link must not step the room).
    async with http.post(srv.url + "/facilitator/room", params={"token": admin}, json=down) as r:
        assert r.status == 401
    assert (await room(http, srv.url))["ceiling"] == "websocket"  # nothing moved
    assert srv.metric("rtsim_transport_level") == 0

    status, body = await step(http, srv.url, down, admin)
    assert status == 200 and body["ceiling"] == "sse" and body["changed"] is True
    status, body = await step(http, srv.url, down, SECRET)  # the server's secret itself
    assert status == 200 and body["transport"] == "long-polling"
    assert srv.metric("rtsim_transport_level") == 2
    # The screen's figures are public, as /metrics is.
    async with http.get(srv.url + "/facilitator/stats") as r:
        assert r.status == 200 and (await r.json())["room"]["transport"] == "long-polling"


async def test_open_mode_lets_anyone_on_the_loopback_step_the_room(
    srv: Any, http: aiohttp.ClientSession
) -> None:
    status, body = await step(http, srv.url, {"transport": "polling"})
    assert status == 200 and body["transport"] == "polling"
    status, body = await step(http, srv.url, {"step": "down"})  # past the last rung: stays
    assert status == 200 and body["transport"] == "polling" and body["changed"] is False
    for _ in range(5):
        await step(http, srv.url, {"step": "up"})
    assert (await room(http, srv.url))["transport"] == "websocket"


@pytest.mark.parametrize(
    "body",
    [{}, {"step": "sideways"}, {"transport": "carrier-pigeon"}, {"transport": "sse", "step": "up"},
     {"step": "down", "why": 1}, {"transport": ["sse"]}],
)  # fmt: skip
async def test_a_bad_step_is_a_400_and_changes_nothing(
    srv: Any, http: aiohttp.ClientSession, body: dict[str, Any]
) -> None:
    status, answer = await step(http, srv.url, body)
    assert status == 400 and answer["error"]["code"] == "bad_frame"
    assert (await room(http, srv.url))["transport"] == "websocket"


# --- what a step does to connections -----------------------------------------------------------
async def test_each_step_changes_what_new_and_open_connections_get(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    srv = serve(degrade_poll_s=POLL_S)
    url = srv.url
    ws = await http.ws_connect(srv.ws_url)
    await subscribe(ws, "c")
    sse = await http.get(url + "/sse", params={"channel": "c"})
    assert sse.status == 200
    events = SseReader(sse)

    # Down to SSE: the WebSocket is told, a new WebSocket is refused naming SSE, SSE is fine.
    await step(http, url, {"transport": "sse"})
    frame = await ws_until(ws, "degrade")
    assert frame == {"type": "degrade", "poll_s": POLL_S, "transport": "sse"}
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(srv.ws_url)
    assert refused.value.status == 503
    async with http.get(url + "/sse", params={"channel": "c"}) as r:
        assert r.status == 200
    async with http.get(url + "/poll", params={"channel": "c", "timeout": "0"}) as r:
        answer = await r.json()
    assert answer["degraded"] is False and answer["transport"] == "sse"
    await ws.close()

    # Down to long polling: the SSE stream is told, a new one is refused with the level.
    await step(http, url, {"transport": "long-polling"})
    ev = await events.next("degrade")
    assert json.loads(ev.data)["transport"] == "long-polling"
    async with http.get(url + "/sse", params={"channel": "c"}) as r:
        assert r.status == 503 and r.headers["Retry-After"] == "1"
        body = await r.json()
    assert body["code"] == "degraded" and body["transport"] == "long-polling"
    sse.close()

    # A held long poll is answered at once when the room steps down to polling.
    async with http.get(url + "/poll", params={"channel": "c", "timeout": "0"}) as r:
        cursor = (await r.json())["cursor"]
    held = asyncio.ensure_future(
        http.get(url + "/poll", params={"channel": "c", "after": cursor, "timeout": "20"})
    )
    await wait_until(lambda: srv.metric("rtsim_connections", {"transport": "long-polling"}) == 1)
    t0 = time.monotonic()
    await step(http, url, {"transport": "polling"})
    r = await held
    answer = await r.json()
    assert time.monotonic() - t0 < 5  # not held for its 20 s
    assert answer["degraded"] is True and answer["poll_s"] == POLL_S
    assert answer["transport"] == "polling"
    assert srv.metric("rtsim_transport_level") == 3
    assert srv.metric("rtsim_overloaded") == 0  # a step-down, not an overload

    # Up to SSE: an SSE stream is allowed again; at WebSocket it is told to recover.
    await step(http, url, {"transport": "sse"})
    sse = await http.get(url + "/sse", params={"channel": "c"})
    assert sse.status == 200
    await step(http, url, {"transport": "websocket"})
    ev = await SseReader(sse).next("recover")
    assert json.loads(ev.data) == {"type": "recover", "transport": "websocket"}
    sse.close()
    async with http.get(url + "/poll", params={"channel": "c", "timeout": "0"}) as r:
        answer = await r.json()
    assert answer["degraded"] is False and "transport" not in answer  # every transport again
    assert srv.metric("rtsim_transport_level") == 0
    # Told to step down: the WebSocket, the SSE stream, the held poll, and two 503s.
    assert srv.metric("rtsim_degraded_total") == 5


async def test_clients_follow_the_room_down_and_up_losing_nothing(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    srv = serve(degrade_poll_s=POLL_S)
    url = srv.url
    clients = [LiveClient(url, ["c"], stable_after_s=0, seed=k) for k in range(3)]
    for c in clients:
        await c.start()
        await c.ready()
    ladder = ["sse", "long-polling", "polling", "long-polling", "sse", "websocket"]
    sent: list[str] = []
    try:
        for level in ladder:
            await step(http, url, {"transport": level})
            want = Transport(level)
            await wait_until(lambda w=want: all(c.policy.transport is w for c in clients))
            assert all(c.degraded == (level != "websocket") for c in clients)
            if want is Transport.POLLING:  # polls answered at once: open on the first
                await wait_until(
                    lambda w=want: all(c.connected and c.transport is w for c in clients)
                )
            else:  # the server counts the room on its new rung (long polls: held ones)
                await wait_until(
                    lambda lv=level: srv.metric("rtsim_connections", {"transport": lv}) == 3
                )
            for i in range(3):
                sent.append(f"{level}-{i}")
                await publish(http, url, "c", sent[-1])
            for c in clients:
                got = []
                while len(got) < 3:
                    item = await c.next(timeout=15)
                    assert isinstance(item, Message)
                    got.append(item.data)
                assert got == sent[-3:]  # in order, once
        for c in clients:
            assert c.stats.received == len(sent) and c.pending() == 0
            assert c.stats.degrades == 3 and c.stats.recoveries == 3
    finally:
        for c in clients:
            await c.close()


# --- the screen's figures ----------------------------------------------------------------------
async def test_the_screen_counts_connections_rates_and_latency_from_the_registry(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    srv = serve(degrade_poll_s=POLL_S)
    url = srv.url

    async def stats() -> dict[str, Any]:
        async with http.get(url + "/facilitator/stats") as r:
            assert r.status == 200
            return dict(await r.json())

    first = await stats()
    assert first["window_s"] is None and first["latency_ms"] is None  # no window yet
    sockets = [await http.ws_connect(srv.ws_url) for _ in range(2)]
    for ws in sockets:
        await subscribe(ws, "c")
    stream = await http.get(url + "/sse", params={"channel": "c"})
    n = 20
    for i in range(n):
        await publish(http, url, "c", i)
    for ws in sockets:
        assert len([await ws_until(ws, "message") for _ in range(n)]) == n
    await SseReader(stream).messages(n)
    await asyncio.sleep(0.2)
    figures = await stats()
    assert figures["connections"] == {"websocket": 2, "sse": 1, "long-polling": 0}
    assert figures["window_s"] > 0.1
    assert figures["published_per_s"] == pytest.approx(n / figures["window_s"], rel=0.05)
    assert figures["deliveries_per_s"] == pytest.approx(3 * n / figures["window_s"], rel=0.05)
    latency = figures["latency_ms"]
    # Observations, not deliveries: a direct write counts once per message and transport.
    assert n <= latency["samples"] <= 3 * n
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert n <= figures["latency_ms_by_transport"]["websocket"]["samples"] <= 2 * n
    assert figures["latency_ms_by_transport"]["long-polling"]["samples"] == 0
    assert figures["room"] == {
        "transport": "websocket",
        "ceiling": "websocket",
        "overloaded": False,
        "poll_s": POLL_S,
        "levels": ["websocket", "sse", "long-polling", "polling"],
    }
    for ws in sockets:
        await ws.close()
    stream.close()

    # Interval polling clients: estimated from the poll rate × poll_s.
    await step(http, url, {"transport": "polling"})
    pollers = [LiveClient(url, ["c"], transports=["long-polling"]) for _ in range(3)]
    for c in pollers:
        await c.start()
        await c.ready()
    try:
        await wait_until(lambda: all(c.transport is Transport.POLLING for c in pollers))
        await asyncio.sleep(POLL_S)  # every poller has polled once on its own rung
        await stats()  # the baseline: the estimate looks back two intervals
        await asyncio.sleep(4 * POLL_S)
        figures = await stats()
        assert figures["room"]["transport"] == "polling"
        assert 2 <= figures["polling_clients"] <= 4  # 3 clients, give or take one poll
        assert figures["connections"]["long-polling"] == 0  # none held: they poll
    finally:
        for c in pollers:
            await c.close()


async def test_a_client_with_no_allowed_transport_polls_at_the_interval_without_looping(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    """A WebSocket-only client in a room stepped down to SSE has nothing to step to: it
    polls every poll_s (not as fast as it can) and returns to its WebSocket when allowed."""
    srv = serve(degrade_poll_s=POLL_S)
    c = LiveClient(srv.url, ["c"], transports=["websocket"], stable_after_s=0)
    await c.start()
    try:
        await c.ready()
        await step(http, srv.url, {"transport": "sse"})
        await wait_until(lambda: c.transport is Transport.POLLING and c.connected)
        before = srv.metric("rtsim_interval_polls_total")
        await asyncio.sleep(5 * POLL_S)
        polls = srv.metric("rtsim_interval_polls_total") - before
        assert 2 <= polls <= 8  # about one per interval
        assert c.ceiling is Transport.SSE
        await publish(http, srv.url, "c", "while polling")
        item = await c.next(timeout=10)
        assert isinstance(item, Message) and item.data == "while polling"
        await step(http, srv.url, {"transport": "websocket"})
        await wait_until(lambda: c.transport is Transport.WEBSOCKET and c.connected)
        assert c.ceiling is None
    finally:
        await c.close()
