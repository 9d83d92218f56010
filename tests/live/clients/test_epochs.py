"""Issue 14.2 from the client's side: a server restart (a new epoch) under a LiveClient.

Fixed case (ii): the server restarts on the same port with nothing published yet; the
client resumes with its old cursor, gets an epoch gap, stays subscribed and receives the
next message. Before, the WebSocket client got ``bad_cursor`` and stayed unsubscribed.
"""

from __future__ import annotations

import pytest

from rtsim.core.backoff import Backoff
from rtsim.live.clients.client import GapNotice, LiveClient, Message

from ..conftest import Serve, wait_until

FAST = Backoff(base_s=0.01, cap_s=0.05)
TRANSPORTS = ["websocket", "sse", "long-polling"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_restart_with_nothing_published_then_the_next_message(
    serve: Serve, transport: str
) -> None:
    old = serve()
    port = old.config.port if old.config.port else int(old.url.rsplit(":", 1)[1])
    async with LiveClient(
        old.url, ["c"], transports=[transport], backoff=FAST, poll_timeout_s=1
    ) as c:
        await c.ready()
        for i in range(3):
            await c.publish("c", i)
        assert [(await c.next(10)).id for _ in range(3)] == ["1", "2", "3"]  # type: ignore[union-attr]
        old_epoch = old.server.backplane.epoch
        assert c.cursor["c"] == f"{old_epoch}:3"
        old.stop()
        new = serve(port=port)
        epoch = new.server.backplane.epoch
        gap = await c.next(15)
        assert isinstance(gap, GapNotice)
        assert (gap.reason, gap.epoch, gap.position, gap.since) == (
            "epoch",
            epoch,
            f"{epoch}:0",
            f"{old_epoch}:3",
        )
        await wait_until(lambda: c.connected and c.cursor.get("c") == f"{epoch}:0")
        await c.publish("c", "after the restart")
        m = await c.next(10)
        assert isinstance(m, Message) and (m.id, m.data) == ("1", "after the restart")
        assert c.cursor["c"] == f"{epoch}:1" and c.stats.duplicates == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_old_cursor_resumes_into_every_new_message(serve: Serve, transport: str) -> None:
    """Fixed case (i) through LiveClient: 3 old, restart, 5 new → gap and all 5 (ids 1..5)."""
    old = serve()
    async with LiveClient(old.url, ["c"], transports=[transport]) as p:
        for i in range(3):
            await p.publish("c", i)
    old_cursor = {"c": f"{old.server.backplane.epoch}:3"}
    old.stop()
    new = serve()
    async with LiveClient(new.url, ["c"], transports=[transport]) as p:
        for i in range(5):
            await p.publish("c", 10 + i)
    async with LiveClient(
        new.url, ["c"], transports=[transport], since=old_cursor, poll_timeout_s=1
    ) as c:
        gap = await c.next(10)
        assert isinstance(gap, GapNotice) and gap.reason == "epoch"
        got = [await c.next(10) for _ in range(5)]
        assert [(m.id, m.data) for m in got if isinstance(m, Message)] == [
            (str(i + 1), 10 + i) for i in range(5)
        ]


async def test_refused_cursor_is_dropped_not_stuck(serve: Serve) -> None:
    """A bare id ahead of the log (no epoch to tell) → bad_cursor → subscribed from now."""
    srv = serve()
    async with LiveClient(srv.url, ["c"], transports=["websocket"], since={"c": "9"}) as c:
        gap = await c.next(10)
        assert isinstance(gap, GapNotice) and (gap.reason, gap.since) == ("bad_cursor", "9")
        await c.ready()
        await c.publish("c", "x")
        m = await c.next(10)
        assert isinstance(m, Message) and m.id == "1"


@pytest.mark.parametrize("lp_client", ["raw", "aiohttp"])
async def test_load_subscriber_reports_the_restart_as_a_gap(serve: Serve, lp_client: str) -> None:
    """The load generator's long-polling subscribers (either client) survive a restart:
    the epoch gap is reported (``gap``) and the messages of the new run are counted,
    nothing twice."""
    import asyncio

    import aiohttp

    from rtsim.live.clients.transports import LOAD_LP_CLIENTS
    from rtsim.live.clients.wire import LoadTarget

    load_subscriber = LOAD_LP_CLIENTS[lp_client]

    old = serve()
    port = int(old.url.rsplit(":", 1)[1])
    got: list[object] = []
    gaps: list[dict[str, object]] = []
    ready = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        task = asyncio.create_task(
            load_subscriber(
                session,
                LoadTarget(old.url),
                "c",
                lambda data, _read_at, _port: got.append(data),
                ready.set,
                gap=lambda g: gaps.append(dict(g)),
            )
        )
        await asyncio.wait_for(ready.wait(), 10)
        async with LiveClient(old.url, ["c"], transports=["long-polling"]) as p:
            await p.publish("c", "before")
        await wait_until(lambda: got == ["before"])
        old.stop()
        new = serve(port=port)
        async with LiveClient(new.url, ["c"], transports=["long-polling"]) as p:
            await p.publish("c", "after")
        await wait_until(lambda: got == ["before", "after"])
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [(g["reason"], g["epoch"]) for g in gaps] == [("epoch", new.server.backplane.epoch)]
