"""Broadcast fan-out and memory per connection: rtsim's server beside two peers, one run.

Servers, each started fresh as its own process:

* ``rtsim``          — ``rtsim serve`` (asyncio's default loop)
* ``rtsim+uvloop``   — the same server on uvloop
* ``websockets``     — a minimal broadcast server on the `websockets` library (broadcast())
* ``node-ws``        — a minimal broadcast server on Node's `ws`

The same load generator (``rtsim.live.clients.loadgen``) drives all of them over WebSocket. The
headline is the server's own CPU time per delivered message, read from /proc for the
server process; latency percentiles, deliveries/s and the load generator's own CPU time
stand beside it. Memory per idle connection is the RSS growth of a fresh server holding N
subscribers, over its RSS before the first connection.

    .venv/bin/python benchmarks/bench_fanout.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import machine  # noqa: E402

from rtsim.live.clients.loadgen import LoadParams, run_load  # noqa: E402
from rtsim.live.process import free_port, process_rss_bytes  # noqa: E402

RESULTS_MD = HERE / "results" / "fanout.md"
RESULTS_JSON = HERE / "results" / "fanout.json"
UVLOOP_SERVE = (
    "import sys, uvloop; uvloop.install(); from rtsim.cli import main; sys.exit(main(sys.argv[1:]))"
)


def start(kind: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    py = sys.executable
    serve = ["serve", "--port", str(port), "--max-connections", "50000"]
    serve += ["--max-connections-per-ip", "50000"]  # every subscriber is on 127.0.0.1
    if kind == "rtsim":
        cmd = [py, "-m", "rtsim.cli", *serve]
    elif kind == "rtsim+uvloop":
        cmd = [py, "-c", UVLOOP_SERVE, *serve]
    elif kind == "websockets":
        cmd = [py, str(HERE / "peers" / "websockets_broadcast.py"), "--port", str(port)]
    elif kind == "node-ws":
        if not (HERE / "peers" / "node_modules" / "ws").exists():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE / "peers", check=True)
        cmd = ["node", str(HERE / "peers" / "node_ws_broadcast.mjs"), str(port)]
    else:
        raise ValueError(kind)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    time.sleep(0.3)
    return proc, f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def fanout(kind: str, subscribers: int, rate: float, duration: float) -> dict[str, object]:
    proc, url = start(kind)
    try:
        p = LoadParams(
            url=url,
            transport="websocket",
            subscribers=subscribers,
            rate=rate,
            duration_s=duration,
            server_pid=proc.pid,
            processes=2,
            settle_s=2.0,
        )
        s = run_load(p, progress=False).summary
        return {
            "server": kind,
            "subscribers": subscribers,
            "rate": rate,
            "deliveries": s.deliveries,
            "lost": s.lost,
            "duplicates": s.extra["duplicates"],
            "server_cpu_us_per_delivery": s.extra["server_cpu_us_per_delivery"],
            "deliveries_per_s": s.deliveries_per_s,
            "p50_ms": s.p50_ms,
            "p95_ms": s.p95_ms,
            "p99_ms": s.p99_ms,
            "max_ms": s.max_ms,
            "loadgen_cpu_s": s.extra["loadgen_cpu_s"],
            "server_cpu_s": s.extra["server_cpu_s"],
        }
    finally:
        stop(proc)


def memory(kind: str, transport: str, n: int) -> dict[str, object]:
    proc, url = start(kind)
    try:
        base = process_rss_bytes(proc.pid)
        p = LoadParams(
            url=url,
            transport=transport,
            subscribers=n,
            rate=1,
            duration_s=0.5,
            server_pid=proc.pid,
            processes=2,
            settle_s=0.2,
            channels=1,
        )
        s = run_load(p, progress=False).summary
        connected = s.extra["server_rss_connected_bytes"]
        assert isinstance(connected, float)
        return {
            "server": kind,
            "transport": transport,
            "connections": n,
            "rss_before_mib": base / 2**20,
            "rss_connected_mib": connected / 2**20,
            "kib_per_connection": (connected - base) / n / 1024,
            "errors": s.extra["errors"],
        }
    finally:
        stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["fanout", "memory"], help="re-run one part, keep the other")
    a = ap.parse_args()
    old = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    kinds = ["rtsim", "rtsim+uvloop", "websockets"] + (["node-ws"] if shutil.which("node") else [])
    subs, rate, dur = (500, 10.0, 3.0) if a.quick else (2000, 10.0, 10.0)
    fan = [] if a.only != "memory" else old.get("fanout", [])
    for kind in kinds if a.only != "memory" else []:
        row = fanout(kind, subs, rate, dur)
        fan.append(row)
        print(json.dumps(row), flush=True)
    mem = [] if a.only != "fanout" else old.get("memory", [])
    sizes = () if a.only == "fanout" else (500,) if a.quick else (1000, 5000, 10_000)
    for n in sizes:
        for kind, transport in [
            ("rtsim", "websocket"),
            ("rtsim", "sse"),
            ("rtsim", "long-polling"),
            ("websockets", "websocket"),
        ] + ([("node-ws", "websocket")] if shutil.which("node") else []):
            row = memory(kind, transport, n)
            mem.append(row)
            print(json.dumps(row), flush=True)
    cmd = "`.venv/bin/python benchmarks/bench_fanout.py" + (" --quick`" if a.quick else "`")
    lines = [
        "# Fan-out and memory per connection",
        "",
        f"Command: {cmd}",
        "",
        machine(),
        f"## Broadcast fan-out: {subs:,} WebSocket subscribers, one channel, {rate:g} "
        f"broadcasts/s for {dur:g} s",
        "",
        "Server CPU µs per delivery is the headline (server process CPU from /proc ÷ "
        "deliveries); the load generator's own CPU seconds are shown beside it.",
        "",
        "| server | CPU µs/delivery | deliveries/s | p50 ms | p95 ms | p99 ms | lost | dup "
        "| server CPU s | load-gen CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in fan:
        lines.append(
            f"| {r['server']} | {r['server_cpu_us_per_delivery']:.2f} "
            f"| {r['deliveries_per_s']:,.0f} "
            f"| {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['lost']} "
            f"| {r['duplicates']} | {r['server_cpu_s']:.2f} | {r['loadgen_cpu_s']:.2f} |"
        )
    lines += [
        "",
        "## Memory per idle connection (RSS growth of a fresh server)",
        "",
        "| server | transport | connections | RSS before MiB | RSS connected MiB | KiB/conn |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in mem:
        lines.append(
            f"| {r['server']} | {r['transport']} | {r['connections']:,} "
            f"| {r['rss_before_mib']:.1f} | {r['rss_connected_mib']:.1f} "
            f"| {r['kib_per_connection']:.1f} |"
        )
    RESULTS_MD.parent.mkdir(exist_ok=True)
    RESULTS_MD.write_text("\n".join(lines) + "\n")
    RESULTS_JSON.write_text(json.dumps({"fanout": fan, "memory": mem}, indent=1))
    print(f"wrote {RESULTS_MD}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
