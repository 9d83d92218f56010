"""A server that accepts a WebSocket and closes it at once is not re-dialled every 30 ms.

The server here is a tiny aiohttp app on a real 127.0.0.1 socket that answers every
WebSocket upgrade and then closes with 1013 ("try again later"), as the live server's own
slow-consumer close does. Before the backoff waited for a stable connection, the client's
schedule restarted on every open and it dialled about 100 times in 3 s.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSCloseCode, web

from rtsim.core.backoff import Backoff, Jitter
from rtsim.live.clients.client import LiveClient

WINDOW_S = 3.0


@pytest.fixture
async def slammer() -> AsyncIterator[tuple[str, list[float]]]:
    """(base URL, dial times): a server that closes every WebSocket with 1013 at once."""
    dials: list[float] = []

    async def ws(request: web.Request) -> web.WebSocketResponse:
        dials.append(asyncio.get_running_loop().time())
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        await sock.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"slow consumer")
        return sock

    app = web.Application()
    app.router.add_get("/ws", ws)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", dials
    finally:
        await runner.cleanup()


def most_dials(backoff: Backoff, window_s: float) -> int:
    """The most dials the backoff allows in ``window_s``: the first, then one per retry whose
    shortest possible wait (equal jitter: half the ceiling) still fits. The client's first
    retry after a flap is attempt 1 (the first connection was attempt 0)."""
    assert backoff.jitter is Jitter.EQUAL
    dials, t, attempt = 1, 0.0, 1
    while True:
        t += backoff.ceiling(attempt) / 2
        if t > window_s:
            return dials
        dials += 1
        attempt += 1


async def test_a_server_that_closes_at_once_is_dialled_with_growing_backoff(
    slammer: tuple[str, list[float]],
) -> None:
    url, dials = slammer
    # The client's default schedule (0.05 s doubling to 2 s) with equal jitter, so that every
    # wait has a lower bound: ceilings 0.1, 0.2, 0.4, 0.8, 1.6, 2 … s.
    backoff = Backoff(base_s=0.05, cap_s=2.0, jitter=Jitter.EQUAL)
    bound = most_dials(backoff, WINDOW_S)
    assert bound == 7  # 1 + retries at ≥ 0.05, 0.15, 0.35, 0.75, 1.55, 2.55 s (next 3.55)
    c = LiveClient(url, ["x"], transports=["websocket"], backoff=backoff)
    await c.start()
    try:
        await asyncio.sleep(WINDOW_S)
    finally:
        await c.close()
    assert 2 <= len(dials) <= bound, dials  # it does retry, but no faster than the backoff
    gaps = [b - a for a, b in itertools.pairwise(dials)]
    for k, gap in enumerate(gaps, start=1):
        assert gap >= backoff.ceiling(k) / 2, (k, gaps)  # each wait at least the bound
    # Every close counted as one more attempt (the last dial may still be open at close()).
    assert c.policy.attempt in (len(dials) - 1, len(dials))
    assert c.stats.connects.get("websocket", 0) == len(dials)


async def test_with_stable_after_zero_the_old_behaviour_dials_fast(
    slammer: tuple[str, list[float]],
) -> None:
    # The control: restarting the schedule on every open dials far more often than the
    # bound above (about one per 0.05 s / 2 + a round trip), which is what the fix prevents.
    url, dials = slammer
    backoff = Backoff(base_s=0.05, cap_s=2.0, jitter=Jitter.EQUAL)
    c = LiveClient(url, ["x"], transports=["websocket"], backoff=backoff, stable_after_s=0)
    await c.start()
    try:
        await asyncio.sleep(1.0)
    finally:
        await c.close()
    assert len(dials) > most_dials(backoff, WINDOW_S), dials
