"""The article's 5-step notification architecture, at full size (claims C11, C19).

1. application servers publish every event to one broker stream (Poisson, per-user
   notifications at ``user_rate`` per user, plus ``topics`` broadcast channels);
2. ``instances`` real-time service instances consume the stream and hold the client
   connections (each instance is one core: decode every message, then write one frame per
   local subscriber — a FIFO queue);
3. every client subscribes to its own authenticated channel ``user:<id>``, one topic
   (client ``c`` follows topic ``c % topics``) and, if ``broadcast_rate > 0``, the one
   broadcast channel every client follows;
4. each instance routes a message to its local subscribers of that channel;
5. a client that drops (``disconnects_per_hour`` while it is connected, never again while
   it is down; plus one scripted fault: instance 0 restarts at ``fault_at_s`` for
   ``restart_s``, its clients reconnect with backoff to the other instances) resumes from
   its last event id: the instance replays from the broker's log if the broker keeps one
   and the entry is still held (``max_len``); Redis Pub/Sub has nothing to replay from, so
   those messages are lost.

Two engines compute the same model: ``mode="bulk"`` (the default,
:mod:`rtsim.sim.architecture_bulk`: FIFO stations via
:func:`rtsim.sim.queueing.fifo_station`, then deliveries channel by channel as numpy
arrays, latencies streamed into HdrHistogram) runs 1,000,000 clients × 600 s in under a
minute, in one process or partitioned by channel across a Dask cluster with the same
results; ``mode="events"`` runs one SimPy process per message and per delivery and
replays through the core :class:`~rtsim.core.replaylog.ReplayLog`. Tests check that both
agree on a 2,000-client case. The inputs both draw are in
:mod:`rtsim.sim.architecture_world`.

The parameters, with their bounds, units and sources, are in
:mod:`rtsim.sim.architecture_params`; :class:`ArchitectureParams` and
:data:`DEFAULTS_SOURCES` are importable from here too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import simpy

from ..core.replaylog import ReplayLog
from ..core.results import RunResult, Summary
from . import architecture_bulk as bulk
from .architecture_bulk import Outcome, subscribers
from .architecture_params import DEFAULTS_SOURCES, ArchitectureParams
from .architecture_world import World, draw_world
from .brokers import Broker
from .seeding import children

__all__ = [
    "DEFAULTS_SOURCES",
    "ArchitectureParams",
    "run_bulk",
    "run_events",
    "simulate_architecture",
]


def _expected(p: ArchitectureParams, w: World) -> int:
    """How many (message, subscriber) pairs should be delivered."""
    n = p.clients
    return int(
        sum(len(subscribers(p, int(ch))) for ch in w.channel[w.channel >= n].tolist())
        + np.count_nonzero(w.channel < n)
    )


def _events(p: ArchitectureParams, w: World, rng: np.random.Generator) -> Outcome:
    """The same model with one SimPy process per message and per delivery."""
    n, k = p.clients, p.instances
    dc = p.dc_transit_ms / 1000.0
    dec, wr = p.cpu_decode_us * 1e-6, p.cpu_write_us * 1e-6
    env = simpy.Environment()
    broker = simpy.Resource(env, capacity=p.prof.servers)
    cpus = [simpy.Resource(env, capacity=1) for _ in range(k)]
    durable = p.prof.durable
    log = ReplayLog(max_len=p.max_len if p.broker is not Broker.KAFKA else 2**62)
    got: set[tuple[int, int]] = set()
    last_id = np.zeros(n, dtype=np.int64)
    rows: list[tuple[int, int, float, bool]] = []
    sid_of: dict[int, int] = {}
    backlog = [0, 0]
    cl = w.clients

    def online(c: int, t: float) -> bool:
        return bool(np.isnan(cl.outage_end(np.array([c]), t))[0])

    def deliver(c: int, m: int, at: float, replayed: bool) -> Any:
        yield env.timeout(at - env.now)
        if (m, c) in got:
            return
        got.add((m, c))
        if not replayed:
            last_id[c] = max(last_id[c], sid_of[m])
        rows.append((c, m, at - w.t_pub[m], replayed))

    def fan_out(m: int, j: int) -> Any:
        subs = subscribers(p, int(w.channel[m]))
        now = env.now
        local = [
            int(c) for c in subs if cl.instance_of(np.array([c]), now)[0] == j and online(c, now)
        ]
        backlog[1] = max(backlog[1], len(cpus[j].queue) + cpus[j].count + 1)
        with cpus[j].request() as req:
            yield req
            yield env.timeout(dec)
            for c in rng.permutation(local).tolist() if len(local) > 1 else local:
                yield env.timeout(wr)
                if online(c, env.now):
                    tr = p.rtt_ms / 2000.0 + rng.exponential(p.jitter_ms / 1000.0 or 1e-300)
                    env.process(deliver(c, m, env.now + tr, False))

    def message(m: int) -> Any:
        yield env.timeout(w.send[m] - env.now)
        backlog[0] = max(backlog[0], len(broker.queue) + broker.count + 1)
        with broker.request() as req:
            yield req
            yield env.timeout(w.service[m])
        if durable:
            sid_of[m] = int(log.append("stream", m, env.now).id)
        else:
            sid_of[m] = m + 1
        yield env.timeout(dc)
        for j in range(k):
            env.process(fan_out(m, j))

    def publisher() -> Any:
        for m in range(len(w.t_pub)):
            if w.send[m] > env.now:
                yield env.timeout(w.send[m] - env.now)
            env.process(message(m))

    def reconnect(c: int, end: float) -> Any:
        yield env.timeout(end - env.now)
        if not durable or not online(c, env.now):
            return
        res = log.read_after("stream", str(int(last_id[c])))
        mine = {c, n + c % p.topics} if p.topics else {c}
        if p.broadcast_rate > 0:
            mine.add(n + p.topics)
        at = env.now + 2 * dc
        for e in res.messages:
            m = int(e.data)
            if int(w.channel[m]) in mine and (m, c) not in got:
                tr = p.rtt_ms / 2000.0 + rng.exponential(p.jitter_ms / 1000.0 or 1e-300)
                env.process(deliver(c, m, at + tr, True))

    env.process(publisher())
    for c, e in zip(cl.out_c.tolist(), cl.out_e.tolist(), strict=True):
        env.process(reconnect(c, e))
    env.run()
    expected = _expected(p, w)
    arr = np.array(rows, dtype=float).reshape(-1, 4)
    out = Outcome(
        expected=expected,
        lost=expected - len(rows),
        replayed=int(arr[:, 3].sum()),
        broker_backlog=backlog[0],
        instance_backlog=backlog[1],
        frame={
            "client": [arr[:, 0].astype(np.int64)],
            "message": [arr[:, 1].astype(np.int64)],
            "latency_s": [arr[:, 2]],
            "replayed": [arr[:, 3].astype(bool)],
        },
    )
    out.stream.record(arr[:, 2] * 1000.0)
    return out


def simulate_architecture(
    params: ArchitectureParams,
    seed: int | np.random.SeedSequence = 0,
    *,
    mode: str = "bulk",
    keep_deliveries: bool = False,
    client: Any = None,
) -> RunResult:
    """Run the architecture once; ``mode`` is ``"bulk"`` or ``"events"``.

    Latencies are streamed into HdrHistogram (the summary's percentiles; mean and max
    exact), so a run's memory does not grow with its deliveries. ``keep_deliveries=True``
    also returns the per-delivery frame (``RunResult.deliveries``: channel, message_id,
    client, transport, publish/receive time in s, latency_ms, replayed; one row per
    delivery, so ~40 B × deliveries); by default it is empty. ``client``: a
    ``dask.distributed.Client`` to deliver the channels on (bulk mode only); the result
    is identical to one process's for the same seed. Raises ``ValueError`` for an unknown
    mode, or a client with ``mode="events"``.
    """
    if mode not in ("bulk", "events"):
        raise ValueError(f"mode must be 'bulk' or 'events', got {mode!r}")
    if client is not None and mode != "bulk":
        raise ValueError("a Dask client runs the bulk engine only (mode='bulk')")
    world_seed, run_seed = children(seed, 2)
    w = draw_world(params, np.random.default_rng(world_seed))
    if mode == "bulk":
        out = bulk.run(params, w, run_seed, keep_deliveries, client)
    else:
        out = _events(params, w, np.random.default_rng(run_seed))
    return _result(params, w, out, mode, keep_deliveries)


def _result(p: ArchitectureParams, w: World, out: Outcome, mode: str, keep: bool) -> RunResult:
    n, k, cl = p.clients, p.instances, w.clients
    peak = np.bincount(cl.home, minlength=k).astype(np.int64)
    if p.fault_time is not None and k > 1:
        peak = peak + np.bincount(cl.new[cl.moved], minlength=k) * (np.arange(k) != 0)
    published = len(w.t_pub)
    s = out.stream
    summary = Summary.from_stream(
        s,
        duration_s=p.duration_s,
        wire_bytes=0.0,
        requests=0,
        connections=n,
        server_memory_bytes=0.0,
        lost=out.lost,
        extra={
            "broker": p.broker.value,
            "mode": mode,
            "clients": n,
            "instances": k,
            "published": published,
            "expected_deliveries": out.expected,
            "replayed": out.replayed,
            "lost_fraction": out.lost / max(1, out.expected),
            "fan_out_ratio": s.count / max(1, published),
            "max_broker_backlog": out.broker_backlog,
            "max_instance_backlog": out.instance_backlog,
            "disconnects": len(cl.out_c),
            "peak_connections_per_instance": int(peak.max()),
        },
    )
    summary.extra["p50_target_met"] = bool(summary.p50_ms < 50) if s.count else False
    summary.extra["p99_target_met"] = bool(summary.p99_ms < 500) if s.count else False
    df = _frame(p, w, out) if keep else pd.DataFrame()
    return RunResult(params=p.as_dict(), deliveries=df, summary=summary)


def _frame(p: ArchitectureParams, w: World, out: Outcome) -> pd.DataFrame:
    """The per-delivery frame of the kept arrays."""
    n = p.clients
    a = out.arrays()
    msg = a["message"]
    ch = w.channel[msg]
    return pd.DataFrame(
        {
            "channel": pd.Categorical(
                np.where(
                    ch < n,
                    "user",
                    np.where(ch - n < p.topics, "topic:" + (ch - n).astype(str), "broadcast"),
                )
            ),
            "message_id": msg + 1,
            "client": a["client"],
            "transport": "websocket",
            "publish_time": w.t_pub[msg],
            "receive_time": w.t_pub[msg] + a["latency_s"],
            "latency_ms": a["latency_s"] * 1000.0,
            "replayed": a["replayed"],
        }
    )


def run_bulk(params: ArchitectureParams, seed: np.random.SeedSequence) -> RunResult:
    """``simulate_architecture`` in bulk mode, for :func:`rtsim.sim.runner.replicate`."""
    return simulate_architecture(params, seed, mode="bulk", keep_deliveries=False)


def run_events(params: ArchitectureParams, seed: np.random.SeedSequence) -> RunResult:
    """``simulate_architecture`` in per-event mode, for :func:`rtsim.sim.runner.replicate`."""
    return simulate_architecture(params, seed, mode="events", keep_deliveries=False)
