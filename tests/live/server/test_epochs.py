"""Issue 14.2: cursors from another epoch (a restarted server) get an explicit epoch gap.

The fixed case: memory backplane, publish 3, restart the server (a new instance), publish
5, resume with the old cursor → an epoch gap, then all 5 new messages (ids 1..5 of the
new epoch), not only the last 2; over WebSocket, SSE and long polling.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from rtsim.core.positions import split_epoch

from ..conftest import Serve, SseReader, publish, subscribe, ws_collect, ws_until


async def _old_cursor(serve: Serve, http: aiohttp.ClientSession) -> tuple[str, str]:
    """Publish 3 on a server that then stops; its SSE cursor for "c" and its epoch."""
    old = serve()
    for i in range(3):
        await publish(http, old.url, "c", f"old{i}")
    async with http.get(old.url + "/sse", params={"channel": "c", "last_event_id": "0"}) as r:
        reader = SseReader(r)
        await reader.messages(3)
        cursor = reader.decoder.last_event_id
    epoch = old.server.backplane.epoch
    old.stop()
    return cursor, epoch


async def _resume(transport: str, url: str, http: aiohttp.ClientSession, cursor: str, n: int):
    """(gap object, messages) of a resume from ``cursor`` over ``transport``."""
    if transport == "websocket":
        async with http.ws_connect(url.replace("http", "ws") + "/ws") as ws:
            _, position = cursor.split("=")
            sub = await subscribe(ws, "c", position)
            gap = await ws_until(ws, "gap")
            msgs = await ws_collect(ws, n) if n else []
            return gap, msgs, sub["since"]
    if transport == "sse":
        async with http.get(
            url + "/sse", params={"channel": "c"}, headers={"Last-Event-ID": cursor}
        ) as r:
            assert r.status == 200, await r.text()
            reader = SseReader(r)
            gap_ev = await reader.next("gap")
            msgs = await reader.messages(n)
            return json.loads(gap_ev.data), msgs, reader.decoder.last_event_id.split("=")[1]
    params = {"channel": "c", "after": cursor, "timeout": "0"}
    async with http.get(url + "/poll", params=params) as r:
        body: dict[str, Any] = await r.json()
        assert r.status == 200, body
    (gap,) = body["gaps"]
    return {"type": "gap", **gap}, body["messages"], body["cursor"].split("=")[1]


@pytest.mark.parametrize("transport", ["websocket", "sse", "long-polling"])
async def test_old_epoch_cursor_gets_a_gap_then_every_new_message(
    serve: Serve, http: aiohttp.ClientSession, transport: str
) -> None:
    cursor, old_epoch = await _old_cursor(serve, http)
    assert cursor == f"c={old_epoch}:3"
    new = serve()
    epoch = new.server.backplane.epoch
    assert epoch != old_epoch
    for i in range(5):
        await publish(http, new.url, "c", f"new{i}")
    gap, msgs, _ = await _resume(transport, new.url, http, cursor, 5)
    assert gap == {
        "type": "gap",
        "channel": "c",
        "since": f"{old_epoch}:3",
        "missed": 0,
        "first_available_id": "1",
        "reason": "epoch",
        "epoch": epoch,
        "position": f"{epoch}:0",
    }
    assert [m["id"] for m in msgs] == ["1", "2", "3", "4", "5"]
    assert [m["data"] for m in msgs] == [f"new{i}" for i in range(5)]
    assert new.metric("rtsim_replay_gaps_total") == 1


@pytest.mark.parametrize("transport", ["websocket", "sse", "long-polling"])
async def test_old_epoch_cursor_with_nothing_published_yet(
    serve: Serve, http: aiohttp.ClientSession, transport: str
) -> None:
    """Before: the id 3 was "ahead" of the new log → bad_cursor. Now: a gap at EPOCH:0."""
    cursor, _ = await _old_cursor(serve, http)
    new = serve()
    epoch = new.server.backplane.epoch
    gap, msgs, start = await _resume(transport, new.url, http, cursor, 0)
    assert (gap["reason"], gap["position"], gap["missed"], msgs) == ("epoch", f"{epoch}:0", 0, [])
    assert start == f"{epoch}:0"  # where the subscription / stream / poll now stands


async def test_websocket_subscription_after_an_epoch_gap_is_live(serve: Serve, http) -> None:
    new = serve()
    async with http.ws_connect(new.ws_url) as ws:
        sub = await subscribe(ws, "c", "someoldrun:7")
        epoch, start = split_epoch(sub["since"])
        assert (epoch, start) == (new.server.backplane.epoch, "0")
        await publish(http, new.url, "c", "next")
        (m,) = await ws_collect(ws, 1)
        assert (m["id"], m["data"]) == ("1", "next")


async def test_bare_ids_are_still_the_current_epoch(srv, http) -> None:
    for i in range(3):
        await publish(http, srv.url, "b", i)
    async with http.get(
        srv.url + "/poll", params={"channel": "b", "after": "1", "timeout": "0"}
    ) as r:
        body = await r.json()
    assert [m["id"] for m in body["messages"]] == ["2", "3"] and "gaps" not in body
    async with http.get(srv.url + "/healthz") as r:
        assert (await r.json())["epoch"] == srv.server.backplane.epoch
    for bad in ("x-y:1", "e:1:2", ":1", "b=e!:1"):
        async with http.get(srv.url + "/poll", params={"channel": "b", "after": bad}) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "bad_cursor"
