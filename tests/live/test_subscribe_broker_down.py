"""A WebSocket subscribe while the broker is down must not leave the connection unsubscribed.

Found by benchmarks/bench_soak.py (JetStream part): a client that reconnected during the broker
restart got an ``error`` frame ``backplane_unavailable`` for its subscribe and then stayed
connected, receiving nothing, for good. Now the server sends the error frame and closes with
1013 (try again later), so the client reconnects with backoff and resubscribes from its cursor.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from rtsim.core.backoff import Backoff
from rtsim.live.clients.client import LiveClient, Message

from .broker_fixtures import BrokerProcess, instances_of, require_binary, wait_for_status


@pytest.mark.parametrize("kind", ["redis", "nats"])
async def test_ws_subscribe_while_broker_down_closes_1013_then_client_resumes(
    kind: str, tmp_path: Path
) -> None:
    require_binary("redis-server" if kind == "redis" else "nats-server")
    broker = BrokerProcess(kind, tmp_path)
    broker.start()
    scheme = "redis-streams" if kind == "redis" else "nats"
    url = f"{scheme}://127.0.0.1:{broker.port}?prefix=sbd&backoff_base=0.05&backoff_cap=0.5"
    try:
        await broker.wait_up()
        async with aiohttp.ClientSession() as http:
            with instances_of(url, 1) as (a,):
                async with http.post(a.url + "/publish", json={"channel": "f", "data": 0}) as r:
                    assert r.status == 200
                broker.kill()
                await broker.wait_down()
                await wait_for_status(http, a.url, "degraded")
                async with http.ws_connect(a.ws_url) as ws:
                    await ws.send_json({"type": "subscribe", "channel": "f", "since": "0"})
                    msg = await ws.receive(timeout=10)
                    assert msg.type is aiohttp.WSMsgType.TEXT, msg  # the error frame first
                    assert msg.json()["code"] == "backplane_unavailable"
                    msg = await ws.receive(timeout=10)
                    assert msg.type is aiohttp.WSMsgType.CLOSE
                    assert (msg.data, msg.extra) == (1013, "backplane unavailable")
                # A LiveClient that starts now keeps trying and gets the message once the
                # broker is back (it resubscribes from its cursor).
                client = LiveClient(
                    a.url, ["f"], transports=["websocket"], since={"f": "0"},
                    backoff=Backoff(base_s=0.05, cap_s=0.3), connect_timeout_s=30,
                )  # fmt: skip
                await client.start()
                try:
                    broker.start()  # same port; redis here keeps no data, nats keeps its files
                    await broker.wait_up()
                    await wait_for_status(http, a.url, "ok")
                    async with http.post(a.url + "/publish", json={"channel": "f", "data": 1}) as r:
                        assert r.status == 200
                    got = await client.next(timeout=20)
                    assert isinstance(got, Message) or kind == "redis"
                    assert client.stats.reconnects >= 1 or client.connected
                finally:
                    await client.close()
    finally:
        broker.kill()
