"""Fixtures: a real server on a 127.0.0.1 socket (in a background thread) and an HTTP session."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from rtsim.core.transport import SseDecoder, SseEvent
from rtsim.live.background import BackgroundServer, serve_in_background

Serve = Callable[..., BackgroundServer]


@pytest.fixture
def serve() -> Iterator[Serve]:
    started: list[BackgroundServer] = []

    def start(**options: Any) -> BackgroundServer:
        srv = serve_in_background(**options)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def srv(serve: Serve) -> BackgroundServer:
    return serve()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


async def publish(http: aiohttp.ClientSession, url: str, channel: str, data: Any, **kw: Any) -> str:
    async with http.post(url + "/publish", json={"channel": channel, "data": data}, **kw) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["id"])


_backlog: dict[int, list[dict[str, Any]]] = {}


async def ws_until(ws: aiohttp.ClientWebSocketResponse, kind: str, **match: Any) -> dict[str, Any]:
    """The first frame of type ``kind`` (and matching fields), in arrival order.

    Frames read past while looking are kept, so a later call still sees them in order.
    """
    backlog = _backlog.setdefault(id(ws), [])
    for i, obj in enumerate(backlog):
        if obj["type"] == kind and all(obj.get(k) == v for k, v in match.items()):
            return backlog.pop(i)
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        obj = json.loads(msg.data)
        if obj["type"] == kind and all(obj.get(k) == v for k, v in match.items()):
            return obj
        backlog.append(obj)


async def ws_collect(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[dict[str, Any]]:
    """The next ``n`` message frames (other frames skipped)."""
    out = []
    while len(out) < n:
        out.append(await ws_until(ws, "message"))
    return out


async def subscribe(
    ws: aiohttp.ClientWebSocketResponse, channel: str, since: str | None = None
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "subscribe", "channel": channel}
    if since is not None:
        frame["since"] = since
    await ws.send_json(frame)
    return await ws_until(ws, "subscribed", channel=channel)


class SseReader:
    """Reads events from an open SSE response."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.decoder = SseDecoder()
        self.events: list[SseEvent] = []

    async def next(self, event: str = "message") -> SseEvent:
        while True:
            while self.events:
                ev = self.events.pop(0)
                if ev.event == event:
                    return ev
            chunk = await asyncio.wait_for(self.resp.content.readany(), 10)
            if not chunk:
                raise EOFError("stream ended")
            self.events += self.decoder.feed(chunk)

    async def messages(self, n: int) -> list[dict[str, Any]]:
        return [json.loads((await self.next()).data) for _ in range(n)]


async def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``pred`` until true (a condition, never a duration, is what tests assert)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)
