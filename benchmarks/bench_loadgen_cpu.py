"""Is the load generator ever the bottleneck? Its CPU per delivery beside the server's.

One ``rtsim serve`` (memory backplane), fresh subscribers per row, in one run:

* ``websocket/aiohttp`` — ``rtsim load`` with ``--ws-client aiohttp``
* ``websocket/picows``  — ``rtsim load`` with ``--ws-client picows``
* ``websocket/raw``     — ``rtsim load`` (``--ws-client raw``, the default: a bare asyncio
  Protocol, one memoized lookup per broadcast read)
* ``sse/aiohttp``       — ``rtsim load --transport sse --sse-client aiohttp``
* ``sse/raw``           — ``rtsim load --transport sse`` (``--sse-client raw``, the default)
* ``long-polling/aiohttp`` — ``rtsim load --transport long-polling --lp-client aiohttp``
* ``long-polling/raw``  — ``rtsim load --transport long-polling`` (``--lp-client raw``, the
  default: one keep-alive connection per subscriber, the next poll written in the read
  callback). Long polling costs the server about ten times as much per delivery, so its
  rows run at a fifth of the rate.
* ``floor``             — not a client: bare asyncio Protocols (on uvloop, as the load
  workers) that do the WebSocket handshake and the subscribe frame by hand and then only
  count the message frames in the bytes they are given. Its CPU per delivery is what
  receiving costs here before any frame is parsed: the kernel's receive (on loopback the
  client's ``recv()`` and the ACKs it sends run the server's TCP work too) and the event
  loop's dispatch. A 2-subscriber picows run publishes the same broadcasts meanwhile.

Server CPU is read from /proc for the server process; the load generator's is its worker
processes' and publisher's ``getrusage`` (``extra["loadgen_cpu_us_per_delivery"]``).

    .venv/bin/python benchmarks/bench_loadgen_cpu.py [--subscribers 1000] [--rate 10]
        [--duration 10] [--quick]

Writes ``benchmarks/results/loadgen_cpu.md`` and ``.json`` (command, date, machine,
commit, load average before and after): on a shared machine CPU seconds from /proc stay
meaningful, latency percentiles do not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import machine  # noqa: E402

from rtsim.live.clients.loadgen import LoadParams, run_load  # noqa: E402
from rtsim.live.clients.wire import subscribe_frame  # noqa: E402
from rtsim.live.process import serve_process  # noqa: E402

RESULTS_MD = HERE / "results" / "loadgen_cpu.md"
RESULTS_JSON = HERE / "results" / "loadgen_cpu.json"
MESSAGE = b'"type":"message"'


def _masked_text_frame(text: str) -> bytes:
    """A client text frame (masked with the all-zero key, so the payload reads as is)."""
    payload = text.encode()
    n = len(payload)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2)
    return head + b"\0\0\0\0" + payload


class _Raw(asyncio.Protocol):
    """One bare subscriber: handshake, subscribe, then count message frames."""

    def __init__(self, host: str, channel: str, subscribed: asyncio.Future[None]) -> None:
        self.request = (
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.subscribe = _masked_text_frame(subscribe_frame(channel))
        self.subscribed = subscribed
        self.upgraded = False
        self.messages = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            if data.startswith(b"HTTP/1.1 101"):
                self.upgraded = True
                self.transport.write(self.subscribe)
            return
        if not self.subscribed.done():
            self.subscribed.set_result(None)  # the "subscribed" frame (or a first message)
        self.messages += data.count(MESSAGE)


def _floor_worker(url: str, channel: str, n: int, conn: Connection) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        u = urlsplit(url)
        assert u.hostname is not None and u.port is not None
        protos = []
        for _ in range(n):
            fut: asyncio.Future[None] = loop.create_future()
            _, proto = await loop.create_connection(
                lambda fut=fut: _Raw(u.netloc, channel, fut), u.hostname, u.port
            )
            protos.append(proto)
        await asyncio.wait_for(asyncio.gather(*(p.subscribed for p in protos)), 60)
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        conn.send("ready")
        await loop.run_in_executor(None, conn.recv)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        user = ru1.ru_utime - ru0.ru_utime
        conn.send((cpu, user, sum(p.messages for p in protos)))

    uvloop.run(main())


def floor(url: str, subscribers: int, rate: float, duration: float) -> dict[str, Any]:
    """CPU µs per delivery of bare Protocol subscribers, in two processes."""
    run_id = f"floor{os.getpid()}"
    channel = f"load-{run_id}-0"
    ctx = mp.get_context("spawn")
    procs, conns = [], []
    for i in range(2):
        parent, child = ctx.Pipe()
        n = subscribers // 2 + (i < subscribers % 2)
        proc = ctx.Process(target=_floor_worker, args=(url, channel, n, child), daemon=True)
        proc.start()
        procs.append(proc)
        conns.append(parent)
    try:
        for c in conns:
            if not c.poll(120):
                raise RuntimeError("floor subscribers were not ready")
            c.recv()
        driver = LoadParams(
            url=url, subscribers=2, rate=rate, duration_s=duration, processes=1, run_id=run_id
        )
        s = run_load(driver, progress=False).summary
        for c in conns:
            c.send("stop")
        got = [c.recv() for c in conns]
    finally:
        for proc in procs:
            proc.join(timeout=10)
    cpu = sum(g[0] for g in got)
    user = sum(g[1] for g in got)
    deliveries = sum(g[2] for g in got)
    expected = s.extra["published"] * subscribers
    return {
        "client": "floor (bare asyncio Protocol on uvloop)",
        "transport": "websocket",
        "deliveries": deliveries,
        "lost": expected - deliveries,
        "duplicates": 0,
        "server_cpu_us_per_delivery": None,
        "loadgen_cpu_us_per_delivery": cpu / deliveries * 1e6,
        "subscribers_cpu_us_per_delivery": cpu / deliveries * 1e6,
        "subscribers_user_share": user / cpu if cpu else None,
        "publisher_cpu_s": None,
        "p50_ms": None,
        "p99_ms": None,
    }


def client_row(
    url: str, pid: int, transport: str, client: str, n: int, rate: float, duration: float
) -> dict[str, Any]:
    kind = {"sse": "sse_client", "long-polling": "lp_client"}.get(transport, "ws_client")
    p = LoadParams(  # type: ignore[arg-type]
        url=url,
        transport=transport,
        subscribers=n,
        rate=rate,
        duration_s=duration,
        processes=2,
        server_pid=pid,
        **{kind: client},
    )
    s = run_load(p, progress=False).summary
    x = s.extra
    return {
        "client": f"{transport}/{x['loadgen_ws_client']}",
        "transport": transport,
        "deliveries": s.deliveries,
        "lost": s.lost,
        "duplicates": x["duplicates"],
        "server_cpu_us_per_delivery": x["server_cpu_us_per_delivery"],
        "loadgen_cpu_us_per_delivery": x["loadgen_cpu_us_per_delivery"],
        "subscribers_cpu_us_per_delivery": x["loadgen_subscribers_cpu_s"] / s.deliveries * 1e6,
        "publisher_cpu_s": x["publisher_cpu_s"],
        "errors": x["errors"],
        "p50_ms": s.p50_ms,
        "p99_ms": s.p99_ms,
    }


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "–" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=10.0, help="broadcasts/s (one channel)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per row")
    ap.add_argument("--quick", action="store_true", help="200 subscribers, 3 s per row")
    a = ap.parse_args()
    n, rate, dur = (200, a.rate, 3.0) if a.quick else (a.subscribers, a.rate, a.duration)
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    serve = ["--max-connections", "50000", "--max-connections-per-ip", "50000"]
    with serve_process(serve) as (url, pid):
        for transport, client in [
            ("websocket", "aiohttp"),
            ("websocket", "picows"),
            ("websocket", "raw"),
            ("sse", "aiohttp"),
            ("sse", "raw"),
            ("long-polling", "aiohttp"),
            ("long-polling", "raw"),
        ]:
            r_t = rate / 5 if transport == "long-polling" else rate
            rows.append(client_row(url, pid, transport, client, n, r_t, dur))
            print(json.dumps(rows[-1]), flush=True)
        rows.append(floor(url, n, rate, dur))
        print(json.dumps(rows[-1]), flush=True)
    for r in rows:
        server = r["server_cpu_us_per_delivery"]
        r["loadgen_over_server"] = r["loadgen_cpu_us_per_delivery"] / server if server else None
    load_after = os.getloadavg()
    cmd = "`.venv/bin/python benchmarks/bench_loadgen_cpu.py" + "".join(
        " " + x for x in sys.argv[1:]
    )
    cmd += "`"
    load = (
        f"- load average (1/5/15 min): before {'/'.join(f'{x:.2f}' for x in load_before)}, "
        f"after {'/'.join(f'{x:.2f}' for x in load_after)}\n"
    )
    lines = [
        "# Load generator CPU per delivery, beside the server's",
        "",
        f"Command: {cmd}",
        "",
        machine() + load,
        "Other work shared this machine's cores during the run (see the load average): "
        "CPU seconds (from /proc and getrusage) are meaningful, latency percentiles are not.",
        "",
        f"One `rtsim serve` (memory backplane); per row {n:,} fresh subscribers on one "
        f"channel, {rate:g} broadcasts/s ({rate / 5:g} for long polling) for {dur:g} s, "
        "two load worker processes. "
        "Load-gen CPU counts the subscribers' worker processes and the publisher; "
        "the floor row counts bare asyncio Protocols that only count message frames. "
        f"Of {round(rate * dur)} messages one in {max(1, round(rate * dur) // 200)} is traced "
        "(`LoadParams.traced` = 200): its deliveries also record stage timestamps, on the "
        "server and here.",
        "",
        "| client | server CPU µs/delivery | load-gen CPU µs/delivery | subscribers only "
        "| load-gen ÷ server | deliveries | lost | dup | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['client']} | {_fmt(r['server_cpu_us_per_delivery'])} "
            f"| {_fmt(r['loadgen_cpu_us_per_delivery'])} "
            f"| {_fmt(r['subscribers_cpu_us_per_delivery'])} "
            f"| {_fmt(r['loadgen_over_server'])} | {r['deliveries']:,} | {r['lost']} "
            f"| {r['duplicates']} | {_fmt(r['p50_ms'], '.1f')} | {_fmt(r['p99_ms'], '.1f')} |"
        )
    print("\n".join(lines[-len(rows) - 2 :]))
    RESULTS_MD.parent.mkdir(exist_ok=True)
    RESULTS_MD.write_text("\n".join(lines) + "\n")
    RESULTS_JSON.write_text(
        json.dumps(
            {
                "command": cmd.strip("`"),
                "date": f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC",
                "machine": machine(),
                "load_average": {"before": load_before, "after": load_after},
                "subscribers": n,
                "rate": rate,
                "duration_s": dur,
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {RESULTS_MD}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
