"""A minimal broadcast server on the `websockets` library — a peer for the fan-out benchmark.

Speaks the subset of rtsim's WebSocket protocol the load generator uses: ``subscribe``
{channel} and ``publish`` {channel, data, ref} (answered by ``ack``); every publish is
encoded once and sent to the channel's subscribers with ``websockets.broadcast()``.

    python benchmarks/peers/websockets_broadcast.py --port 8801
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import defaultdict

import websockets
from websockets.asyncio.server import ServerConnection, broadcast, serve

channels: dict[str, set[ServerConnection]] = defaultdict(set)
seq = 0


async def handler(ws: ServerConnection) -> None:
    global seq
    mine: set[str] = set()
    try:
        async for raw in ws:
            msg = json.loads(raw)
            kind = msg.get("type")
            if kind == "subscribe":
                channels[msg["channel"]].add(ws)
                mine.add(msg["channel"])
            elif kind == "publish":
                seq += 1
                frame = json.dumps(
                    {
                        "type": "message",
                        "channel": msg["channel"],
                        "id": str(seq),
                        "data": msg.get("data"),
                        "ts": time.time(),
                    },
                    separators=(",", ":"),
                )
                broadcast(channels[msg["channel"]], frame)
                if "ref" in msg:
                    await ws.send(json.dumps({"type": "ack", "ref": msg["ref"], "id": str(seq)}))
    except websockets.ConnectionClosed:
        pass
    finally:
        for c in mine:
            channels[c].discard(ws)


async def main(host: str, port: int) -> None:
    async with serve(handler, host, port, compression=None, max_size=2**20):
        print(f"websockets broadcast server on ws://{host}:{port}/ws", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8801)
    a = ap.parse_args()
    asyncio.run(main(a.host, a.port))
