"""What one idle connection costs rtsim's server, by part (tracemalloc, by allocating line).

Starts ``rtsim serve`` in a child process with tracemalloc on; the child writes a snapshot
when it gets SIGUSR1. This script takes one snapshot with no client, opens N idle
subscribers (WebSocket by default; ``--transport sse``), takes a second, and prints the
growth per connection grouped by source line, plus the RSS growth per connection. The
tracemalloc figure counts Python heap objects only; RSS also has the kernel-side socket
buffers that the process is charged for, allocator slack and tracemalloc's own overhead.

    .venv/bin/python benchmarks/profile_ws_memory.py [-n 2000] [--transport websocket|sse]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import aiohttp

from rtsim.live.process import free_port, process_rss_bytes

# Allocating file -> part of a connection (first match wins).
PARTS = (
    ("rtsim/live/server/hub", "rtsim Subscriber"),
    ("rtsim/live/server/websocket", "rtsim WebSocket handler (locals, callbacks, ws options)"),
    ("rtsim/live/server/wsdetach", "rtsim Inbox + aiohttp frame parser feeding it (wsdetach)"),
    ("rtsim/", "rtsim other (gate, presence, metrics)"),
    ("aiohttp/web_protocol", "aiohttp HTTP protocol: parsed request, parser, handler"),
    ("aiohttp/web_request", "aiohttp HTTP protocol: parsed request, parser, handler"),
    ("aiohttp/http_", "aiohttp HTTP protocol: parsed request, parser, handler"),
    ("aiohttp/web_server", "aiohttp HTTP protocol: parsed request, parser, handler"),
    ("aiohttp/web_app", "aiohttp HTTP protocol: parsed request, parser, handler"),
    ("aiohttp/web_ws", "aiohttp WebSocketResponse: reader queue, frame parser"),
    ("aiohttp/_websocket", "aiohttp WebSocketResponse: reader queue, frame parser"),
    ("aiohttp/web_response", "aiohttp WebSocketResponse: reader queue, frame parser"),
    ("asyncio/base_events", "asyncio tasks and timers"),
    ("asyncio/events", "asyncio tasks and timers"),
    ("asyncio/locks", "asyncio events and futures"),
    ("asyncio/selector_events", "asyncio socket transport"),
    ("/socket.py", "asyncio socket transport"),
)

CHILD = r"""
import signal, sys, tracemalloc
tracemalloc.start(int(sys.argv[2]))
out = sys.argv[1]
signal.signal(signal.SIGUSR1, lambda *_: (tracemalloc.take_snapshot().dump(out + ".tmp"),
                                          __import__("os").replace(out + ".tmp", out)))
from rtsim.cli import main
sys.exit(main(sys.argv[3:]))
"""


def snapshot(pid: int, path: Path) -> tracemalloc.Snapshot:
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("no snapshot from the server")
        time.sleep(0.05)
    return tracemalloc.Snapshot.load(str(path))


async def hold(url: str, n: int, transport: str, ready: asyncio.Event, done: asyncio.Event) -> None:
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        opened: list[object] = []
        for i in range(n):
            if transport == "websocket":
                ws = await session.ws_connect(f"{url}/ws", autoping=True)
                await ws.send_str('{"type":"subscribe","channel":"room"}')
                opened.append(ws)
            else:
                r = await session.get(f"{url}/sse?channels=room")
                opened.append(r)
            if i % 500 == 499:
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        ready.set()
        await done.wait()
        for o in opened:
            close = getattr(o, "close", None)
            if close is not None:
                res = close()
                if asyncio.iscoroutine(res):
                    await res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--transport", choices=["websocket", "sse"], default="websocket")
    ap.add_argument("--frames", type=int, default=1, help="tracemalloc frames per allocation")
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        snap = Path(tmp) / "snap"
        serve = ["serve", "--port", str(port), "--max-connections", "100000"]
        serve += ["--max-connections-per-ip", "100000"]
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(snap), str(a.frames), *serve],
            stdout=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    import socket

                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.1)
            time.sleep(0.5)
            s0 = snapshot(proc.pid, snap)
            rss0 = process_rss_bytes(proc.pid)

            async def run() -> tuple[tracemalloc.Snapshot, float]:
                ready, done = asyncio.Event(), asyncio.Event()
                task = asyncio.create_task(hold(url, a.n, a.transport, ready, done))
                await ready.wait()
                loop = asyncio.get_running_loop()
                s1 = await loop.run_in_executor(None, snapshot, proc.pid, snap)
                rss1 = process_rss_bytes(proc.pid)
                done.set()
                await task
                return s1, rss1

            s1, rss1 = asyncio.run(run())
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    stats = s1.compare_to(s0, "lineno" if a.frames == 1 else "traceback")
    total = sum(st.size_diff for st in stats)
    print(f"{a.transport}: {a.n} idle connections")
    print(f"RSS growth per connection:        {(rss1 - rss0) / a.n / 1024:8.2f} KiB")
    print(f"Python heap growth per connection: {total / a.n / 1024:8.2f} KiB (tracemalloc)")
    parts: dict[str, int] = {}
    for st in stats:
        f = st.traceback[0].filename if st.traceback else "?"
        part = next((name for key, name in PARTS if key in f), "other")
        parts[part] = parts.get(part, 0) + st.size_diff
    print()
    print("By part (allocating file):")
    for part, size in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {size / a.n / 1024:6.2f} KiB  {part}")
    print()
    print(f"{'bytes/conn':>10} {'blocks/conn':>11}  where")
    for st in stats[: a.top]:
        where = st.traceback.format()[0].strip() if st.traceback else "?"
        if a.frames > 1:
            where = " <- ".join(
                f.filename.rsplit("/", 2)[-1] + f":{f.lineno}" for f in st.traceback
            )
        print(f"{st.size_diff / a.n:10.0f} {st.count_diff / a.n:11.2f}  {where}")


if __name__ == "__main__":
    main()
