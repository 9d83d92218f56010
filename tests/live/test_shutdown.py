"""A server stops promptly and leaves nothing running, whatever its tasks were doing.

Found in CI: a server on the Redis Streams backplane with a Yjs room took 30 s to stop
(``BackgroundServer.stop``'s limit), then left its tasks pending and a Redis socket open;
they were destroyed during a later test, whose warnings made it fail. Two causes: the
room's follower subscribed again after the shutdown closed its subscription, and the
single ``cancel()`` that should have ended it was absorbed by redis-py (a reply arriving
as the cancel lands). Fixed: the follower stops on shutdown, and every background task is
ended with :func:`rtsim.live.tasks.cancel_and_wait`, which cancels again until it ends.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from rtsim.live.background import serve_in_background
from rtsim.live.server.app import ServerConfig
from rtsim.live.tasks import cancel_and_wait

from .broker_fixtures import require, unique_prefix


async def test_cancel_and_wait_ends_a_task_that_absorbs_a_cancellation() -> None:
    absorbed = 0

    async def stubborn() -> None:
        nonlocal absorbed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                absorbed += 1
                if absorbed == 3:
                    raise  # as a library that swallows a cancellation or two

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, timeout_s=5.0) is True
    assert task.cancelled() and absorbed == 3


async def test_cancel_and_wait_gives_up_on_a_task_that_never_ends() -> None:
    swallow = True

    async def immortal() -> None:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if not swallow:
                    raise

    task = asyncio.create_task(immortal())
    await asyncio.sleep(0)
    t0 = time.monotonic()
    assert await cancel_and_wait(task, timeout_s=0.3) is False
    assert 0.25 <= time.monotonic() - t0 < 3.0 and not task.done()
    swallow = False
    assert await cancel_and_wait(task) is True


async def test_cancel_and_wait_returns_a_finished_tasks_outcome_without_raising() -> None:
    async def boom() -> None:
        raise ValueError("its own error")

    task = asyncio.create_task(boom())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task) is True
    assert await cancel_and_wait(None) is True


@pytest.mark.redis
@pytest.mark.parametrize("backplane", ["memory", "redis-streams"])
async def test_a_server_with_a_yjs_room_stops_at_once_and_leaves_no_task(backplane: str) -> None:
    if backplane != "memory":
        require("redis")
        backplane = f"redis-streams://127.0.0.1:6379?prefix={unique_prefix()}"
    srv = serve_in_background(ServerConfig(port=0, backplane=backplane))
    try:
        room = srv.ws_url[: -len("/ws")] + "/yjs/room"
        async with aiohttp.ClientSession() as http, http.ws_connect(room) as ws:
            await ws.receive(timeout=5)  # the room's greeting: it follows its channel
        await asyncio.sleep(0.2)
    finally:
        t0 = time.monotonic()
        srv.stop()
        took = time.monotonic() - t0
    assert not srv.running
    assert srv._loop.is_closed()
    assert took < 5.0, f"stop took {took:.1f} s"
