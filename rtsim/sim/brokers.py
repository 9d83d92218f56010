"""Broker models: Redis Pub/Sub, Redis Streams, NATS JetStream and Kafka.

``simulate_broker(BrokerParams(broker="redis-streams", ...), seed=K)`` runs one SimPy
simulation: a publisher emits a Poisson stream to one broker, which serves every request
on a FIFO station (a single-threaded server *is* a queue, see :mod:`rtsim.sim.queueing`)
and delivers to ``subscribers`` consumers. Subscriber 0 can be disconnected during
scripted ``outages``; what happens to the messages published meanwhile is the point:

* **Redis Pub/Sub** is fire-and-forget: PUBLISH writes to the subscribers connected *at
  that moment*; a disconnected subscriber never gets the message (claim C8).
* **Redis Streams** append to a log (XADD, trimmed to ``max_len`` like ``MAXLEN``); a
  consumer reads after its last id (XREAD) and, on reconnect, catches up from it. Messages
  trimmed before it came back are reported lost via the core replay log's explicit gap.
* **NATS JetStream** stores the message in a stream and delivers to a durable consumer
  that acks; a delivery not acked within ``ack_wait_s`` (the consumer dropped while it was
  in flight) is redelivered. Missed messages are fetched on reconnect (claim C9).
* **Kafka** appends to partitions; the producer batches per partition for ``linger_ms``;
  a consumer group member resumes from its last committed offset (auto-commit every
  ``commit_interval_s``), so it may see duplicates but loses nothing within retention.

The log of Streams / JetStream / Kafka is :class:`rtsim.core.replaylog.ReplayLog` — the
same code the live server uses. Service times: a request costs ``publish_us`` plus
``per_subscriber_us`` per subscribed connection (Redis writes each subscriber's output
buffer inside PUBLISH; JetStream/Streams push or serve a read per consumer); Kafka charges
``batch_us`` per producer batch plus ``publish_us`` per record. Defaults and their sources
are in :data:`PROFILES` / :data:`DEFAULTS_SOURCES`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import simpy

from ..core.broker import Broker, parse_broker
from ..core.params import Spec, check, param, validate
from ..core.replaylog import Gap, ReplayLog
from ..core.results import RunResult, Summary, percentile
from .queueing import fifo_station
from .seeding import as_seed_sequence, children

__all__ = [
    "DEFAULTS_SOURCES",
    "PROFILES",
    "Broker",
    "BrokerParams",
    "BrokerProfile",
    "broker_capacity",
    "capacity_curve",
    "lag_over_time",
    "parse_broker",
    "simulate_broker",
]


@dataclass(frozen=True, slots=True)
class BrokerProfile:
    """Service-time model and semantics of one broker (times in microseconds)."""

    publish_us: float  # per published record (XADD / PUBLISH / JetStream publish / record)
    per_subscriber_us: float  # per subscribed connection served for one message
    servers: int = 1  # threads serving one stream/channel (Redis: 1)
    batch_us: float = 0.0  # Kafka: per producer batch (request overhead)
    durable: bool = True  # keeps a log a consumer can resume from


#: Default service models; see :data:`DEFAULTS_SOURCES`.
PROFILES: dict[Broker, BrokerProfile] = {
    Broker.REDIS_PUBSUB: BrokerProfile(publish_us=2.0, per_subscriber_us=0.5, durable=False),
    Broker.REDIS_STREAMS: BrokerProfile(publish_us=2.5, per_subscriber_us=1.0),
    Broker.JETSTREAM: BrokerProfile(publish_us=1e6 / 272_000, per_subscriber_us=1e6 / 777_000),
    Broker.KAFKA: BrokerProfile(publish_us=1e6 / 821_000, per_subscriber_us=0.5, batch_us=50.0),
}

#: Where every default comes from (shown in notebook 02).
DEFAULTS_SOURCES: dict[str, str] = {
    "redis-pubsub publish_us": "2.0 µs: redis-benchmark pipelined SET/GET 400–510k req/s on"
    " one thread (Redis docs; docs/facts.md) → ~500k/s, claim C7",
    "redis-pubsub per_subscriber_us": "0.5 µs per subscribed connection: PUBLISH appends to"
    " each subscriber's output buffer (assumption)",
    "redis-streams publish_us": "2.5 µs: XADD, the low end of redis-benchmark's 400k req/s"
    " (assumption: a stream append costs a little more than SET)",
    "redis-streams per_subscriber_us": "1.0 µs per blocked XREAD served (assumption)",
    "jetstream publish_us": "3.7 µs: JetStream memory storage async publish ~272k msg/s"
    " (nats bench, natsbench.md; docs/facts.md)",
    "jetstream per_subscriber_us": "1.3 µs: JetStream replay ~777k msg/s (natsbench.md)",
    "kafka publish_us": "1.2 µs per record: 821k rec/s one producer, no replication"
    " (LinkedIn '2 Million Writes/Sec'; docs/facts.md)",
    "kafka batch_us": "50 µs per produce request (assumption; amortised by batching)",
    "linger_ms": "5 ms: Kafka producer linger.ms default since Kafka 4.0 (was 0)",
    "partitions": "6 partitions (a common small-topic choice; assumption)",
    "ack_wait_s": "30 s: JetStream consumer AckWait default",
    "commit_interval_s": "5 s: Kafka consumer auto.commit.interval.ms default",
    "max_len": "10,000 entries: a typical XADD MAXLEN ~ cap, also used as JetStream's"
    " max_msgs (assumption; vary it). Kafka keeps its log (retention.ms 7 days)",
    "transit_ms": "0.25 ms one way inside a data centre (assumption)",
}


@dataclass(frozen=True)
class BrokerParams:
    """One broker run. ``outages`` are ``(start_s, end_s)`` disconnections of subscriber 0."""

    broker: Broker = param(
        Broker.REDIS_STREAMS, choices=tuple(x.value for x in Broker), help="message broker"
    )
    publish_rate: float = param(100.0, lo=0, lo_open=True, unit="messages/s", help="published")
    duration_s: float = param(60.0, lo=0, lo_open=True, unit="s", help="simulated time")
    subscribers: int = param(1, lo=1, help="subscribers of the channel")
    outages: tuple[tuple[float, float], ...] = ()
    max_len: int = param(10_000, lo=1, unit="entries", help="history kept")
    ack_wait_s: float = param(30.0, lo=0, lo_open=True, unit="s", help="redelivery after")
    linger_ms: float = param(5.0, lo=0, unit="ms", help="Kafka producer linger")
    partitions: int = param(6, lo=1, help="Kafka partitions")
    commit_interval_s: float = param(
        5.0, lo=0, lo_open=True, unit="s", help="Kafka consumer offset commit interval"
    )
    transit_ms: float = param(0.25, lo=0, unit="ms", help="one way inside the data centre")
    service: str = param("exp", choices=("exp", "det"), help="service-time distribution")
    profile: BrokerProfile | None = None  # None: PROFILES[broker]
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "broker", parse_broker(self.broker))
        object.__setattr__(self, "outages", tuple((float(a), float(b)) for a, b in self.outages))
        validate(self)
        last = -math.inf
        for a, b in self.outages:
            if not (0 <= a < b):
                raise ValueError(f"an outage must satisfy 0 <= start < end, got ({a}, {b})")
            if a < last:
                raise ValueError("outages must be sorted and must not overlap")
            last = b

    @property
    def prof(self) -> BrokerProfile:
        return self.profile if self.profile is not None else PROFILES[self.broker]

    def with_(self, **changes: Any) -> BrokerParams:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["broker"] = self.broker.value
        d.pop("extra")
        d["profile"] = asdict(self.prof)
        return d


def broker_capacity(broker: Broker | str, subscribers: int = 1) -> float:
    """Messages/s one broker serves at 100% utilisation with ``subscribers`` connections."""
    p = PROFILES[parse_broker(broker)]
    if subscribers < 1:
        raise ValueError(f"subscribers must be >= 1, got {subscribers}")
    return p.servers * 1e6 / (p.publish_us + p.per_subscriber_us * subscribers)


def capacity_curve(
    broker: Broker | str,
    rates: np.ndarray | list[float],
    *,
    subscribers: int = 1,
    messages: int = 100_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Broker queueing delay and backlog vs publish rate (bulk FIFO station, exp service).

    One row per rate: utilisation, p50/p99 time in broker (µs), max backlog (messages).
    """
    b = parse_broker(broker)
    p = PROFILES[b]
    mean_us = p.publish_us + p.per_subscriber_us * subscribers
    rng = np.random.default_rng(seed)
    rows = []
    for rate in rates:
        reason = check(rate, Spec(lo=0, lo_open=True))
        if reason is not None:
            raise ValueError(f"rates {reason}")
        arr = np.cumsum(rng.exponential(1.0 / rate, messages))
        svc = rng.exponential(mean_us * 1e-6, messages)
        _, fin = fifo_station(arr, svc, p.servers)
        t_us = (fin - arr) * 1e6
        backlog = np.arange(1, messages + 1) - np.searchsorted(fin, arr, side="right")
        rows.append(
            {
                "broker": b.value,
                "rate": float(rate),
                "utilisation": float(rate) * mean_us * 1e-6 / p.servers,
                "p50_us": percentile(t_us, 50, resolution=1.0),
                "p99_us": percentile(t_us, 99, resolution=1.0),
                "max_backlog": int(backlog.max()),
            }
        )
    return pd.DataFrame(rows)


class _Model:
    def __init__(self, p: BrokerParams, seed: np.random.SeedSequence) -> None:
        self.p = p
        self.prof = p.prof
        arrivals, service = children(seed, 2)
        self.arr_rng = np.random.default_rng(arrivals)
        self.svc_rng = np.random.default_rng(service)
        self.env = simpy.Environment()
        self.station = simpy.Resource(self.env, capacity=self.prof.servers)
        self.transit = p.transit_ms / 1000.0
        # Kafka retains by time (retention.ms, 7 days by default): nothing is trimmed here.
        self.log = ReplayLog(max_len=p.max_len if p.broker is not Broker.KAFKA else 2**62)
        n = p.subscribers
        self.last_id = [0] * n  # last id received (Streams/Kafka cursor), per subscriber
        self.committed = [0] * n  # Kafka committed offset
        self.got: list[set[int]] = [set() for _ in range(n)]
        self.pending: set[int] = set()  # JetStream: delivered to subscriber 0, not acked
        self.rows: list[tuple[int, int, float, float, bool, bool]] = []
        self.publish_time: dict[int, float] = {}
        self.broker_time: dict[int, float] = {}
        self.published = 0
        self.lost_gap = 0
        self.redelivered = 0
        self.queue_samples: list[tuple[float, int]] = []
        self.batches: dict[int, list[int]] = {}

    # --- helpers ------------------------------------------------------------------------
    def online(self, sub: int, t: float) -> bool:
        if sub != 0:
            return True
        return not any(a <= t < b for a, b in self.p.outages)

    def reconnect_at(self, t: float) -> float:
        for a, b in self.p.outages:
            if a <= t < b:
                return b
        return t

    def service_s(self, mean_us: float) -> float:
        if self.p.service == "det":
            return mean_us * 1e-6
        return float(self.svc_rng.exponential(mean_us * 1e-6))

    def receive(self, sub: int, mid: int, t: float, replayed: bool) -> None:
        dup = mid in self.got[sub]
        self.got[sub].add(mid)
        self.last_id[sub] = max(self.last_id[sub], mid)
        self.rows.append((sub, mid, self.publish_time[mid], t, replayed, dup))

    # --- processes ----------------------------------------------------------------------
    def publisher(self) -> Any:
        p = self.p
        mid = 0
        while True:
            yield self.env.timeout(float(self.arr_rng.exponential(1.0 / p.publish_rate)))
            if self.env.now >= p.duration_s:
                return
            mid += 1
            self.published = mid
            self.publish_time[mid] = self.env.now
            if p.broker is Broker.KAFKA:
                self.kafka_enqueue(mid)
            else:
                self.env.process(self.serve([mid]))

    def kafka_enqueue(self, mid: int) -> None:
        part = mid % self.p.partitions
        buf = self.batches.get(part)
        if buf is not None:
            buf.append(mid)
            return
        self.batches[part] = [mid]

        def flush() -> Any:
            yield self.env.timeout(self.p.linger_ms / 1000.0)
            batch = self.batches.pop(part)
            yield from self.serve(batch)

        self.env.process(flush())

    def serve(self, mids: list[int]) -> Any:
        yield self.env.timeout(self.transit)  # publisher → broker
        prof = self.prof
        work = prof.publish_us * len(mids) + prof.per_subscriber_us * self.p.subscribers
        work += prof.batch_us
        self.queue_samples.append((self.env.now, len(self.station.queue) + self.station.count))
        with self.station.request() as req:
            yield req
            yield self.env.timeout(self.service_s(work))
        now = self.env.now
        for mid in mids:
            self.broker_time[mid] = now
            if prof.durable:
                env = self.log.append("stream", mid, now)
                assert int(env.id) == len(self.broker_time)
            for sub in range(self.p.subscribers):
                self.dispatch(sub, mid, now)

    def dispatch(self, sub: int, mid: int, now: float) -> None:
        b = self.p.broker
        if not self.online(sub, now):
            return  # Pub/Sub: lost. Others: fetched at reconnect (see reconnect()).
        arrive = now + self.transit
        if self.online(sub, arrive):
            self.env.process(self._deliver_at(sub, mid, arrive, False))
        elif b is Broker.JETSTREAM:
            # Delivered into a dropped connection: no ack, redelivered after AckWait.
            self.pending.add(mid)
            self.env.process(self._redeliver(sub, mid, now))
        # Streams/Kafka: the consumer's cursor did not move, so reconnect() re-reads it.

    def _deliver_at(self, sub: int, mid: int, t: float, replayed: bool) -> Any:
        yield self.env.timeout(t - self.env.now)
        self.receive(sub, mid, t, replayed)

    def _redeliver(self, sub: int, mid: int, sent: float) -> Any:
        t = sent
        while True:
            t += self.p.ack_wait_s
            yield self.env.timeout(t - self.env.now)
            if mid in self.got[sub]:
                return
            if self.online(sub, t) and self.online(sub, t + self.transit):
                self.redelivered += 1
                self.pending.discard(mid)
                yield from self._deliver_at(sub, mid, t + self.transit, True)
                return

    def reconnect(self, start: float, end: float) -> Any:
        """Subscriber 0 comes back at ``end`` and, if the broker keeps a log, catches up."""
        yield self.env.timeout(end - self.env.now)
        if not self.prof.durable:
            return
        b = self.p.broker
        after = self.committed[0] if b is Broker.KAFKA else self.last_id[0]
        res = self.log.read_after("stream", str(after))
        if isinstance(res, Gap):
            self.lost_gap += res.missed
        t = end + 2 * self.transit  # one read round trip
        for env in res.messages:
            mid = int(env.data)
            if b is Broker.JETSTREAM and (mid in self.got[0] or mid in self.pending):
                continue  # acked already, or waiting for its AckWait to expire
            self.env.process(self._deliver_at(0, mid, t, True))

    def committer(self) -> Any:
        while True:
            yield self.env.timeout(self.p.commit_interval_s)
            for sub in range(self.p.subscribers):
                if self.online(sub, self.env.now):
                    self.committed[sub] = self.last_id[sub]

    def run(self) -> RunResult:
        env = self.env
        env.process(self.publisher())
        for a, b in self.p.outages:
            env.process(self.reconnect(a, b))
        if self.p.broker is Broker.KAFKA:
            env.process(self.committer())
        horizon = self.p.duration_s + max([b for _, b in self.p.outages] + [0.0]) + 120.0
        env.run(until=horizon)
        return self.result()

    def result(self) -> RunResult:
        p = self.p
        cols = ["client", "message_id", "publish_time", "receive_time", "replayed", "duplicate"]
        df = pd.DataFrame(self.rows, columns=cols)
        df.insert(0, "channel", "stream")
        df["transport"] = p.broker.value
        df["latency_ms"] = (df["receive_time"] - df["publish_time"]) * 1000.0
        df["broker_time"] = df["message_id"].map(self.broker_time)
        df["lost"] = False
        firsts = df[~df["duplicate"]]
        expected = len(self.broker_time) * p.subscribers
        lost = expected - len(firsts)
        lost_ids = sorted(set(self.broker_time) - self.got[0])
        if lost_ids:  # one row per message subscriber 0 never received
            gone = pd.DataFrame(
                {
                    "channel": "stream",
                    "client": 0,
                    "message_id": lost_ids,
                    "publish_time": [self.publish_time[m] for m in lost_ids],
                    "receive_time": np.nan,
                    "replayed": False,
                    "duplicate": False,
                    "transport": p.broker.value,
                    "latency_ms": np.nan,
                    "broker_time": [self.broker_time[m] for m in lost_ids],
                    "lost": True,
                }
            )
            df = pd.concat([df, gone], ignore_index=True)
        samples = np.array([s for _, s in self.queue_samples] or [0])
        summary = Summary.from_latencies(
            firsts["latency_ms"].to_numpy(),
            duration_s=p.duration_s,
            wire_bytes=0.0,
            requests=0,
            connections=p.subscribers,
            server_memory_bytes=0.0,
            lost=int(lost),
            extra={
                "broker": p.broker.value,
                "published": self.published,
                "published_during_outage": int(
                    sum(1 for t in self.broker_time.values() if not self.online(0, t))
                ),
                "lost_sub0": len(lost_ids),
                "lost_to_trimming": self.lost_gap,
                "duplicates": int(df["duplicate"].sum()),
                "redelivered": self.redelivered,
                "replayed": int(firsts["replayed"].sum()),
                "fan_out_ratio": len(firsts) / max(1, len(self.broker_time)),
                "max_backlog": int(samples.max()) + 1,
                "log_held": self.log.held(),
            },
        )
        return RunResult(params=p.as_dict(), deliveries=df, summary=summary)


def simulate_broker(params: BrokerParams, seed: int | np.random.SeedSequence = 0) -> RunResult:
    """Simulate one broker run; see the module docstring for the semantics."""
    return _Model(params, as_seed_sequence(seed)).run()


def lag_over_time(result: RunResult, times: np.ndarray, client: int = 0) -> pd.DataFrame:
    """Messages the broker has accepted but ``client`` has not received yet, at ``times``.

    Lost messages stay in the count (they are never received), so a Pub/Sub run shows a
    permanent step after an outage while a durable broker drains back to zero.
    """
    df = result.deliveries
    acc = np.sort(df.drop_duplicates("message_id")["broker_time"].to_numpy())
    mine = df[(df["client"] == client) & ~df["duplicate"] & ~df["lost"]]
    rec = np.sort(mine["receive_time"].to_numpy())
    t = np.asarray(times, dtype=float)
    lag = np.searchsorted(acc, t, side="right") - np.searchsorted(rec, t, side="right")
    return pd.DataFrame({"time_s": t, "lag": lag})
