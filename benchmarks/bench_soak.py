"""Soak: many ``LiveClient``s over the three transports, random drops, broker and server restarts.

One part per persistent backplane, each against a PRIVATE broker started on a free port in a
temporary directory (so it can be killed and restarted without touching shared brokers):

* ``redis``: Redis Streams (redis-server with an fsync-always append-only file, so a restart
  keeps the streams); one broker restart (SIGKILL, start again) and one ``rtsim serve``
  restart on the same port.
* ``jetstream``: NATS JetStream (nats-server -js, file storage); one broker restart.

Clients run in ``--procs`` worker processes (each its own event loop, a third of them per
transport, every client subscribed from id ``0`` so each must end with every message). Each
worker drops random connections of its own clients (``--drops-per-s`` in all) while messages
are published. Publishers pause around each restart (a publish the broker refused would be
ambiguous), so the restarts hit connected, subscribed clients. At the end each client's
messages per channel are compared with what was published (acked ids): lost, duplicated
(delivered twice to the application), out of order, and gaps (``GapNotice``: expected only
where the log was trimmed, i.e. more than ``--maxlen`` messages per channel).

    .venv/bin/python benchmarks/bench_soak.py                       # the committed (scaled) size
    .venv/bin/python benchmarks/bench_soak.py --clients 1000 --messages 100000   # full size

Results: ``benchmarks/results/soak.md`` and ``soak.json`` (with the command, machine and load
average). Exit status 1 if any part lost, duplicated or reordered a message.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import machine  # noqa: E402

from rtsim.core.backoff import Backoff  # noqa: E402
from rtsim.live.clients.client import GapNotice, LiveClient, Message  # noqa: E402
from rtsim.live.process import free_port  # noqa: E402

RESULTS_MD = HERE / "results" / "soak.md"
RESULTS_JSON = HERE / "results" / "soak.json"
TRANSPORTS = ("websocket", "sse", "long-polling")


def _same(position: str | None, final: str) -> bool:
    """A client's cursor ("EPOCH:ID") is at ``final`` (an id, with or without its epoch)."""
    from rtsim.core.positions import split_epoch

    return position is not None and split_epoch(position)[1] == split_epoch(final)[1]


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(pred: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise RuntimeError(f"{what} within {timeout} s")
        time.sleep(0.05)


class Broker:
    """A private redis-server (AOF, fsync always) or nats-server -js in ``tmp`` on a free port."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind, self.tmp, self.port = kind, tmp, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.kind == "redis":
            argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            argv += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.tmp)]
        else:
            argv = ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port)]
            argv += ["-sd", str(self.tmp)]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.tmp
        )
        _wait(lambda: _reachable(self.port), 20, f"{self.kind} did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def url(self, maxlen: int) -> str:
        if self.kind == "redis":
            return f"redis-streams://127.0.0.1:{self.port}?prefix=soak&maxlen={maxlen}"
        return f"nats://127.0.0.1:{self.port}?prefix=soak&max_msgs_per_subject={maxlen}"


class Server:
    """``rtsim serve`` on a fixed port (so a restart keeps the clients' URL)."""

    def __init__(self, backplane: str) -> None:
        self.port, self.backplane = free_port(), backplane
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [sys.executable, "-m", "rtsim.cli", "serve", "--port", str(self.port)]
        argv += ["--backplane", self.backplane, "--max-connections", "100000"]
        argv += ["--max-connections-per-ip", "100000", "--publish-rate-per-ip", "1000000"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: self.status() == "ok", 30, "rtsim serve was not healthy")

    def status(self) -> str:
        import urllib.request

        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                return str(json.load(r)["status"])
        except (OSError, ValueError):
            return "down"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- the worker processes (clients) ------------------------------------------------------
def _channels_of(i: int, channels: Sequence[str]) -> list[str]:
    chans = [channels[i % len(channels)]]
    if i % 5 == 0:
        chans.append(channels[(i + 7) % len(channels)])
    return chans


def _worker(
    conn: Connection, url: str, ids: list[int], channels: list[str], spec: dict[str, Any]
) -> None:
    asyncio.run(_worker_main(conn, url, ids, channels, spec))


async def _worker_main(
    conn: Connection, url: str, ids: list[int], channels: list[str], spec: dict[str, Any]
) -> None:
    import random

    rng = random.Random(spec["seed"])
    clients = [
        LiveClient(
            url,
            _channels_of(i, channels),
            transports=[TRANSPORTS[i % 3]],
            since={ch: "0" for ch in _channels_of(i, channels)},
            backoff=Backoff(base_s=0.05, cap_s=0.5),
            stable_after_s=1.0,
            seed=i,
            poll_timeout_s=5,
            heartbeat_s=30,
            connect_timeout_s=120,
        )
        for i in ids
    ]
    loop = asyncio.get_running_loop()
    for c in clients:
        await c.start()
    drops = 0
    try:
        await asyncio.wait_for(asyncio.gather(*(c.ready() for c in clients)), 120)
        conn.send("ready")
        stop = asyncio.Event()
        final: dict[str, str] = {}

        async def listen() -> None:
            msg = await loop.run_in_executor(None, conn.recv)
            final.update(msg)
            stop.set()

        async def chaos() -> None:
            nonlocal drops
            while not stop.is_set():
                if clients and spec["drops_per_s"] > 0:
                    rng.choice(clients).drop()
                    drops += 1
                    await asyncio.sleep(rng.expovariate(spec["drops_per_s"]))
                else:
                    await asyncio.sleep(0.1)

        await asyncio.gather(listen(), chaos())
        caught_up = True
        end = loop.time() + spec["catch_up_s"]
        while not all(_same(c.cursor.get(ch), final[ch]) for c in clients for ch in c.channels):
            if loop.time() > end:
                caught_up = False
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # anything late (a duplicate) would arrive now
        report: dict[str, Any] = {
            "clients": len(clients), "drops": drops, "reconnects": 0, "wire_duplicates": 0,
            "lost": 0, "duplicated": 0, "out_of_order": 0, "gaps": 0, "gap_missed": 0,
            "not_caught_up": 0 if caught_up else sum(
                any(not _same(c.cursor.get(ch), final[ch]) for ch in c.channels) for c in clients
            ),
            "received": 0, "examples": [],
        }  # fmt: skip
        for c in clients:
            items: list[Message | GapNotice] = []
            while c.pending():
                items.append(await c.next())
            report["reconnects"] += c.stats.reconnects
            report["wire_duplicates"] += c.stats.duplicates
            for ch in c.channels:
                got = [m.data["n"] for m in items if isinstance(m, Message) and m.channel == ch]
                gaps = [g for g in items if isinstance(g, GapNotice) and g.channel == ch]
                report["received"] += len(got)
                report["gaps"] += len(gaps)
                report["gap_missed"] += sum(g.missed for g in gaps)
                n = spec["per_channel"][ch]
                seen = set(got)
                lost = n - len(seen) - sum(g.missed for g in gaps)
                report["lost"] += max(lost, 0)
                report["duplicated"] += len(got) - len(seen)
                report["out_of_order"] += sum(1 for a, b in itertools.pairwise(got) if b <= a)
                if (lost > 0 or len(got) != len(seen)) and len(report["examples"]) < 5:
                    missing = sorted(set(range(n)) - seen)[:10]
                    report["examples"].append(
                        {"channel": ch, "transport": str(c.transport), "got": len(got),
                         "expected": n, "missing_first": missing,
                         "gaps": [dataclasses.asdict(g) for g in gaps],
                         "client_errors": c.errors[:3],
                         "last_error": c.last_error, "cursor": c.cursor.get(ch)}
                    )  # fmt: skip
        conn.send(report)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


# --- the main process: broker, server, publishers, restarts ------------------------------
@dataclass
class Part:
    kind: str  # "redis" or "jetstream"
    clients: int
    messages: int
    channels: int = 20
    procs: int = 3
    drops_per_s: float = 20.0
    maxlen: int = 1000
    server_restart: bool = False
    seed: int = 0
    events: list[str] = field(default_factory=list)


async def _publish(url: str, batches: dict[str, list[int]]) -> dict[str, str]:
    """Publish ``batches`` (channel → data values, in order); the last acked id per channel."""
    last: dict[str, str] = {}
    ws_url = "ws" + url[len("http") :] + "/ws"

    async def one(chans: list[str]) -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
            sent = 0
            longest = max((len(batches[ch]) for ch in chans), default=0)
            for k in range(longest):
                for ch in chans:
                    if k < len(batches[ch]):
                        # One at a time: a publish refused while the broker restarts
                        # (backplane_unavailable: "retry later") is sent again, in order.
                        for _attempt in range(300):
                            await ws.send_json(
                                {"type": "publish", "channel": ch, "data": {"n": batches[ch][k]},
                                 "ref": sent}
                            )  # fmt: skip
                            frame = await asyncio.wait_for(ws.receive_json(), 60)
                            if frame.get("type") == "ack":
                                last[frame["channel"]] = frame["id"]
                                break
                            if frame.get("code") != "backplane_unavailable":
                                raise RuntimeError(f"publish refused: {frame}")
                            await asyncio.sleep(0.1)
                        else:
                            raise RuntimeError(f"publish refused for 30 s: {frame}")
                        sent += 1

    chans = sorted(batches)
    await asyncio.gather(*(one(chans[k::4]) for k in range(4)))
    return last


def run_part(part: Part, log: Any = print) -> dict[str, Any]:
    """Run one soak part; the merged report (counts) with timings and the restart events."""
    binary = "redis-server" if part.kind == "redis" else "nats-server"
    if shutil.which(binary) is None:
        raise RuntimeError(f"{binary} is not installed")
    t_start = time.monotonic()
    channels = [f"soak:{k}" for k in range(part.channels)]
    per_channel = {ch: part.messages // part.channels for ch in channels}
    with tempfile.TemporaryDirectory(prefix=f"soak-{part.kind}-") as tmp:
        broker = Broker(part.kind, Path(tmp))
        broker.start()
        server = Server(broker.url(part.maxlen))
        server.start()
        ctx = mp.get_context("spawn")
        workers: list[tuple[Any, Connection]] = []
        try:
            ids = list(range(part.clients))
            for w in range(part.procs):
                parent, child = ctx.Pipe()
                spec = {
                    "seed": part.seed * 1000 + w,
                    "drops_per_s": part.drops_per_s / part.procs,
                    "per_channel": per_channel,
                    "catch_up_s": 240,
                }
                p = ctx.Process(
                    target=_worker, args=(child, server.url, ids[w :: part.procs], channels, spec)
                )
                p.start()
                workers.append((p, parent))
            for _p, conn in workers:
                if not conn.poll(180):
                    raise RuntimeError("a worker's clients did not connect within 180 s")
                assert conn.recv() == "ready"
            t_ready = time.monotonic()
            log(f"{part.kind}: {part.clients} clients ready in {t_ready - t_start:.1f} s")
            # Three phases of publishing with a restart between them.
            thirds = [0, per_channel[channels[0]] // 3, 2 * per_channel[channels[0]] // 3]
            thirds.append(per_channel[channels[0]])
            last: dict[str, str] = {}
            for phase in range(3):
                batch = {ch: list(range(thirds[phase], thirds[phase + 1])) for ch in channels}
                last.update(asyncio.run(_publish(server.url, batch)))
                if phase == 0:
                    t0 = time.monotonic()
                    broker.kill()
                    broker.start()
                    _wait(lambda: server.status() == "ok", 60, "server not healthy after broker")
                    part.events.append(
                        f"{part.kind} broker killed and restarted; server healthy again after"
                        f" {time.monotonic() - t0:.1f} s"
                    )
                elif phase == 1 and part.server_restart:
                    t0 = time.monotonic()
                    server.stop()
                    server.start()
                    part.events.append(
                        f"rtsim serve restarted on the same port in {time.monotonic() - t0:.1f} s"
                    )
                log(f"{part.kind}: phase {phase} published; events so far: {part.events}")
            t_pub = time.monotonic()
            for _, conn in workers:
                conn.send(last)
            reports = []
            for p, conn in workers:
                if not conn.poll(300):
                    raise RuntimeError("a worker did not report within 300 s")
                reports.append(conn.recv())
                p.join(30)
            t_end = time.monotonic()
        finally:
            for p, _ in workers:
                if p.is_alive():
                    p.kill()
            server.stop()
            broker.kill()
    merged: dict[str, Any] = {"examples": []}
    for r in reports:
        for k, v in r.items():
            if k == "examples":
                merged["examples"] += v
            else:
                merged[k] = merged.get(k, 0) + v
    expected_deliveries = sum(
        per_channel[ch] for i in range(part.clients) for ch in _channels_of(i, channels)
    )
    trimmed_possible = max(per_channel.values()) > part.maxlen
    return {
        "part": part.kind,
        "backplane": "redis-streams" if part.kind == "redis" else "nats (JetStream)",
        "clients": part.clients,
        "clients_per_transport": {
            t: len(range(k, part.clients, 3)) for k, t in enumerate(TRANSPORTS)
        },
        "worker_processes": part.procs,
        "channels": part.channels,
        "messages": sum(per_channel.values()),
        "expected_deliveries": expected_deliveries,
        "maxlen": part.maxlen,
        "log_trimmed_possible": trimmed_possible,
        "events": part.events,
        **merged,
        "ok": merged["lost"] == 0 and merged["duplicated"] == 0 and merged["out_of_order"] == 0
        and merged["not_caught_up"] == 0 and (merged["gaps"] == 0 or trimmed_possible),
        "seconds": {
            "connect": round(t_ready - t_start, 1),
            "publish_and_restarts": round(t_pub - t_ready, 1),
            "catch_up_and_check": round(t_end - t_pub, 1),
        },
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=300, help="per part (full size: 1000)")
    ap.add_argument("--messages", type=int, default=10_000, help="per part (full size: 100000)")
    ap.add_argument("--channels", type=int, default=20)
    ap.add_argument("--procs", type=int, default=3, help="client worker processes")
    ap.add_argument("--drops-per-s", type=float, default=20.0)
    ap.add_argument("--maxlen", type=int, default=1000, help="replay log per channel")
    ap.add_argument("--parts", default="redis,jetstream")
    ap.add_argument("--no-write", action="store_true", help="do not write benchmarks/results")
    args = ap.parse_args(argv)
    results = []
    for kind in args.parts.split(","):
        part = Part(
            kind, args.clients, args.messages, args.channels, args.procs, args.drops_per_s,
            args.maxlen, server_restart=kind == "redis",
        )  # fmt: skip
        try:
            r = run_part(part)
        except RuntimeError as exc:
            print(f"bench_soak: {kind}: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(r))
        results.append(r)
    cmd = "python benchmarks/bench_soak.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load = os.getloadavg()
    if not args.no_write:
        RESULTS_JSON.write_text(
            json.dumps({"command": cmd, "loadavg": load, "parts": results}, indent=1) + "\n"
        )
        lines = [
            "# Soak: exactly once through drops and restarts\n",
            f"Command: `{cmd.strip()}`\n",
            machine()
            + f"- load average after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n",
            f"Size actually run: {args.clients} clients and {args.messages} messages per part"
            " (the full size is `--clients 1000 --messages 100000`; scaled so each part takes"
            " at most about 5 minutes on this shared 2-core machine).\n",
            "| part | clients (ws/sse/poll) | messages | deliveries expected | received | lost |"
            " duplicated | out of order | gaps (missed) | drops | reconnects | wire dups |"
            " restarts | ok |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in results:
            cpt = "/".join(str(v) for v in r["clients_per_transport"].values())
            lines.append(
                f"| {r['backplane']} | {r['clients']} ({cpt}) | {r['messages']} |"
                f" {r['expected_deliveries']} | {r['received']} | {r['lost']} | {r['duplicated']} |"
                f" {r['out_of_order']} | {r['gaps']} ({r['gap_missed']}) | {r['drops']} |"
                f" {r['reconnects']} | {r['wire_duplicates']} | {'; '.join(r['events'])} |"
                f" {r['ok']} |"
            )
        lines.append(
            "\n*wire dups*: copies a client received twice on the wire (after a reconnect) and"
            " dropped by id; *duplicated* counts copies handed to the application."
        )
        RESULTS_MD.write_text("\n".join(lines) + "\n")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
