"""A feed that skips messages makes live subscribers resume (issue 14, the soak).

The full-size JetStream soak lost 256,711 deliveries without a gap notice: the server's
feed fell behind the broker's retention, resumed after messages that were already
trimmed, and went on fanning out later ones, so live WebSocket and SSE subscribers moved
past the hole without a word. Kind: a broker feed (JetStream or Redis Streams) that skips
messages. The backplane now reports the skip (``on_feed_gap``) and the hub closes every
WebSocket (1013) and SSE subscriber, which resume from their own cursors: what is still
held is replayed, the rest is an exact gap.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from rtsim.live.backplanes.nats import JetStreamBackplane
from rtsim.live.clients.client import GapNotice, LiveClient, Message

from ..conftest import Serve, publish
from .test_trim_while_reading import prefix  # noqa: F401 (the fixture: a stream, dropped after)


def _msg(seq: int, prev: int) -> Any:
    headers = {"Rtsim-Prev": str(prev), "Rtsim-N": str(seq)}
    meta = SimpleNamespace(sequence=SimpleNamespace(stream=seq))
    return SimpleNamespace(
        metadata=meta, headers=headers, subject="p.c", data=b'{"t": 1.0, "d": 1}'
    )


async def test_a_hole_in_the_feeds_sequence_is_reported_once() -> None:
    bp = JetStreamBackplane.from_url("nats://127.0.0.1:1?prefix=p")
    reported: list[int] = []
    bp.on_feed_gap = lambda: reported.append(bp.stats.feed_gaps)
    bp._feed_last = 0
    for seq in (1, 2, 6, 7):  # 3, 4 and 5 were trimmed before the feed read them
        bp._on_feed(_msg(seq, seq - 1))
    assert reported == [1] and bp._feed_last == 7


@pytest.mark.nats
@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_live_subscribers_resume_past_what_the_feed_skipped(
    prefix: str,  # noqa: F811
    serve: Serve,
    http: aiohttp.ClientSession,
    transport: str,
) -> None:
    bp = JetStreamBackplane.from_url(f"nats://127.0.0.1:4222?prefix={prefix}")
    srv = serve(backplane=bp)
    deliver = bp._deliver
    async with LiveClient(srv.url, ["c"], transports=[transport]) as c:
        await c.ready(10)
        await publish(http, srv.url, "c", 0)
        first = await c.next(10)
        assert isinstance(first, Message) and first.data == 0
        bp._deliver = lambda env: None  # type: ignore[method-assign]  # the feed skips
        for i in (1, 2, 3):
            await publish(http, srv.url, "c", i)
        await asyncio.sleep(0.3)
        bp._deliver = deliver  # type: ignore[method-assign]
        srv._loop.call_soon_threadsafe(bp._feed_gap)  # as _on_feed reports a hole
        await publish(http, srv.url, "c", 4)
        got: list[Any] = []
        while len([m for m in got if isinstance(m, Message)]) < 4:
            got.append(await c.next(10))
        assert not [g for g in got if isinstance(g, GapNotice)]
        # Before: 4 only (1, 2 and 3 were never sent, and nothing said so).
        assert [m.data for m in got if isinstance(m, Message)] == [1, 2, 3, 4]
    assert bp.stats.feed_gaps == 1
