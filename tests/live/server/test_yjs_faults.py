"""Yjs rooms under faults: awareness re-sent by others, a dropped socket, an oversized update."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from pycrdt import Doc, Text

from rtsim.core.yroom import (
    MAX_FRAME_BYTES,
    MSG_AWARENESS,
    MSG_QUERY_AWARENESS,
    SYNC_STEP1,
    SYNC_STEP2,
    SYNC_UPDATE,
    Decoder,
    decode_awareness,
    encode_awareness,
    encode_frame,
    sync_frame,
)

from ..conftest import Serve
from ..yjs_replica import Replica


def _aw(*entries: tuple[int, int, Any]) -> bytes:
    return encode_frame(MSG_AWARENESS, encode_awareness(list(entries)))


async def _read(
    ws: aiohttp.ClientWebSocketResponse, until: Callable[[int, int, bytes], bool]
) -> list[tuple[int, int, Any]]:
    """Read frames until ``until(type, step, payload)``; the awareness entries read on the way
    (including the last frame's, if it is one)."""
    seen: list[tuple[int, int, Any]] = []
    while True:
        msg = await ws.receive(10)
        assert msg.type is aiohttp.WSMsgType.BINARY, msg
        dec = Decoder(msg.data)
        kind = dec.read_var_uint()
        step = dec.read_var_uint() if kind == 0 else -1
        payload = dec.read_var_bytes() if kind in (0, MSG_AWARENESS) else b""
        if kind == MSG_AWARENESS:
            seen += decode_awareness(payload)
        if until(kind, step, payload):
            return seen


async def _barrier(ws: aiohttp.ClientWebSocketResponse) -> list[tuple[int, int, Any]]:
    """Everything the room sent before it answered a sync step 1 sent now (so every frame
    sent before this one has been handled)."""
    await ws.send_bytes(sync_frame(SYNC_STEP1, b"\x00"))
    return await _read(ws, lambda kind, step, _: kind == 0 and step == SYNC_STEP2)


async def _known(ws: aiohttp.ClientWebSocketResponse) -> dict[int, Any]:
    """Every awareness state the room holds (the answer to a query awareness)."""
    await _barrier(ws)
    await ws.send_bytes(encode_frame(MSG_QUERY_AWARENESS))
    return {c: s for c, _, s in await _read(ws, lambda kind, *_: kind == MSG_AWARENESS)}


async def test_a_dropped_socket_removes_its_own_ids_not_the_resenders(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    srv = serve()
    url = "ws" + srv.url[len("http") :] + "/yjs/aw"
    a = await http.ws_connect(url)
    b = await http.ws_connect(url)
    try:
        await a.send_bytes(_aw((1, 1, {"user": "A"})))
        await _barrier(a)
        await b.send_bytes(_aw((2, 1, {"user": "B"})))
        # Like stock y-websocket clients, each re-sends every state it knows at its clock.
        await b.send_bytes(_aw((1, 1, {"user": "A"}), (2, 1, {"user": "B"})))
        await a.send_bytes(_aw((1, 1, {"user": "A"}), (2, 1, {"user": "B"})))
        assert await _known(a) == {1: {"user": "A"}, 2: {"user": "B"}}
        assert await _known(b) == {1: {"user": "A"}, 2: {"user": "B"}}
        await a.close()  # A's socket drops
        seen = await _read(b, lambda kind, _, payload: kind == MSG_AWARENESS)
        # B is told at once that A's id is gone (null state, clock + 1) — not its own.
        assert seen == [(1, 2, None)]
        assert await _known(b) == {2: {"user": "B"}}
        assert srv.server.yjs.rooms["aw"].room.awareness == {2: (1, {"user": "B"})}
    finally:
        await a.close()
        await b.close()


async def test_an_oversized_update_is_refused_for_good_and_the_room_serves_others(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    srv = serve()
    url = "ws" + srv.url[len("http") :] + "/yjs/big"
    async with Replica(http, url) as other:
        other.insert("kept")
        doc: Doc[Any] = Doc()
        doc["text"] = text = Text()
        ws = await http.ws_connect(url)
        await ws.send_bytes(sync_frame(SYNC_STEP1, doc.get_state()))
        text.insert(0, "hi")  # a small edit first: the room learns this client's id
        await ws.send_bytes(sync_frame(SYNC_UPDATE, doc.get_update()))
        assert await other.wait_for("hi")
        before = doc.get_state()
        text.insert(2, "x" * MAX_FRAME_BYTES)
        await ws.send_bytes(sync_frame(SYNC_UPDATE, doc.get_update(before)))
        msg = await ws.receive(30)
        while msg.type is aiohttp.WSMsgType.BINARY:
            msg = await ws.receive(30)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1009
        assert "4 MiB" in msg.extra and "refused" in msg.extra
        # It reconnects, as y-websocket does, and says what it holds: refused at once, before
        # the room asks for its updates (no sync step 1 from the room on this connection).
        again = await http.ws_connect(url)
        await again.send_bytes(sync_frame(SYNC_STEP1, doc.get_state()))
        msg = await again.receive(10)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1009, msg
        assert "refused earlier" in msg.extra and "4 MiB" in msg.extra
        # The room keeps serving the others.
        other.insert("!")
        async with Replica(http, url) as late:
            assert await late.wait_for("kept", "!") in ("hikept!", "kepthi!")
        room = srv.server.yjs.rooms["big"].room
        assert "x" not in room.text()
    assert srv.metric("rtsim_protocol_errors_total", {"code": "yjs_too_big"}) == 2
    await asyncio.sleep(0)
