"""The Yjs room at /yjs/{room}: stock Yjs clients (y-websocket in Node) and Python replicas."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rtsim.core.yroom import SYNC_UPDATE, sync_frame
from rtsim.live.server import ServerConfig
from rtsim.live.server.auth import make_token

from ..broker_fixtures import require, unique_prefix
from ..conftest import Serve
from ..yjs_replica import Replica

JS = Path(__file__).parents[1] / "js"
SECRET = "y" * 32


def _require_node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; the stock Yjs client test needs Node.js")
    if not (JS / "node_modules" / "y-websocket").is_dir():
        pytest.skip(f"Yjs client packages missing: run `npm ci` in {JS} (CI's .ci/run does)")
    return node


async def node_client(node: str, base: str, room: str, *args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        node,
        str(JS / "yjs_client.mjs"),
        base,
        room,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, (out, err)
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def ws_base(url: str) -> str:
    return "ws" + url[len("http") :] + "/yjs"


async def test_two_node_clients_and_a_python_replica_converge_and_a_late_joiner_gets_it(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    node = _require_node()
    srv = serve()
    base = ws_base(srv.url)
    everything = ["--expect", "alpha", "--expect", "beta", "--expect", "gamma"]
    async with Replica(http, base + "/pad") as py:
        a = node_client(node, base, "pad", "--insert", "alpha", "--name", "A", *everything)
        b = node_client(node, base, "pad", "--insert", "beta", "--name", "B", *everything)
        py.insert("gamma")
        ra, rb = await asyncio.gather(a, b)
        final = await py.wait_for("alpha", "beta", "gamma")
    assert ra["ok"] and rb["ok"]
    assert ra["text"] == rb["text"] == final
    assert sorted(final.replace("alpha", "1").replace("beta", "2").replace("gamma", "3")) == [
        "1",
        "2",
        "3",
    ]
    # Everyone left; the server kept the document.
    late = await node_client(node, base, "pad", *everything)
    assert late["text"] == final
    assert srv.server.yjs.rooms["pad"].room.text() == final


async def test_malformed_frames_close_that_connection_only(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    srv = serve()
    url = ws_base(srv.url) + "/r1"
    async with Replica(http, url) as good:
        good.insert("kept")
        for bad, code in ((b"\x07\x01", 1007), (b"\x00\x01\x05ab", 1007)):
            ws = await http.ws_connect(url)
            await ws.send_bytes(bad)
            msg = await ws.receive(5)
            while msg.type is aiohttp.WSMsgType.BINARY:  # the room's greeting first
                msg = await ws.receive(5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == code, msg
            assert "malformed" in msg.extra
        ws = await http.ws_connect(url)
        await ws.send_str("hello")
        msg = await ws.receive(5)
        while msg.type is aiohttp.WSMsgType.BINARY:
            msg = await ws.receive(5)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1003
        async with Replica(http, url) as other:
            assert await other.wait_for("kept") == "kept"
            other.insert("!")
            assert await good.wait_for("kept!") == "kept!"


async def test_tokens_guard_the_room_channel(serve: Serve, http: aiohttp.ClientSession) -> None:
    srv = serve(secret=SECRET)
    url = ws_base(srv.url) + "/team"
    with pytest.raises(aiohttp.WSServerHandshakeError) as no_token:
        await http.ws_connect(url)
    assert no_token.value.status == 401
    other = make_token(SECRET, "eve", subscribe="yjs:elsewhere")
    with pytest.raises(aiohttp.WSServerHandshakeError) as forbidden:
        await http.ws_connect(f"{url}?token={other}")
    assert forbidden.value.status == 403
    writer = make_token(SECRET, "al", subscribe="yjs:*", publish="yjs:*")
    reader = make_token(SECRET, "bo", subscribe="yjs:team")
    async with Replica(http, f"{url}?token={writer}") as al:
        al.insert("hi")
        async with Replica(http, f"{url}?token={reader}") as bo:
            assert await bo.wait_for("hi") == "hi"
            assert bo.ws is not None
            # A read-only client that writes is closed, and its edit goes nowhere.
            await bo.ws.send_bytes(sync_frame(SYNC_UPDATE, _update("nope")))
            await asyncio.wait_for(bo._task, 5)  # type: ignore[arg-type]
            assert bo.ws.close_code == 1008
    assert srv.server.yjs.rooms["team"].room.text() == "hi"


def _update(s: str) -> bytes:
    from pycrdt import Doc, Text

    d: Doc[Any] = Doc()
    d["text"] = t = Text()
    t += s
    return d.get_update()


@pytest.mark.redis
async def test_rooms_on_two_instances_converge_through_redis_streams(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    require("redis")
    prefix = unique_prefix()
    # A short log (10 per channel): the late room must rebuild from a snapshot in it.
    backplane = f"redis-streams://127.0.0.1:6379?prefix={prefix}&maxlen=10"
    config = ServerConfig(port=0, backplane=backplane)
    a, b = serve(config=config), serve(config=config)
    try:
        async with Replica(http, ws_base(a.url) + "/shared") as on_a:
            on_a.insert("from A ")
            async with Replica(http, ws_base(b.url) + "/shared") as on_b:
                # B's room is new: it loaded A's edit from the broker.
                assert await on_b.wait_for("from A") == "from A "
                for i in range(30):
                    on_b.insert(f"{i % 10}")
                on_b.insert("from B")
                await on_a.wait_for("from B")
        assert a.server.yjs.snapshot_every == 5
        # A room opened later on a third instance gets the whole state from the broker.
        c = serve(config=config)
        async with Replica(http, ws_base(c.url) + "/shared") as on_c:
            text = await on_c.wait_for("from A", "from B")
        assert text == "from A " + "0123456789" * 3 + "from B"
    finally:
        import redis

        r = redis.Redis(port=6379)
        keys = list(r.scan_iter(match=f"{{{prefix}}}:*"))
        if keys:
            r.delete(*keys)
        r.close()
