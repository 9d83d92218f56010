"""The Python client: one interface over the three transports, resume, backoff, fallback."""

from __future__ import annotations

import pytest

from rtsim.core.backoff import Backoff
from rtsim.live.clients.client import GapNotice, LiveClient, LiveClientError, Message
from rtsim.live.server.auth import make_token

from ..conftest import Serve, wait_until

FAST = Backoff(base_s=0.01, cap_s=0.05)


@pytest.mark.parametrize("transport", ["websocket", "sse", "long-polling"])
async def test_resume_after_a_dropped_connection(srv, transport: str) -> None:
    async with LiveClient(
        srv.url, ["a", "b"], transports=[transport], backoff=FAST, poll_timeout_s=5
    ) as c:
        await c.ready()
        for i in range(5):
            await c.publish("ab"[i % 2], i)
        got = [await c.next(10) for _ in range(5)]
        c.drop()
        for i in range(5, 12):  # published while the client is (likely) away
            await c.publish("ab"[i % 2], i)
        got += [await c.next(10) for _ in range(7)]
        assert all(isinstance(m, Message) for m in got)
        assert sorted(m.data for m in got if isinstance(m, Message)) == list(range(12))
        for ch in "ab":
            ids = [int(m.id) for m in got if isinstance(m, Message) and m.channel == ch]
            assert ids == sorted(ids) == list(range(1, len(ids) + 1))
        await wait_until(lambda: c.stats.reconnects == 1)
        assert c.transport == transport and c.stats.duplicates == 0


async def test_falls_back_websocket_to_sse_to_long_polling(serve: Serve) -> None:
    srv = serve(transports=("long-polling",))
    async with LiveClient(srv.url, ["x"], backoff=FAST, failures_before_fallback=1) as c:
        await c.ready()
        assert c.transport == "long-polling"
        assert c.fallbacks == [("websocket", "sse"), ("sse", "long-polling")]
        await c.publish("x", "hello")
        item = await c.next(10)
        assert isinstance(item, Message) and item.data == "hello"


async def test_gap_reaches_the_application(serve: Serve) -> None:
    srv = serve(replay_len=3)
    async with LiveClient(srv.url, ["g"], transports=["sse"], since={"g": "0"}) as c:
        await c.ready()
        c.drop()
    for i in range(6):
        async with LiveClient(srv.url, ["g"], transports=["websocket"]) as p:
            await p.publish("g", i)
    async with LiveClient(srv.url, ["g"], transports=["websocket"], since={"g": "0"}) as c:
        first = await c.next(10)
        epoch = srv.server.backplane.epoch
        assert first == GapNotice("g", "0", 3, "4", "trimmed", epoch, f"{epoch}:3")
        assert [(await c.next(10)).id for _ in range(3)] == ["4", "5", "6"]  # type: ignore[union-attr]


async def test_auth_errors_are_fatal_not_retried(serve: Serve) -> None:
    secret = "z" * 32
    srv = serve(secret=secret)
    c = LiveClient(srv.url, ["x"], transports=["sse"], backoff=FAST)
    async with c:
        with pytest.raises(LiveClientError) as info:
            await c.ready()
        assert info.value.status == 401
    token = make_token(secret, "u", "x", "x", 60)
    async with LiveClient(srv.url, ["x"], token=token, transports=["websocket"]) as c:
        await c.ready()
        assert await c.ws_publish("x", 1) == "1"
        assert (await c.next(10)).data == 1  # type: ignore[union-attr]


async def test_presence_through_the_client(srv) -> None:
    async with (
        LiveClient(srv.url, ["r"], transports=["websocket"]) as a,
        LiveClient(srv.url, ["r"], transports=["long-polling"], client_id="b") as b,
    ):
        await a.ready()
        await b.ready()
        await b.set_presence("r", {"name": "B"})
        await wait_until(lambda: "r" in a.presence and "anonymous:b" in a.presence["r"].members)
        await a.set_presence("r", {"name": "A"})
        await wait_until(lambda: len(a.presence["r"].members) == 2)
