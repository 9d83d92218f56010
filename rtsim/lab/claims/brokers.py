"""Claims on brokers (C7–C10): the broker model, the loss experiment in sim, and the
local Redis (redis-benchmark, a Pub/Sub vs Streams outage) where it runs."""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import time
import uuid
from typing import Any

import pandas as pd

from .context import LIVE, NOT_MEASURED, QUICK, Context, describe_error
from .evidence import Evidence, Verdict

__all__ = ["c7", "c8", "c9", "c10", "redis_benchmark", "redis_outage"]


def redis_benchmark() -> dict[str, float]:
    """PUBLISH/s of the local Redis (127.0.0.1:6379) with ``redis-benchmark``: pipelined
    (-P 16) and plain. Raises ``RuntimeError`` if redis-benchmark is not installed,
    ``subprocess.CalledProcessError``/``TimeoutExpired`` (60 s) if it fails."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        raise RuntimeError("redis-benchmark is not installed")
    out = {}
    for name, args in (("pipelined", ["-n", "200000", "-P", "16"]), ("plain", ["-n", "40000"])):
        cmd = [exe, "-h", "127.0.0.1", "-p", "6379", "--csv", *args, "PUBLISH", "rtsim-ledger", "x"]
        text = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
        rows = list(csv.reader(text.strip().splitlines()))
        out[name] = float(rows[-1][1])
    return out


def redis_outage(before: int = 10, during: int = 10, after: int = 10) -> dict[str, int]:
    """Pub/Sub vs Streams on the local Redis: a subscriber away while ``during`` are sent.
    Raises redis' ``ConnectionError`` if Redis is not reachable on 127.0.0.1:6379."""
    from rtsim.live.backplanes.redis import no_retry_client

    # No retries (redis-py 8 resends after a timeout): a publish sent twice would be counted
    # twice.
    r = no_retry_client(socket_connect_timeout=1, socket_timeout=5)
    r.ping()
    name = f"rtsim-ledger-{uuid.uuid4().hex[:8]}"

    def subscribe() -> Any:
        ps = r.pubsub(ignore_subscribe_messages=True)
        ps.subscribe(name)
        ps.get_message(timeout=1)  # the subscribe confirmation
        return ps

    def drain(ps: Any, n: int) -> int:
        got = 0
        deadline = time.monotonic() + 2
        while got < n and time.monotonic() < deadline:
            if ps.get_message(timeout=0.2) is not None:
                got += 1
        return got

    try:
        ps = subscribe()
        for i in range(before):
            r.publish(name, i)
        received = drain(ps, before)
        ps.close()  # the subscriber disconnects
        for i in range(during):
            r.publish(name, before + i)
        ps = subscribe()
        for i in range(after):
            r.publish(name, before + during + i)
        received += drain(ps, during + after)  # at most what was sent
        ps.close()

        key = name + ":stream"
        for i in range(before):
            r.xadd(key, {"n": i})
        got = r.xread({key: "0"})
        last = got[0][1][-1][0]
        for i in range(during + after):  # the consumer is away
            r.xadd(key, {"n": before + i})
        again = r.xread({key: last})
        caught_up = len(again[0][1]) if again else 0
        r.delete(key)
    finally:
        r.close()
    total = before + during + after
    return {
        "published": total,
        "pubsub_received": received,
        "pubsub_lost": total - received,
        "stream_missed": during + after,
        "stream_caught_up": caught_up,
    }


def c7(ctx: Context) -> Evidence:
    """C7: modelled Redis Pub/Sub capacity, and redis-benchmark on the local Redis."""
    from ...sim.brokers import broker_capacity

    one = broker_capacity("redis-pubsub", 1)
    hundred = broker_capacity("redis-pubsub", 100)
    sim = f"model capacity {one / 1e3:.0f}k msg/s with 1 subscriber, {hundred / 1e3:.0f}k"
    sim += " with 100"
    cond = "model: 2 µs per PUBLISH + 0.5 µs per subscriber (redis-benchmark-derived)"
    try:
        ctx.require_live("redis-benchmark")
        m = redis_benchmark()
    except Exception as exc:
        measured, src = f"{NOT_MEASURED}: {describe_error(exc)}", QUICK
        pipe = plain = math.nan
    else:
        pipe, plain = m["pipelined"], m["plain"]
        measured = (
            f"local Redis, no subscribers: {pipe / 1e3:.0f}k PUBLISH/s pipelined (-P 16), "
            f"{plain / 1e3:.0f}k/s one at a time (50 clients)"
        )
        cond += "; redis-benchmark shares this machine's 2 cores with Redis"
        src = QUICK + " + " + LIVE
    best = pipe if not math.isnan(pipe) else one
    if best >= 500_000 and (math.isnan(plain) or plain >= 500_000):
        v = Verdict.holds("one Redis passes 500k pub/sub messages/s")
    elif best >= 500_000 or one >= 0.8 * 500_000:
        v = Verdict.only_when(
            "commands are pipelined and few connections subscribe",
            f"capacity falls to {hundred / 1e3:.0f}k/s with 100 subscribers"
            + ("" if math.isnan(pipe) else f"; measured {pipe / 1e3:.0f}k/s here"),
        )
    else:
        v = Verdict.does_not_hold(f"{best / 1e3:.0f}k/s at best")
    return Evidence(sim, measured, cond, v, src)


def _outage(ctx: Context) -> tuple[pd.DataFrame, dict[str, int] | None, str]:
    """The loss run shared by C8 and C9: the sim's loss table (seed + 1), and the local
    Redis outage or the reason it did not run."""

    def make() -> tuple[pd.DataFrame, dict[str, int] | None, str]:
        from ..brokers import loss_table

        lt = loss_table(seed=ctx.seed + 1).set_index("broker")
        try:
            ctx.require_live("Redis outage")
            return lt, redis_outage(), ""
        except Exception as exc:
            return lt, None, describe_error(exc)

    return ctx.once("brokers.outage", make)


_OUTAGE_COND = "sim: 50 msg/s, subscriber 0 offline 10–25 s of 40 s"


def c8(ctx: Context) -> Evidence:
    """C8: messages a Pub/Sub subscriber loses while away, sim and local Redis."""
    lt, live, live_err = _outage(ctx)
    ps = lt.loc["redis-pubsub"]
    sim = f"Pub/Sub lost {ps['lost']} of the {ps['during_outage']} published in the outage"
    if live:
        measured = (
            f"local Redis: subscriber away for 10 of {live['published']} messages → "
            f"{live['pubsub_lost']} lost"
        )
    else:
        measured = f"{NOT_MEASURED}: {live_err}"
    if ps["lost"] == ps["during_outage"] > 0 and (live is None or live["pubsub_lost"] > 0):
        v = Verdict.holds("everything published while the subscriber was away is gone")
    else:
        v = Verdict.does_not_hold("the disconnected subscriber did not lose messages")
    return Evidence(sim, measured, _OUTAGE_COND, v, QUICK + (" + " + LIVE if live else ""))


def c9(ctx: Context) -> Evidence:
    """C9: Streams/JetStream catch-up in the same outage; a short log (MAXLEN 100)."""
    from ...sim.brokers import Broker, BrokerParams, simulate_broker

    lt, live, live_err = _outage(ctx)
    st, js = lt.loc["redis-streams"], lt.loc["jetstream"]
    short = simulate_broker(
        BrokerParams(
            broker=Broker.REDIS_STREAMS,
            publish_rate=50,
            duration_s=40,
            outages=((10.0, 25.0),),
            max_len=100,
        ),
        ctx.seed + 1,
    ).summary
    sim = (
        f"Streams lost {st['lost']}, replayed {st['replayed']}; JetStream lost {js['lost']}, "
        f"replayed {js['replayed']}; with MAXLEN 100 Streams lost {short.lost}"
    )
    if live:
        measured = (
            f"local Redis Streams: consumer away for {live['stream_missed']}, caught up "
            f"{live['stream_caught_up']} with XREAD from its last id"
        )
    else:
        measured = f"{NOT_MEASURED}: {live_err}"
    caught = st["lost"] == 0 and js["lost"] == 0
    if live:
        caught = caught and live["stream_caught_up"] == live["stream_missed"]
    if caught and short.lost > 0:
        v = Verdict.only_when(
            "the log still holds what was missed (MAXLEN / max_msgs ≥ the outage's messages)",
            f"with MAXLEN 100 {short.lost} were lost, with a gap notice",
        )
    elif caught:
        v = Verdict.holds("the consumer caught up on everything")
    else:
        v = Verdict.does_not_hold("the consumer did not catch up")
    src = QUICK + (" + " + LIVE if live else "")
    return Evidence(sim, measured, _OUTAGE_COND + ", MAXLEN 10,000 and 100", v, src)


def c10(ctx: Context) -> Evidence:
    """C10: Kafka's batching latency at a low rate and modelled capacity per broker."""
    from ...sim.brokers import Broker, BrokerParams, broker_capacity, simulate_broker

    rate = 200.0
    p50: dict[str, float] = {}
    for b in (Broker.REDIS_STREAMS, Broker.KAFKA):
        p = BrokerParams(broker=b, publish_rate=rate, duration_s=30)
        p50[b.value] = simulate_broker(p, ctx.seed).summary.p50_ms
    cap = {b: broker_capacity(b, 1) for b in ("redis-streams", "jetstream", "kafka")}
    sim = (
        f"at {rate:.0f} msg/s Kafka p50 {p50['kafka']:.2f} ms vs Streams "
        f"{p50['redis-streams']:.2f} ms; capacity per broker: Kafka "
        f"{cap['kafka'] / 1e3:.0f}k/s, Streams {cap['redis-streams'] / 1e3:.0f}k/s, "
        f"JetStream {cap['jetstream'] / 1e3:.0f}k/s"
    )
    cond = "sim: one broker node, 1 subscriber, linger.ms 5, 6 partitions"
    slower = p50["kafka"] > p50["redis-streams"]
    best_other = max(cap["redis-streams"], cap["jetstream"])
    if slower and cap["kafka"] >= 1e6:
        v = Verdict.holds("Kafka reaches millions/s and only adds latency below that")
    elif slower and cap["kafka"] > best_other:
        v = Verdict.only_when(
            "you scale Kafka out",
            f"one modelled broker serves {cap['kafka'] / 1e3:.0f}k/s, not millions; below the "
            f"others' {best_other / 1e3:.0f}k/s it only adds "
            f"{p50['kafka'] - p50['redis-streams']:.1f} ms of batching",
        )
    elif slower:
        v = Verdict.does_not_hold(
            "the modelled Kafka is no faster than Streams/JetStream "
            f"({cap['kafka'] / 1e3:.0f}k/s) and adds latency"
        )
    else:
        v = Verdict.does_not_hold("Kafka is not slower at low rates in the model")
    return Evidence(sim, "not measured (no Kafka here)", cond, v, QUICK)
