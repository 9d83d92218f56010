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
are published, and takes what its clients deliver as it comes. Publishers pause around each
restart (a publish the broker refused would be ambiguous), so the restarts hit connected,
subscribed clients. At the end each client's messages per channel are compared with what was
published (acked): lost, duplicated (delivered twice to the application), out of order
(against the order the server stored them in, i.e. acked them), and gaps (``GapNotice``:
expected only where the log was trimmed, i.e. more than ``--maxlen`` messages per channel).

Publishing: 20 WebSocket connections, each channel on one of them, each keeping up to
``--window`` (16) publishes in flight (the server handles one connection's frames in order, so
a channel's messages are stored in the order sent). A publish refused while the broker
restarts is sent again alone after the in-flight ones are answered; messages acked after it
were stored before it, so the checks use the stored (acked) order. (Before: 4 connections,
one publish at a time each, about 27 msg/s on a loaded machine: each publish waited for its
ack behind the fan-out of the one before.) Timeouts count *awake* time (a machine frozen for
a while by SIGSTOP does not time a wait out when it resumes; clients see drops and recover).

    .venv/bin/python benchmarks/bench_soak.py                       # a scaled size
    .venv/bin/python benchmarks/bench_soak.py --clients 1000 --messages 100000   # full size

Results: ``benchmarks/results/soak.md`` and ``soak.json``, written after each part, each part
with its command, machine, commit and load average; ``--keep-other-parts`` keeps the parts
of the existing files that this run does not redo (e.g. one part rerun at another size).
Exit status 1 if any part lost, duplicated or reordered a message.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import itertools
import json
import multiprocessing as mp
import os
import shutil
import signal
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
from _soak_procs import Broker, Server, _await_awake, _poll_awake, _wait  # noqa: E402
from _soak_report import kept_parts, write_results  # noqa: E402

from rtsim.core.backoff import Backoff  # noqa: E402
from rtsim.live.clients.client import GapNotice, LiveClient, Message  # noqa: E402

TRANSPORTS = ("websocket", "sse", "long-polling")


def _same(position: str | None, final: str) -> bool:
    """A client's cursor ("EPOCH:ID") is at ``final`` (an id, with or without its epoch)."""
    from rtsim.core.positions import split_epoch

    return position is not None and split_epoch(position)[1] == split_epoch(final)[1]


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
    # What each client handed to the application, per channel: the data values (``n``) in
    # arrival order and its gap notices; drained as they come (memory stays small).
    got: list[dict[str, list[int]]] = [{ch: [] for ch in c.channels} for c in clients]
    gaps: list[list[GapNotice]] = [[] for _ in clients]

    async def drain() -> None:
        for k, c in enumerate(clients):
            while c.pending():
                item = await c.next(None)
                if isinstance(item, Message):
                    got[k][item.channel].append(item.data["n"])
                else:
                    gaps[k].append(item)

    try:
        # A hang guard only (long: the machine may be frozen for a while).
        await asyncio.gather(*(c.ready(1800) for c in clients))
        conn.send("ready")
        stop = asyncio.Event()
        end: dict[str, Any] = {}

        async def listen() -> None:
            msg = await loop.run_in_executor(None, conn.recv)
            end.update(msg)
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

        async def consume() -> None:
            while not stop.is_set():
                await drain()
                await asyncio.sleep(0.5)

        await asyncio.gather(listen(), chaos(), consume())
        final: dict[str, str] = end["last"]
        caught_up = await _await_awake(
            lambda: all(_same(c.cursor.get(ch), final[ch]) for c in clients for ch in c.channels),
            spec["catch_up_s"],
        )
        await asyncio.sleep(0.5)  # anything late (a duplicate) would arrive now
        await drain()
        report: dict[str, Any] = {
            "clients": len(clients), "drops": drops, "reconnects": 0, "wire_duplicates": 0,
            "lost": 0, "duplicated": 0, "out_of_order": 0, "gaps": 0, "gap_missed": 0,
            "gap_missed_reported": 0, "gap_other": 0, "gap_but_received": 0,
            "not_caught_up": 0 if caught_up else sum(
                any(not _same(c.cursor.get(ch), final[ch]) for ch in c.channels) for c in clients
            ),
            "received": 0, "examples": [],
        }  # fmt: skip
        for k, c in enumerate(clients):
            report["reconnects"] += c.stats.reconnects
            report["wire_duplicates"] += c.stats.duplicates
            for ch in c.channels:
                ch_gaps = [g for g in gaps[k] if g.channel == ch]
                counts = account(got[k][ch], ch_gaps, end["stored"][ch])
                for key, v in counts.items():
                    report[key] = report.get(key, 0) + v
                bad = counts["lost"] or counts["duplicated"] or counts["out_of_order"]
                if bad and len(report["examples"]) < 5:
                    report["examples"].append(
                        {"channel": ch, "transport": str(c.transport), **counts,
                         "missing_first": missing_of(got[k][ch], ch_gaps, end["stored"][ch]),
                         "gaps": [dataclasses.asdict(g) for g in ch_gaps],
                         "client_errors": c.errors[:3],
                         "last_error": c.last_error, "cursor": c.cursor.get(ch)}
                    )  # fmt: skip
        conn.send(report)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def _covered(gaps: Sequence[GapNotice], stored: Sequence[tuple[int, str]]) -> tuple[set[int], int]:
    """The data values the trimmed-log ``gaps`` skipped (stored strictly between each gap's
    ``since`` and its ``first_available_id``), and how many gaps were of another kind."""
    from rtsim.core.positions import split_epoch

    where = {split_epoch(mid)[1]: i for i, (_, mid) in enumerate(stored)}
    covered: set[int] = set()
    other = 0
    for g in gaps:
        if g.reason != "trimmed":
            other += 1
            continue
        lo = where.get(split_epoch(g.since)[1], -1)  # "0": from the start
        first = g.first_available_id
        hi = len(stored) if first is None else where.get(split_epoch(first)[1], len(stored))
        covered.update(stored[i][0] for i in range(lo + 1, hi))
    return covered, other


def account(
    got: Sequence[int], gaps: Sequence[GapNotice], stored: Sequence[tuple[int, str]]
) -> dict[str, int]:
    """One client's channel: what it received (data values in arrival order) and its gap
    notices against what was stored (``(value, id)`` in stored order).

    ``lost``: stored, not received and not inside any trimmed-log gap; ``gap_missed``: the
    messages the gaps skipped, counted here from the stored ids (exact), beside
    ``gap_missed_reported``, the sum of the notices' ``missed`` (the backplanes give a lower
    bound, 1, for a resume after a trimmed id); ``gap_but_received``: skipped by a gap yet
    received; ``out_of_order``: consecutive deliveries not in stored order.
    """
    position = {n: i for i, (n, _) in enumerate(stored)}
    seen = set(got)
    covered, other = _covered(gaps, stored)
    return {
        "received": len(got),
        "lost": len(set(position) - seen - covered),
        "duplicated": len(got) - len(seen),
        "out_of_order": sum(
            1 for a, b in itertools.pairwise(got) if position.get(b, -1) <= position.get(a, -1)
        ),
        "gaps": len(gaps),
        "gap_missed": len(covered),
        "gap_missed_reported": sum(g.missed for g in gaps),
        "gap_other": other,
        "gap_but_received": len(covered & seen),
    }


def missing_of(
    got: Sequence[int], gaps: Sequence[GapNotice], stored: Sequence[tuple[int, str]]
) -> list[int]:
    """The first ten lost data values (see :func:`account`)."""
    return sorted({n for n, _ in stored} - set(got) - _covered(gaps, stored)[0])[:10]


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
    window: int = 16  # publishes in flight per publisher connection
    catch_up_s: float = 600.0  # awake time allowed for the clients to catch up at the end
    seed: int = 0
    events: list[str] = field(default_factory=list)


async def _publish(
    url: str,
    batches: dict[str, list[int]],
    stored: dict[str, list[tuple[int, str]]],
    *,
    connections: int = 20,
    window: int = 16,
) -> dict[str, str]:
    """Publish ``batches`` (channel → data values, in order); the last acked id per channel.

    Each channel belongs to one of ``connections`` WebSocket connections, which keeps up to
    ``window`` publishes in flight (pipelined: the server handles one connection's frames
    one after another, so a channel's messages are stored in the order sent). A publish
    refused while the broker restarts (``backplane_unavailable``: "retry later") is sent
    again alone once the in-flight ones are answered (backing off from 0.1 s to 2 s), then
    pipelining resumes; acks after it may have been stored before it, so the stored order
    is recorded: ``(data value, id)`` of each channel in the order acked are appended to
    ``stored[channel]``, and that is the order clients must deliver.
    """
    last: dict[str, str] = {}
    ws_url = "ws" + url[len("http") :] + "/ws"
    unavailable = "backplane_unavailable"

    async def one(chans: list[str]) -> None:
        todo = collections.deque(
            (ch, batches[ch][k])
            for k in range(max((len(batches[ch]) for ch in chans), default=0))
            for ch in chans
            if k < len(batches[ch])
        )
        total = len(todo)
        refused: collections.deque[tuple[str, int]] = collections.deque()
        inflight: dict[int, tuple[str, int]] = {}
        answered = asyncio.Event()
        acked, refusals_in_a_row, refs = 0, 0, itertools.count()
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:

            async def read() -> None:
                nonlocal acked, refusals_in_a_row
                while acked < total:
                    msg = await ws.receive()
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        raise RuntimeError(f"publisher connection ended: {msg.type.name}")
                    frame = json.loads(msg.data)
                    item = inflight.pop(frame.get("ref"), None)
                    if item is None:
                        raise RuntimeError(f"unexpected frame: {frame}")
                    if frame.get("type") == "ack":
                        stored[item[0]].append((item[1], frame["id"]))
                        last[item[0]] = frame["id"]
                        acked += 1
                        refusals_in_a_row = 0
                    elif frame.get("code") == unavailable:
                        refusals_in_a_row += 1
                        if refusals_in_a_row > 60:
                            raise RuntimeError(f"publish refused 60 times in a row: {frame}")
                        refused.append(item)
                    else:
                        raise RuntimeError(f"publish refused: {frame}")
                    answered.set()

            async def write() -> None:
                while acked < total:
                    if refused:  # drain, wait a little, resend alone until acked
                        if inflight:
                            await _answer(answered)
                            continue
                        await asyncio.sleep(min(0.1 * 2 ** (refusals_in_a_row - 1), 2.0))
                        item = refused.popleft()
                    elif todo and len(inflight) < (1 if refusals_in_a_row else window):
                        item = todo.popleft()
                    else:
                        await _answer(answered)
                        continue
                    ref = next(refs)
                    inflight[ref] = item
                    await ws.send_json(
                        {"type": "publish", "channel": item[0], "data": {"n": item[1]}, "ref": ref}
                    )

            async def watchdog() -> None:  # a hang guard: no answer for 120 s awake
                while acked < total:
                    before = (acked, len(inflight), len(refused))
                    if not await _await_awake(
                        lambda: acked >= total or (acked, len(inflight), len(refused)) != before,  # noqa: B023
                        120,
                    ):
                        raise RuntimeError("the server answered no publish for 120 s")

            tasks = [asyncio.ensure_future(f()) for f in (read, write, watchdog)]
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()

    chans = sorted(batches)
    await asyncio.gather(*(one(chans[k::connections]) for k in range(connections)))
    return last


async def _answer(answered: asyncio.Event) -> None:
    answered.clear()
    await answered.wait()


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
                    "catch_up_s": part.catch_up_s,
                }
                p = ctx.Process(
                    target=_worker, args=(child, server.url, ids[w :: part.procs], channels, spec)
                )
                p.start()
                workers.append((p, parent))
            for _p, conn in workers:
                if not _poll_awake(conn, 1800):
                    raise RuntimeError("a worker's clients did not connect within 1800 s")
                assert conn.recv() == "ready"
            t_ready = time.monotonic()
            log(f"{part.kind}: {part.clients} clients ready in {t_ready - t_start:.1f} s")
            # Three phases of publishing with a restart between them.
            thirds = [0, per_channel[channels[0]] // 3, 2 * per_channel[channels[0]] // 3]
            thirds.append(per_channel[channels[0]])
            last: dict[str, str] = {}
            stored: dict[str, list[tuple[int, str]]] = {ch: [] for ch in channels}
            for phase in range(3):
                batch = {ch: list(range(thirds[phase], thirds[phase + 1])) for ch in channels}
                last.update(asyncio.run(_publish(server.url, batch, stored, window=part.window)))
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
                conn.send({"last": last, "stored": stored})
            reports = []
            for p, conn in workers:
                if not _poll_awake(conn, part.catch_up_s + 300):
                    raise RuntimeError("a worker did not report in time")
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
        and merged["not_caught_up"] == 0 and (merged["gaps"] == 0 or trimmed_possible)
        and merged["gap_other"] == 0 and merged["gap_but_received"] == 0,
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
    ap.add_argument("--window", type=int, default=16, help="publishes in flight per connection")
    ap.add_argument("--parts", default="redis,jetstream")
    ap.add_argument("--no-write", action="store_true", help="do not write benchmarks/results")
    ap.add_argument(
        "--keep-other-parts", action="store_true",
        help="keep the parts of soak.json not run now (each with its own command)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    # Stopped with SIGTERM: exit through the ``finally`` clauses (kill brokers and servers).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: list[dict[str, Any]] = []
    for kind in args.parts.split(","):
        part = Part(
            kind, args.clients, args.messages, args.channels, args.procs, args.drops_per_s,
            args.maxlen, server_restart=kind == "redis", window=args.window,
        )  # fmt: skip
        try:
            r = run_part(part)
        except RuntimeError as exc:
            print(f"bench_soak: {kind}: {exc}", file=sys.stderr)
            return 1
        cmd = "python benchmarks/bench_soak.py " + " ".join(
            argv if argv is not None else sys.argv[1:]
        )
        load = os.getloadavg()
        r["run"] = {"command": cmd.strip(), "machine": machine(), "loadavg_after": load}
        print(json.dumps(r), flush=True)
        results.append(r)
        if not args.no_write:  # after each part: a long run stopped later keeps what it did
            kept = kept_parts({x["part"] for x in results}) if args.keep_other_parts else []
            write_results(kept + results)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
