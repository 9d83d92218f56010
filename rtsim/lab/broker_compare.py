"""One broker path, simulated vs measured: two ``rtsim serve`` instances over Redis Streams.

The live path: the load generator publishes on instance A (a WebSocket ``publish``
frame); A appends the message to Redis (the Streams backplane's XADD script); instance B,
blocked in ``XREAD BLOCK`` on the shared feed, fans it out to its subscribers, all of
which are on B. Latency runs from the message's scheduled publish time to its handling by
a subscriber (:func:`rtsim.live.clients.loadgen.run_load` with ``publish_url``).

The model: the architecture model (:mod:`rtsim.sim.architecture`) with broker
``redis-streams``, ``instances`` instances holding ``subscribers`` clients each (so each
instance's fan-out is as long as B's), one topic at the live publish rate, loopback client
RTT and no disconnects or fault. Its one-way hop inside the data centre
(``dc_transit_ms``, taken twice: publisher → broker → instance) is calibrated from
:func:`measure_redis_hop`, Redis XADD → XREAD BLOCK on this machine. Two variants:

* ``"hop"``: only the broker hop calibrated; every other cost is the model's default
  (``cpu_decode_us``, ``cpu_write_us``: see :data:`rtsim.sim.architecture.DEFAULTS_SOURCES`);
* ``"hop+cpu"``: also ``cpu_write_us`` from instance B's CPU time per delivery, read from
  /proc in one calibration run at the middle rate (a run kept apart from the repeats).

The architecture model describes a deployment: its clients are on their own machines, so
it gives them no CPU. In the lab the subscribers are load-generator processes sharing
this machine's cores with both instances, and most of the measured latency is theirs
(``write_to_read``). A third variant models the measuring machine itself:

* ``"stages+hop"``: the stage model (:func:`rtsim.sim.stages.simulate_stages`) calibrated
  once on a single in-memory server (:func:`rtsim.lab.stage_compare.calibrate_stage_model`,
  the configuration the single-instance sweep uses; it never sees a broker), with
  instance A as a relay process (its CPU per message from /proc in the calibration run)
  and the measured Redis hop between A and B (its whole distribution).

:func:`compare_broker` reports, per rate, the simulated p50/p99 beside the mean of
``repeats`` live runs with its 95% Student-t CI, the relative error and whether the point
passes (:func:`rtsim.lab.compare.passes`: |error| ≤ 10% p50, ≤ 20% p99, or the simulated
value inside the measured CI), plus the stages (p50) simulated and measured.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import pandas as pd

from ..core.broker import Broker
from ..core.results import RunResult, percentile
from ..core.stages import stage_summary
from ..live.clients.loadgen import LoadParams, run_load
from ..live.process import process_cpu_s, serve_process
from ..sim.architecture import ArchitectureParams, simulate_architecture
from ..sim.runner import mean_ci
from ..sim.stages import StageCalibration, simulate_stages
from .compare import LOOPBACK_JITTER_MS, LOOPBACK_RTT_MS, passes

__all__ = [
    "BrokerComparison",
    "RedisHop",
    "compare_broker",
    "measure_redis_hop",
    "measured_stages",
    "model_command",
    "model_params",
    "model_stages",
]

#: The server flags of every instance: the load generator's one address must not be
#: throttled (ServerConfig's defaults are 1000 publishes/s and 1000 connections per address).
SERVE_FLAGS = ("--publish-rate-per-ip", "1000000", "--max-connections-per-ip", "100000")
METRICS = ("p50_ms", "p99_ms")
#: Simulated seconds of the ``"stages+hop"`` variant (it simulates every delivery).
STAGE_SIM_S = 10.0
#: The measured stages folded into the model's three: publisher → instance B's fan-out
#: (the broker hop), B's fan-out, B's socket → the subscriber's handler.
STAGE_GROUPS: dict[str, tuple[str, ...]] = {
    "publish_to_fanout": ("publish_timer", "publish_transit", "server_to_fanout"),
    "fanout": ("fanout_to_write",),
    "to_client": ("write_to_read", "client_handle"),
}


# --- the broker hop ----------------------------------------------------------------------
@dataclass(frozen=True)
class RedisHop:
    """Redis XADD → XREAD BLOCK latency on this machine (ms), the source of the model's
    ``dc_transit_ms`` (half the p50: the model crosses it twice)."""

    p50_ms: float
    p99_ms: float
    mean_ms: float
    samples: int
    rate: float  # XADDs per second
    source: str
    #: The 0..100th percentiles (ms), for the stage model's draws (empty: not measured).
    quantiles_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _hop_reader(host: str, port: int, key: str, n: int, conn: Connection) -> None:
    """Child process: block in XREAD on ``key`` (as the Streams backplane reads its feed,
    redis.asyncio, ``count=500, block=1000``) and send back ``monotonic() - t`` per entry."""
    import redis.asyncio as aioredis

    async def main() -> list[float]:
        r = aioredis.Redis(host=host, port=port, decode_responses=True)
        await r.ping()
        conn.send("ready")
        last, out = "0", list[float]()
        idle = 0
        while len(out) < n and idle < 10:  # ten empty 1 s reads: the writer is gone
            resp: Any = await r.xread({key: last}, count=500, block=1000)
            now = time.monotonic()
            idle = 0 if resp else idle + 1
            for _stream, entries in resp or ():
                for entry_id, f in entries:
                    last = entry_id
                    out.append(now - float(f["t"]))
        await r.aclose()
        return out

    conn.send(asyncio.run(main()))


def measure_redis_hop(
    host: str = "127.0.0.1", port: int = 6379, samples: int = 400, rate: float = 100.0
) -> RedisHop:
    """Time ``samples`` XADDs (at ``rate`` per second, from this process, redis-py) until a
    reader in another process, blocked in ``XREAD BLOCK`` (redis.asyncio), has each one.

    The two processes share CLOCK_MONOTONIC; each entry carries its send time. The key is
    fresh (``{hopUUID}:hop``) and deleted afterwards. Returns :class:`RedisHop` (ms).
    Raises ``ValueError`` for ``samples`` < 10 or ``rate`` ≤ 0, ``RuntimeError`` if the
    reader does not start or report, redis-py's ``ConnectionError`` if Redis is not there.
    """

    if samples < 10:
        raise ValueError(f"samples must be >= 10, got {samples}")
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be > 0, got {rate}")
    from rtsim.live.backplanes.redis import no_retry_client

    key = f"{{hop{uuid.uuid4().hex[:10]}}}:hop"
    # No retries: redis-py 8 sends a command again after a 5 s timeout, which would add an
    # entry twice and time it twice.
    r = no_retry_client(host, port)
    r.ping()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_hop_reader, args=(host, port, key, samples, child), daemon=True)
    proc.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the XREAD reader process did not start")
        parent.recv()
        time.sleep(0.3)  # let it block in XREAD
        t0 = time.monotonic() + 0.05
        for i in range(samples):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            r.xadd(key, {"t": repr(time.monotonic())}, maxlen=10_000, approximate=True)
        if not parent.poll(30):
            raise RuntimeError("the XREAD reader process did not report")
        lat_ms = np.asarray(parent.recv(), dtype=float) * 1e3
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
        r.delete(key)
        r.close()
    return RedisHop(
        p50_ms=percentile(lat_ms, 50),
        p99_ms=percentile(lat_ms, 99),
        mean_ms=float(lat_ms.mean()) if len(lat_ms) else math.nan,
        samples=len(lat_ms),
        rate=rate,
        quantiles_ms=[float(x) for x in np.percentile(lat_ms, np.linspace(0, 100, 101))]
        if len(lat_ms)
        else [],
        source=(
            f"rtsim.lab.broker_compare.measure_redis_hop(samples={samples}, rate={rate:g}):"
            f" XADD (redis-py) → XREAD BLOCK (redis.asyncio, another process), {host}:{port}"
        ),
    )


# --- the model ----------------------------------------------------------------------------
def model_params(
    hop: RedisHop,
    subscribers: int,
    rate: float,
    duration_s: float,
    instances: int = 2,
    cpu_write_us: float | None = None,
) -> ArchitectureParams:
    """The architecture model set up like the live run (see the module docstring).

    ``dc_transit_ms`` is half the measured hop p50; ``rtt_ms`` and ``jitter_ms`` are the
    loopback figures of :mod:`rtsim.lab.compare`; ``cpu_write_us`` None keeps the model's
    default. Raises ``ValueError`` (from the parameters' validation) for bad values.
    """
    p = ArchitectureParams(
        clients=instances * subscribers,
        duration_s=duration_s,
        broker=Broker.REDIS_STREAMS,
        instances=instances,
        user_rate=0.0,
        topics=1,
        topic_rate=rate,
        rtt_ms=LOOPBACK_RTT_MS,
        jitter_ms=LOOPBACK_JITTER_MS,
        dc_transit_ms=hop.p50_ms / 2,
        disconnects_per_hour=0.0,
        fault_at_s=-1.0,
    )
    return p if cpu_write_us is None else p.with_(cpu_write_us=cpu_write_us)


def model_command(p: ArchitectureParams) -> str:
    """The ``rtsim simulate architecture`` command line that runs ``p`` (bulk mode)."""
    flags = [
        ("broker", p.broker.value),
        ("instances", p.instances),
        ("clients", p.clients),
        ("topics", p.topics),
        ("topic-rate", p.topic_rate),
        ("user-rate", p.user_rate),
        ("rtt-ms", p.rtt_ms),
        ("jitter-ms", p.jitter_ms),
        ("dc-transit-ms", round(p.dc_transit_ms, 6)),
        ("cpu-decode-us", p.cpu_decode_us),
        ("cpu-write-us", round(p.cpu_write_us, 4)),
        ("disconnects-per-hour", p.disconnects_per_hour),
        ("duration", p.duration_s),
    ]
    return (
        "rtsim simulate architecture "
        + " ".join(f"--{k} {v:g}" if not isinstance(v, str) else f"--{k} {v}" for k, v in flags)
        + " --no-fault"
    )


def model_stages(p: ArchitectureParams, subscribers: int) -> dict[str, float]:
    """The model's p50 of each of :data:`STAGE_GROUPS` at zero queueing (ms), from its
    parameters: 2 × ``dc_transit_ms`` + the broker's median exponential service;
    ``cpu_decode_us`` + the median position's writes; RTT/2 + the median jitter."""
    prof = p.prof
    service_ms = (prof.publish_us + prof.per_subscriber_us * p.instances) / 1e3
    return {
        "publish_to_fanout": 2 * p.dc_transit_ms + math.log(2) * service_ms,
        "fanout": (p.cpu_decode_us + (subscribers + 1) / 2 * p.cpu_write_us) / 1e3,
        "to_client": p.rtt_ms / 2 + math.log(2) * p.jitter_ms,
    }


def measured_stages(frame: pd.DataFrame) -> dict[str, float]:
    """The p50 of each of :data:`STAGE_GROUPS` over traced deliveries (ms; NaN if none)."""
    out = {}
    for name, parts in STAGE_GROUPS.items():
        v = frame[list(parts)].sum(axis=1).to_numpy(dtype=float) if len(frame) else np.zeros(0)
        out[name] = percentile(np.maximum(v[np.isfinite(v)], 0.0), 50)
    return out


# --- the comparison -----------------------------------------------------------------------
@dataclass
class BrokerComparison:
    """What :func:`compare_broker` measured and simulated.

    ``rows``: one per rate × metric × model variant (``rate`` msgs/s, ``metric``,
    ``model``, ``simulated``, ``measured`` (mean of the repeats), ``measured_ci_low`` /
    ``_high`` (95%), ``rel_error``, ``passes``, ``repeats_values``, ``lost``,
    ``loadavg_1m``); ``stages``: per rate, p50 ms per stage group, ``measured`` and per
    variant; ``stage_detail``: per rate, the measured p50/p99 of every stage of
    :data:`rtsim.core.stages.STAGES` (``server_to_fanout`` is A's receipt → B's fan-out:
    the broker hop inside the live path); ``hop``: the Redis measurement;
    ``calibration``: the CPU calibration run; ``commands``: per rate and variant, the
    ``rtsim simulate architecture`` command line of the simulated figures.
    """

    hop: RedisHop
    calibration: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    stages: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    stage_detail: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    commands: dict[str, dict[str, str]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "hop": self.hop.as_dict(),
            "calibration": self.calibration,
            "rows": self.rows,
            "stages": self.stages,
            "stage_detail": self.stage_detail,
            "model_commands": self.commands,
        }


def _loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def _drop_prefix(host: str, port: int, prefix: str) -> None:
    """Delete the backplane's keys (``{prefix}:*``) of this comparison."""
    import redis

    r = redis.Redis(host=host, port=port)
    try:
        keys = list(r.scan_iter(match=f"{{{prefix}}}:*"))
        if keys:
            r.delete(*keys)
    finally:
        r.close()


def _check(
    subscribers: int, rates: Sequence[float], repeats: int, duration_s: float, settle_s: float
) -> None:
    if subscribers < 1:
        raise ValueError(f"subscribers must be >= 1, got {subscribers}")
    if not rates or not all(math.isfinite(r) and r > 0 for r in rates):
        raise ValueError(f"rates must be > 0 and at least one, got {list(rates)}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    if not (math.isfinite(settle_s) and settle_s >= 0):
        raise ValueError(f"settle_s must be >= 0, got {settle_s}")


def compare_broker(
    subscribers: int = 200,
    rates: Sequence[float] = (10.0, 50.0, 100.0),
    repeats: int = 3,
    duration_s: float = 4.0,
    *,
    host: str = "127.0.0.1",
    port: int = 6379,
    hop_samples: int = 400,
    processes: int = 2,
    sim_duration_s: float = 60.0,
    seed: int = 0,
    settle_s: float = 5.0,
    stage_model: StageCalibration | bool = True,
) -> BrokerComparison:
    """Simulated vs measured publish-on-A → delivery-on-B latency over Redis Streams.

    Measures the Redis hop (:func:`measure_redis_hop`), starts two ``rtsim serve``
    instances on ``redis-streams://host:port`` under a fresh prefix (deleted afterwards),
    runs one CPU calibration at the middle rate, then per rate (msgs/s, one channel)
    ``repeats`` live runs of ``duration_s`` seconds with ``subscribers`` WebSocket
    subscribers on B (``processes`` load-generator processes) and the model for
    ``sim_duration_s`` simulated seconds (longer than a live run, so the simulated
    percentiles carry little sampling noise; ``seed``). A live run waits ``settle_s``
    seconds after the last publish for stragglers: what has not arrived by then counts as
    lost (5 s, so that a slow run's tail is measured rather than dropped). Defaults are
    issue 13's small size. ``stage_model``: True calibrates the ``"stages+hop"`` variant
    first (about a minute, on a separate in-memory server), a
    :class:`~rtsim.sim.stages.StageCalibration` uses that one, False leaves it out.

    Raises ``ValueError`` for bad arguments, ``RuntimeError`` if a server does not start,
    redis-py's ``ConnectionError`` when Redis is not reachable.
    """
    _check(subscribers, rates, repeats, duration_s, settle_s)
    hop = measure_redis_hop(host, port, samples=hop_samples)
    scal: StageCalibration | None = None
    scal_info: dict[str, Any] = {}
    if stage_model is True:
        from .stage_compare import calibrate_stage_model, stage_server

        with stage_server() as (url, pid):
            scal, scal_info = calibrate_stage_model(url, pid, processes=processes)
    elif isinstance(stage_model, StageCalibration):
        scal = stage_model
    prefix = "bc" + uuid.uuid4().hex[:10]
    args = ("--backplane", f"redis-streams://{host}:{port}?prefix={prefix}", *SERVE_FLAGS)
    out = BrokerComparison(hop=hop, calibration={})
    out.config = {
        "broker": "redis-streams",
        "instances": 2,
        "subscribers": subscribers,
        "channels": 1,
        "transport": "websocket",
        "rates": list(rates),
        "repeats": repeats,
        "duration_s": duration_s,
        "processes": processes,
        "sim_duration_s": sim_duration_s,
        "seed": seed,
        "settle_s": settle_s,
        "prefix": prefix,
    }
    try:
        with serve_process(args) as (url_a, pid_a), serve_process(args) as (url_b, pid_b):
            relay_cpu: list[float] = []  # instance A's CPU µs per message, per run

            def live(rate: float) -> RunResult:
                lp = LoadParams(
                    url=url_b,
                    publish_url=url_a,
                    subscribers=subscribers,
                    rate=rate,
                    duration_s=duration_s,
                    server_pid=pid_b,
                    processes=processes,
                    settle_s=settle_s,
                )
                c0 = process_cpu_s(pid_a)
                r = run_load(lp, progress=False)
                msgs = r.summary.extra.get("published") or round(rate * duration_s)
                relay_cpu.append((process_cpu_s(pid_a) - c0) / max(msgs, 1) * 1e6)
                return r

            mid = sorted(rates)[len(rates) // 2]
            cal = live(mid).summary
            cpu_us = cal.extra["server_cpu_us_per_delivery"]
            relay_us = relay_cpu[-1]
            if scal is not None:  # the relay's wake-ups are charged by the model itself
                relay_us = max(relay_us - scal.wake_cpu_us(1e3 / mid), 5.0)
            out.calibration = {
                "rate": mid,
                "server_b_cpu_us_per_delivery": cpu_us,
                "instance_a_cpu_us_per_message": relay_cpu[-1],
                "relay_us": relay_us,
                "stage_model": scal.as_dict() if scal is not None else None,
                "stage_model_runs": scal_info,
                "measured_p50_ms": cal.p50_ms,
                "measured_p99_ms": cal.p99_ms,
                "lost": cal.lost,
                "loadavg_1m": _loadavg(),
            }
            for rate in rates:
                stages = (scal, relay_us) if scal is not None else None
                _point(out, rate, live, cpu_us, sim_duration_s, seed, repeats, stages)
    finally:
        _drop_prefix(host, port, prefix)
    return out


def _point(
    out: BrokerComparison,
    rate: float,
    live: Callable[[float], RunResult],
    cpu_us: float | None,
    sim_duration_s: float,
    seed: int,
    repeats: int,
    stages: tuple[StageCalibration, float] | None = None,
) -> None:
    """One rate: the model variants and ``repeats`` live runs, appended to ``out``."""
    n = int(out.config["subscribers"])
    sim_stages: dict[str, dict[str, float]] = {}
    variants = {"hop": model_params(out.hop, n, rate, sim_duration_s)}
    if cpu_us is not None and math.isfinite(cpu_us):
        variants["hop+cpu"] = model_params(out.hop, n, rate, sim_duration_s, cpu_write_us=cpu_us)
    sims = {
        k: simulate_architecture(p, seed, keep_deliveries=False).summary
        for k, p in variants.items()
    }
    out.commands[f"{rate:g}"] = {
        k: f"{model_command(p)} --seed {seed}" for k, p in variants.items()
    }
    summaries: dict[str, dict[str, float]] = {
        k: {m: float(getattr(s, m)) for m in METRICS} for k, s in sims.items()
    }
    if stages is not None:
        scal, relay_us = stages
        frame = simulate_stages(
            scal,
            "websocket",
            n,
            rate,
            min(sim_duration_s, STAGE_SIM_S),
            seed,
            broker_hop_ms=out.hop.quantiles_ms,
            relay_us=relay_us,
        )
        e2e = frame["end_to_end"].to_numpy(dtype=float)
        summaries["stages+hop"] = {"p50_ms": percentile(e2e, 50), "p99_ms": percentile(e2e, 99)}
        sim_stages["stages+hop"] = measured_stages(frame)
        out.commands[f"{rate:g}"]["stages+hop"] = (
            f"rtsim.sim.stages.simulate_stages(calibration, 'websocket', {n}, {rate:g},"
            f" {min(sim_duration_s, STAGE_SIM_S):g}, {seed}, broker_hop_ms=hop.quantiles_ms,"
            f" relay_us={relay_us:.1f})"
        )
    load = _loadavg()
    values: dict[str, list[float]] = {m: [] for m in METRICS}
    frames, lost = [], 0
    for _ in range(repeats):
        r = live(rate)
        for m in METRICS:
            values[m].append(float(getattr(r.summary, m)))
        frames.append(r.deliveries)
        lost += r.summary.lost
    for m in METRICS:
        mean, half = mean_ci(values[m])
        low, high = mean - half, mean + half
        for name, sm in summaries.items():
            sv = sm[m]
            out.rows.append(
                {
                    "rate": rate,
                    "metric": m,
                    "model": name,
                    "simulated": sv,
                    "measured": mean,
                    "measured_ci_low": low,
                    "measured_ci_high": high,
                    "rel_error": (sv - mean) / mean if mean else math.nan,
                    "passes": passes(m, sv, low, high, mean),
                    # By the error alone (no CI): a pass that needs the CI is a wide CI's.
                    "within_tolerance": passes(m, sv, math.nan, math.nan, mean),
                    "repeats_values": values[m],
                    "lost": lost,
                    "loadavg_1m": load,
                }
            )
    pooled = pd.concat(frames, ignore_index=True)
    out.stages[f"{rate:g}"] = {
        "measured": measured_stages(pooled),
        **{k: model_stages(p, n) for k, p in variants.items()},
        **sim_stages,
    }
    out.stage_detail[f"{rate:g}"] = stage_summary(pooled)
