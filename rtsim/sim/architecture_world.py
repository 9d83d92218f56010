"""The inputs of the architecture model (:mod:`rtsim.sim.architecture`), drawn once per run.

:func:`draw_world` draws, from one generator, everything both engines share: the
published messages (times, channels, broker arrival and service time) and the clients
(their instance before and after the scripted fault, and every outage). The per-client
part, :class:`Clients`, is small (a few arrays of ``clients`` entries plus the outages)
and is what a worker needs to deliver one channel's messages, so the bulk engine ships
it once to each Dask worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.backoff import Backoff, Jitter
from .architecture_params import ArchitectureParams
from .brokers import Broker

__all__ = ["Clients", "World", "draw_world"]


@dataclass(frozen=True)
class Clients:
    """Where each client is connected and when it is down.

    ``home``/``new``: instance before the fault and after reconnecting (``new == home``
    unless ``moved``); ``back_at``: when a moved client is connected again (inf
    otherwise); ``out_c``/``out_s``/``out_e``: every outage (client, start, end in s),
    sorted by (client, start), never overlapping for one client; ``first[c]`` is the
    index of client ``c``'s first outage (``first[c + 1] - first[c]`` outages) and
    ``dropped[c]`` whether it has any. Instances are stored in the smallest integer type
    that holds them, which keeps the per-client arrays small enough to gather from fast.
    """

    home: np.ndarray
    moved: np.ndarray
    new: np.ndarray
    back_at: np.ndarray
    out_c: np.ndarray
    out_s: np.ndarray
    out_e: np.ndarray
    first: np.ndarray
    dropped: np.ndarray

    def instance_of(self, c: np.ndarray, t: np.ndarray | float) -> np.ndarray:
        """The instance client(s) ``c`` are connected to at time(s) ``t``."""
        c = np.asarray(c)
        out: np.ndarray = self.home[c]
        m = np.flatnonzero(self.moved[c])
        if len(m):
            tm = t[m] if isinstance(t, np.ndarray) and t.ndim else t
            back = m[tm >= self.back_at[c[m]]]
            out[back] = self.new[c[back]]
        return out

    def outage_end(self, c: np.ndarray, t: np.ndarray | float) -> np.ndarray:
        """End of the outage client ``c`` is in at ``t`` (start <= t < end), NaN if online.

        Exact comparisons of times; only clients that have outages are looked at, one
        pass per outage of the client with the most.
        """
        c = np.asarray(c)
        tt = np.broadcast_to(np.asarray(t, dtype=float), c.shape)
        out = np.full(c.shape, np.nan)
        if len(self.out_c) == 0:  # no drops and no fault: everyone is always online
            return out
        sel = np.flatnonzero(self.dropped[c])
        cs = c[sel]
        lo, hi, ts = self.first[cs], self.first[cs + 1], tt[sel]
        last = np.full(len(sel), -1)  # the client's last outage started by t
        active = np.flatnonzero(self.out_s[lo] <= ts)
        j = lo[active]
        while len(active):
            last[active] = j
            j = j + 1
            more = j < hi[active]
            active, j = active[more], j[more]
            more = self.out_s[j] <= ts[active]
            active, j = active[more], j[more]
        found = np.flatnonzero(last >= 0)
        inside = ts[found] < self.out_e[last[found]]
        out[sel[found[inside]]] = self.out_e[last[found[inside]]]
        return out


@dataclass(frozen=True)
class World:
    """Inputs shared by both engines (drawn from the same seeds).

    Messages are sorted by ``send``: ``t_pub`` publish time, ``channel`` (< clients: the
    user channel of that client; else clients + topic, then the broadcast channel),
    ``send`` arrival at the broker (after producer batching), ``service`` broker service
    time; ``clients`` where clients are and when they are down.
    """

    t_pub: np.ndarray
    channel: np.ndarray
    send: np.ndarray
    service: np.ndarray
    clients: Clients


def draw_world(p: ArchitectureParams, rng: np.random.Generator) -> World:
    """Draw the messages and the clients of one run from ``rng``."""
    T, n, k = p.duration_s, p.clients, p.instances
    # 1. publishers
    # User notifications: a Poisson number of uniform times, sorted, each to a uniform
    # client (marks independent of the times, so they need not follow the sort).
    n_user = rng.poisson(p.user_rate * n * T) if p.user_rate > 0 else 0
    t_pub = np.sort(rng.uniform(0, T, n_user))
    ch = rng.integers(0, n, n_user, dtype=np.int64)
    parts_t: list[np.ndarray] = []
    parts_c: list[np.ndarray] = []
    for topic in range(p.topics if p.topic_rate > 0 else 0):
        m = rng.poisson(p.topic_rate * T)
        parts_t.append(rng.uniform(0, T, m))
        parts_c.append(np.full(m, n + topic, dtype=np.int64))
    if p.broadcast_rate > 0:  # one channel every client follows (after the topics)
        m = rng.poisson(p.broadcast_rate * T)
        parts_t.append(rng.uniform(0, T, m))
        parts_c.append(np.full(m, n + p.topics, dtype=np.int64))
    if parts_t:  # merge the (few) channel messages in, after user ones at equal times
        tt, tc = np.concatenate(parts_t), np.concatenate(parts_c)
        order = np.argsort(tt, kind="stable")
        at = np.searchsorted(t_pub, tt[order], side="right")
        t_pub, ch = np.insert(t_pub, at, tt[order]), np.insert(ch, at, tc[order])
    dc = p.dc_transit_ms / 1000.0
    prof = p.prof
    per_msg: np.ndarray | float = prof.publish_us + prof.per_subscriber_us * k
    if p.broker is Broker.KAFKA:
        send, size = _linger(t_pub, ch % p.partitions, p.linger_ms / 1000.0)
        per_msg = per_msg + prof.batch_us / size
        order = np.argsort(send, kind="stable")
        t_pub, ch, send, per_msg = t_pub[order], ch[order], send[order], per_msg[order]
    else:  # sent as published: already in order
        send = t_pub.copy()
    send += dc
    service = rng.exponential(1.0, len(t_pub)) * per_msg * 1e-6
    return World(t_pub=t_pub, channel=ch, send=send, service=service, clients=_clients(p, rng))


def _clients(p: ArchitectureParams, rng: np.random.Generator) -> Clients:
    """2–3. Clients on instances; outages (random drops, and the fault)."""
    n, k = p.clients, p.instances
    home = (np.arange(n) % k).astype(np.min_scalar_type(k))
    rng.shuffle(home)
    setup = 3 * p.rtt_ms / 1000.0
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
            t[late] += _backoff(p.backoff, rng, int(late.sum()), attempt)
            attempt += 1
        back_at[moved] = t + setup
        if k > 1:
            new[moved] = rng.integers(1, k, m)
    out_c, out_s, out_e = _outages(p, rng, setup, moved, back_at)
    o = np.lexsort((out_s, out_c))
    out_c, out_s, out_e = out_c[o], out_s[o], out_e[o]
    first = np.searchsorted(out_c, np.arange(n + 1))
    return Clients(home, moved, new, back_at, out_c, out_s, out_e, first, first[1:] > first[:-1])


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


def _backoff(b: Backoff, rng: np.random.Generator, n: int, attempt: int = 0) -> np.ndarray:
    """``n`` draws of ``b.delay(attempt, rng)`` in one call (the same numbers, in order)."""
    c = b.ceiling(attempt)
    if b.jitter is Jitter.NONE:
        return np.full(n, c)
    if b.jitter is Jitter.FULL:
        return rng.uniform(0.0, c, n)
    return c / 2 + rng.uniform(0.0, c / 2, n)


def _linger(t: np.ndarray, part: np.ndarray, linger: float) -> tuple[np.ndarray, np.ndarray]:
    """Kafka producer batching: a batch opens at its first record and is sent ``linger`` later.

    Returns each record's send time and the size of its batch.
    """
    send = np.empty_like(t)
    size = np.empty_like(t)
    for q in np.unique(part):
        idx = np.flatnonzero(part == q)
        tq = t[idx]
        # the record after the batch that record i would open; batches chain from 0
        after = np.searchsorted(tq, tq + linger, side="right").tolist()
        opens = []
        i = 0
        while i < len(idx):
            opens.append(i)
            i = after[i]
        starts = np.array(opens)
        sizes = np.diff(np.append(starts, len(idx)))
        send[idx] = np.repeat(tq[starts] + linger, sizes)
        size[idx] = np.repeat(sizes, sizes)
    return send, size
