"""`rtsim load` through faults (issue 14): subscribers dropped mid-run resume from their
cursor, and a publisher refused with 429 (at connect, or past the per-address publish
rate) waits as told and retries; every message is still counted exactly once."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import aiohttp
import pytest

from rtsim.live.background import BackgroundServer, serve_in_background
from rtsim.live.clients.loadgen import LoadParams, run_load


def _wait(pred: Any, limit_s: float = 60) -> None:
    end = time.monotonic() + limit_s
    while not pred():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.02)


def _start(p: LoadParams) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["summary"] = run_load(p, progress=False).summary
        except BaseException as exc:  # reported by _finish
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


def _finish(t: threading.Thread, out: dict[str, Any]) -> Any:
    t.join(timeout=120)
    assert not t.is_alive()
    assert "error" not in out, out.get("error")
    s = out["summary"]
    assert s.extra["errors"] == 0, s.extra["error_samples"]
    assert s.lost == 0 and s.extra["duplicates"] == 0
    assert s.deliveries == s.extra["expected"] > 0
    return s


def _params(srv: BackgroundServer, transport: str = "websocket", **kw: Any) -> LoadParams:
    base: dict[str, Any] = dict(
        url=srv.url,
        transport=transport,
        subscribers=8,
        channels=2,
        rate=50,
        duration_s=3,
        processes=1,
        settle_s=1.0,
        traced=0,
    )
    return LoadParams(**{**base, **kw})


@pytest.mark.parametrize(
    ("transport", "client"),
    [
        ("websocket", "raw"),
        ("websocket", "picows"),
        ("websocket", "aiohttp"),
        ("sse", "raw"),
        ("sse", "aiohttp"),
    ],
)
@pytest.mark.parametrize("how", ["slow consumer", "reset"])
def test_dropped_subscribers_resume_and_nothing_is_lost_or_repeated(
    transport: str, client: str, how: str
) -> None:
    srv = serve_in_background()
    kind = "sse_client" if transport == "sse" else "ws_client"
    try:
        t, out = _start(_params(srv, transport, **{kind: client}))

        async def drop() -> None:
            for subs in srv.server.hub.subs.values():
                for sub in list(subs):
                    if how == "reset" and sub.direct is not None:
                        sub.direct.abort()  # the TCP connection, as a network failure
                    sub.close("slow consumer")  # as the hub does when its queue is full
                    if sub.on_overflow is not None:
                        sub.on_overflow(sub)  # WebSocket: close 1013

        for n in (30, 80):  # twice, while messages are flowing
            _wait(lambda n=n: srv.metric("rtsim_published_total") >= n)
            srv.call(drop)
        s = _finish(t, out)
        assert s.extra["subscriber_drops"] >= 8 * 2
    finally:
        srv.stop()


def test_a_rate_limited_publisher_waits_and_sends_again() -> None:
    srv = serve_in_background(publish_rate_per_ip=20.0)
    try:
        t, out = _start(_params(srv, rate=40, duration_s=2))
        s = _finish(t, out)
        assert s.extra["publisher_refused_publishes"] > 0
        assert s.extra["published"] == 80
        assert srv.metric("rtsim_published_total") == 80  # each stored once
    finally:
        srv.stop()


@pytest.mark.parametrize("transport", ["websocket", "sse", "long-polling"])
def test_refused_connections_wait_for_retry_after_then_succeed(transport: str) -> None:
    # 8 subscribers + the publisher + one connection the test holds: the 10th is refused.
    srv = serve_in_background(max_connections_per_ip=9)
    hold: dict[str, Any] = {}

    async def open_one() -> None:
        session = aiohttp.ClientSession()
        hold["session"], hold["ws"] = session, await session.ws_connect(srv.ws_url)

    async def close_it() -> None:
        await hold["ws"].close()
        await hold["session"].close()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(open_one())
        t, out = _start(_params(srv, transport))
        rejected = ("rtsim_rejected_total", {"reason": "too_many_connections_per_ip"})
        _wait(lambda: srv.metric(*rejected) >= 1)
        time.sleep(0.5)
        loop.run_until_complete(close_it())
        s = _finish(t, out)
        refused = s.extra["publisher_refused_connects"] + s.extra["subscriber_refusals"]
        assert refused >= 1
        assert srv.metric(*rejected) <= refused + 2  # each waited Retry-After (1 s)
    finally:
        loop.close()
        srv.stop()
