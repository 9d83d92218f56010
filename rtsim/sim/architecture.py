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

Two engines compute the same model: ``mode="bulk"`` (the default; FIFO stations via
:func:`rtsim.sim.queueing.fifo_station`, and every fan-out as one numpy array of
per-subscriber delays) runs 100,000 clients × 600 s in seconds; ``mode="events"`` runs
one SimPy process per message and per delivery and replays through the core
:class:`~rtsim.core.replaylog.ReplayLog`. Tests check that both agree on a 2,000-client case.

The parameters, with their bounds, units and sources, are in
:mod:`rtsim.sim.architecture_params`; :class:`ArchitectureParams` and
:data:`DEFAULTS_SOURCES` are importable from here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import simpy

from ..core.backoff import Backoff
from ..core.replaylog import ReplayLog
from ..core.results import RunResult, Summary, percentile
from .architecture_params import DEFAULTS_SOURCES, ArchitectureParams
from .brokers import Broker
from .queueing import fifo_station, number_in_system
from .seeding import children

__all__ = [
    "DEFAULTS_SOURCES",
    "ArchitectureParams",
    "run_bulk",
    "run_events",
    "simulate_architecture",
]


@dataclass
class _World:
    """Inputs shared by both engines (drawn from the same seeds)."""

    t_pub: np.ndarray  # publish times, sorted
    channel: np.ndarray  # < clients: user channel of that client; else clients + topic
    send: np.ndarray  # arrival at the broker (after producer batching)
    service: np.ndarray  # broker service time per message
    home: np.ndarray  # instance of each client before the fault
    moved: np.ndarray  # bool: client of the restarted instance
    new: np.ndarray  # instance after reconnecting (== home if not moved)
    back_at: np.ndarray  # reconnect time of moved clients (inf otherwise)
    out_c: np.ndarray  # outages, sorted by (client, start)
    out_s: np.ndarray
    out_e: np.ndarray
    span: float

    def instance_of(self, c: np.ndarray, t: np.ndarray | float) -> np.ndarray:
        out: np.ndarray = np.where(
            self.moved[c] & (t >= self.back_at[c]), self.new[c], self.home[c]
        )
        return out

    def outage_end(self, c: np.ndarray, t: np.ndarray | float) -> np.ndarray:
        """End of the outage client ``c`` is in at ``t``, or NaN if it is online."""
        if len(self.out_c) == 0:  # no drops and no fault: everyone is always online
            none: np.ndarray = np.full(np.broadcast(c, t).shape, np.nan)
            return none
        keys = self.out_c * self.span + self.out_s
        q = c * self.span + np.asarray(t, dtype=float)
        i = np.searchsorted(keys, q, side="right") - 1
        ok = i >= 0
        j = np.where(ok, i, 0)
        inside = ok & (self.out_c[j] == c) & (q < self.out_c[j] * self.span + self.out_e[j])
        out: np.ndarray = np.where(inside, self.out_e[j], np.nan)
        return out


def _world(p: ArchitectureParams, rng: np.random.Generator) -> _World:
    T, n, k = p.duration_s, p.clients, p.instances
    # 1. publishers
    n_user = rng.poisson(p.user_rate * n * T) if p.user_rate > 0 else 0
    parts_t = [rng.uniform(0, T, n_user)]
    parts_c = [rng.integers(0, n, n_user)]
    for topic in range(p.topics if p.topic_rate > 0 else 0):
        m = rng.poisson(p.topic_rate * T)
        parts_t.append(rng.uniform(0, T, m))
        parts_c.append(np.full(m, n + topic))
    if p.broadcast_rate > 0:  # one channel every client follows (after the topics)
        m = rng.poisson(p.broadcast_rate * T)
        parts_t.append(rng.uniform(0, T, m))
        parts_c.append(np.full(m, n + p.topics))
    t_pub = np.concatenate(parts_t)
    ch = np.concatenate(parts_c).astype(np.int64)
    order = np.argsort(t_pub, kind="stable")
    t_pub, ch = t_pub[order], ch[order]
    dc = p.dc_transit_ms / 1000.0
    prof = p.prof
    per_msg = np.full(len(t_pub), prof.publish_us + prof.per_subscriber_us * k)
    if p.broker is Broker.KAFKA:
        send, size = _linger(t_pub, ch % p.partitions, p.linger_ms / 1000.0)
        per_msg = per_msg + prof.batch_us / size
    else:
        send = t_pub.copy()
    order = np.argsort(send, kind="stable")
    t_pub, ch, send, per_msg = t_pub[order], ch[order], send[order] + dc, per_msg[order]
    service = rng.exponential(1.0, len(t_pub)) * per_msg * 1e-6
    # 2–3. clients on instances; outages (random drops, and the fault)
    home = np.arange(n) % k
    rng.shuffle(home)
    rtt = p.rtt_ms / 1000.0
    setup = 3 * rtt
    moved = np.zeros(n, dtype=bool)
    new = home.copy()
    back_at = np.full(n, np.inf)
    tf = p.fault_time
    if tf is not None:
        moved = home == 0
        m = int(moved.sum())
        up = tf + p.restart_s
        t = tf + _backoff(p.backoff, rng, m)
        attempt = 1
        while k == 1 and np.any(t < up):  # only one instance: retry until it is back
            late = t < up
            t[late] += np.array([p.backoff.delay(attempt, rng) for _ in range(int(late.sum()))])
            attempt += 1
        back_at[moved] = t + setup
        if k > 1:
            new[moved] = rng.integers(1, k, m)
    drop_c, drop_s, drop_e = _outages(p, rng, setup, moved, back_at)
    span = 10.0 * (T + 3600.0)
    o = np.lexsort((drop_s, drop_c))
    return _World(
        t_pub=t_pub,
        channel=ch,
        send=send,
        service=service,
        home=home,
        moved=moved,
        new=new,
        back_at=back_at,
        out_c=drop_c[o],
        out_s=drop_s[o],
        out_e=drop_e[o],
        span=span,
    )


def _outages(
    p: ArchitectureParams,
    rng: np.random.Generator,
    setup: float,
    moved: np.ndarray,
    back_at: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every client's outages ``(client, start, end)``, never overlapping for one client.

    Only a connected client drops: it stays up an exponential time of mean 1 / rate
    (``disconnects_per_hour`` / 3600 per second), then is down for the backoff delay plus
    ``setup``, then is up again, and so on (an alternating renewal process: about
    ``duration / (1 / rate + mean downtime)`` drops per client). A client of the restarted
    instance (``moved``) that is up at the fault goes down then and is back at ``back_at``;
    one that is already down at the fault stays down until both its own reconnect and
    ``back_at`` (one outage).
    """
    T, n, tf = p.duration_s, p.clients, p.fault_time
    rate = p.disconnects_per_hour / 3600.0
    fault_pending = moved.copy()  # the fault has not hit these clients yet
    in_fault_outage = np.zeros(n, dtype=bool)  # a random outage absorbed the fault
    cs: list[np.ndarray] = []
    ss: list[np.ndarray] = []
    es: list[np.ndarray] = []
    t = np.zeros(n)  # when each client is (back) up
    live = np.arange(n) if rate > 0 else np.zeros(0, dtype=np.int64)
    while len(live):
        s = t[live] + rng.exponential(1.0 / rate, len(live))
        faulted = np.zeros(len(live), dtype=bool)
        if tf is not None:
            faulted = fault_pending[live] & (s >= tf)  # up at the fault: it drops them
            f = live[faulted]
            fault_pending[f] = False
            t[f] = back_at[f]
        drop = ~faulted & (s < T)
        d, sd = live[drop], s[drop]
        ed = sd + _backoff(p.backoff, rng, len(d)) + setup
        if tf is not None:
            absorb = fault_pending[d] & (ed > tf)  # down at the fault (sd < tf here)
            ed[absorb] = np.maximum(ed[absorb], back_at[d[absorb]])
            fault_pending[d[absorb]] = False
            in_fault_outage[d[absorb]] = True
        cs.append(d)
        ss.append(sd)
        es.append(ed)
        t[d] = ed
        live = np.concatenate([d, live[faulted]])
        live = live[t[live] < T]
    if tf is not None:
        hit = np.flatnonzero(moved & ~in_fault_outage)
        cs.append(hit)
        ss.append(np.full(len(hit), tf))
        es.append(back_at[hit])
    if not cs:
        return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
    return np.concatenate(cs).astype(np.int64), np.concatenate(ss), np.concatenate(es)


def _backoff(b: Backoff, rng: np.random.Generator, n: int) -> np.ndarray:
    return np.array([b.delay(0, rng) for _ in range(n)]) if n else np.zeros(0)


def _linger(t: np.ndarray, part: np.ndarray, linger: float) -> tuple[np.ndarray, np.ndarray]:
    """Kafka producer batching: a batch opens at its first record and is sent ``linger`` later."""
    send = np.empty_like(t)
    size = np.empty_like(t)
    for q in np.unique(part):
        idx = np.flatnonzero(part == q)
        tq = t[idx]
        i = 0
        while i < len(idx):
            close = tq[i] + linger
            j = int(np.searchsorted(tq, close, side="right"))
            send[idx[i:j]] = close
            size[idx[i:j]] = j - i
            i = j
    return send, size


def _subscribers(p: ArchitectureParams, ch: int) -> np.ndarray:
    if ch < p.clients:
        return np.array([ch])
    if ch - p.clients >= p.topics:  # the broadcast channel
        return np.arange(p.clients)
    return np.arange(ch - p.clients, p.clients, p.topics)


def _held(
    p: ArchitectureParams, t_broker: np.ndarray, idx: np.ndarray, at: np.ndarray
) -> np.ndarray:
    """Is stream entry ``idx`` still in the log at time ``at``?"""
    if not p.prof.durable:
        return np.zeros(len(idx), dtype=bool)
    if p.broker is Broker.KAFKA:
        return np.ones(len(idx), dtype=bool)
    appended = np.searchsorted(t_broker, at, side="right")
    out: np.ndarray = appended - idx <= p.max_len
    return out


def _bulk(p: ArchitectureParams, w: _World, rng: np.random.Generator) -> dict[str, Any]:
    n, k = p.clients, p.instances
    dc = p.dc_transit_ms / 1000.0
    _, t_b = fifo_station(w.send, w.service, p.prof.servers)
    broker_backlog = int(number_in_system(w.send, t_b).max()) if len(t_b) else 0
    at_inst = t_b + dc
    dec, wr = p.cpu_decode_us * 1e-6, p.cpu_write_us * 1e-6
    is_user = w.channel < n
    # Who each message is written to, per instance (user messages: one client).
    uc = w.channel[is_user]
    u_inst = w.instance_of(uc, at_inst[is_user])
    u_on = np.isnan(w.outage_end(uc, at_inst[is_user]))
    counts = np.zeros((len(t_b), k))
    counts[np.flatnonzero(is_user)[u_on], u_inst[u_on]] = 1
    topic_idx = np.flatnonzero(~is_user)
    topic_subs: list[tuple[np.ndarray, np.ndarray]] = []
    for m in topic_idx.tolist():
        subs = _subscribers(p, int(w.channel[m]))
        inst = w.instance_of(subs, at_inst[m])
        on = np.isnan(w.outage_end(subs, at_inst[m]))
        subs, inst = subs[on], inst[on]
        order = rng.permutation(len(subs))
        subs, inst = subs[order], inst[order]
        counts[m] = np.bincount(inst, minlength=k)
        topic_subs.append((subs, inst))
    start = np.empty((len(t_b), k))
    inst_backlog = 0
    for j in range(k):
        work = dec + counts[:, j] * wr
        s, f = fifo_station(at_inst, work, 1)
        start[:, j] = s
        if len(f):
            inst_backlog = max(inst_backlog, int(number_in_system(at_inst, f).max()))
    # write times
    wc = [uc[u_on]]
    wm = [np.flatnonzero(is_user)[u_on]]
    wt = [start[wm[0], u_inst[u_on]] + dec + wr]
    for m, (subs, inst) in zip(topic_idx.tolist(), topic_subs, strict=True):
        pos = np.zeros(len(subs))
        for j in range(k):
            sel = inst == j
            pos[sel] = np.arange(1, int(sel.sum()) + 1)
        wc.append(subs)
        wm.append(np.full(len(subs), m))
        wt.append(start[m, inst] + dec + pos * wr)
    cli = np.concatenate(wc)
    msg = np.concatenate(wm)
    wtime = np.concatenate(wt)
    end_at_write = w.outage_end(cli, wtime)
    live = np.isnan(end_at_write)
    transit = p.rtt_ms / 2000.0 + rng.exponential(p.jitter_ms / 1000.0 or 1e-300, len(cli))
    rx = wtime + transit
    # missed: every (message, subscriber) not written live
    exp_c, exp_m = _expected(p, w)
    key_all = exp_m * n + exp_c
    key_live = msg[live] * n + cli[live]
    missed = ~np.isin(key_all, key_live)
    mc, mm = exp_c[missed], exp_m[missed]
    at = np.maximum(at_inst[mm], 0.0)
    r_end = w.outage_end(mc, at)
    # written while online at arrival but the client dropped before its write: end at write
    wr_end = np.full(len(mc), np.nan)
    if np.any(~live):
        dk = msg[~live] * n + cli[~live]
        srt = np.argsort(dk)
        pos_ = np.searchsorted(dk[srt], mm * n + mc)
        pos_ = np.clip(pos_, 0, len(dk) - 1)
        hit = dk[srt][pos_] == mm * n + mc
        wr_end[hit] = end_at_write[~live][srt][pos_[hit]]
    r_end = np.where(np.isnan(r_end), wr_end, r_end)
    r_end = np.where(np.isnan(r_end), at, r_end)
    held = _held(p, t_b, mm, r_end)
    replay_rx = (
        r_end
        + 2 * dc
        + p.rtt_ms / 2000.0
        + rng.exponential(p.jitter_ms / 1000.0 or 1e-300, len(mc))
    )
    lat = np.concatenate([rx[live] - w.t_pub[msg[live]], replay_rx[held] - w.t_pub[mm[held]]])
    return {
        "latency_s": lat,
        "client": np.concatenate([cli[live], mc[held]]),
        "message": np.concatenate([msg[live], mm[held]]),
        "replayed": np.concatenate(
            [np.zeros(int(live.sum()), bool), np.ones(int(held.sum()), bool)]
        ),
        "expected": len(exp_c),
        "lost": int((~held).sum()),
        "broker_backlog": broker_backlog,
        "instance_backlog": inst_backlog,
        "t_broker": t_b,
    }


def _expected(p: ArchitectureParams, w: _World) -> tuple[np.ndarray, np.ndarray]:
    """Every (client, message) pair that should be delivered."""
    n = p.clients
    is_user = w.channel < n
    cs = [w.channel[is_user]]
    ms = [np.flatnonzero(is_user)]
    for m in np.flatnonzero(~is_user).tolist():
        subs = _subscribers(p, int(w.channel[m]))
        cs.append(subs)
        ms.append(np.full(len(subs), m))
    return np.concatenate(cs), np.concatenate(ms)


def _events(p: ArchitectureParams, w: _World, rng: np.random.Generator) -> dict[str, Any]:
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
    t_broker = np.full(len(w.t_pub), np.nan)
    sid_of: dict[int, int] = {}
    backlog = [0, 0]

    def online(c: int, t: float) -> bool:
        return bool(np.isnan(w.outage_end(np.array([c]), t))[0])

    def deliver(c: int, m: int, at: float, replayed: bool) -> Any:
        yield env.timeout(at - env.now)
        if (m, c) in got:
            return
        got.add((m, c))
        if not replayed:
            last_id[c] = max(last_id[c], sid_of[m])
        rows.append((c, m, at - w.t_pub[m], replayed))

    def fan_out(m: int, j: int) -> Any:
        subs = _subscribers(p, int(w.channel[m]))
        now = env.now
        local = [
            int(c) for c in subs if w.instance_of(np.array([c]), now)[0] == j and online(c, now)
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
        t_broker[m] = env.now
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
    for c, e in zip(w.out_c.tolist(), w.out_e.tolist(), strict=True):
        env.process(reconnect(c, e))
    env.run()
    exp_c, _ = _expected(p, w)
    arr = np.array(rows, dtype=float).reshape(-1, 4)
    return {
        "latency_s": arr[:, 2],
        "client": arr[:, 0].astype(np.int64),
        "message": arr[:, 1].astype(np.int64),
        "replayed": arr[:, 3].astype(bool),
        "expected": len(exp_c),
        "lost": len(exp_c) - len(rows),
        "broker_backlog": backlog[0],
        "instance_backlog": backlog[1],
        "t_broker": t_broker,
    }


def simulate_architecture(
    params: ArchitectureParams,
    seed: int | np.random.SeedSequence = 0,
    *,
    mode: str = "bulk",
    keep_deliveries: bool = True,
) -> RunResult:
    """Run the architecture once; ``mode`` is ``"bulk"`` or ``"events"``.

    ``keep_deliveries=False`` skips building the per-delivery frame (the summary is the
    same); the CLI uses it at full size.
    """
    if mode not in ("bulk", "events"):
        raise ValueError(f"mode must be 'bulk' or 'events', got {mode!r}")
    world_seed, run_seed = children(seed, 2)
    w = _world(params, np.random.default_rng(world_seed))
    rng = np.random.default_rng(run_seed)
    out = _bulk(params, w, rng) if mode == "bulk" else _events(params, w, rng)
    return _result(params, w, out, mode, keep_deliveries)


def _result(
    p: ArchitectureParams, w: _World, out: dict[str, Any], mode: str, keep: bool
) -> RunResult:
    lat_ms = out["latency_s"] * 1000.0
    n, k = p.clients, p.instances
    peak = np.bincount(w.home, minlength=k).astype(np.int64)
    if p.fault_time is not None and k > 1:
        peak = peak + np.bincount(w.new[w.moved], minlength=k) * (np.arange(k) != 0)
    published = len(w.t_pub)
    summary = Summary.from_latencies(
        lat_ms,
        duration_s=p.duration_s,
        wire_bytes=0.0,
        requests=0,
        connections=n,
        server_memory_bytes=0.0,
        lost=int(out["lost"]),
        extra={
            "broker": p.broker.value,
            "mode": mode,
            "clients": n,
            "instances": k,
            "published": published,
            "expected_deliveries": int(out["expected"]),
            "replayed": int(np.sum(out["replayed"])),
            "lost_fraction": out["lost"] / max(1, out["expected"]),
            "fan_out_ratio": len(lat_ms) / max(1, published),
            "max_broker_backlog": int(out["broker_backlog"]),
            "max_instance_backlog": int(out["instance_backlog"]),
            "disconnects": len(w.out_c),
            "peak_connections_per_instance": int(peak.max()),
            "p50_target_met": bool(percentile(lat_ms, 50) < 50) if len(lat_ms) else False,
            "p99_target_met": bool(percentile(lat_ms, 99) < 500) if len(lat_ms) else False,
        },
    )
    if keep:
        msg = out["message"]
        ch = w.channel[msg]
        df = pd.DataFrame(
            {
                "channel": pd.Categorical(
                    np.where(
                        ch < n,
                        "user",
                        np.where(ch - n < p.topics, "topic:" + (ch - n).astype(str), "broadcast"),
                    )
                ),
                "message_id": msg + 1,
                "client": out["client"],
                "transport": "websocket",
                "publish_time": w.t_pub[msg],
                "receive_time": w.t_pub[msg] + out["latency_s"],
                "latency_ms": lat_ms,
                "replayed": out["replayed"],
            }
        )
    else:
        df = pd.DataFrame()
    return RunResult(params=p.as_dict(), deliveries=df, summary=summary)


def run_bulk(params: ArchitectureParams, seed: np.random.SeedSequence) -> RunResult:
    """``simulate_architecture`` in bulk mode, for :func:`rtsim.sim.runner.replicate`."""
    return simulate_architecture(params, seed, mode="bulk", keep_deliveries=False)


def run_events(params: ArchitectureParams, seed: np.random.SeedSequence) -> RunResult:
    """``simulate_architecture`` in per-event mode, for :func:`rtsim.sim.runner.replicate`."""
    return simulate_architecture(params, seed, mode="events", keep_deliveries=False)
