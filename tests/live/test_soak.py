"""Soak, short form: 150 clients over the three transports, random disconnects, 2,000
messages published over about a second.

Every client must end with every message of its channels exactly once and in order, through
at least 50 drops and 50 reconnects. The server runs as a separate ``rtsim serve`` process
(so it has its own core and GIL); the clients and the publishers share this test's event
loop. Bounded: the test gives up after 90 s. The long soak (hundreds of clients, 10,000
messages per part, broker and server restarts) is ``benchmarks/bench_soak.py``.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import pytest

from rtsim.core.backoff import Backoff
from rtsim.core.positions import split_epoch
from rtsim.live.clients.client import LiveClient, Message

CLIENTS = 150
CHANNELS = 10
MESSAGES = 2_000
TRANSPORTS = ("websocket", "sse", "long-polling")


@pytest.fixture
def server_process() -> Iterator[str]:
    proc = subprocess.Popen(
        # One publisher on 127.0.0.1 sends as fast as it can: lift the per-address rate.
        [
            sys.executable,
            "-c",
            "from rtsim.cli import main; main()",
            "serve",
            "--port",
            "0",
            "--publish-rate-per-ip",
            "1000000",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on" in line, line
        yield line.split("listening on ")[1].split()[0]
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.slow
async def test_soak_exactly_once_in_order(server_process: str) -> None:
    url = server_process
    rng = random.Random(6)
    channels = [f"soak:{k}" for k in range(CHANNELS)]
    subs = []
    for i in range(CLIENTS):
        chans = [channels[i % CHANNELS]]
        if i % 5 == 0:
            chans.append(channels[(i + 7) % CHANNELS])
        subs.append(chans)
    clients = [
        LiveClient(
            url,
            chans,
            transports=[TRANSPORTS[i % 3]],
            since={ch: "0" for ch in chans},
            backoff=Backoff(base_s=0.05, cap_s=0.5),
            seed=i,
            poll_timeout_s=5,
        )
        for i, chans in enumerate(subs)
    ]
    for c in clients:
        await c.start()
    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.wait_for(asyncio.gather(*(c.ready() for c in clients)), 60)
        t1 = loop.time()
        per_channel = MESSAGES // CHANNELS
        done_publishing = asyncio.Event()

        async def publisher(mine: list[str]) -> None:
            """Pipelined WebSocket publishes (one connection keeps each channel's order)."""
            async with aiohttp.ClientSession() as http, http.ws_connect(url + "/ws") as ws:
                sent = 0
                for n in range(per_channel):
                    for ch in mine:
                        await ws.send_json({"type": "publish", "channel": ch, "data": n})
                        sent += 1
                    if n % 4 == 3:
                        await asyncio.sleep(0.02)  # a steady stream over ~1 s, not one burst
                acks = 0
                while acks < sent:
                    frame = await ws.receive_json()
                    assert frame["type"] == "ack", frame
                    acks += 1

        async def chaos() -> int:
            drops = 0
            while not done_publishing.is_set():
                for c in rng.sample(clients, 5):
                    c.drop()
                drops += 5
                await asyncio.sleep(0.05)
            return drops

        chaos_task = asyncio.create_task(chaos())
        await asyncio.gather(*(publisher(channels[k::4]) for k in range(4)))
        done_publishing.set()
        drops = await chaos_task
        t2 = loop.time()
        final = str(per_channel)

        def at_final(c: LiveClient, ch: str) -> bool:
            # Cursors carry the server's epoch ("EPOCH:ID"); compare the id.
            return ch in c.cursor and split_epoch(c.cursor[ch])[1] == final

        async def caught_up() -> None:
            while not all(all(at_final(c, ch) for ch in c.channels) for c in clients):
                await asyncio.sleep(0.1)

        await asyncio.wait_for(caught_up(), 90)
        t3 = loop.time()
        reconnects = 0
        for c in clients:
            items = []
            while c.pending():
                items.append(await c.next())
            assert all(isinstance(m, Message) for m in items), "no gaps expected"
            for ch in c.channels:
                got = [m.data for m in items if isinstance(m, Message) and m.channel == ch]
                assert got == list(range(per_channel)), (ch, len(got))
            reconnects += c.stats.reconnects
        assert drops >= 50 and reconnects >= 50
        print(
            f"soak: {CLIENTS} clients, {MESSAGES} messages, {drops} drops, {reconnects}"
            f" reconnects; connect {t1 - t0:.1f} s, publish {t2 - t1:.1f} s,"
            f" catch up {t3 - t2:.1f} s"
        )
    finally:
        await asyncio.gather(*(c.close() for c in clients))
