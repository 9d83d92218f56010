"""Memory per idle connection: rtsim beside its peers at N, and N idle WebSockets held.

Two parts, one run:

* **Compare** (``--compare N``, default 5,000; 0 skips it): for each of rtsim (WebSocket,
  SSE, long polling), the ``websockets`` library's server and Node's ``ws`` (if ``node``
  is installed), a fresh server process, N idle subscribers from the load generator
  (``bench_fanout.memory``: the same client for all), and the server's RSS growth per
  connection.
* **Hold** (``-n``, default 50,000): N idle WebSocket subscribers of ``rtsim serve``. Each
  server process may open only as many descriptors as the hard ``RLIMIT_NOFILE`` allows
  (the soft limit is raised to it; as root the hard limit too, where the kernel lets it),
  so if N does not fit one process, ``ceil(N / (limit - 200))`` servers are started and
  the connections split between them; RSS and KiB/conn are their sum. Subscribers come
  from ``--procs`` client processes, each with its own source address 127.0.0.(2+k) so
  that no address runs out of ephemeral ports (about 28,000 per address here). Each
  client is a raw asyncio protocol — an HTTP upgrade, one masked ``subscribe`` frame, and
  pongs to the server's pings — a few KiB per connection, so the load generator is not
  what runs out. The result: connections held (the servers' own ``rtsim_connections``
  gauges), RSS before and while holding them, KiB per connection, and how far it got if
  it stopped short (the first error seen).

    .venv/bin/python benchmarks/bench_idle_ws.py [-n 50000] [--procs 4] [--compare 5000]

Writes benchmarks/results/idle_ws.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import machine  # noqa: E402

from rtsim.live.process import free_port, process_rss_bytes  # noqa: E402

RESULTS_MD = HERE / "results" / "idle_ws.md"
RESULTS_JSON = HERE / "results" / "idle_ws.json"
SUBSCRIBE = b'{"type":"subscribe","channel":"room"}'


def raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, n)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def masked(opcode: int, payload: bytes) -> bytes:
    assert len(payload) < 126
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


class Idle(asyncio.Protocol):
    """One idle subscriber: handshake, subscribe, answer pings; nothing else."""

    def __init__(self, host: str, ready: asyncio.Future[None], lost: list[int]) -> None:
        self.host = host
        self.ready = ready
        self.lost = lost
        self.buf = b""
        self.upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET /ws HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                if not self.ready.done():
                    self.ready.set_exception(OSError(head.split(b"\r\n", 1)[0].decode()))
                return
            self.upgraded = True
            assert self.transport is not None
            self.transport.write(masked(0x1, SUBSCRIBE))
            if not self.ready.done():
                self.ready.set_result(None)
        while len(self.buf) >= 2:  # server frames: unmasked
            op, n = self.buf[0] & 0x0F, self.buf[1] & 0x7F
            at = 2
            if n == 126:
                if len(self.buf) < 4:
                    return
                n, at = int.from_bytes(self.buf[2:4], "big"), 4
            elif n == 127:
                if len(self.buf) < 10:
                    return
                n, at = int.from_bytes(self.buf[2:10], "big"), 10
            if len(self.buf) < at + n:
                return
            payload, self.buf = self.buf[at : at + n], self.buf[at + n :]
            if op == 0x9 and self.transport is not None:
                self.transport.write(masked(0xA, payload))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost[0] += 1
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("closed during handshake"))


async def client(port: int, n: int, source: str) -> None:
    """Open ``n`` idle subscribers from ``source``; print progress lines; hold until stdin ends."""
    loop = asyncio.get_running_loop()
    lost = [0]
    sem = asyncio.Semaphore(200)
    errors: list[str] = []
    held: list[asyncio.BaseTransport] = []

    async def one() -> None:
        async with sem:
            ready: asyncio.Future[None] = loop.create_future()
            try:
                t, _ = await loop.create_connection(
                    lambda: Idle(f"127.0.0.1:{port}", ready, lost),
                    "127.0.0.1",
                    port,
                    local_addr=(source, 0),
                )
                held.append(t)
                await asyncio.wait_for(ready, 60)
            except (OSError, TimeoutError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    await asyncio.gather(*tasks)
    print(
        json.dumps(
            {
                "opened": n - len(errors),
                "errors": len(errors),
                "first_error": errors[0] if errors else None,
            }
        ),
        flush=True,
    )
    await loop.run_in_executor(None, sys.stdin.read)
    print(json.dumps({"lost_while_held": lost[0]}), flush=True)
    for t in held:
        t.close()


def server_fd_limit(pid: int) -> int | None:
    """The server's soft RLIMIT_NOFILE, from /proc (None if unreadable)."""
    try:
        with open(f"/proc/{pid}/limits", encoding="ascii") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        return None
    return None


def gauge(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("rtsim_connections{") and 'transport="websocket"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def start_server(limit: int) -> tuple[subprocess.Popen[bytes], str]:
    """One ``rtsim serve`` allowed ``limit`` connections (and descriptors); waits until up."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "rtsim.cli", "serve", "--port", str(port)]
    cmd += ["--max-connections", str(limit), "--max-connections-per-ip", str(limit)]
    server = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: raise_nofile(limit),
    )
    for _ in range(300):
        try:
            gauge(url)
            break
        except OSError:
            time.sleep(0.1)
    time.sleep(0.5)
    return server, url


def hold(n_target: int, procs: int) -> dict[str, object]:
    """Hold ``n_target`` idle WebSockets on as few ``rtsim serve`` processes as fit them."""
    probe, _ = start_server(n_target + 1000)
    fd_limit = server_fd_limit(probe.pid)
    probe.terminate()
    probe.wait(timeout=30)
    per_server = (fd_limit - 200) if fd_limit else n_target
    n_servers = max(1, math.ceil(n_target / per_server))
    procs = max(procs, n_servers)
    n = min(n_target, per_server * n_servers)
    servers = [start_server(n_target + 1000) for _ in range(n_servers)]
    clients: list[subprocess.Popen[str]] = []
    reports: list[dict[str, object]] = []
    try:
        rss0 = [process_rss_bytes(p.pid) for p, _ in servers]
        t0 = time.monotonic()
        quota = [n // n_servers + (1 if j < n % n_servers else 0) for j in range(n_servers)]
        for j, (_, url) in enumerate(servers):
            mine = [k for k in range(procs) if k % n_servers == j]
            for i, k in enumerate(mine):
                m = quota[j] // len(mine) + (1 if i < quota[j] % len(mine) else 0)
                port = url.rsplit(":", 1)[1]
                clients.append(
                    subprocess.Popen(
                        [sys.executable, __file__, "--client", port, str(m), f"127.0.0.{2 + k}"],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
        for c in clients:
            assert c.stdout is not None
            reports.append(json.loads(c.stdout.readline() or "{}"))
        open_s = time.monotonic() - t0
        time.sleep(2.0)
        rss1 = [process_rss_bytes(p.pid) for p, _ in servers]
        held_each = [gauge(url) for _, url in servers]
        for c, r in zip(clients, reports, strict=True):
            assert c.stdin is not None and c.stdout is not None
            c.stdin.close()
            r.update(json.loads(c.stdout.readline() or "{}"))
            c.wait(timeout=60)
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
        for p, _ in servers:
            p.terminate()
            p.wait(timeout=30)
    held = sum(held_each)
    errors = [r["first_error"] for r in reports if r.get("first_error")]
    return {
        "target": n_target,
        "attempted": n,
        "server_fd_limit": fd_limit,
        "servers": n_servers,
        "stopped_by": (
            f"the server's descriptor limit ({fd_limit}; the hard limit could not be raised)"
            if n < n_target
            else None
        ),
        "client_processes": procs,
        "opened": sum(int(str(r.get("opened", 0))) for r in reports),
        "held_by_server_gauge": held,
        "held_per_server": held_each,
        "seconds_to_open": open_s,
        "rss_before_mib": sum(rss0) / 2**20,
        "rss_held_mib": sum(rss1) / 2**20,
        "rss_held_per_server_mib": [x / 2**20 for x in rss1],
        "kib_per_connection": (sum(rss1) - sum(rss0)) / max(1, held) / 1024,
        "client_errors": sum(int(str(r.get("errors", 0))) for r in reports),
        "first_error": errors[0] if errors else None,
        "lost_while_held": sum(int(str(r.get("lost_while_held", 0))) for r in reports),
    }


def compare(n: int) -> list[dict[str, object]]:
    """rtsim (three transports) and the peers, each a fresh server holding ``n`` idle."""
    from bench_fanout import memory

    rows = []
    kinds = [("rtsim", "websocket"), ("rtsim", "sse"), ("rtsim", "long-polling")]
    kinds += [("websockets", "websocket")]
    kinds += [("node-ws", "websocket")] if shutil.which("node") else []
    for kind, transport in kinds:
        row = memory(kind, transport, n)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=50_000, help="idle WebSockets to hold (0: skip)")
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--compare", type=int, default=5000, help="connections per peer row (0: skip)")
    ap.add_argument("--client", nargs=3, metavar=("PORT", "N", "SOURCE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.client:
        raise_nofile(int(a.client[1]) + 1000)
        asyncio.run(client(int(a.client[0]), int(a.client[1]), a.client[2]))
        return
    if a.n < 0 or a.compare < 0 or a.procs < 1:
        print("bench_idle_ws: -n and --compare must be >= 0, --procs >= 1", file=sys.stderr)
        sys.exit(2)
    load_before = os.getloadavg()
    rows = compare(a.compare) if a.compare else []
    row = hold(a.n, a.procs) if a.n else None
    if row is not None:
        print(json.dumps(row), flush=True)
    load_after = os.getloadavg()
    cmd = (
        "`.venv/bin/python benchmarks/bench_idle_ws.py"
        + "".join(" " + x for x in sys.argv[1:])
        + "`"
    )
    lines = [
        "# Memory per idle connection: rtsim and its peers; idle WebSockets held",
        "",
        f"Command: {cmd}",
        "",
        machine()
        + f"- load average (1/5/15 min): before {'/'.join(f'{x:.2f}' for x in load_before)}, "
        f"after {'/'.join(f'{x:.2f}' for x in load_after)}\n",
    ]
    if rows:
        lines += [
            f"## {a.compare:,} idle connections per server, one fresh server each",
            "",
            "RSS growth of the server process over its RSS before the first connection; "
            "the same load generator (`rtsim.live.clients.loadgen`, 2 processes, one "
            "channel) for every row. rtsim is `rtsim serve` (asyncio's default loop, "
            "memory backplane); the peers are `benchmarks/peers/`.",
            "",
            "| server | transport | connections | RSS before MiB | RSS connected MiB "
            "| KiB/conn | errors |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['server']} | {r['transport']} | {r['connections']:,} "
                f"| {r['rss_before_mib']:.1f} | {r['rss_connected_mib']:.1f} "
                f"| {r['kib_per_connection']:.1f} | {r['errors']} |"
            )
        lines.append("")
    if row is not None:
        lines += [
            f"## {a.n:,} idle WebSockets held",
            "",
            "Server: `rtsim serve` (asyncio's default loop), memory backplane, one channel; "
            "each subscriber a raw-socket client (handshake, one subscribe, pongs). RSS is "
            f"the server's (summed over {row['servers']} server processes: each may open "
            f"at most {row['server_fd_limit']} descriptors here, the hard limit, which this "
            "container cannot raise)."
            if row["servers"] != 1
            else "Server: `rtsim serve` (asyncio's default loop), memory backplane, one "
            "channel; each subscriber a raw-socket client (handshake, one subscribe, "
            "pongs). RSS is the server's.",
            "",
            "| target | attempted | servers | held (server gauges) | s to open "
            "| RSS before MiB | RSS held MiB | KiB/conn | client errors | first error |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            f"| {a.n:,} | {row['attempted']:,} | {row['servers']} "
            f"| {row['held_by_server_gauge']:,.0f} | {row['seconds_to_open']:.1f} "
            f"| {row['rss_before_mib']:.1f} | {row['rss_held_mib']:.1f} "
            f"| {row['kib_per_connection']:.1f} | {row['client_errors']} "
            f"| {row['first_error'] or '–'} |",
            "",
            f"Stopped short of the target by {row['stopped_by']}." if row["stopped_by"] else "",
        ]
    RESULTS_MD.write_text("\n".join(lines).rstrip() + "\n")
    RESULTS_JSON.write_text(
        json.dumps(
            {
                "command": cmd.strip("`"),
                "date": f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC",
                "machine": machine(),
                "load_average": {"before": load_before, "after": load_after},
                "compare": rows,
                "result": row,
            },
            indent=1,
        )
    )
    print(f"wrote {RESULTS_MD}")


if __name__ == "__main__":
    main()
