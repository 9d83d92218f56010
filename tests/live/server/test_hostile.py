"""Hostile and broken input: each gets a 4xx or an error frame; the server keeps serving."""

from __future__ import annotations

import asyncio
import os
import socket
import struct

import aiohttp

from ..conftest import Serve, SseReader, publish, subscribe, ws_collect, ws_until


async def _still_serving(srv, http: aiohttp.ClientSession) -> None:
    async with http.get(srv.url + "/healthz") as r:
        assert r.status == 200
    async with http.ws_connect(srv.ws_url) as ws:
        await subscribe(ws, "alive")
        await publish(http, srv.url, "alive", "ok")
        assert (await ws_collect(ws, 1))[0]["data"] == "ok"


async def test_bad_frames_get_error_frames_and_the_connection_survives(srv, http) -> None:
    async with http.ws_connect(srv.ws_url) as ws:
        for frame, code in (
            ("{not json", "bad_json"),
            ('{"type":"launch"}', "unknown_type"),
            ("[1,2]", "bad_frame"),
            ('{"type":"subscribe","channel":"bad channel"}', "bad_channel"),
            ('{"type":"publish","channel":"a","data":NaN}', "bad_json"),
            ("[" * 30000 + "]" * 30000, "bad_json"),
        ):
            await ws.send_str(frame)
            assert (await ws_until(ws, "error"))["code"] == code, frame
        await ws.send_bytes(b"\x00\x01")
        assert (await ws_until(ws, "error"))["code"] == "binary_frame"
        await subscribe(ws, "a")
        await publish(http, srv.url, "a", 1)
        assert (await ws_collect(ws, 1))[0]["data"] == 1
    await _still_serving(srv, http)


async def test_too_big_frame_closes_with_1009(serve: Serve, http) -> None:
    srv = serve(max_frame_bytes=1024)
    async with http.ws_connect(srv.ws_url) as ws:
        await ws.send_str('{"type":"heartbeat","x":"' + "x" * 2000 + '"}')
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1009
    async with http.post(srv.url + "/publish", data=b"x" * 5000) as r:
        assert r.status == 413
    await _still_serving(srv, http)


async def test_too_many_errors_closes_with_1008(serve: Serve, http) -> None:
    srv = serve(max_errors=3)
    async with http.ws_connect(srv.ws_url) as ws:
        for _ in range(3):
            await ws.send_str("nope")
        codes = []
        while True:
            msg = await asyncio.wait_for(ws.receive(), 10)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            codes.append(msg.json()["code"])
        assert codes == ["bad_json"] * 3
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008
    await _still_serving(srv, http)


async def test_too_many_subscriptions(serve: Serve, http) -> None:
    srv = serve(max_subscriptions=3)
    async with http.ws_connect(srv.ws_url) as ws:
        for ch in "abc":
            await subscribe(ws, ch)
        await ws.send_json({"type": "subscribe", "channel": "d"})
        assert (await ws_until(ws, "error"))["code"] == "too_many_subscriptions"
        await subscribe(ws, "a")  # re-subscribing an existing channel is fine
    params = [("channel", c) for c in "abcd"]
    for path in ("/sse", "/poll"):
        async with http.get(srv.url + path, params=params) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "too_many_subscriptions"


async def test_bad_http_requests(srv, http) -> None:
    cases = [
        ({"channel": "a", "data": float("nan")}, None, "bad_json"),
        (None, b"{", "bad_json"),
        (None, b"[1]", "bad_json"),
        (None, b"[" * 30000 + b"]" * 30000, "bad_json"),
        ({"channel": "a"}, None, "bad_frame"),
        ({"channel": "a b", "data": 1}, None, "bad_channel"),
        ({"channel": "a", "data": 1, "x": 2}, None, "bad_frame"),
    ]
    for obj, raw, code in cases:
        if obj is not None:
            raw = (
                b'{"channel":"a","data":NaN}'
                if code == "bad_json"
                else __import__("json").dumps(obj).encode()
            )
        async with http.post(srv.url + "/publish", data=raw) as r:
            assert r.status == 400, (raw[:40], r.status)
            assert (await r.json())["error"]["code"] == code
    for params in (
        {},
        {"channel": ""},
        {"channel": "a", "timeout": "-1"},
        {"channel": "a", "timeout": "abc"},
        {"channel": "a" * 300},
    ):
        async with http.get(srv.url + "/poll", params=params) as r:
            assert r.status == 400, params
        async with http.get(srv.url + "/sse", params=params) as r:
            assert r.status in (200, 400)
            if "timeout" not in params:
                assert r.status == 400
    await _still_serving(srv, http)


async def test_garbage_on_the_socket(srv, http) -> None:
    host, port = srv.url.removeprefix("http://").split(":")
    for junk in (b"\x16\x03\x01\x02\x00" + os.urandom(200), b"GET / HTTP/9.9\r\n\r\n"):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(junk)
        await writer.drain()
        await asyncio.wait_for(reader.read(), 10)  # answered (400) or closed, never hung
        writer.close()
    # a half-sent request, abandoned
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /publish HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
    writer.close()
    await _still_serving(srv, http)


async def test_a_flood_of_connections_is_capped(serve: Serve, http) -> None:
    srv = serve(max_connections=5)
    streams = [await http.get(srv.url + "/sse", params={"channel": f"f{i}"}) for i in range(5)]
    try:
        async with http.get(srv.url + "/sse", params={"channel": "x"}) as r:
            assert r.status == 503
            assert (await r.json())["error"]["code"] == "too_many_connections"
        async with http.get(srv.url + "/ws") as r:
            assert r.status == 503
        async with http.post(srv.url + "/publish", json={"channel": "f0", "data": 1}) as r:
            assert r.status == 200  # publishing still works
        assert (await SseReader(streams[0]).messages(1))[0]["data"] == 1
        assert srv.metric("rtsim_rejected_total", {"reason": "too_many_connections"}) == 2
    finally:
        for s in streams:
            s.close()
    while srv.server.active:
        await asyncio.sleep(0.01)
    await _still_serving(srv, http)


# --- slow consumers -------------------------------------------------------------------------
def _raw_connect(srv, request: bytes) -> socket.socket:
    host, port = srv.url.removeprefix("http://").split(":")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and then it never reads
    s.connect((host, int(port)))
    s.sendall(request)
    return s


def _masked_text_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + body


async def _flood_and_check(srv, http, slow: socket.socket, transport: str) -> None:
    async with http.ws_connect(srv.ws_url) as good:
        await subscribe(good, "s")
        payload = "x" * 30000
        n = 400
        reading = asyncio.create_task(ws_collect(good, n))  # the good client keeps reading
        for i in range(n):
            await publish(http, srv.url, "s", {"i": i, "p": payload})
        got = [m["data"]["i"] for m in await reading]
        assert got == list(range(n))  # the slow client never slowed the good one
    labels = {"transport": transport}
    while srv.metric("rtsim_slow_consumer_drops_total", labels) < 1:
        await asyncio.sleep(0.01)
    while srv.metric("rtsim_connections", labels) > 0:
        await asyncio.sleep(0.01)
    slow.close()


async def _slow_websocket(srv) -> socket.socket:
    """A raw WebSocket client subscribed to channel ``s`` that never reads."""
    slow = _raw_connect(
        srv,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        + _masked_text_frame(b'{"type":"subscribe","channel":"s"}'),
    )
    while srv.server.hub.subscriber_count("s") < 1:
        await asyncio.sleep(0.01)
    return slow


async def test_slow_websocket_consumer_is_dropped(serve: Serve, http) -> None:
    srv = serve(send_queue=8, close_grace_s=0.2)
    slow = await _slow_websocket(srv)
    await _flood_and_check(srv, http, slow, "websocket")


async def test_slow_sse_consumer_is_dropped(serve: Serve, http) -> None:
    srv = serve(send_queue=8)
    slow = _raw_connect(srv, b"GET /sse?channel=s HTTP/1.1\r\nHost: x\r\n\r\n")
    while srv.server.hub.subscriber_count("s") < 1:
        await asyncio.sleep(0.01)
    await _flood_and_check(srv, http, slow, "sse")


async def test_single_channel_sse_uses_the_direct_path_multi_channel_does_not(
    serve: Serve, http
) -> None:
    srv = serve()
    one = _raw_connect(srv, b"GET /sse?channel=d1 HTTP/1.1\r\nHost: x\r\n\r\n")
    two = _raw_connect(srv, b"GET /sse?channel=d1&channel=d2 HTTP/1.1\r\nHost: x\r\n\r\n")
    while srv.server.hub.subscriber_count("d1") < 2:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    subs = list(srv.server.hub.subs["d1"])
    assert sorted(s.direct_sse for s in subs) == [False, True]
    one.close()
    two.close()
