"""Every connection is its own presence member, and a heartbeat never erases its state.

The issue's example: two ``LiveClient``s over SSE with default options both used the
client id ``py``, so they were one member (``anonymous:py``); when one left, the other
vanished, and its next heartbeat (which carried no state) brought it back as ``{}``.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from rtsim.live.clients.client import LiveClient

from ..conftest import Serve, subscribe, wait_until, ws_until


async def members(http: aiohttp.ClientSession, url: str, channel: str) -> dict[str, Any]:
    async with http.get(url + "/presence", params={"channel": channel}) as r:
        assert r.status == 200
        return dict((await r.json())["members"])


async def test_two_default_sse_clients_are_two_members_and_one_leaving_keeps_the_other(
    srv, http
) -> None:
    a = LiveClient(srv.url, ["room"], transports=["sse"])
    b = LiveClient(srv.url, ["room"], transports=["sse"])
    assert a.client_id != b.client_id  # unique by default
    async with b:
        async with a:
            await a.ready()
            await b.ready()
            await a.set_presence("room", {"name": "A"})
            await b.set_presence("room", {"name": "B"})
            both = await members(http, srv.url, "room")
            assert both == {
                f"anonymous:{a.client_id}": {"name": "A"},
                f"anonymous:{b.client_id}": {"name": "B"},
            }
            assert len(both) == 2
            # b's own view (SSE presence events) sees both as well.
            await wait_until(lambda: len(b.presence.get("room", {}).members) == 2)  # type: ignore[arg-type]
        # a closed, saying goodbye: b is still present, its state unchanged.
        left = await members(http, srv.url, "room")
        assert left == {f"anonymous:{b.client_id}": {"name": "B"}}
        await wait_until(lambda: set(b.presence["room"].members) == {f"anonymous:{b.client_id}"})
        assert b.presence["room"].members[f"anonymous:{b.client_id}"] == {"name": "B"}


async def test_a_heartbeat_after_a_false_offline_brings_the_state_back(serve: Serve, http) -> None:
    # The TTL (0.3 s) is shorter than the heartbeat interval (0.6 s): the member expires
    # while alive, and its next heartbeat re-creates it with its state, never with {}.
    srv = serve(presence_timeout_s=0.3)
    async with http.ws_connect(srv.ws_url) as watcher:
        await subscribe(watcher, "doc")
        async with LiveClient(srv.url, ["doc"], transports=["sse"], heartbeat_s=0.6) as c:
            await c.ready()
            me = f"anonymous:{c.client_id}"
            await c.set_presence("doc", {"cursor": 7})
            joined = await ws_until(watcher, "presence", event="join")
            assert joined["client"] == me and joined["state"] == {"cursor": 7}
            left = await ws_until(watcher, "presence", event="leave")
            assert left["client"] == me and left["reason"] == "expired"
            back = await ws_until(watcher, "presence", event="join")
            assert back["client"] == me and back["state"] == {"cursor": 7}


async def test_a_heartbeat_never_changes_a_present_state(srv, http) -> None:
    body = {"channel": "d", "client": "tab", "state": {"v": 1}}
    async with http.post(srv.url + "/presence", json=body) as r:
        assert r.status == 200
    for beat in (
        {"channel": "d", "client": "tab"},
        {"channel": "d", "client": "tab", "state": {"v": 2}, "heartbeat": True},
    ):
        async with http.post(srv.url + "/presence", json=beat) as r:
            assert r.status == 200
            assert (await r.json())["members"] == {"anonymous:tab": {"v": 1}}
    async with http.post(srv.url + "/presence", json={**body, "state": {"v": 3}}) as r:
        assert (await r.json())["members"] == {"anonymous:tab": {"v": 3}}  # an update does
