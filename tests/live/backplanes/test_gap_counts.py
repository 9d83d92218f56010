"""A resume behind a trimmed log is told exactly how many messages it missed (issue 14).

Example: replay kept to 10 messages, 30 published on ``c``; a client resuming from ``"0"``
missed 20, one resuming after the first id missed 19 (an earlier build said 1). Every
backplane that keeps a log (memory, Redis Streams, NATS JetStream) × every transport of
:class:`LiveClient`; the brokers are the real ones on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest

from rtsim.live.clients.client import GapNotice, LiveClient, Message
from rtsim.live.server import ServerConfig

from ..broker_fixtures import reachable, require, unique_prefix
from ..conftest import Serve, publish
from .test_backplanes import _drop_stream

BACKPLANES = [
    pytest.param("memory"),
    pytest.param("redis-streams", marks=pytest.mark.redis),
    pytest.param("nats", marks=pytest.mark.nats),
]
TRANSPORTS = ("websocket", "sse", "long-polling", "polling")
KEPT, SENT = 10, 30


@pytest.fixture
def prefix() -> Iterator[str]:
    p = unique_prefix()
    yield p
    if reachable(6379):
        import redis

        r = redis.Redis(port=6379)
        keys = list(r.scan_iter(match=f"{{{p}}}:*"))
        if keys:
            r.delete(*keys)
        r.close()
    if reachable(4222):
        asyncio.run(_drop_stream(p))


async def _resume(url: str, transport: str, since: str) -> tuple[list[GapNotice], list[Message]]:
    async with LiveClient(url, ["c"], transports=[transport], since={"c": since}) as c:
        await c.ready(10)
        gaps: list[GapNotice] = []
        msgs: list[Message] = []
        while len(msgs) < KEPT:
            item = await c.next(10)
            (gaps if isinstance(item, GapNotice) else msgs).append(item)  # type: ignore[arg-type]
        return gaps, msgs


@pytest.mark.parametrize("backplane", BACKPLANES)
async def test_a_resume_behind_the_trimmed_log_reports_exactly_what_it_missed(
    backplane: str, prefix: str, serve: Serve, http: aiohttp.ClientSession
) -> None:
    if backplane != "memory":
        require("nats" if backplane == "nats" else "redis")
        url = f"{backplane}://127.0.0.1:{4222 if backplane == 'nats' else 6379}?prefix={prefix}"
    else:
        url = "memory"
    srv = serve(config=ServerConfig(port=0, backplane=url, replay_len=KEPT))
    ids = [await publish(http, srv.url, "c", i) for i in range(SENT)]
    for transport in TRANSPORTS:
        for since, missed in (("0", SENT - KEPT), (ids[0], SENT - KEPT - 1), (ids[5], 14)):
            gaps, msgs = await _resume(srv.url, transport, since)
            assert [(g.missed, g.reason) for g in gaps] == [(missed, "trimmed")], (
                transport,
                since,
            )
            assert [m.data for m in msgs] == list(range(SENT - KEPT, SENT)), transport
            assert gaps[0].first_available_id == ids[SENT - KEPT]
    # A cursor inside the held log is no gap at all.
    gaps, msgs = await _resume(srv.url, "websocket", ids[SENT - KEPT - 1])
    assert gaps == [] and [m.data for m in msgs] == list(range(SENT - KEPT, SENT))
