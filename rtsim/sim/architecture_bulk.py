"""The bulk engine of the architecture model: stations in bulk, deliveries by channel.

A run has two stages.

1. **Stations** (:func:`stations`, one process, O(messages)): the broker is one FIFO
   station over every message; each instance is one FIFO station that decodes every
   message and writes one frame per local, connected subscriber, so it needs only how
   many subscribers of each message it holds (user messages: 0 or 1; topic and broadcast
   messages: a count per instance). Both via :func:`rtsim.sim.queueing.fifo_station`.
2. **Deliveries** by channel (:func:`deliver`, O(deliveries)): the channels are cut into
   fixed :class:`Shard` s — user channels in blocks of :data:`BLOCK` clients, one shard
   per topic and one for the broadcast channel — and each shard computes who got which
   message live, who missed it, and who got it replayed from the broker's log, with its
   own generator (child ``i`` of the run's seed for shard ``i``). Latencies go straight
   into a :class:`~rtsim.core.results.LatencyStream`; per-delivery arrays are kept only
   when asked for. Shards depend only on their own inputs and seed, so running them on a
   ``dask.distributed`` cluster (``client=``) gives exactly what one process gives:
   their outcomes are merged in shard order either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.results import LatencyStream
from .architecture_params import ArchitectureParams
from .architecture_world import Clients, World
from .brokers import Broker
from .queueing import fifo_station, number_in_system
from .seeding import children

__all__ = [
    "BLOCK",
    "Outcome",
    "Shard",
    "Stations",
    "deliver",
    "n_shards",
    "run",
    "shards",
    "stations",
    "subscribers",
]

#: User channels per shard (clients ``[i * BLOCK, (i + 1) * BLOCK)``): a model constant,
#: since each shard draws from its own seed (changing it changes the draws).
BLOCK = 1 << 16


@dataclass
class Outcome:
    """What a run (or one shard of it) delivered.

    ``stream``: every delivery's latency (ms); ``expected``: (message, subscriber) pairs
    that should be delivered; ``lost``: those never delivered; ``replayed``: those
    delivered from the broker's log after a reconnect; ``frame``: per-delivery arrays
    (``client``, ``message``, ``latency_s``, ``replayed``) when kept, else empty.
    """

    stream: LatencyStream = field(default_factory=LatencyStream)
    expected: int = 0
    lost: int = 0
    replayed: int = 0
    broker_backlog: int = 0
    instance_backlog: int = 0
    frame: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, other: Outcome) -> None:
        """Merge ``other`` (the next shard) into this outcome."""
        self.stream.merge(other.stream)
        self.expected += other.expected
        self.lost += other.lost
        self.replayed += other.replayed
        for key, parts in other.frame.items():
            self.frame.setdefault(key, []).extend(parts)

    def arrays(self) -> dict[str, np.ndarray]:
        """The kept per-delivery arrays, concatenated in shard order."""
        empty = {"client": np.int64, "message": np.int64, "latency_s": float, "replayed": bool}
        return {
            key: np.concatenate(self.frame[key]) if self.frame.get(key) else np.zeros(0, dt)
            for key, dt in empty.items()
        }


@dataclass(frozen=True)
class Stations:
    """Per-message results of the stations that every shard reads.

    ``at_inst``: arrival at the instances (s); ``write``: for user messages, when the
    frame is written (NaN if the client was down when the message arrived); ``evict``:
    when the broker's log drops the entry (inf: never; -inf: never held);
    ``topic_start``: for each non-user message (in message order), when each instance
    starts on it (rows × instances).
    """

    at_inst: np.ndarray
    write: np.ndarray
    evict: np.ndarray
    topic_start: np.ndarray
    broker_backlog: int
    instance_backlog: int


@dataclass(frozen=True)
class Shard:
    """The messages of some channels, with what a worker needs to deliver them.

    ``messages``: message indices; ``client``: the recipient of each (user shards) or
    ``None`` (a topic or the broadcast channel: ``channel``); ``t_pub``, ``at_inst``,
    ``evict``: per message; ``write``: per message (user) or ``start`` per message and
    instance (the rest).
    """

    index: int
    messages: np.ndarray
    t_pub: np.ndarray
    at_inst: np.ndarray
    evict: np.ndarray
    client: np.ndarray | None = None
    write: np.ndarray | None = None
    channel: int = -1
    start: np.ndarray | None = None


def subscribers(p: ArchitectureParams, ch: int) -> np.ndarray:
    """The clients following channel ``ch`` (a user channel, a topic or the broadcast)."""
    if ch < p.clients:
        return np.array([ch])
    if ch - p.clients >= p.topics:  # the broadcast channel
        return np.arange(p.clients)
    return np.arange(ch - p.clients, p.clients, p.topics)


def stations(p: ArchitectureParams, w: World) -> Stations:
    """Stage 1: the broker and every instance as FIFO stations, in bulk."""
    n, k, cl = p.clients, p.instances, w.clients
    dc = p.dc_transit_ms / 1000.0
    _, t_b = fifo_station(w.send, w.service, p.prof.servers)
    broker_backlog = int(number_in_system(w.send, t_b).max()) if len(t_b) else 0
    at_inst = t_b + dc
    dec, wr = p.cpu_decode_us * 1e-6, p.cpu_write_us * 1e-6
    is_user = w.channel < n
    u_idx = np.flatnonzero(is_user)
    uc = w.channel[u_idx]
    u_at = at_inst[u_idx]
    u_inst = cl.instance_of(uc, u_at)
    u_on = np.isnan(cl.outage_end(uc, u_at))
    target = np.full(len(t_b), -1, dtype=np.min_scalar_type(-k))  # writes a user message
    target[u_idx[u_on]] = u_inst[u_on]
    del uc, u_at, u_on
    t_idx = np.flatnonzero(~is_user)
    del is_user
    counts = np.zeros((len(t_idx), k))
    for i, m in enumerate(t_idx.tolist()):
        subs = subscribers(p, int(w.channel[m]))
        on = np.isnan(cl.outage_end(subs, at_inst[m]))
        counts[i] = np.bincount(cl.instance_of(subs[on], at_inst[m]), minlength=k)
    start = np.full(len(t_b), np.nan)  # start of the job that writes a user message
    topic_start = np.empty((len(t_idx), k))
    inst_backlog = 0
    for j in range(k):
        mine = target == j
        work = np.full(len(t_b), dec)
        work[mine] = dec + wr
        work[t_idx] = dec + counts[:, j] * wr
        s, f = fifo_station(at_inst, work, 1)
        del work
        if len(f):
            inst_backlog = max(inst_backlog, int(number_in_system(at_inst, f).max()))
        del f
        np.copyto(start, s, where=mine)
        topic_start[:, j] = s[t_idx]
    write = start[u_idx] + dec + wr  # NaN where the client was down
    del start
    return Stations(
        at_inst=at_inst,
        write=write,
        evict=_evict(p, t_b),
        topic_start=topic_start,
        broker_backlog=broker_backlog,
        instance_backlog=inst_backlog,
    )


def _evict(p: ArchitectureParams, t_b: np.ndarray) -> np.ndarray:
    """When each message's log entry is trimmed: entry ``m`` is still held at ``t`` while
    at most ``m + max_len`` entries have been appended by ``t``."""
    if not p.prof.durable:
        return np.full(len(t_b), -np.inf)
    if p.broker is Broker.KAFKA:  # retention outlasts the run
        return np.full(len(t_b), np.inf)
    appended = np.sort(t_b)
    out = np.full(len(t_b), np.inf)
    out[: max(0, len(t_b) - p.max_len)] = appended[p.max_len :]
    return out


def n_shards(p: ArchitectureParams) -> int:
    """How many shards a run has: ``ceil(clients / BLOCK) + topics + 1``."""
    return -(-p.clients // BLOCK) + p.topics + 1


def shards(p: ArchitectureParams, w: World, st: Stations) -> Iterator[Shard]:
    """Stage 2's units, one at a time: user channels in blocks of :data:`BLOCK`, then
    each topic, then the broadcast channel (every shard exists, even with no message)."""
    n = p.clients
    u_idx = np.flatnonzero(w.channel < n)
    blocks = -(-n // BLOCK)
    block = w.channel[u_idx] // BLOCK
    order = np.argsort(block.astype(np.int16 if blocks < 2**15 else np.int64), kind="stable")
    edges = np.searchsorted(block[order], np.arange(blocks + 1))
    del block
    for b in range(blocks):
        sel = order[edges[b] : edges[b + 1]]
        m = u_idx[sel]
        yield Shard(
            b, m, w.t_pub[m], st.at_inst[m], st.evict[m], client=w.channel[m], write=st.write[sel]
        )
    del order, u_idx
    t_idx = np.flatnonzero(w.channel >= n)
    t_ch = w.channel[t_idx]
    for i, ch in enumerate(range(n, n + p.topics + 1)):
        sel = np.flatnonzero(t_ch == ch)
        m = t_idx[sel]
        yield Shard(
            blocks + i,
            m,
            w.t_pub[m],
            st.at_inst[m],
            st.evict[m],
            channel=ch,
            start=st.topic_start[sel],
        )


def deliver(
    p: ArchitectureParams,
    cl: Clients,
    shard: Shard,
    seed: np.random.SeedSequence,
    keep: bool,
) -> Outcome:
    """Stage 2 for one shard: live writes, misses and replays; latencies streamed."""
    rng = np.random.default_rng(seed)
    out = Outcome()
    if shard.client is not None and shard.write is not None:
        _deliver(p, cl, rng, out, keep, shard.messages, shard.client, shard.t_pub,
                 shard.at_inst, shard.write, shard.evict)  # fmt: skip
        return out
    assert shard.start is not None
    dec, wr = p.cpu_decode_us * 1e-6, p.cpu_write_us * 1e-6
    subs = subscribers(p, shard.channel)
    for i, m in enumerate(shard.messages.tolist()):
        at = shard.at_inst[i]
        on = np.isnan(cl.outage_end(subs, at))
        live = subs[on]
        inst = cl.instance_of(live, at)
        order = rng.permutation(len(live))  # each instance writes in a random order
        live, inst = live[order], inst[order]
        write = np.full(len(subs), np.nan)
        write[np.flatnonzero(on)[order]] = shard.start[i, inst] + dec + _rank(inst) * wr
        each = np.broadcast_to  # one value for every subscriber
        _deliver(p, cl, rng, out, keep, each(m, subs.shape), subs,
                 each(shard.t_pub[i], subs.shape), each(at, subs.shape), write,
                 each(shard.evict[i], subs.shape))  # fmt: skip
    return out


def _rank(inst: np.ndarray) -> np.ndarray:
    """1-based position of each entry among the entries with the same instance, in order."""
    order = np.argsort(inst, kind="stable")
    counts = np.bincount(inst)
    first = np.cumsum(counts) - counts
    rank = np.empty(len(inst))
    rank[order] = np.arange(1, len(inst) + 1) - np.repeat(first, counts)
    return rank


def _deliver(
    p: ArchitectureParams,
    cl: Clients,
    rng: np.random.Generator,
    out: Outcome,
    keep: bool,
    msg: np.ndarray,
    client: np.ndarray,
    t_pub: np.ndarray,
    at_inst: np.ndarray,
    write: np.ndarray,
    evict: np.ndarray,
) -> None:
    """Deliver (message, client) pairs: written at ``write`` (NaN: the client was down when
    the message reached its instance); delivered live if still connected at the write,
    else replayed when it reconnects if the log still holds the entry, else lost."""
    dc, half = p.dc_transit_ms / 1000.0, p.rtt_ms / 2000.0
    jitter = p.jitter_ms / 1000.0 or 1e-300
    written = np.flatnonzero(~np.isnan(write))
    end = np.full(len(msg), np.nan)  # end of the outage that made the client miss it
    end[written] = cl.outage_end(client[written], write[written])
    live = written[np.isnan(end[written])]
    lat_live = write[live] + (half + rng.exponential(jitter, len(live))) - t_pub[live]
    missed = np.ones(len(msg), dtype=bool)
    missed[live] = False
    missed_idx = np.flatnonzero(missed)
    down = np.isnan(write[missed_idx])  # down when it arrived: the outage at arrival
    arrive = np.maximum(at_inst[missed_idx[down]], 0.0)
    end[missed_idx[down]] = cl.outage_end(client[missed_idx[down]], arrive)
    r_end = end[missed_idx]
    r_end = np.where(np.isnan(r_end), np.maximum(at_inst[missed_idx], 0.0), r_end)
    ok = r_end < evict[missed_idx]
    held = missed_idx[ok]
    lat_held = r_end[ok] + 2 * dc + half + rng.exponential(jitter, len(held)) - t_pub[held]
    out.stream.record(lat_live * 1000.0).record(lat_held * 1000.0)
    out.expected += len(msg)
    out.replayed += len(held)
    out.lost += len(missed_idx) - len(held)
    if keep:
        for key, a, b in (
            ("client", client[live], client[held]),
            ("message", msg[live], msg[held]),
            ("latency_s", lat_live, lat_held),
            ("replayed", np.zeros(len(live), bool), np.ones(len(held), bool)),
        ):
            out.frame.setdefault(key, []).extend([a, b])


def run(
    p: ArchitectureParams,
    w: World,
    seed: np.random.SeedSequence,
    keep: bool,
    client: Any = None,
) -> Outcome:
    """Both stages; shards on ``client`` (a ``dask.distributed.Client``) if given."""
    st = stations(p, w)
    units = shards(p, w, st)
    seeds = children(seed, n_shards(p))
    total = Outcome(broker_backlog=st.broker_backlog, instance_backlog=st.instance_backlog)
    if client is None:
        for shard, s in zip(units, seeds, strict=True):
            total.add(deliver(p, w.clients, shard, s, keep))
        return total
    if not (hasattr(client, "scatter") and hasattr(client, "gather")):
        raise ValueError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
    cl = client.scatter(w.clients, broadcast=True)
    futures = [
        client.submit(deliver, p, cl, shard, s, keep, pure=False)
        for shard, s in zip(units, seeds, strict=True)
    ]
    for fut in futures:  # in shard order, as in one process
        total.add(fut.result())
        fut.release()
    return total
