"""Graceful degradation under overload: clients poll instead of being dropped, lose
nothing, and come back to pushing when the server has recovered (claim C20, server side)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from rtsim.core.transport import Transport
from rtsim.live.background import BackgroundServer
from rtsim.live.clients.client import LiveClient, Message

from ..conftest import Serve, publish, wait_until

POLL_S = 0.3


def force(srv: BackgroundServer, overloaded: bool | None) -> None:
    async def go() -> None:
        srv.server.overload.force(overloaded)

    srv.call(go)


async def take(c: LiveClient, n: int) -> list[Any]:
    out = []
    while len(out) < n:
        item = await c.next(timeout=15)
        assert isinstance(item, Message)
        out.append(item.data)
    return out


PUSH = (Transport.WEBSOCKET, Transport.SSE, Transport.LONG_POLLING)


async def test_forced_overload_degrades_every_transports_clients_losslessly(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    srv = serve(degrade_poll_s=POLL_S, overload_hold_s=0)
    url = srv.url
    clients = [LiveClient(url, ["c"], transports=[t], stable_after_s=0) for t in PUSH]
    for c in clients:
        await c.start()
        await c.ready()
    try:
        for i in range(5):
            await publish(http, url, "c", i)
        force(srv, True)
        await wait_until(lambda: all(c.degraded for c in clients), timeout=10)
        assert srv.metric("rtsim_overloaded") == 1
        assert srv.metric("rtsim_degraded_total") >= 3  # one per client

        # A new persistent connection is refused with the interval, over both transports.
        async with http.get(url + "/sse", params={"channel": "c"}) as r:
            assert r.status == 503
            assert r.headers["Retry-After"] == "1"  # whole seconds, rounded up
            body = await r.json()
            assert body["code"] == "degraded" and body["poll_s"] == POLL_S
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await http.ws_connect(srv.ws_url)
        assert exc.value.status == 503
        # A long poll is answered at once, and says so.
        t0 = time.monotonic()
        async with http.get(url + "/poll", params={"channel": "c", "after": "0"}) as r:
            answer = await r.json()
        assert answer["degraded"] is True and answer["poll_s"] == POLL_S
        assert time.monotonic() - t0 < 10  # not held for the 25 s hold

        for i in range(5, 15):
            await publish(http, url, "c", i)
        for c in clients:
            assert await take(c, 15) == list(range(15))
            assert c.transport is Transport.POLLING

        force(srv, False)
        await wait_until(lambda: all(not c.degraded for c in clients), 10)
        assert srv.metric("rtsim_overloaded") == 0
        for c in (clients[0], clients[1]):  # the streams are back (a long poll opens on news)
            await wait_until(lambda c=c: c.transport in PUSH and c.connected, 10)
        for i in range(15, 20):
            await publish(http, url, "c", i)
        for c, t in zip(clients, PUSH, strict=True):
            items = [await c.next(timeout=15) for _ in range(5)]
            assert [m.data for m in items if isinstance(m, Message)] == list(range(15, 20))
            assert {m.transport for m in items if isinstance(m, Message)} == {t}  # pushed
            assert c.stats.received == 20  # each message once, none lost
            assert c.stats.degrades >= 1 and c.stats.recoveries >= 1
            assert c.pending() == 0
    finally:
        for c in clients:
            await c.close()


async def test_new_client_while_overloaded_polls_from_the_start(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    srv = serve(degrade_poll_s=POLL_S, overload_hold_s=0)
    force(srv, True)
    c = LiveClient(srv.url, ["c"], transports=["websocket"], stable_after_s=0)
    await c.start()
    try:
        await c.ready()
        assert c.degraded and c.transport is Transport.POLLING
        for i in range(3):
            await publish(http, srv.url, "c", i)
        assert await take(c, 3) == [0, 1, 2]
        force(srv, None)  # back to the detector, which sees an idle loop
        await wait_until(lambda: c.transport is Transport.WEBSOCKET and c.connected, 10)
    finally:
        await c.close()


async def test_real_event_loop_lag_enters_and_leaves_overload(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    srv = serve(
        overload_lag_ms=40, overload_sample_s=0.05, overload_hold_s=0.5, degrade_poll_s=POLL_S
    )
    c = LiveClient(srv.url, ["c"], transports=["websocket"], stable_after_s=0)
    await c.start()
    try:
        await c.ready()
        await publish(http, srv.url, "c", 0)

        async def block() -> None:
            async def hog() -> None:
                for _ in range(30):  # about 1.5 s of a loop that is 50 ms late each turn
                    time.sleep(0.05)
                    await asyncio.sleep(0)

            srv.server.spawn(hog())

        srv.call(block)
        await wait_until(lambda: c.degraded, timeout=15)
        for i in range(1, 4):
            await publish(http, srv.url, "c", i)
        await wait_until(lambda: not c.degraded and c.transport is Transport.WEBSOCKET, 30)
        assert srv.metric("rtsim_overloaded") == 0
        assert await take(c, 4) == [0, 1, 2, 3]
        assert c.stats.received == 4
    finally:
        await c.close()


@pytest.mark.parametrize(
    "args", [["--overload-lag-ms", "-1"], ["--overload-lag-ms", "nan"], ["--degrade-poll-s", "0"]]
)
def test_bad_degradation_flags_are_one_line_exit_2(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from rtsim.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["serve", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and args[0] in err and "Traceback" not in err
