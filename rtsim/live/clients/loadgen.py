"""An open-loop load generator: subscribers over one transport, a constant publish rate.

    result = run_load(LoadParams(url="http://127.0.0.1:8765", transport="sse",
                                 subscribers=500, channels=10, rate=200, duration_s=20))
    result.summary.p99_ms, result.summary.lost

Subscribers are spread over several worker processes (so the generator is not the
bottleneck without saying so; its own CPU time is reported next to every result). The
publisher sends on a fixed schedule — message *i* is due at ``t0 + i / rate`` — and each
message carries its *scheduled* send time, so a slow server cannot slow the clock:
latency is measured from when the message should have gone out, not from when the
publisher managed to send it (no coordinated omission, as in wrk2). Latencies go into
HdrHistogram; every subscriber counts the messages of its channel it received, so
``lost`` and ``duplicates`` are exact (delivery is in order per channel, so a repeated or
older sequence number is a duplicate).

The generator keeps its own cost low, so the server is what a run measures: subscribers run
on bare asyncio Protocols by default (``ws_client``, ``sse_client``, ``lp_client``; picows
and aiohttp are the others), a broadcast is decoded once per worker process (every
subscriber of a channel reads the same bytes), each latency is appended to a list and
recorded into the histogram in bulk (:class:`~rtsim.core.results.LatencyStream`) every
second, and each worker freezes its heap (``gc.freeze``) once its subscribers are
connected. Its CPU time per delivery is reported beside the server's in every result
(``extra["loadgen_cpu_us_per_delivery"]``, ``extra["server_cpu_us_per_delivery"]``).

An overloaded server may send subscribers to interval polling (``docs/protocol.md``,
degradation): they poll ``/poll?timeout=0`` from their last id and resubscribe from it
when the server has recovered, so nothing is lost or repeated; before counting, the
generator waits for subscribers still polling to catch up, and reports
``extra["degraded_clients"]``.

Message *i* goes to channel ``i % channels``; subscriber *k* listens to channel
``k % channels``. Publishing uses one WebSocket connection (``publish`` frames), so the
same generator drives rtsim's server and the minimal peer servers in ``benchmarks/peers``.
It goes to ``publish_url`` when one is given (another instance on the same backplane:
every delivery then crosses the broker), else to ``url``.

Stage timestamps: ``traced`` messages (spread evenly; default 200) carry a ``trace`` key
and their send time; the server records when it received each, fanned it out and wrote it
to every subscriber (:mod:`rtsim.live.server.stages`, ``GET /debug/stages``), the
subscribers when they read and handled it. ``summary.extra["stages"]`` holds p50/p99/mean per
stage (:data:`rtsim.core.stages.STAGES`) and ``RunResult.deliveries`` the per-delivery
stage frame (:func:`rtsim.core.stages.stage_frame`). Against a server without the
endpoint (a peer server) the stages are empty (``n`` 0).
"""

from __future__ import annotations

import asyncio
import gc
import math
import multiprocessing as mp
import os
import resource
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import numpy as np
import orjson
import pandas as pd

from rtsim.core.backoff import Backoff
from rtsim.core.reconnect import rank
from rtsim.core.replaylog import decode_cursor
from rtsim.core.results import (
    LatencyStream,
    RunResult,
    Summary,
    decode_histogram,
    encode_histogram,
    new_latency_histogram,
)
from rtsim.core.stages import stage_frame, stage_summary
from rtsim.core.transport import Transport

from ..errors import require_server
from ..process import machine_busy_s
from .load_params import LoadParams
from .loadpub import publish_load
from .serverprobe import server_stages, server_stats
from .traced import pack_traced, unpack_traced
from .transports import load_subscriber
from .wire import (
    Degraded,
    Dropped,
    LoadTarget,
    Refused,
    auth_headers,
    channel_params,
    level_of,
    response_port,
)

__all__ = ["LoadParams", "capacity_search", "run_load"]

#: Polling interval of a degraded subscriber when the server names none (its default).
DEFAULT_DEGRADE_POLL_S = 5.0
#: Seconds between bulk recordings of a worker's latencies into its histogram.
RECORD_EVERY_S = 1.0
#: A dropped or refused subscriber's wait before it resumes (at least the server's
#: ``Retry-After``): 50 ms doubling to 2 s with full jitter, restarting once it receives.
RESUME_BACKOFF = Backoff(base_s=0.05, cap_s=2.0)


def _at_least(delay: float, retry_after_s: float | None) -> float:
    return delay if retry_after_s is None else max(delay, retry_after_s)


def _plain_id(cursor: str | None, channel: str) -> str | None:
    """The id of ``channel`` in a cursor (``"ch=7"`` or a plain ``"7"``); None if absent."""
    if cursor is None or "=" not in cursor:
        return cursor
    return decode_cursor(cursor).get(channel)


@dataclass
class _Sub:
    channel: str
    last: int = -1
    unique: int = 0
    dups: int = 0
    cursor: str = "0"
    alive: bool = True
    gaps: int = 0  # gap frames/events seen (e.g. an epoch gap after a server restart)
    drops: int = 0  # connections that ended under it (it resumed from its cursor)
    refusals: int = 0  # connection attempts refused with 429/503 (retried after Retry-After)
    degraded: bool = False  # sent to polling by an overloaded server at least once
    polling: bool = False  # polling now


class _Worker:
    def __init__(self, p: LoadParams, ks: Sequence[int]) -> None:
        self.p = p
        self.ks = list(ks)
        self.subs = {k: _Sub(p.channel_name(k)) for k in self.ks}
        # Latencies (s) since the last bulk recording into ``stream`` (:meth:`_record`).
        self.latencies: list[float] = []
        self.stream = LatencyStream()
        self.ready = 0
        self.all_ready = asyncio.Event()
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.errors: list[str] = []
        # Traced deliveries: (trace, port, scheduled, sent, read, handled), CLOCK_MONOTONIC s.
        self.traced: list[tuple[str, int, float, float, float, float]] = []
        self.gap_samples: list[dict[str, Any]] = []
        self.poll_s = DEFAULT_DEGRADE_POLL_S  # the longest polling interval a server gave

    def _receiver(self, k: int) -> Callable[[Any, float, int], None]:
        """Subscriber ``k``'s ``got(data, read_at, port)``: the hot path, one call per
        delivery, with what it touches bound once (no per-call lookups)."""
        s, latencies, traced, monotonic = self.subs[k], self.latencies, self.traced, time.monotonic

        def got(data: Any, read_at: float, port: int) -> None:
            now = monotonic()
            try:
                seq, t = int(data["seq"]), float(data["t"])
            except (TypeError, KeyError, ValueError):
                return
            if seq > s.last:
                s.last = seq
                s.unique += 1
                latencies.append(now - t)
                trace = data.get("trace")
                if trace is not None:
                    sent = data.get("sent")
                    sent_f = float(sent) if isinstance(sent, int | float) else math.nan
                    traced.append((str(trace), port, t, sent_f, read_at, now))
            else:
                s.dups += 1

        return got

    def _record(self) -> None:
        """Record the latencies gathered since the last call into the histogram, in bulk."""
        if self.latencies:
            self.stream.record(np.asarray(self.latencies) * 1000.0)
            self.latencies.clear()  # in place: the receivers hold this list

    async def _record_every(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            self._record()

    def _gap(self, k: int, obj: Mapping[str, Any]) -> None:
        self.subs[k].gaps += 1
        if len(self.gap_samples) < 5:
            self.gap_samples.append(dict(obj))

    async def _poll_degraded(
        self,
        session: aiohttp.ClientSession,
        k: int,
        degraded: Degraded,
        ready: Callable[[], None],
    ) -> str | None:
        """Poll ``GET /poll?timeout=0`` from ``degraded.cursor`` every ``poll_s`` seconds
        until an answer says ``"degraded": false`` and allows the run's transport (its
        ``"transport"`` rung, if any, is no lower); returns the last id (to resume from)."""
        s, got = self.subs[k], self._receiver(k)
        cursor = _plain_id(degraded.cursor, s.channel)
        poll_s = degraded.poll_s or DEFAULT_DEGRADE_POLL_S
        while True:
            async with session.get(
                f"{self.p.url}/poll",
                params=channel_params([s.channel], after=cursor, timeout=0),
                headers=auth_headers(self.p.token),
            ) as r:
                port = response_port(r)
                if r.status != 200:
                    raise RuntimeError(f"poll answered {r.status}: {await r.text()}")
                raw = await r.read()
                read_at = time.monotonic()
            body = orjson.loads(raw)
            ready()
            for m in body.get("messages", []):
                got(m.get("data"), read_at, port)
            cursor = _plain_id(body.get("cursor"), s.channel) or cursor
            allowed = level_of(body) or Transport.WEBSOCKET
            if body.get("degraded") is False and rank(allowed) <= rank(self.p.transport):
                return cursor
            given = body.get("poll_s")
            if isinstance(given, int | float) and 0 < given < math.inf:
                poll_s = float(given)
                self.poll_s = max(self.poll_s, poll_s)
            await asyncio.sleep(poll_s)

    async def _catch_up(self, sent: int) -> None:
        """Wait (at most two polling intervals and a bit) until every subscriber that is
        polling now, or has resumed after a drop or refusal, has every message of its
        channel: they lag by up to ``poll_s`` (or a reconnect)."""
        deadline = time.monotonic() + 2 * self.poll_s + 5

        def behind() -> bool:
            for k, s in self.subs.items():
                owed = len(range(k % self.p.channels, sent, self.p.channels))
                resumed = s.polling or s.drops or s.refusals
                if s.alive and resumed and s.unique < owed:
                    return True
            return False

        while behind() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def _mark_ready(self) -> None:
        self.ready += 1
        if self.ready == len(self.ks):
            self.all_ready.set()

    async def one(self, session: aiohttp.ClientSession, k: int) -> None:
        subscribe = load_subscriber(
            self.p.transport, self.p.ws_client, self.p.sse_client, self.p.lp_client
        )
        got = self._receiver(k)
        target = LoadTarget(self.p.url, self.p.token, self.p.ws_path)
        s = self.subs[k]
        ready_once = False

        def ready() -> None:
            nonlocal ready_once
            if not ready_once:
                ready_once = True
                self._mark_ready()

        since: str | None = None
        rng = np.random.default_rng(k)
        attempt = 0  # drops and refusals in a row (the backoff's attempt)
        try:
            while True:
                unique = s.unique
                try:
                    kw = {} if since is None else {"since": since}
                    await subscribe(
                        session,
                        target,
                        s.channel,
                        got,
                        ready,
                        gap=lambda g: self._gap(k, g),
                        **kw,
                    )
                    return
                except Degraded as exc:  # overloaded: poll from the cursor until recovered
                    s.degraded = s.polling = True
                    try:
                        since = await self._poll_degraded(session, k, exc, ready)
                    finally:
                        s.polling = False
                    continue
                except Dropped as exc:  # closed (e.g. 1013) or reset: resume from its cursor
                    s.drops += 1
                    since = exc.cursor or since
                    wait = None
                except Refused as exc:  # 429/503: wait as long as the server asked
                    if exc.status not in (429, 503):
                        raise
                    s.refusals += 1
                    wait = exc.retry_after_s
                attempt = 0 if s.unique > unique else attempt + 1
                await asyncio.sleep(_at_least(RESUME_BACKOFF.delay(attempt, rng), wait))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # counted, not fatal: the others go on
            self.errors.append(f"subscriber {k}: {type(exc).__name__}: {exc}")
            if not self.all_ready.is_set():
                self._mark_ready()

    async def main(self, conn: Connection) -> None:
        limit = aiohttp.TCPConnector(limit=0, force_close=False)
        recorder = asyncio.create_task(self._record_every(RECORD_EVERY_S))
        async with aiohttp.ClientSession(connector=limit) as session:
            for k in self.ks:
                self.tasks[k] = asyncio.create_task(self.one(session, k))
            try:
                await asyncio.wait_for(self.all_ready.wait(), self.p.connect_timeout_s)
            except TimeoutError:
                self.errors.append(f"only {self.ready} of {len(self.ks)} subscribers ready")
            # Subscribers told to vanish before publishing: close their connections.
            for k in self.ks:
                if k < self.p.kill_before_publish:
                    self.tasks[k].cancel()
                    self.subs[k].alive = False
            # Every subscriber's objects are long-lived from here on: out of the collector's
            # sight, so a full collection during the run walks nothing of them.
            gc.collect()
            gc.freeze()
            ru0 = resource.getrusage(resource.RUSAGE_SELF)
            conn.send(("ready", len(self.errors)))
            loop = asyncio.get_running_loop()
            cmd, sent = await loop.run_in_executor(None, conn.recv)
            assert cmd == "stop"
            await asyncio.sleep(self.p.settle_s)
            await self._catch_up(sent)
            ru1 = resource.getrusage(resource.RUSAGE_SELF)
            for t in self.tasks.values():
                t.cancel()
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        recorder.cancel()
        self._record()
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        conn.send(
            (
                "done",
                {
                    "hist": encode_histogram(self.stream.histogram()),
                    "subs": {
                        k: (s.channel, s.unique, s.dups, s.degraded) for k, s in self.subs.items()
                    },
                    "errors": self.errors[:20],
                    "n_errors": len(self.errors),
                    "gaps": sum(s.gaps for s in self.subs.values()),
                    "drops": sum(s.drops for s in self.subs.values()),
                    "refusals": sum(s.refusals for s in self.subs.values()),
                    "gap_samples": self.gap_samples,
                    "cpu_s": cpu,
                    "traced": pack_traced(self.traced),
                },
            )
        )


def _worker_entry(p: LoadParams, ks: list[int], conn: Connection) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    # The imports (aiohttp, numpy, pandas) leave a heap of long-lived objects; a full
    # (generation 2) collection walking them stalled every subscriber of this process for
    # 60-160 ms once per run, which was most of the measured p99. Freeze them first.
    gc.collect()
    gc.freeze()
    asyncio.run(_Worker(p, ks).main(conn))


# --- the run ------------------------------------------------------------------------------
def _run_blocking(coro: Any) -> Any:
    """``asyncio.run(coro)``, also from a thread whose loop is running (e.g. a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def run_load(p: LoadParams, progress: bool = True) -> RunResult:
    """Run one load test against a live server; the summary is measured, never simulated.

    The server is probed first (``GET /healthz``, a few seconds at most): if nothing
    answers at ``p.url``, :class:`~rtsim.live.errors.ServerUnreachableError` is raised
    before any worker process starts.
    """
    require_server(p.url, hint="start one with `rtsim serve` or check --url")
    if p.publisher_url != p.url:
        require_server(p.publisher_url, hint="start one with `rtsim serve` or check publish_url")
    n_proc = p.processes or min(os.cpu_count() or 1, max(1, p.subscribers // 100))
    n_proc = max(1, min(n_proc, p.subscribers))
    ctx = mp.get_context("spawn")
    groups = [list(range(i, p.subscribers, n_proc)) for i in range(n_proc)]
    procs, conns = [], []
    for ks in groups:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker_entry, args=(p, ks, child), daemon=True)
        proc.start()
        procs.append(proc)
        conns.append(parent)
    try:
        setup_errors = 0
        for c in conns:
            try:
                if not c.poll(p.connect_timeout_s + 30):
                    raise RuntimeError("a load worker did not get its subscribers ready")
                _tag, errs = c.recv()
            except EOFError:
                raise RuntimeError(
                    "a load worker exited before its subscribers were ready"
                ) from None
            setup_errors += errs
        time.sleep(0.3)  # let the last subscribe frames reach the server
        rss0, cpu0 = server_stats(p)
        busy0, wall0 = machine_busy_s(), time.monotonic()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t_start = time.monotonic()
        gc.freeze()  # the caller's heap (a notebook's) out of the publisher's collections
        try:
            pub = _run_blocking(publish_load(p, progress))
            sent, late = pub.sent, pub.late_s
        finally:
            gc.unfreeze()
        ru_pub = resource.getrusage(resource.RUSAGE_SELF)
        publish_wall = time.monotonic() - t_start
        for c in conns:
            c.send(("stop", sent))
        results = []
        for c in conns:
            if not c.poll(p.settle_s + 120):
                raise RuntimeError("a load worker did not report back")
            results.append(c.recv()[1])
        rss1, cpu1 = server_stats(p)
        busy1, wall1 = machine_busy_s(), time.monotonic()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()

    hist = new_latency_histogram()
    per_channel_sent = np.bincount(np.arange(sent) % p.channels, minlength=p.channels)
    expected = delivered = dups = degraded = 0
    errors: list[str] = []
    for r in results:
        hist.add(decode_histogram(r["hist"]))
        errors += r["errors"]
        for k, (_ch, unique, d, was_degraded) in r["subs"].items():
            expected += int(per_channel_sent[int(k) % p.channels])
            delivered += unique
            dups += d
            degraded += int(was_degraded)
    traced = [t for r in results for t in unpack_traced(r["traced"])]
    stages = stage_frame(traced, server_stages(p)) if traced else stage_frame([], {})
    subscribers_cpu = sum(r["cpu_s"] for r in results)
    gen_cpu = subscribers_cpu + (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    server_cpu = (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None
    other_cores = None  # unknown without /proc/stat or the server's CPU
    if busy0 is not None and busy1 is not None and server_cpu is not None:
        other_cores = max(busy1 - busy0 - server_cpu - gen_cpu, 0.0) / (wall1 - wall0)
    extra = {
        "expected": expected,
        "delivered": delivered,
        "duplicates": dups,
        "degraded_clients": degraded,  # sent to polling by an overloaded server (C20)
        # Subscriber connections that ended and resumed from their cursor, and attempts
        # refused with 429/503 and retried after Retry-After.
        "subscriber_drops": sum(r.get("drops", 0) for r in results),
        "subscriber_refusals": sum(r.get("refusals", 0) for r in results),
        # The publisher's dials refused with 429/503 and publishes refused and sent again.
        "publisher_refused_connects": pub.refused_connects,
        "publisher_refused_publishes": pub.refused_publishes,
        "published": sent,
        "publisher_late_max_ms": late * 1000,
        "publish_wall_s": publish_wall,
        "server_rss_bytes": rss1,
        "server_rss_connected_bytes": rss0,  # all subscribers connected, nothing published
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_delivery": (server_cpu / delivered * 1e6)
        if server_cpu is not None and delivered
        else None,
        "loadgen_cpu_s": gen_cpu,
        # Cores other work took meanwhile (/proc/stat less the run's own CPU): what it lacked.
        "other_cpu_cores": other_cores,
        # The load generator's CPU (subscribers and publisher) per delivery, µs: below the
        # server's when the generator is not what limits the run.
        "loadgen_cpu_us_per_delivery": gen_cpu / delivered * 1e6 if delivered else None,
        "loadgen_subscribers_cpu_s": subscribers_cpu,
        "loadgen_ws_client": p.load_client,  # the subscribers' library (any transport)
        # The publisher's share (this process, while publishing).
        "publisher_cpu_s": (ru_pub.ru_utime - ru0.ru_utime) + (ru_pub.ru_stime - ru0.ru_stime),
        "loadgen_processes": n_proc,
        "errors": sum(r["n_errors"] for r in results) + setup_errors,
        # Gaps the server reported (trimmed replay, or an epoch change: a restarted server).
        "gaps": sum(r["gaps"] for r in results),
        "gap_samples": [g for r in results for g in r["gap_samples"]][:5],
        "error_samples": errors[:5],
        "traced_deliveries": len(traced),
        "stages": stage_summary(stages),  # p50/p99 per stage of the traced deliveries
    }
    summary = Summary.from_histogram(
        hist,
        duration_s=p.duration_s,
        connections=p.subscribers - p.kill_before_publish,
        server_memory_bytes=rss1 if rss1 is not None else math.nan,
        lost=expected - delivered,
        extra=extra,
    )
    # The per-delivery frame holds the traced deliveries' stages (ms), one row each.
    return RunResult(params=p.as_dict(), deliveries=stages, summary=summary, source="measured")


def capacity_search(
    p: LoadParams,
    rates: Sequence[float],
    sla_p95_ms: float = 250.0,
    progress: bool = False,
) -> pd.DataFrame:
    """Step the publish rate until p95 exceeds ``sla_p95_ms``; one row per step."""
    if not sla_p95_ms > 0:
        raise ValueError(f"sla_p95_ms must be > 0, got {sla_p95_ms}")
    rows = []
    for rate in sorted(rates):
        r = run_load(replace(p, rate=float(rate), run_id=uuid.uuid4().hex[:8]), progress)
        s = r.summary
        rows.append(
            {
                "rate": rate,
                "deliveries_per_s": s.deliveries_per_s,
                "p50_ms": s.p50_ms,
                "p95_ms": s.p95_ms,
                "p99_ms": s.p99_ms,
                "lost": s.lost,
                "within_sla": s.p95_ms <= sla_p95_ms and s.lost == 0,
            }
        )
        if not rows[-1]["within_sla"]:
            break
    return pd.DataFrame(rows)
