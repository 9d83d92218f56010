"""Poison input: anything that could be stored but not sent is refused before it is stored.

The example: ``{"channel":"c","data":"\\ud800"}`` — a lone UTF-16 surrogate is a valid JSON
escape with no UTF-8 form. It must get 400 ``bad_json`` (an ``error`` frame over WebSocket)
on every entry point, leave nothing stored, and never stop delivery to anyone else.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from rtsim.core.envelope import Envelope
from rtsim.live.background import BackgroundServer
from rtsim.live.server.hub import Subscriber

from ..conftest import SseReader, publish, subscribe, ws_collect, ws_until

# Raw JSON bodies (json.dumps would escape differently; these are what a client sends).
POISON_BODIES = [
    b'{"channel":"c","data":"\\ud800"}',  # the example
    b'{"channel":"c","data":{"a":[1,{"b":"x\\udfff"}]}}',  # nested value, low surrogate
    b'{"channel":"c","data":{"ok":[{"\\ud83d":1}]}}',  # nested key, half an emoji
]


async def _publish_raw(http: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, Any]:
    async with http.post(url + "/publish", data=body) as r:
        return r.status, await r.json()


async def _check_everything_else_delivered(
    srv: BackgroundServer, http: aiohttp.ClientSession, channel: str, ids: list[str]
) -> None:
    """Resuming after the first id gives exactly the other good messages, on every transport."""
    want = ids[1:]
    # SSE resume (the stream the poison used to break mid-way)
    async with http.get(
        srv.url + "/sse", params={"channel": channel}, headers={"Last-Event-ID": ids[0]}
    ) as r:
        assert r.status == 200
        got = await SseReader(r).messages(len(want))
    assert [m["id"] for m in got] == want
    # WebSocket subscribe with since (used to return nothing at all)
    async with http.ws_connect(srv.ws_url) as ws:
        await subscribe(ws, channel, since=ids[0])
        assert [m["id"] for m in await ws_collect(ws, len(want))] == want
    # Long polling from the same cursor
    async with http.get(
        srv.url + "/poll", params={"channel": channel, "after": ids[0], "timeout": "0"}
    ) as r:
        assert r.status == 200
        assert [m["id"] for m in (await r.json())["messages"]] == want


@pytest.mark.parametrize("body", POISON_BODIES, ids=["example", "nested-value", "nested-key"])
async def test_http_publish_of_a_lone_surrogate_is_refused_and_nothing_is_stored(
    srv: BackgroundServer, http: aiohttp.ClientSession, body: bytes
) -> None:
    ids = [await publish(http, srv.url, "c", "before")]
    status, answer = await _publish_raw(http, srv.url, body)
    assert status == 400, answer
    assert answer["error"]["code"] == "bad_json"
    assert "surrogate" in answer["error"]["message"]
    ids.append(await publish(http, srv.url, "c", "after"))
    assert srv.metric("rtsim_published_total") == 2
    assert srv.metric("rtsim_protocol_errors_total", {"code": "bad_json"}) == 1
    await _check_everything_else_delivered(srv, http, "c", ids)


async def test_websocket_publish_of_a_lone_surrogate_gets_an_error_frame(
    srv: BackgroundServer, http: aiohttp.ClientSession
) -> None:
    ids = [await publish(http, srv.url, "c", 1)]
    async with http.ws_connect(srv.ws_url) as ws:
        for raw, ref in (
            ('{"type":"publish","channel":"c","data":"\\ud800","ref":"r1"}', "r1"),
            ('{"type":"publish","channel":"c","data":{"\\udc00":{"x":1}},"ref":7}', 7),
            ('{"type":"publish","channel":"c","data":1,"ref":"\\ud800"}', None),  # bad ref
        ):
            await ws.send_str(raw)
            err = await ws_until(ws, "error")
            assert err["code"] == "bad_json", raw
            assert err.get("ref") == ref, raw
        # The same connection still publishes and receives.
        await ws.send_json({"type": "publish", "channel": "c", "data": 2, "ref": "ok"})
        ids.append((await ws_until(ws, "ack", ref="ok"))["id"])
    assert srv.metric("rtsim_published_total") == 2
    await _check_everything_else_delivered(srv, http, "c", ids)


async def test_poisoned_presence_state_is_refused_on_every_transport_and_others_are_served(
    srv: BackgroundServer, http: aiohttp.ClientSession
) -> None:
    async with (
        http.ws_connect(srv.ws_url) as watcher,
        http.get(srv.url + "/sse", params={"channel": "room"}) as sse_resp,
        http.ws_connect(srv.ws_url) as bad,
    ):
        sse = SseReader(sse_resp)
        await subscribe(watcher, "room")
        # WebSocket presence frame with a poisoned value, then a poisoned key.
        for raw in (
            '{"type":"presence","channel":"room","state":{"name":"\\ud800"}}',
            '{"type":"presence","channel":"room","state":{"\\udbff":1}}',
        ):
            await bad.send_str(raw)
            assert (await ws_until(bad, "error"))["code"] == "bad_json"
        # SSE / long-polling presence: POST /presence (state, nested state, and client id).
        for body in (
            b'{"channel":"room","client":"p1","state":{"name":"\\ud800"}}',
            b'{"channel":"room","client":"p1","state":{"a":{"b":["\\udc00"]}}}',
            b'{"channel":"room","client":"\\ud800"}',
        ):
            async with http.post(srv.url + "/presence", data=body) as r:
                assert r.status == 400
                assert (await r.json())["error"]["code"] == "bad_json"
        async with http.get(srv.url + "/presence", params={"channel": "room"}) as r:
            assert (await r.json())["members"] == {}
        # A good member joins and a message follows: both reach every other subscriber.
        async with http.post(
            srv.url + "/presence",
            json={"channel": "room", "client": "p2", "state": {"name": "Zoë 😀"}},
        ) as r:
            assert r.status == 200
        msg_id = await publish(http, srv.url, "room", "hello")
        joined = await ws_until(watcher, "presence", event="join")
        assert joined["client"] == "anonymous:p2" and joined["state"] == {"name": "Zoë 😀"}
        assert [m["id"] for m in await ws_collect(watcher, 1)] == [msg_id]
        ev = json.loads((await sse.next("presence")).data)
        while ev["event"] != "join":
            ev = json.loads((await sse.next("presence")).data)
        assert ev["state"] == {"name": "Zoë 😀"}
        assert [m["id"] for m in await sse.messages(1)] == [msg_id]
    assert srv.metric("rtsim_protocol_errors_total", {"code": "bad_json"}) == 5


class _RaisingTransport:
    """A socket whose write raises something other than a connection error."""

    def __init__(self) -> None:
        self.writes = 0

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.writes += 1
        raise ValueError("this socket cannot take it")


async def test_a_subscriber_whose_send_raises_only_drops_itself(
    srv: BackgroundServer, http: aiohttp.ClientSession
) -> None:
    from rtsim.core.transport import Transport

    hub = srv.server.hub
    bad = Subscriber(Transport.WEBSOCKET, 8)
    bad.direct = _RaisingTransport()
    failed: list[str] = []
    bad.on_fail = lambda s: failed.append(s.close_reason)

    async def add_first() -> None:  # the failing one is first in the fan-out order
        await hub.subscribe(bad, "f", None)

    srv.call(add_first)
    async with (
        http.ws_connect(srv.ws_url) as ws,
        http.get(srv.url + "/sse", params={"channel": "f"}) as sse_resp,
    ):
        await subscribe(ws, "f")
        while hub.subscriber_count("f") < 3:
            await asyncio.sleep(0.01)
        assert next(iter(hub.subs["f"])) is bad
        ids = [await publish(http, srv.url, "f", i) for i in range(3)]
        assert [m["id"] for m in await ws_collect(ws, 3)] == ids
        assert [m["id"] for m in await SseReader(sse_resp).messages(3)] == ids
    assert bad.closed and failed == ["send failed"]
    assert bad.direct is None and bad.queue == type(bad.queue)()
    assert srv.metric("rtsim_send_failures_total", {"transport": "websocket"}) == 1


def test_an_envelope_that_cannot_be_encoded_raises_envelope_error() -> None:
    from rtsim.core.envelope import EnvelopeError, encode

    with pytest.raises(EnvelopeError, match="UTF-8"):
        encode(Envelope("c", "1", "\ud800", 0.0))
