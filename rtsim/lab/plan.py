"""A capacity plan from a scenario file (``rtsim plan``, notebook 08).

:func:`plan` maps a :class:`~rtsim.sim.scenario.Scenario` onto the architecture model
(:meth:`Scenario.to_params`), runs it with replications for each instance count, and
adds what the model does not compute from named figures (:func:`machine_figures`):

- **CPU per delivery** by transport — this machine's calibration
  (``benchmarks/results/compare.json``) if present, else the model's default (7.2 µs, a
  bare aiohttp send loop) and the transport model's 100 µs per HTTP request. The transport
  mix enters the model as one weighted ``cpu_write_us``; a long-poll delivery also pays one
  HTTP request (its re-poll).
- **memory per connection** by transport — this machine's ``rtsim serve`` RSS growth
  (``benchmarks/results/fanout.json``) if present, else the published ~14 KiB per
  connection (``websockets`` docs, compression off) and an assumed 50 MiB process base.
- **bandwidth** from the payload sizes and the core framing byte counts
  (:mod:`rtsim.core.transport`), plus TLS and TCP/IP overhead.

Utilisations are mean loads (deliveries/s × CPU per delivery ÷ instances; the broker's
publishes/s × service time), the same for every instance since clients are spread evenly.
:func:`smallest_meeting` picks the smallest instance count that meets every target and
limit. :func:`check_live` runs a scaled-down copy of the scenario on live ``rtsim serve``
and puts measured beside simulated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.broker import Broker
from ..core.transport import Transport, sse_event_overhead, ws_frame_header_len
from ..sim.architecture import ArchitectureParams, run_bulk
from ..sim.brokers import PROFILES
from ..sim.network import wire_bytes_one
from ..sim.runner import sweep
from ..sim.scenario import Scenario

__all__ = [
    "DELIVERY_BUDGET",
    "KNOBS",
    "CheckUnavailable",
    "Figures",
    "Plan",
    "check_config",
    "check_live",
    "knob_ranges",
    "machine_figures",
    "plan",
    "plot_plan",
    "smallest_meeting",
    "verdicts",
    "with_knobs",
]

#: Expected deliveries one replication simulates at most; the peak window is shortened
#: (never below 5 s) to stay within it, so a plan takes seconds. Rates are stationary in
#: the window, so a shorter one estimates the same percentiles with wider CIs.
DELIVERY_BUDGET = 200_000
_MIN_WINDOW_S = 5.0
_MAX_MESSAGES = 20_000  # messages per replication (the bulk engine loops over room messages)
_TRANSPORTS = (Transport.WEBSOCKET, Transport.SSE, Transport.LONG_POLLING)
_SSE_ID_LEN = 16  # bytes of an event id such as "1700000000000-0" (Redis Streams ids)
_LP_RESPONSE_HEADER_B = 250  # the transport model's HTTP/1.1 response header (assumption)


def _results_dirs() -> list[Path]:
    here = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    return [Path.cwd() / "benchmarks" / "results", here]


def _read(name: str) -> tuple[Any, Path] | None:
    for d in _results_dirs():
        p = d / name
        if p.is_file():
            try:
                return json.loads(p.read_text(encoding="utf-8")), p
            except (OSError, ValueError):
                return None
    return None


@dataclass(frozen=True)
class Figures:
    """Per-transport figures the model does not compute, with where they come from.

    ``kib_per_connection`` (KiB), ``base_mib`` (MiB of an idle process), ``write_us`` (server
    CPU per delivery, µs), ``request_us`` (server CPU per HTTP request, µs; long polling
    pays one per delivery).
    """

    kib_per_connection: dict[str, float]
    base_mib: float
    write_us: dict[str, float]
    request_us: dict[str, float]
    memory_source: str
    cpu_source: str


def machine_figures() -> Figures:
    """This machine's measured figures where the benchmarks left them, else published ones.

    Reads ``benchmarks/results/fanout.json`` (memory rows of ``rtsim``: the largest run per
    transport) and ``compare.json`` (calibration rows) from the working directory or the
    source tree; never raises for a missing or unreadable file (it falls back and says so
    in the ``*_source`` fields).
    """
    kib: dict[str, float] = {}
    base = 50.0
    mem_src = (
        "published: ~14 KiB per connection, websockets docs (topics/memory.rst, compression"
        " off); 50 MiB process base (assumption)"
    )
    got = _read("fanout.json")
    if got is not None:
        data, path = got
        rows = [
            r for r in data.get("memory", []) if r.get("server") == "rtsim" and not r.get("errors")
        ]
        best: dict[str, dict[str, Any]] = {}
        for r in rows:
            t = str(r.get("transport"))
            if t not in best or r["connections"] > best[t]["connections"]:
                best[t] = r
        if best:
            kib = {t: float(r["kib_per_connection"]) for t, r in best.items()}
            base = float(np.mean([r["rss_before_mib"] for r in best.values()]))
            n = max(r["connections"] for r in best.values())
            mem_src = f"this machine: rtsim serve RSS growth over {n:,} connections ({path.name})"
    fallback_kib = kib.get(Transport.WEBSOCKET.value, 14.0)
    for t in _TRANSPORTS:
        kib.setdefault(t.value, fallback_kib)
    default_write = ArchitectureParams().cpu_write_us
    write = {t.value: default_write for t in _TRANSPORTS}
    request = {t.value: 0.0 for t in _TRANSPORTS}
    request[Transport.LONG_POLLING.value] = 100.0
    cpu_src = (
        f"published/assumed: {default_write:g} µs per frame written (bare aiohttp send loop,"
        " docs/facts.md); 100 µs per long-poll request (assumption)"
    )
    got = _read("compare.json")
    if got is not None:
        data, path = got
        cal = {r.get("transport"): r for r in data.get("calibration", [])}
        if all(t.value in cal for t in _TRANSPORTS):
            write = {
                t.value: float(cal[t.value]["server_cpu_per_delivery_us"]) for t in _TRANSPORTS
            }
            request = {
                t.value: float(cal[t.value].get("server_cpu_per_request_us", 0.0))
                for t in _TRANSPORTS
            }
            cpu_src = f"this machine: rtsim compare calibration ({path.name})"
    return Figures(kib, base, write, request, mem_src, cpu_src)


def _mix(s: Scenario) -> dict[str, float]:
    return {t.value: share for t, share in s.transports.effective().items()}


def cpu_per_delivery_us(s: Scenario, fig: Figures) -> float:
    """Instance CPU per delivery (µs), weighted by the scenario's transport mix."""
    return sum(share * (fig.write_us[t] + fig.request_us[t]) for t, share in _mix(s).items())


def bytes_per_delivery(s: Scenario) -> float:
    """Bytes on the wire per delivery (payload, framing, TLS, TCP/IP), mix-weighted."""
    payload = round(s.mean_payload_bytes())
    app = {
        Transport.WEBSOCKET.value: payload + ws_frame_header_len(payload),
        Transport.SSE.value: payload + sse_event_overhead(_SSE_ID_LEN),
        Transport.LONG_POLLING.value: payload + _LP_RESPONSE_HEADER_B,
    }
    return sum(share * wire_bytes_one(app[t], tls=True) for t, share in _mix(s).items())


def window_s(s: Scenario, p: ArchitectureParams) -> float:
    """The simulated window per replication (s): see :data:`DELIVERY_BUDGET`."""
    dps = p.clients * (p.user_rate + p.topic_rate + p.broadcast_rate)
    mps = p.clients * p.user_rate + p.topics * p.topic_rate + p.broadcast_rate
    t = min(DELIVERY_BUDGET / dps, _MAX_MESSAGES / mps) if dps > 0 else s.peak.duration_s
    return float(min(s.peak.duration_s, max(_MIN_WINDOW_S, round(t))))


@dataclass
class Plan:
    """A capacity plan: one row per instance count, the smallest that meets every target
    (``None`` if none does), and the notes that say what was simulated and from what."""

    scenario: str
    rows: list[dict[str, Any]]
    smallest: int | None
    window_s: float
    reps: int
    seed: int
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_LIMITS = ("instance_cpu", "broker_cpu", "connections", "memory")


def smallest_meeting(rows: Sequence[dict[str, Any]]) -> int | None:
    """The smallest ``instances`` among rows whose ``meets`` are all true, else ``None``."""
    ok = [int(r["instances"]) for r in rows if all(r["meets"].values())]
    return min(ok) if ok else None


def plan(
    s: Scenario,
    instances: Sequence[int] | None = None,
    *,
    reps: int = 3,
    seed: int = 0,
    progress: bool | None = False,
    figures: Figures | None = None,
) -> Plan:
    """Plan ``s`` for each instance count in ``instances`` (default: the scenario's own).

    Runs :func:`rtsim.sim.architecture.run_bulk` ``reps`` times per count (common random
    numbers over counts) on a window of :func:`window_s`. Latencies are publish-to-receive
    (ms) with Student-t 95 % CI half-widths (``*_ci``; NaN for one rep); utilisations are
    fractions of one core; memory in MiB per instance; bandwidth in Mbit/s. Raises
    ``ValueError`` for an instance count below 1.
    """
    fig = figures or machine_figures()
    ks = sorted({int(k) for k in (instances or [s.instances.count])})
    if ks[0] < 1:
        raise ValueError(f"instances must be >= 1, got {ks[0]}")
    cpu_us = cpu_per_delivery_us(s, fig)
    base = s.to_params(cpu_write_us=cpu_us)
    win = window_s(s, base)
    base = base.with_(duration_s=win)
    metrics = ("p50_ms", "p95_ms", "p99_ms", "lost_fraction", "peak_connections_per_instance")
    df = sweep(run_bulk, base, {"instances": ks}, metrics=metrics, reps=reps, seed=seed,
               progress=progress)  # fmt: skip
    dps = base.clients * (base.user_rate + base.topic_rate + base.broadcast_rate)
    mps_model = base.clients * base.user_rate + base.topics * base.topic_rate + base.broadcast_rate
    bpd = bytes_per_delivery(s)
    kib = sum(share * fig.kib_per_connection[t] for t, share in _mix(s).items())
    lim = s.instances
    prof = PROFILES[Broker(s.broker.name)]
    rows = []
    for k in ks:
        sub = df[df["instances"] == k].set_index("metric")
        mean_of: dict[str, float] = {str(i): float(v) for i, v in sub["mean"].items()}
        high_of: dict[str, float] = {str(i): float(v) for i, v in sub["ci_high"].items()}
        row: dict[str, Any] = {"instances": k}
        for m in ("p50_ms", "p95_ms", "p99_ms"):
            mean = mean_of[m]
            row[m] = mean
            row[m.replace("_ms", "_ci_ms")] = high_of[m] - mean
        row["lost_fraction"] = mean_of["lost_fraction"]
        conns = mean_of["peak_connections_per_instance"]
        row["connections_per_instance"] = conns
        row["instance_utilisation"] = (mps_model * base.cpu_decode_us + dps / k * cpu_us) * 1e-6
        row["broker_utilisation"] = (
            s.published_per_s() * (prof.publish_us + prof.per_subscriber_us * k) / prof.servers
        ) * 1e-6
        row["memory_mib_per_instance"] = fig.base_mib + conns * kib / 1024
        row["bandwidth_mbit_s_per_instance"] = dps / k * bpd * 8 / 1e6
        row["bandwidth_mbit_s_total"] = dps * bpd * 8 / 1e6
        load = {
            "instance_cpu": row["instance_utilisation"] / lim.max_utilisation,
            "broker_cpu": row["broker_utilisation"] / lim.max_utilisation,
            "connections": conns / lim.max_connections,
            "memory": row["memory_mib_per_instance"] / lim.memory_mib,
        }
        row["load"] = load
        row["saturates_first"] = max(_LIMITS, key=lambda c: load[c])
        row["meets"] = {
            "p50": row["p50_ms"] <= s.targets.p50_ms,
            "p99": row["p99_ms"] <= s.targets.p99_ms,
            **{c: load[c] <= 1.0 for c in _LIMITS},
        }
        rows.append(row)
    notes = [
        f"simulated {win:g} s of the {s.peak.duration_s:g} s peak window per replication"
        f" ({reps} replications per configuration, seed {seed}): rates are stationary, so a"
        " shorter window estimates the same percentiles with wider CIs",
        f"{base.clients:,} connections; {dps:,.0f} deliveries/s; the model publishes"
        f" {mps_model:,.0f} msg/s (rooms merged, one user channel per connection), the"
        f" scenario {s.published_per_s():,.0f} msg/s (broker utilisation uses the latter)",
        f"CPU per delivery {cpu_us:.1f} µs (transport mix; {fig.cpu_source})",
        f"memory {kib:.1f} KiB per connection + {fig.base_mib:.0f} MiB base ({fig.memory_source})",
        f"{bpd:.0f} B on the wire per delivery (payload {s.mean_payload_bytes():.0f} B, framing,"
        " TLS, TCP/IP)",
        "not modelled: long-poll re-poll gaps (latency), per-transport latency differences,"
        " presence state, the broker's per-room publishes being merged, Kafka batch cost",
    ]
    if s.disconnects.instance_restart:
        notes.append("instance 0 restarts half-way through the window; its clients replay")
    return Plan(
        scenario=s.name,
        rows=rows,
        smallest=smallest_meeting(rows),
        window_s=win,
        reps=reps,
        seed=seed,
        notes=notes,
        figures={
            "cpu_per_delivery_us": cpu_us,
            "kib_per_connection": kib,
            "bytes_per_delivery": bpd,
            "memory_source": fig.memory_source,
            "cpu_source": fig.cpu_source,
        },
        targets={"p50_ms": s.targets.p50_ms, "p99_ms": s.targets.p99_ms},
    )


def verdicts(pl: Plan, instances: int | None = None) -> dict[str, bool]:
    """Whether one configuration (default: the smallest meeting all, else the largest)
    meets each target and limit: ``{"p50": …, "p99": …, "instance_cpu": …, …}``."""
    k = instances if instances is not None else (pl.smallest or pl.rows[-1]["instances"])
    for r in pl.rows:
        if r["instances"] == k:
            return dict(r["meets"])
    raise ValueError(
        f"instances {k} is not in the plan; planned {[r['instances'] for r in pl.rows]}"
    )


# --- the live check ---------------------------------------------------------------------------
class CheckUnavailable(RuntimeError):
    """The live check could not run (the server did not start or answer); one line."""


#: The live backplane for each broker the scenario may name (Kafka has none: memory).
_LIVE_BACKPLANE = {
    Broker.REDIS_STREAMS: "redis-streams://127.0.0.1:6379",
    Broker.REDIS_PUBSUB: "redis-pubsub://127.0.0.1:6379",
    Broker.JETSTREAM: "nats://127.0.0.1:4222",
}
_CHECK_MAX_DELIVERIES_S = 4000.0  # what one loopback server + generator hold comfortably here
_CHECK_MIN_RATE = 5.0  # msg/s, so a few-second repeat has enough messages for percentiles
_CHECK_MAX_CHANNELS = 20


def _reachable(url: str) -> bool:
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(url)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 0), timeout=1.0):
            return True
    except OSError:
        return False


def check_config(s: Scenario, clients: int = 300) -> dict[str, Any]:
    """The scaled-down configuration :func:`check_live` runs (pure; no I/O).

    ``clients`` subscribers (at most the scenario's connections) on the dominant transport,
    in ``channels`` equal channels sized like the scenario's delivery-weighted fan-out
    (at most 20), published at the scenario's per-client delivery rate, clipped to
    [5 msg/s, what keeps deliveries under 4,000/s].
    """
    n = max(2, min(clients, s.clients))
    d = s.deliveries_per_client()
    total = sum(d.values())
    sizes = {"user": 1.0, "broadcast": float(s.clients)}
    sizes.update({f"rooms.{k}": float(r.size) for k, r in s.rooms.items()})
    fan = sum(d[k] * sizes[k] for k in d) / total
    channels = int(max(1, min(_CHECK_MAX_CHANNELS, n, round(n / max(1.0, fan * n / s.clients)))))
    rate = channels * total
    rate = min(max(rate, _CHECK_MIN_RATE), _CHECK_MAX_DELIVERIES_S * channels / n)
    mix = s.transports.effective()
    transport = max(mix, key=lambda t: mix[t])
    return {
        "clients": n,
        "channels": channels,
        "rate": float(rate),
        "transport": transport.value,
        "payload_bytes": round(s.mean_payload_bytes()),
    }


def check_live(
    s: Scenario,
    *,
    clients: int = 300,
    repeats: int = 3,
    duration_s: float = 4.0,
    seed: int = 0,
    progress: bool = False,
    figures: Figures | None = None,
) -> dict[str, Any]:
    """Run a scaled-down copy of ``s`` live and through the model; measured beside simulated.

    One ``rtsim serve`` instance (the load generator targets one URL) on the scenario's
    backplane when it has a live one and it answers on 127.0.0.1 (else the memory backplane,
    said in the notes), driven ``repeats`` (>= 3) times by
    :func:`rtsim.live.clients.loadgen.run_load`. The model runs the same configuration
    (``instances=1``, loopback: ``rtt_ms=0``, no jitter, no disconnects, CPU per delivery of
    this machine) with ``repeats`` replications. Returns ``{"config", "notes", "repeats",
    "comparison": [{metric, simulated, measured, measured_ci, rel_error}], "measured_runs"}``
    (latencies in ms). Raises :class:`CheckUnavailable` if the server cannot be started or
    reached, ``ValueError`` for ``repeats < 3``.
    """
    import math

    from ..live.clients.loadgen import LoadParams, run_load
    from ..live.errors import ServerUnreachableError
    from ..live.process import serve_process
    from ..sim.runner import mean_ci, replicate

    if repeats < 3:
        raise ValueError(f"repeats must be >= 3 for a confidence interval, got {repeats}")
    fig = figures or machine_figures()
    cfg = check_config(s, clients)
    broker = Broker(s.broker.name)
    notes = [
        f"{cfg['clients']} {cfg['transport']} subscribers in {cfg['channels']} channels,"
        f" {cfg['rate']:.3g} msg/s, payload {cfg['payload_bytes']} B, {duration_s:g} s per"
        f" repeat (scaled from {s.clients:,} connections: same fan-out shape, dominant"
        " transport, one instance)",
    ]
    backplane = "memory"
    want = _LIVE_BACKPLANE.get(broker)
    if want is None:
        notes.append(f"{broker.value} has no live backplane here: memory backplane used")
    elif _reachable(want):
        backplane = want
        notes.append(f"backplane {want} ({broker.value})")
    else:
        notes.append(f"{broker.value} not reachable at {want}: memory backplane used")
    runs: list[dict[str, Any]] = []
    try:
        with serve_process(["--backplane", backplane, "--max-connections", "10000"]) as (url, pid):
            for i in range(repeats):
                lp = LoadParams(
                    url=url,
                    transport=cfg["transport"],
                    subscribers=cfg["clients"],
                    channels=cfg["channels"],
                    rate=cfg["rate"],
                    duration_s=duration_s,
                    payload_bytes=cfg["payload_bytes"],
                    server_pid=pid,
                    settle_s=1.0,
                    run_id=f"plan{seed}-{i}",
                )
                r = run_load(lp, progress=progress).summary
                runs.append({"p50_ms": r.p50_ms, "p95_ms": r.p95_ms, "p99_ms": r.p99_ms,
                             "lost": r.lost, "deliveries": r.deliveries})  # fmt: skip
    except (RuntimeError, ServerUnreachableError) as exc:
        raise CheckUnavailable(f"live check failed: {str(exc).splitlines()[0]}") from None
    t = Transport(cfg["transport"])
    mp = ArchitectureParams(
        clients=cfg["clients"],
        instances=1,
        broker=broker,
        user_rate=0.0,
        topics=cfg["channels"],
        topic_rate=cfg["rate"] / cfg["channels"],
        duration_s=duration_s,
        rtt_ms=0.0,
        jitter_ms=0.0,
        disconnects_per_hour=0.0,
        fault_at_s=-1.0,
        cpu_write_us=fig.write_us[t.value] + fig.request_us[t.value],
    )
    sim = replicate(run_bulk, mp, reps=repeats, seed=seed, progress=False)
    comparison = []
    for m in ("p50_ms", "p95_ms", "p99_ms"):
        sm = float(sim[m].mean())
        mm, hw = mean_ci([r[m] for r in runs])
        rel = sm / mm - 1 if mm > 0 and math.isfinite(mm) else math.nan
        comparison.append(
            {"metric": m, "simulated": sm, "measured": mm, "measured_ci": hw, "rel_error": rel}
        )
    lost = sum(int(r["lost"]) for r in runs)
    comparison.append(
        {"metric": "lost", "simulated": float(sim["lost"].sum()), "measured": float(lost),
         "measured_ci": math.nan, "rel_error": math.nan}
    )  # fmt: skip
    notes.append(f"model: CPU per delivery {mp.cpu_write_us:.1f} µs ({fig.cpu_source})")
    return {
        "scenario": s.name,
        "config": {**cfg, "backplane": backplane, "duration_s": duration_s},
        "notes": notes,
        "repeats": repeats,
        "comparison": comparison,
        "measured_runs": runs,
    }


# --- notebook 08: knobs and plots ---------------------------------------------------------------
#: The main knobs of notebook 08: (section, field, lo, hi) — ranges clipped to the declarations.
KNOBS: tuple[tuple[str, str, float | None, float | None], ...] = (
    ("users", "count", 1_000, 200_000),
    ("users", "online_share", 0.05, 1.0),
    ("peak", "rate_factor", 0.25, 4.0),
    ("transports", "proxied", None, None),
    ("instances", "count", 1, 32),
    ("network", "rtt_ms", 0, 300),
    ("disconnects", "per_hour", 0, 30),
)


def knob_ranges(s: Scenario) -> list[dict[str, Any]]:
    """One row per knob: ``name`` (dotted), ``value`` (the scenario's), ``lo``, ``hi``,
    ``kind``, ``unit`` — ranges from :func:`rtsim.core.params.slider_range` on the
    section's declaration, so a slider can never produce a value the loader refuses."""
    from ..core.params import slider_range, specs

    rows = []
    for sec, name, lo, hi in KNOBS:
        obj = getattr(s, sec)
        spec = next(sp for f, sp in specs(obj) if f.name == name)
        a, b = slider_range(type(obj), name, lo, hi)
        rows.append({"name": f"{sec}.{name}", "value": getattr(obj, name), "lo": a, "hi": b,
                     "kind": spec.kind, "unit": spec.unit})  # fmt: skip
    return rows


def with_knobs(s: Scenario, **values: Any) -> Scenario:
    """``s`` with knobs replaced, given as ``users__count=5000`` (section__field)."""
    from dataclasses import replace

    by_sec: dict[str, dict[str, Any]] = {}
    for key, v in values.items():
        sec, name = key.split("__", 1)
        by_sec.setdefault(sec, {})[name] = v
    return replace(s, **{sec: replace(getattr(s, sec), **kw) for sec, kw in by_sec.items()})


def plot_plan(pl: Plan) -> Any:
    """Three panels: latency vs instances with the target lines, utilisation per component,
    memory per instance (with the limit). Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    ks = [r["instances"] for r in pl.rows]
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(13, 3.4))
    for m, style in (("p50_ms", "o-"), ("p95_ms", "s--"), ("p99_ms", "^-")):
        ys = [r[m] for r in pl.rows]
        es = [0.0 if r[m.replace("_ms", "_ci_ms")] != r[m.replace("_ms", "_ci_ms")]
              else r[m.replace("_ms", "_ci_ms")] for r in pl.rows]  # fmt: skip
        a1.errorbar(ks, ys, yerr=es, fmt=style, capsize=3, label=m.replace("_ms", ""))
    a1.axhline(pl.targets["p50_ms"], ls=":", c="grey", label="p50 target")
    a1.axhline(pl.targets["p99_ms"], ls="--", c="grey", label="p99 target")
    a1.set(xlabel="instances", ylabel="ms", yscale="log", title="latency (95% CI)")
    a1.legend(fontsize=7)
    for c in _LIMITS:
        a2.plot(ks, [r["load"][c] for r in pl.rows], "o-", label=c)
    a2.axhline(1.0, ls="--", c="grey")
    a2.set(xlabel="instances", ylabel="load ÷ limit", title="utilisation per component")
    a2.legend(fontsize=7)
    mem = [r["memory_mib_per_instance"] for r in pl.rows]
    a3.bar([str(k) for k in ks], mem, color="tab:purple")
    a3.set(xlabel="instances", ylabel="MiB per instance", title="memory per instance")
    fig.tight_layout()
    return fig
