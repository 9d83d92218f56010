"""Hold many idle WebSocket subscribers on one ``rtsim serve`` and report its RSS.

The server runs as its own process (file-descriptor limit raised to N + 1,000; as root the
hard limit is raised too). Subscribers come from ``--procs`` client processes, each with its
own source address 127.0.0.(2+k) so that no address runs out of ephemeral ports (about
28,000 per address here). Each client is a raw asyncio protocol — an HTTP upgrade, one
masked ``subscribe`` frame, and pongs to the server's pings — a few KiB per connection, so
the load generator is not what runs out. The result: connections held (the server's own
``rtsim_connections`` gauge), RSS before and while holding them, KiB per connection, and
how far it got if it stopped short (the first error seen).

    .venv/bin/python benchmarks/bench_idle_ws.py [-n 50000] [--procs 4]

Writes benchmarks/results/idle_ws.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=50_000)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--client", nargs=3, metavar=("PORT", "N", "SOURCE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.client:
        raise_nofile(int(a.client[1]) + 1000)
        asyncio.run(client(int(a.client[0]), int(a.client[1]), a.client[2]))
        return
    load_before = os.getloadavg()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    limit = str(a.n + 1000)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rtsim.cli",
            "serve",
            "--port",
            str(port),
            "--max-connections",
            limit,
            "--max-connections-per-ip",
            limit,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: raise_nofile(a.n + 1000),
    )
    clients: list[subprocess.Popen[str]] = []
    try:
        for _ in range(300):
            try:
                gauge(url)
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(0.5)
        rss0 = process_rss_bytes(server.pid)
        fd_limit = server_fd_limit(server.pid)
        # Connections beyond the server's descriptor limit would only time out: aim below it.
        n = min(a.n, fd_limit - 200) if fd_limit else a.n
        t0 = time.monotonic()
        share = [n // a.procs + (1 if k < n % a.procs else 0) for k in range(a.procs)]
        for k, m in enumerate(share):
            clients.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--client", str(port), str(m), f"127.0.0.{2 + k}"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        reports = []
        for c in clients:
            assert c.stdout is not None
            reports.append(json.loads(c.stdout.readline() or "{}"))
        open_s = time.monotonic() - t0
        time.sleep(2.0)
        rss1 = process_rss_bytes(server.pid)
        held = gauge(url)
        for c in clients:
            assert c.stdin is not None and c.stdout is not None
            c.stdin.close()
            reports[clients.index(c)].update(json.loads(c.stdout.readline() or "{}"))
            c.wait(timeout=60)
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
        server.terminate()
        server.wait(timeout=30)
    opened = sum(int(r.get("opened", 0)) for r in reports)
    errors = [r["first_error"] for r in reports if r.get("first_error")]
    row = {
        "target": a.n,
        "attempted": n,
        "server_fd_limit": fd_limit,
        "stopped_by": (
            f"the server's descriptor limit ({fd_limit}; the hard limit could not be raised)"
            if n < a.n
            else None
        ),
        "client_processes": a.procs,
        "opened": opened,
        "held_by_server_gauge": held,
        "seconds_to_open": open_s,
        "rss_before_mib": rss0 / 2**20,
        "rss_held_mib": rss1 / 2**20,
        "kib_per_connection": (rss1 - rss0) / max(1, held) / 1024,
        "client_errors": sum(int(r.get("errors", 0)) for r in reports),
        "first_error": errors[0] if errors else None,
        "lost_while_held": sum(int(r.get("lost_while_held", 0)) for r in reports),
    }
    print(json.dumps(row), flush=True)
    load_after = os.getloadavg()
    cmd = (
        "`.venv/bin/python benchmarks/bench_idle_ws.py"
        + "".join(" " + x for x in sys.argv[1:])
        + "`"
    )
    lines = [
        "# Idle WebSocket connections held by one rtsim server",
        "",
        f"Command: {cmd}",
        "",
        machine()
        + f"- load average (1/5/15 min): before {'/'.join(f'{x:.2f}' for x in load_before)}, "
        f"after {'/'.join(f'{x:.2f}' for x in load_after)}\n",
        "Server: `rtsim serve` (asyncio's default loop), memory backplane, one channel; each "
        "subscriber a raw-socket client (handshake, one subscribe, pongs). RSS is the server's.",
        "",
        "| target | attempted | held (server gauge) | s to open | RSS before MiB | RSS held MiB "
        "| KiB/conn | client errors | first error |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {a.n:,} | {n:,} | {held:,.0f} | {open_s:.1f} | {row['rss_before_mib']:.1f} "
        f"| {row['rss_held_mib']:.1f} | {row['kib_per_connection']:.1f} | {row['client_errors']} "
        f"| {row['first_error'] or '–'} |",
        "",
        f"Stopped short of the target by {row['stopped_by']}." if row["stopped_by"] else "",
    ]
    RESULTS_MD.write_text("\n".join(lines) + "\n")
    RESULTS_JSON.write_text(
        json.dumps(
            {
                "command": cmd.strip("`"),
                "machine": machine(),
                "load_average": {"before": load_before, "after": load_after},
                "result": row,
            },
            indent=1,
        )
    )
    print(f"wrote {RESULTS_MD}")


if __name__ == "__main__":
    main()
