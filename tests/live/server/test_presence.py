"""Presence on the live server: join, update, leave, snapshot and TTL expiry."""

from __future__ import annotations

from ..conftest import Serve, subscribe, ws_until


async def test_join_update_leave_over_websocket(srv, http) -> None:
    async with http.ws_connect(srv.ws_url) as a:
        await subscribe(a, "room")
        await a.send_json({"type": "presence", "channel": "room", "state": {"name": "A"}})
        joined = await ws_until(a, "presence", event="join")
        me = joined["client"]
        assert joined["state"] == {"name": "A"} and me.startswith("anonymous:ws")
        async with http.ws_connect(srv.ws_url) as b:
            await b.send_json({"type": "subscribe", "channel": "room"})
            snap = await ws_until(b, "presence", event="snapshot")
            assert snap["members"] == {me: {"name": "A"}}
            await b.send_json({"type": "presence", "channel": "room", "state": {"name": "B"}})
            other = (await ws_until(a, "presence", event="join"))["client"]
            await b.send_json({"type": "presence", "channel": "room", "state": {"name": "B2"}})
            upd = await ws_until(a, "presence", event="update")
            assert upd["client"] == other and upd["state"] == {"name": "B2"}
        left = await ws_until(a, "presence", event="leave")
        assert left["client"] == other and left["reason"] == "left"


async def test_http_presence_heartbeats_and_expiry(serve: Serve, http) -> None:
    srv = serve(presence_timeout_s=0.3)
    async with http.ws_connect(srv.ws_url) as watcher:
        await subscribe(watcher, "doc")
        body = {"channel": "doc", "client": "tab1", "state": {"cursor": 3}}
        async with http.post(srv.url + "/presence", json=body) as r:
            assert r.status == 200
            assert (await r.json())["members"] == {"anonymous:tab1": {"cursor": 3}}
        assert (await ws_until(watcher, "presence", event="join"))["client"] == "anonymous:tab1"
        async with http.get(srv.url + "/presence", params={"channel": "doc"}) as r:
            assert "anonymous:tab1" in (await r.json())["members"]
        # no more heartbeats: the TTL runs out and everyone is told
        left = await ws_until(watcher, "presence", event="leave")
        assert left == {
            "type": "presence",
            "channel": "doc",
            "event": "leave",
            "client": "anonymous:tab1",
            "reason": "expired",
        }
        assert srv.metric("rtsim_presence_expired_total") == 1
        assert srv.metric("rtsim_presence_members") == 0
        # an explicit leave
        async with http.post(srv.url + "/presence", json=body):
            pass
        await ws_until(watcher, "presence", event="join")
        async with http.post(srv.url + "/presence", json={**body, "leave": True}) as r:
            assert (await r.json())["members"] == {}
        assert (await ws_until(watcher, "presence", event="leave"))["reason"] == "left"


async def test_presence_needs_permission_and_valid_input(srv, http) -> None:
    for body in (
        {"channel": "d"},
        {"channel": "d", "client": ""},
        {"channel": "d", "client": "c", "state": 1},
    ):
        async with http.post(srv.url + "/presence", json=body) as r:
            assert r.status == 400
