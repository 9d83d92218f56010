"""LiveClient with a token function: it keeps receiving across token expiry, losing and
repeating nothing, on every transport; a plain token that expires is final."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from rtsim.core.backoff import Backoff
from rtsim.live.clients.client import LiveClient, LiveClientError, Message
from rtsim.live.server.auth import make_token

from ..conftest import Serve, wait_until

S = "k" * 32
FAST = Backoff(base_s=0.01, cap_s=0.05)
TTL_S = 2.0  # exp is whole seconds: each token lasts 1-2 s
N = 25  # published every 0.2 s: about 5 s, across at least two expiries


@pytest.mark.parametrize(
    ("transport", "asynchronous"),
    [("websocket", False), ("sse", True), ("long-polling", False)],
)
async def test_a_token_function_keeps_the_stream_across_expiry(
    serve: Serve, transport: str, asynchronous: bool
) -> None:
    srv = serve(secret=S)
    issued = itertools.count()

    def fresh() -> str:
        next(issued)
        return make_token(S, "alice", "*", "*", TTL_S)

    async def fresh_async() -> str:
        await asyncio.sleep(0)
        return fresh()

    async with LiveClient(
        srv.url,
        ["c"],
        token=fresh_async if asynchronous else fresh,
        transports=[transport],
        backoff=FAST,
        poll_timeout_s=5,
    ) as c:
        await c.ready()
        for i in range(N):
            await c.publish("c", i)  # the client's own token: refreshed on a 401 too
            await asyncio.sleep(0.2)
        got = [await c.next(15) for _ in range(N)]
        assert all(isinstance(m, Message) for m in got)
        assert [m.data for m in got if isinstance(m, Message)] == list(range(N))  # 0 lost
        ids = [int(m.id) for m in got if isinstance(m, Message)]
        assert ids == list(range(1, N + 1))  # in order, none twice
        assert c.pending() == 0 and c.gaps == []
        assert srv.metric("rtsim_token_expired_total", {"transport": transport}) >= 1
        assert c.stats.reconnects >= 1
        assert c.token_refreshes >= 2 and next(issued) >= 2


async def test_a_plain_token_that_expires_is_final(serve: Serve) -> None:
    srv = serve(secret=S)
    token = make_token(S, "alice", "*", "*", TTL_S)
    async with LiveClient(srv.url, ["c"], token=token, transports=["websocket"], backoff=FAST) as c:
        await c.ready()
        await wait_until(lambda: not c.connected, timeout=TTL_S + 10)
        with pytest.raises(LiveClientError) as err:
            await c.ready(timeout=10)
        assert err.value.status == 401


async def test_a_token_function_that_fails_is_retried(serve: Serve) -> None:
    srv = serve(secret=S)
    calls = itertools.count()

    def flaky() -> str:
        if next(calls) < 2:
            raise RuntimeError("the token service is down")
        return make_token(S, "alice", "*", "*", 60)

    async with LiveClient(srv.url, ["c"], token=flaky, transports=["sse"], backoff=FAST) as c:
        await c.ready()
        assert c.token_refreshes == 3
        assert c.stats.connects == {"sse": 1}


async def test_two_401s_in_a_row_are_final_even_with_a_function(serve: Serve) -> None:
    srv = serve(secret=S)
    expired = make_token(S, "alice", "*", "*", 60, now=time.time() - 3600)
    async with LiveClient(
        srv.url, ["c"], token=lambda: expired, transports=["long-polling"], backoff=FAST
    ) as c:
        with pytest.raises(LiveClientError) as err:
            await c.ready()
        assert err.value.status == 401 and "token_expired" in err.value.body
        assert c.token_refreshes == 2
