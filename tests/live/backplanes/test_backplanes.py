"""Several `rtsim serve` processes joined by real Redis or NATS JetStream (issue 7).

Each test uses its own key/stream prefix, so tests never share broker state. The shared
brokers (127.0.0.1:6379 and :4222) are never stopped; fault tests start private ones.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ..broker_fixtures import (
    BrokerProcess,
    healthz,
    instances_of,
    metric,
    require,
    require_binary,
    unique_prefix,
    wait_for_status,
)
from ..conftest import SseReader, publish, subscribe, ws_collect, ws_until

DURABLE = [
    pytest.param("redis-streams", marks=pytest.mark.redis),
    pytest.param("nats", marks=pytest.mark.nats),
]
PORTS = {"redis-streams": 6379, "redis-pubsub": 6379, "nats": 4222}


def _kind(scheme: str) -> str:
    return "nats" if scheme == "nats" else "redis"


@pytest.fixture
def prefix() -> Iterator[str]:
    p = unique_prefix()
    yield p
    # Leave the shared brokers as we found them.
    if _reachable_quiet(6379):
        import redis

        r = redis.Redis(port=6379)
        keys = list(r.scan_iter(match=f"{{{p}}}:*"))
        if keys:
            r.delete(*keys)
        r.close()
    if _reachable_quiet(4222):
        asyncio.run(_drop_stream(p))


def _reachable_quiet(port: int) -> bool:
    from ..broker_fixtures import reachable

    return reachable(port)


async def _drop_stream(name: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect("nats://127.0.0.1:4222", connect_timeout=1)
    try:
        await nc.jetstream().delete_stream(name)
    except NotFoundError:
        pass
    finally:
        await nc.close()


def url_for(scheme: str, prefix: str, port: int | None = None, **options: Any) -> str:
    opts = "".join(f"&{k}={v}" for k, v in options.items())
    return f"{scheme}://127.0.0.1:{port or PORTS[scheme]}?prefix={prefix}{opts}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


def _key(message_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in message_id.split("-"))


# --- fan-out across instances ----------------------------------------------------------------
@pytest.mark.parametrize(
    "scheme", [*DURABLE, pytest.param("redis-pubsub", marks=pytest.mark.redis)]
)
async def test_publish_on_one_instance_reaches_subscribers_on_all(
    scheme: str, prefix: str, http: aiohttp.ClientSession
) -> None:
    require(_kind(scheme))
    with instances_of(url_for(scheme, prefix), 3) as servers:
        sockets = [await http.ws_connect(s.ws_url) for s in servers]
        for ws in sockets:
            await subscribe(ws, "room.1")
        for i in range(10):
            await publish(http, servers[0].url, "room.1", {"from": 0, "i": i})
        for i in range(5):
            await publish(http, servers[2].url, "room.1", {"from": 2, "i": i})
        got = [await ws_collect(ws, 15) for ws in sockets]
        for msgs in got:
            for origin, n in ((0, 10), (2, 5)):  # every message, each publisher's in order
                assert [m["data"]["i"] for m in msgs if m["data"]["from"] == origin] == list(
                    range(n)
                )
            assert [_key(m["id"]) for m in msgs] == sorted(_key(m["id"]) for m in msgs)
        if scheme != "redis-pubsub":  # one broker order, the same ids everywhere
            ids = [[(m["id"], m["data"]) for m in msgs] for msgs in got]
            assert ids[0] == ids[1] == ids[2]
        for ws in sockets:
            await ws.close()


# --- resume on another instance -----------------------------------------------------------
async def _outage_experiment(
    scheme: str, prefix: str, http: aiohttp.ClientSession, transport: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Subscribe on A, read 5, disconnect, 7 are published on C, resume on B, 10 more.

    Returns (messages received, gap frames received, messages published during the outage).
    """
    during = 7
    with instances_of(url_for(scheme, prefix), 3) as (a, b, c):
        received: list[dict[str, Any]] = []
        async with http.ws_connect(a.ws_url) as ws:
            await subscribe(ws, "chat")
            for i in range(5):
                await publish(http, c.url, "chat", i)
            received += await ws_collect(ws, 5)
        last = received[-1]["id"]
        # A watcher on B sees the outage's messages arrive there before the client resumes, so
        # none of them is still in flight inside B (with Pub/Sub, one still in flight when the
        # client subscribes would reach it live, and the loss would be one short).
        async with http.ws_connect(b.ws_url) as watcher:
            await subscribe(watcher, "chat")
            for i in range(5, 5 + during):  # the client is offline
                await publish(http, c.url, "chat", i)
            seen = [m["data"] for m in await ws_collect(watcher, during)]
            assert seen == list(range(5, 5 + during)), seen
        gaps: list[dict[str, Any]] = []
        if transport == "websocket":
            async with http.ws_connect(b.ws_url) as ws:
                # Send it by hand: every frame that follows (gap, replay, live) is read below.
                await ws.send_json({"type": "subscribe", "channel": "chat", "since": last})
                for i in range(5 + during, 15 + during):
                    await publish(http, c.url, "chat", i)
                while not received or received[-1]["data"] != 14 + during:
                    frame = await ws_until_any(ws)
                    if frame["type"] == "message":
                        received.append(frame)
                    elif frame["type"] == "gap":
                        gaps.append(frame)
        else:  # SSE with the multi-channel cursor the browser would send as Last-Event-ID
            headers = {"Last-Event-ID": f"chat={last}"}
            async with http.get(b.url + "/sse?channel=chat", headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                reader = SseReader(resp)
                for i in range(5 + during, 15 + during):
                    await publish(http, c.url, "chat", i)
                while not received or received[-1]["data"] != 14 + during:
                    while not reader.events:
                        chunk = await asyncio.wait_for(resp.content.readany(), 10)
                        reader.events += reader.decoder.feed(chunk)
                    ev = reader.events.pop(0)
                    if ev.event == "message":
                        received.append(json.loads(ev.data))
                    elif ev.event == "gap":
                        gaps.append(json.loads(ev.data))
    return received, gaps, during


async def ws_until_any(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    obj: dict[str, Any] = json.loads(msg.data)
    return obj


@pytest.mark.parametrize("transport", ["websocket", "sse"])
@pytest.mark.parametrize("scheme", DURABLE)
async def test_resume_on_another_instance_loses_nothing(
    scheme: str, transport: str, prefix: str, http: aiohttp.ClientSession
) -> None:
    require(_kind(scheme))
    received, gaps, _ = await _outage_experiment(scheme, prefix, http, transport)
    data = [m["data"] for m in received]
    assert data == list(range(22)), data  # zero loss, no duplicates, in order
    assert len({m["id"] for m in received}) == len(received)
    assert gaps == []


@pytest.mark.redis
async def test_pubsub_loses_exactly_what_was_published_during_the_outage(
    prefix: str, http: aiohttp.ClientSession
) -> None:
    require("redis")
    received, gaps, during = await _outage_experiment("redis-pubsub", prefix, http, "websocket")
    data = [m["data"] for m in received]
    lost = sorted(set(range(15 + during)) - set(data))
    assert len(data) == len(set(data))  # no duplicates
    assert lost == list(range(5, 5 + during))  # the loss is exactly the outage
    assert len(lost) == during
    # ... and the server said so: it cannot replay another instance's position.
    assert [g["channel"] for g in gaps] == ["chat"]


# --- trimming and gaps ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scheme", "option"),
    [
        pytest.param("redis-streams", "maxlen", marks=pytest.mark.redis),
        pytest.param("nats", "max_msgs_per_subject", marks=pytest.mark.nats),
    ],
)
async def test_resume_older_than_the_broker_holds_is_a_gap(
    scheme: str, option: str, prefix: str, http: aiohttp.ClientSession
) -> None:
    require(_kind(scheme))
    with instances_of(url_for(scheme, prefix, **{option: 5}), 2) as (a, b):
        ids = [await publish(http, a.url, "g", i) for i in range(12)]
        await publish(http, a.url, "other", "x")  # another channel in between
        async with http.ws_connect(b.ws_url) as ws:
            await subscribe(ws, "g", since=ids[0])
            gap = await ws_until(ws, "gap")
            assert gap["since"] == ids[0] and gap["missed"] >= 1
            assert gap["first_available_id"] == ids[7]
            assert [m["data"] for m in await ws_collect(ws, 5)] == list(range(7, 12))
            # Within what the broker holds: no gap, exactly the rest.
            await subscribe(ws, "g", since=ids[8])
            assert [m["data"] for m in await ws_collect(ws, 3)] == [9, 10, 11]
        params = {"channel": "g", "after": ids[6], "timeout": "0"}  # the last trimmed id
        async with http.get(b.url + "/poll", params=params) as r:
            body = await r.json()
        assert "gaps" not in body and [m["data"] for m in body["messages"]] == list(range(7, 12))
        params["after"] = ids[5]
        async with http.get(b.url + "/poll", params=params) as r:
            body = await r.json()
        assert body["gaps"][0]["first_available_id"] == ids[7]
        assert (await healthz(http, b.url))["replay"] == "broker"


# --- broker faults ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "scheme",
    [
        pytest.param("redis-streams", marks=pytest.mark.redis),
        pytest.param("redis-pubsub", marks=pytest.mark.redis),
        pytest.param("nats", marks=pytest.mark.nats),
    ],
)
async def test_broker_restart(
    scheme: str, prefix: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    binary = "nats-server" if scheme == "nats" else "redis-server"
    require_binary(binary)
    broker = BrokerProcess(_kind(scheme), tmp_path)
    broker.start()
    try:
        await broker.wait_up()
        url = url_for(scheme, prefix, port=broker.port, backoff_base=0.05, backoff_cap=0.5)
        with instances_of(url, 2) as (a, b):
            async with http.ws_connect(b.ws_url) as ws:
                await subscribe(ws, "f")
                await publish(http, a.url, "f", "before")
                assert (await ws_collect(ws, 1))[0]["data"] == "before"

                broker.kill()
                await broker.wait_down()
                await wait_for_status(http, a.url, "degraded")
                await wait_for_status(http, b.url, "degraded")
                health = await healthz(http, a.url)
                assert health["broker"]["connected"] is False
                assert health["broker"]["down_for_s"] is not None
                async with http.post(
                    a.url + "/publish", json={"channel": "f", "data": "lost?"}
                ) as r:
                    assert r.status == 503
                    err = (await r.json())["error"]
                assert err["code"] == "backplane_unavailable" and "not published" in err["message"]
                assert await metric(http, a.url, "rtsim_backplane_up") == 0
                assert await metric(http, a.url, "rtsim_backplane_publish_rejected_total") == 1
                assert await metric(http, a.url, "rtsim_backplane_outages_total") == 1
                # The local connection is still open (and its publish is refused, not lost).
                await ws.send_json({"type": "publish", "channel": "f", "data": 0, "ref": "x"})
                err = await ws_until(ws, "error")
                assert err["code"] == "backplane_unavailable" and err["ref"] == "x"
                assert not ws.closed

                broker.start()  # same port
                await broker.wait_up()
                await wait_for_status(http, a.url, "ok")
                await wait_for_status(http, b.url, "ok")
                assert await metric(http, b.url, "rtsim_backplane_reconnects_total") >= 1
                await publish(http, a.url, "f", "after")
                frame = await ws_until(ws, "message")
                assert frame["data"] == "after"  # delivery resumed on the same socket
    finally:
        broker.kill()
