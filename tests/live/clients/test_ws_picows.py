"""The picows load subscriber against a real server: every message once, a resume after a
drop from the last position, a degrade frame raised with that position, a refused
handshake with its Retry-After; and the frame reading it shares with the aiohttp one."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from rtsim.live.background import BackgroundServer
from rtsim.live.clients.loadframes import LoadFrames
from rtsim.live.clients.transports import load_subscriber
from rtsim.live.clients.wire import Degraded, Dropped, LoadTarget, Refused
from rtsim.live.clients.ws_picows import load_subscriber as picows_subscriber

from ..conftest import Serve, publish, wait_until

CHANNEL = "lean"


class _Run:
    """One subscriber task and what it received."""

    def __init__(self, srv: BackgroundServer, since: str | None = None) -> None:
        self.data: list[Any] = []
        self.gaps: list[Any] = []
        self.ports: set[int] = set()
        self.subscribed = asyncio.Event()
        self.task = asyncio.ensure_future(
            picows_subscriber(
                None,  # type: ignore[arg-type]  # picows opens its own connection
                LoadTarget(srv.url),
                CHANNEL,
                self._got,
                self.subscribed.set,
                gap=self.gaps.append,
                since=since,
            )
        )

    def _got(self, data: Any, read_at: float, port: int) -> None:
        assert read_at > 0
        self.data.append(data)
        self.ports.add(port)

    async def ended(self) -> BaseException | None:
        await asyncio.wait_for(asyncio.wait([self.task]), 10)
        return asyncio.CancelledError() if self.task.cancelled() else self.task.exception()


async def _subscribed(srv: BackgroundServer, n: int = 1) -> None:
    await wait_until(lambda: len(srv.server.hub.subs.get(CHANNEL, ())) >= n)


def _drop(srv: BackgroundServer) -> None:
    async def drop() -> None:
        for sub in list(srv.server.hub.subs.get(CHANNEL, ())):
            sub.close("slow consumer")  # as the hub does when its queue is full
            if sub.on_overflow is not None:
                sub.on_overflow(sub)  # WebSocket: close 1013

    srv.call(drop)


async def test_every_message_once_then_resume_after_a_drop(
    srv: BackgroundServer, http: aiohttp.ClientSession
) -> None:
    run = _Run(srv)
    await _subscribed(srv)
    ids = [await publish(http, srv.url, CHANNEL, {"seq": i}) for i in range(5)]
    await wait_until(lambda: len(run.data) == 5)
    assert run.data == [{"seq": i} for i in range(5)]
    assert len(run.ports) == 1 and min(run.ports) > 0
    _drop(srv)
    exc = await run.ended()
    assert isinstance(exc, Dropped) and exc.cursor == ids[-1]
    # Published while it was away: the resumed subscriber gets those, then new ones.
    await publish(http, srv.url, CHANNEL, {"seq": 5})
    again = _Run(srv, since=exc.cursor)
    await _subscribed(srv)
    await publish(http, srv.url, CHANNEL, {"seq": 6})
    await wait_until(lambda: len(again.data) == 2)
    await asyncio.sleep(0.1)  # a duplicate would arrive now
    assert again.data == [{"seq": 5}, {"seq": 6}]
    again.task.cancel()
    assert isinstance(await again.ended(), asyncio.CancelledError)
    await wait_until(lambda: not srv.server.hub.subs.get(CHANNEL))  # closed on cancel


async def test_a_degrade_frame_is_raised_with_the_last_position(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    srv = serve(degrade_poll_s=0.5, overload_hold_s=0, overload_lag_ms=0)
    run = _Run(srv)
    await _subscribed(srv)
    last = await publish(http, srv.url, CHANNEL, {"seq": 0})
    await wait_until(lambda: len(run.data) == 1)

    async def overload() -> None:
        srv.server.overload.force(True)

    srv.call(overload)
    exc = await run.ended()
    assert isinstance(exc, Degraded)
    assert exc.cursor is not None and exc.cursor.endswith(last)
    assert exc.poll_s == 0.5


async def test_a_refused_handshake_carries_retry_after(serve: Serve) -> None:
    srv = serve(max_connections_per_ip=1)
    first = _Run(srv)
    await _subscribed(srv)
    second = _Run(srv)
    exc = await second.ended()
    assert isinstance(exc, Refused) and exc.status in (429, 503)
    assert exc.retry_after_s is not None and exc.retry_after_s > 0
    first.task.cancel()


def test_the_ws_client_table() -> None:
    from rtsim.core.transport import Transport
    from rtsim.live.clients import sse, websocket

    assert load_subscriber(Transport.WEBSOCKET) is picows_subscriber
    assert load_subscriber(Transport.WEBSOCKET, "aiohttp") is websocket.load_subscriber
    assert load_subscriber(Transport.SSE, "picows") is sse.load_subscriber
    with pytest.raises(ValueError, match="ws_client must be picows or aiohttp, got 'x'"):
        load_subscriber(Transport.WEBSOCKET, "x")


def test_load_frames_track_the_resume_position() -> None:
    got: list[tuple[Any, float, int]] = []
    gaps: list[Any] = []
    frames = LoadFrames(lambda d, r, p: got.append((d, r, p)), gaps.append, None, port=7)
    frames.text(b'{"type":"subscribed","channel":"c","since":"3"}', 1.0)
    assert frames.last == "3"
    frames.text('{"type":"message","id":"4","data":{"seq":1}}', 2.0)
    frames.text(b'{"type":"ack","ref":1}', 2.5)
    assert got == [({"seq": 1}, 2.0, 7)] and frames.last == "4"
    frames.text(memoryview(b'{"type":"gap","position":"9","reason":"epoch"}'), 3.0)
    assert frames.last == "9" and gaps == [{"type": "gap", "position": "9", "reason": "epoch"}]
    with pytest.raises(Degraded) as info:
        frames.text(b'{"type":"degrade","poll_s":2}', 4.0)
    assert info.value.cursor == "9" and info.value.poll_s == 2.0
    with pytest.raises(ValueError):
        frames.text(b"not json", 5.0)
