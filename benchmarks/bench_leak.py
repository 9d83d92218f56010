"""Leak: the server's RSS after many connect/disconnect cycles, against its baseline.

A fresh ``rtsim serve`` process (memory backplane). ``--warmup`` cycles first (imports, caches,
the allocator's first arenas), then the baseline RSS; then ``--cycles`` connect/disconnect
cycles, ``--concurrency`` at a time, over a mix of transports, each on one of
``--channels`` channels and with a publish every 10th cycle:

* WebSocket: connect, subscribe (with ``since``), wait for ``subscribed``, close;
* SSE: open the stream, read its first event, close;
* long polling: one poll with ``timeout=0.05``;
* Yjs: connect to one of 10 rooms, read the first frame, close.

RSS is sampled from /proc every 0.1 s (peak); "after" is read once the server reports no
open connections and 2 s have passed. The check: after <= baseline * (1 + ``--tolerance``).

    .venv/bin/python benchmarks/bench_leak.py            # 10,000 cycles (the full size)

Results: ``benchmarks/results/leak.md`` and ``leak.json``. Exit status 1 if the check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import machine  # noqa: E402

from rtsim.live.process import process_rss_bytes, serve_process  # noqa: E402

RESULTS_MD = HERE / "results" / "leak.md"
RESULTS_JSON = HERE / "results" / "leak.json"
KINDS = ("websocket", "sse", "long-polling", "yjs")
MIB = 1024 * 1024


async def _cycle(http: aiohttp.ClientSession, url: str, i: int, channels: int) -> str:
    kind = KINDS[i % len(KINDS)]
    ch = f"leak:{i % channels}"
    if i % 10 == 0:
        async with http.post(url + "/publish", json={"channel": ch, "data": i}) as r:
            await r.read()
    if kind == "websocket":
        async with http.ws_connect(url + "/ws") as ws:
            await ws.send_json({"type": "subscribe", "channel": ch, "since": "0"})
            async for msg in ws:
                if json.loads(msg.data).get("type") == "subscribed":
                    break
    elif kind == "sse":
        async with http.get(url + "/sse", params={"channel": ch}) as r:
            assert r.status == 200, r.status
            while (await r.content.readline()) not in (b"\n", b""):
                pass
    elif kind == "long-polling":
        async with http.get(url + "/poll", params={"channel": ch, "timeout": "0.05"}) as r:
            assert r.status == 200, r.status
            await r.read()
    else:
        async with http.ws_connect(url + f"/yjs/leak{i % 10}") as ws:
            await ws.receive(timeout=2)
    return kind


async def _run(
    url: str, pid: int, cycles: int, warmup: int, concurrency: int, channels: int
) -> dict[str, Any]:
    done: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    peak = 0
    sampling = True

    async def sampler() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, process_rss_bytes(pid))
            await asyncio.sleep(0.1)

    async def batch(start: int, n: int) -> None:
        queue = iter(range(start, start + n))
        # force_close: every HTTP cycle is its own TCP connection, opened and closed.
        connector = aiohttp.TCPConnector(force_close=True, limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def worker() -> None:
                for i in queue:
                    try:
                        done[await asyncio.wait_for(_cycle(http, url, i, channels), 10)] += 1
                    except (aiohttp.ClientError, OSError, TimeoutError, AssertionError) as exc:
                        errors[type(exc).__name__] += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def settled() -> int:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                async with http.get(url + "/metrics") as r:
                    text = await r.text()
                open_now = sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("rtsim_connections{")
                )
                if open_now == 0:
                    break
                await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        return process_rss_bytes(pid)

    await batch(0, warmup)
    baseline = await settled()
    done.clear()  # count the measured cycles only
    task = asyncio.create_task(sampler())
    t0 = time.monotonic()
    await batch(warmup, cycles)
    elapsed = time.monotonic() - t0
    sampling = False
    await task
    after = await settled()
    return {
        "cycles": cycles,
        "warmup_cycles": warmup,
        "concurrency": concurrency,
        "channels": channels,
        "completed": dict(done),
        "errors": dict(errors),
        "cycles_per_s": round(cycles / elapsed, 1),
        "baseline_mib": round(baseline / MIB, 1),
        "peak_mib": round(max(peak, baseline) / MIB, 1),
        "after_mib": round(after / MIB, 1),
        "after_over_baseline": round(after / baseline, 3),
    }


def run_leak(cycles: int = 10_000, warmup: int = 500, concurrency: int = 20, channels: int = 200,
             tolerance: float = 0.10) -> dict[str, Any]:  # fmt: skip
    """Run the leak check against a fresh server; the report (MiB, counts, ``ok``)."""
    extra = ["--max-connections-per-ip", "100000", "--publish-rate-per-ip", "1000000"]
    with serve_process(extra) as (url, pid):
        r = asyncio.run(_run(url, pid, cycles, warmup, concurrency, channels))
    r["tolerance"] = tolerance
    r["ok"] = r["after_over_baseline"] <= 1 + tolerance and not r["errors"]
    return r


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=10_000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--channels", type=int, default=200)
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    r = run_leak(args.cycles, args.warmup, args.concurrency, args.channels, args.tolerance)
    print(json.dumps(r))
    cmd = "python benchmarks/bench_leak.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load = os.getloadavg()
    if not args.no_write:
        RESULTS_JSON.write_text(json.dumps({"command": cmd, "loadavg": load, **r}, indent=1) + "\n")
        lines = [
            "# Leak: RSS after connect/disconnect cycles\n",
            f"Command: `{cmd.strip()}`\n",
            machine()
            + f"- load average after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n",
            f"{r['cycles']} cycles ({', '.join(f'{k}: {n}' for k, n in r['completed'].items())};"
            f" errors: {r['errors'] or 'none'}) at {r['cycles_per_s']} cycles/s, after"
            f" {r['warmup_cycles']} warm-up cycles, {r['concurrency']} at a time.\n",
            "| baseline RSS | peak RSS | after RSS | after / baseline | within 10 % |",
            "|---|---|---|---|---|",
            f"| {r['baseline_mib']} MiB | {r['peak_mib']} MiB | {r['after_mib']} MiB |"
            f" {r['after_over_baseline']} | {r['ok']} |",
        ]
        RESULTS_MD.write_text("\n".join(lines) + "\n")
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
