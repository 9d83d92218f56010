"""Every endpoint against a real server on a 127.0.0.1 socket: replay, gaps, auth."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest

from rtsim.live.server import ServerConfig
from rtsim.live.server.auth import make_token

from ..conftest import Serve, SseReader, publish, subscribe, ws_collect, ws_until

SECRET = "k" * 32


async def test_healthz_and_metrics(srv, http: aiohttp.ClientSession) -> None:
    async with http.get(srv.url + "/healthz") as r:
        body = await r.json()
    assert r.status == 200 and body["status"] == "ok" and body["open_mode"] is True
    await publish(http, srv.url, "a", 1)
    async with http.get(srv.url + "/metrics") as r:
        text = await r.text()
    assert r.status == 200
    for name in (
        "rtsim_connections",
        "rtsim_delivery_latency_seconds_bucket",
        "rtsim_reconnections_total",
        "rtsim_replay_gaps_total",
        "rtsim_slow_consumer_drops_total",
        "rtsim_fanout_bucket",
    ):
        assert name in text
    assert srv.metric("rtsim_published_total") == 1


async def test_publish_returns_ordered_ids_per_channel(srv, http) -> None:
    ids = [await publish(http, srv.url, "a", i) for i in range(3)]
    assert ids == ["1", "2", "3"]
    assert await publish(http, srv.url, "b", 0) == "1"


async def test_websocket_live_and_publish_ack(srv, http) -> None:
    async with http.ws_connect(srv.ws_url) as ws:
        sub = await subscribe(ws, "room")
        assert sub["since"] == f"{srv.server.backplane.epoch}:0"
        await ws.send_json({"type": "publish", "channel": "room", "data": {"t": 1}, "ref": "r"})
        ack = await ws_until(ws, "ack")
        assert ack["ref"] == "r" and ack["id"] == "1"
        await publish(http, srv.url, "room", {"t": 2})
        await publish(http, srv.url, "other", {"t": 0})
        await publish(http, srv.url, "room", {"t": 3})
        msgs = await ws_collect(ws, 3)  # its own message too, then the others in order
        assert [m["data"]["t"] for m in msgs] == [1, 2, 3]
        await ws.send_json({"type": "unsubscribe", "channel": "room"})
        await ws_until(ws, "unsubscribed")


async def test_sse_stream_shape(srv, http) -> None:
    async with http.get(srv.url + "/sse", params=[("channel", "a"), ("channel", "b")]) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/event-stream"
        assert r.headers["Cache-Control"] == "no-cache"
        reader = SseReader(r)
        await reader.next("presence")
        assert reader.decoder.retry_ms == 2000
        e = srv.server.backplane.epoch
        assert reader.decoder.last_event_id == f"a={e}:0,b={e}:0"
        await publish(http, srv.url, "b", "x")
        await publish(http, srv.url, "a", "y")
        ev1, ev2 = await reader.next(), await reader.next()
        assert ev1.last_event_id == f"a={e}:0,b={e}:1" and ev2.last_event_id == f"a={e}:1,b={e}:1"
        assert json.loads(ev2.data) == {
            "channel": "a",
            "id": "1",
            "data": "y",
            "ts": json.loads(ev2.data)["ts"],
        }


async def test_sse_keepalive_comments(serve: Serve, http) -> None:
    srv = serve(keepalive_s=0.05)
    async with http.get(srv.url + "/sse", params={"channel": "a"}) as r:
        seen = b""
        while b": keep-alive" not in seen:
            seen += await r.content.readany()


async def test_long_poll_answers_at_once_or_at_timeout(srv, http) -> None:
    async with http.get(srv.url + "/poll", params={"channel": "a", "timeout": "0.05"}) as r:
        e = srv.server.backplane.epoch
        assert await r.json() == {"messages": [], "cursor": f"a={e}:0", "degraded": False}
    await publish(http, srv.url, "a", 1)
    async with http.get(srv.url + "/poll", params={"channel": "a", "after": "a=0"}) as r:
        body = await r.json()
    assert [m["data"] for m in body["messages"]] == [1] and body["cursor"] == f"a={e}:1"


async def test_long_poll_wakes_on_publish(srv, http) -> None:
    import asyncio

    params = {"channel": "a", "after": "0", "timeout": "30"}
    task = asyncio.create_task(http.get(srv.url + "/poll", params=params))
    while srv.metric("rtsim_connections", {"transport": "long-polling"}) < 1:
        await asyncio.sleep(0.01)
    await publish(http, srv.url, "a", "news")
    r = await task
    body = await r.json()
    assert [m["data"] for m in body["messages"]] == ["news"]


# --- replay after reconnect on each transport: zero loss, no duplicates ------------------
async def test_ws_resume_after_reconnect(srv, http) -> None:
    for i in range(5):
        await publish(http, srv.url, "c", i)
    async with http.ws_connect(srv.ws_url) as ws:
        await subscribe(ws, "c", since="0")
        first = await ws_collect(ws, 5)
    last = first[2]["id"]  # pretend the last two were lost with the connection
    for i in range(5, 8):
        await publish(http, srv.url, "c", i)
    async with http.ws_connect(srv.ws_url) as ws:
        await ws.send_json({"type": "subscribe", "channel": "c", "since": last})
        rest = await ws_collect(ws, 5)
    assert [m["data"] for m in first[:3] + rest] == list(range(8))
    assert srv.metric("rtsim_reconnections_total", {"transport": "websocket"}) == 2


async def test_sse_resume_with_last_event_id_header_and_query(srv, http) -> None:
    params = [("channel", "x"), ("channel", "y")]
    async with http.get(srv.url + "/sse", params=params) as r:
        reader = SseReader(r)
        await reader.next("presence")
        for i in range(4):
            await publish(http, srv.url, "xy"[i % 2], i)
        await reader.next()
        cursor = (await reader.next()).last_event_id  # as if the stream broke here
    e = srv.server.backplane.epoch
    assert cursor == f"x={e}:1,y={e}:1"
    for i in range(4, 6):
        await publish(http, srv.url, "xy"[i % 2], i)
    headers = {"Last-Event-ID": cursor}
    async with http.get(srv.url + "/sse", params=params, headers=headers) as r:
        got = await SseReader(r).messages(4)
    assert sorted(m["data"] for m in got) == [2, 3, 4, 5]
    q = [*params, ("last_event_id", "x=2,y=2")]
    async with http.get(srv.url + "/sse", params=q) as r:
        assert [m["data"] for m in await SseReader(r).messages(2)] == [4, 5]


async def test_poll_resume_covers_everything_once(srv, http) -> None:
    cursor = "p=0"
    got = []
    for i in range(10):
        await publish(http, srv.url, "p", i)
        if i % 3 == 0:
            params = {"channel": "p", "after": cursor, "timeout": "0"}
            async with http.get(srv.url + "/poll", params=params) as r:
                body = await r.json()
            got += [m["data"] for m in body["messages"]]
            cursor = body["cursor"]
    params = {"channel": "p", "after": cursor, "timeout": "0"}
    async with http.get(srv.url + "/poll", params=params) as r:
        got += [m["data"] for m in (await r.json())["messages"]]
    assert got == list(range(10))


# --- gaps ---------------------------------------------------------------------------------
async def test_gap_on_each_transport_when_the_log_was_trimmed(serve: Serve, http) -> None:
    srv = serve(replay_len=5)
    for i in range(20):
        await publish(http, srv.url, "g", i)
    async with http.ws_connect(srv.ws_url) as ws:
        await ws.send_json({"type": "subscribe", "channel": "g", "since": "2"})
        gap = await ws_until(ws, "gap")
        assert gap == {
            "type": "gap",
            "channel": "g",
            "since": "2",
            "missed": 13,
            "first_available_id": "16",
            "reason": "trimmed",
            "epoch": srv.server.backplane.epoch,
            "position": f"{srv.server.backplane.epoch}:15",
        }
        assert [m["id"] for m in await ws_collect(ws, 5)] == ["16", "17", "18", "19", "20"]
    async with http.get(srv.url + "/sse", params={"channel": "g", "last_event_id": "g=2"}) as r:
        reader = SseReader(r)
        gap_ev = await reader.next("gap")
        assert json.loads(gap_ev.data)["missed"] == 13
        assert [m["id"] for m in await reader.messages(5)] == ["16", "17", "18", "19", "20"]
    async with http.get(srv.url + "/poll", params={"channel": "g", "after": "2"}) as r:
        body = await r.json()
    e = srv.server.backplane.epoch
    assert body["gaps"] == [
        {
            "channel": "g",
            "since": "2",
            "missed": 13,
            "first_available_id": "16",
            "reason": "trimmed",
            "epoch": e,
            "position": f"{e}:15",
        }
    ]
    assert len(body["messages"]) == 5 and body["cursor"] == f"g={e}:20"
    assert srv.metric("rtsim_replay_gaps_total") == 3


async def test_unknown_and_malformed_cursors_are_refused(srv, http) -> None:
    await publish(http, srv.url, "u", 0)
    for after in ("99", "u=99", "abc", "u=1,zz=1", "u=-1"):
        async with http.get(srv.url + "/poll", params={"channel": "u", "after": after}) as r:
            assert r.status == 400, after
            assert (await r.json())["error"]["code"] == "bad_cursor"
        async with http.get(srv.url + "/sse", params={"channel": "u", "last_event_id": after}) as r:
            assert r.status == 400
    async with http.ws_connect(srv.ws_url) as ws:
        await ws.send_json({"type": "subscribe", "channel": "u", "since": "99"})
        err = await ws_until(ws, "error")
        assert err["code"] == "bad_cursor"
        await subscribe(ws, "u", since="0")  # the connection still works
        assert (await ws_collect(ws, 1))[0]["id"] == "1"


# --- auth ---------------------------------------------------------------------------------
@pytest.fixture
def secure(serve: Serve):
    return serve(secret=SECRET)


def _tok(sub: str = "user:al,team:*", pub: str = "team:*", ttl: float = 60, **kw) -> str:
    return make_token(SECRET, "al", sub, pub, ttl, **kw)


BAD_TOKENS = {
    "no_token": None,
    "token_expired": make_token(SECRET, "al", "*", "*", 60, now=time.time() - 3600),
    "invalid_token": make_token("f" * 32, "al", "*", "*", 60),  # forged: another secret
}


@pytest.mark.parametrize("code", sorted(BAD_TOKENS))
async def test_bad_tokens_are_refused_on_every_endpoint(secure, http, code: str) -> None:
    token = BAD_TOKENS[code]
    params = {"channel": "team:a", **({"token": token} if token else {})}
    for method, path in (("GET", "/sse"), ("GET", "/poll"), ("GET", "/ws"), ("GET", "/presence")):
        async with http.request(method, secure.url + path, params=params) as r:
            assert r.status == 401, (path, r.status)
            assert (await r.json())["error"]["code"] == code
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.post(
        secure.url + "/publish", json={"channel": "team:a", "data": 1}, headers=headers
    ) as r:
        assert r.status == 401 and (await r.json())["error"]["code"] == code


async def test_channel_permissions(secure, http) -> None:
    t = _tok()
    auth = {"Authorization": f"Bearer {t}"}
    for path in ("/sse", "/poll"):
        params = [("channel", "team:a"), ("channel", "user:bob"), ("token", t)]
        async with http.get(secure.url + path, params=params) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
    async with http.post(
        secure.url + "/publish", json={"channel": "user:al", "data": 1}, headers=auth
    ) as r:
        assert r.status == 403
    assert await publish(http, secure.url, "team:a", 1, headers=auth) == "1"
    async with http.ws_connect(secure.ws_url, params={"token": t}) as ws:
        await ws.send_json({"type": "subscribe", "channel": "user:bob"})
        assert (await ws_until(ws, "error"))["code"] == "forbidden"
        await ws.send_json({"type": "publish", "channel": "user:al", "data": 1, "ref": 5})
        err = await ws_until(ws, "error")
        assert err["code"] == "forbidden" and err["ref"] == 5
        await subscribe(ws, "user:al", since="0")
        await subscribe(ws, "team:a", since="0")
        # a subscriber never receives a channel it is not allowed
        admin = {"Authorization": "Bearer " + make_token(SECRET, "admin", "", "*", 60)}
        await publish(http, secure.url, "user:bob", "secret", headers=admin)
        await publish(http, secure.url, "team:a", 2, headers=auth)
        msgs = await ws_collect(ws, 2)
        assert [(m["channel"], m["data"]) for m in msgs] == [("team:a", 1), ("team:a", 2)]


def test_open_mode_is_refused_off_loopback() -> None:
    with pytest.raises(ValueError, match="open mode"):
        ServerConfig(host="0.0.0.0")
    ServerConfig(host="0.0.0.0", secret=SECRET)
    ServerConfig(host="::1")
    with pytest.raises(ValueError, match="32 bytes"):
        ServerConfig(secret="short")
