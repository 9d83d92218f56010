"""The stage model against the live server: calibrate once, predict held-out runs.

1. :func:`calibrate_stage_model` measures this machine: the wake-up of an idle event loop
   by how long it slept (:func:`rtsim.live.wakeup.measure_wakeup`), the CPU per delivery
   of each transport at two sizes (:func:`measure_costs`, :data:`COST_SIZES`), and one
   traced run of :data:`CALIBRATION_CONFIG` (WebSocket, 200 subscribers, 50% load) whose
   stage timestamps give the stage distributions (:func:`rtsim.sim.stages.calibrate_stages`).
2. :func:`compare_stage_model` then predicts configurations the calibration never saw
   (other loads, 50 and 2,000 subscribers, SSE and long polling) with
   :func:`rtsim.sim.stages.simulate_stages`, runs each ``repeats`` times live, and reports
   the measured mean with its 95% CI beside the simulated value and whether the point
   passes (:func:`passes`).

The servers started here lift the per-address limits (:data:`SERVER_ARGS`): every
load-generator connection comes from 127.0.0.1.
"""

from __future__ import annotations

import math
import os
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from ..core.results import RunResult
from ..core.stages import Wakeup
from ..core.transport import Transport, parse_transport
from ..live.clients.loadgen import LoadParams, run_load
from ..live.process import serve_process
from ..sim.stage_calibration import CpuRun
from ..sim.stage_fit import fit_costs
from ..sim.stages import StageCalibration, TransportCosts, calibrate_stages

__all__ = [
    "CALIBRATION_CONFIG",
    "COST_SIZES",
    "MECHANISMS",
    "SERVER_ARGS",
    "attribution",
    "calibrate_stage_model",
    "ci95",
    "compare_stage_model",
    "dominant_stages",
    "measure_costs",
    "passes",
    "plot_stage_sweep",
    "refit",
    "resimulate",
    "stage_capacity",
    "stage_error_table",
    "stage_server",
    "stage_waterfall",
]

#: The calibration configuration (the only one whose latencies the model is fitted on).
CALIBRATION_CONFIG: dict[str, Any] = {"transport": "websocket", "subscribers": 200, "load": 0.5}
#: Sizes of the per-transport CPU runs (cost per delivery grows with connections).
COST_SIZES: tuple[int, int] = (200, 1000)
#: The extra WebSocket runs of the burst law (subscribers, msgs/s): idle gaps from about
#: 1 ms to 40 ms on this 2-core machine (with the cost runs at 200 and 1,000 subscribers;
#: 1,000 at 20 msgs/s sleeps about as long as 200 at 25).
WARMTH_RUNS: tuple[tuple[int, float], ...] = ((200, 25.0), (200, 50.0), (200, 200.0), (50, 600.0))
#: Deliveries/s of the CPU runs per transport (well below any capacity measured here).
_COST_DPS = {"websocket": 20_000.0, "sse": 20_000.0, "long-polling": 2_000.0}
#: ``rtsim serve`` flags for load runs from one address.
SERVER_ARGS: tuple[str, ...] = (
    "--publish-rate-per-ip",
    "1000000",
    "--max-connections-per-ip",
    "100000",
)
_METRICS = ("p50_ms", "p95_ms", "p99_ms", "deliveries_per_s")


@contextmanager
def stage_server() -> Iterator[tuple[str, int]]:
    """``rtsim serve`` in its own process with :data:`SERVER_ARGS`; yields (url, pid)."""
    with serve_process(SERVER_ARGS) as up:
        yield up


def _loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def _poll_requests(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith('rtsim_connections_opened_total{transport="long-polling"}'):
                return float(line.split()[-1])
    return 0.0


def _run(
    url: str,
    pid: int,
    t: Transport,
    subscribers: int,
    rate: float,
    duration_s: float,
    processes: int,
    traced: int = 200,
) -> RunResult:
    return run_load(
        LoadParams(
            url=url,
            transport=t,
            subscribers=subscribers,
            rate=rate,
            duration_s=duration_s,
            server_pid=pid,
            processes=processes,
            settle_s=1.5,
            traced=traced,
        ),
        progress=False,
    )


def _cpu_run(r: RunResult, subscribers: int, rate: float, processes: int) -> CpuRun:
    e = r.summary.extra
    ftw = e.get("stages", {}).get("fanout_to_write", {}).get("p50_ms", math.nan)
    return CpuRun(
        rate=rate,
        subscribers=subscribers,
        processes=processes,
        published=int(e["published"]),
        server_cpu_s=float(e["server_cpu_s"] or 0.0),
        loadgen_cpu_s=float(e["loadgen_cpu_s"]),
        publisher_cpu_s=float(e["publisher_cpu_s"]),
        fanout_to_write_p50_ms=float(ftw) if math.isfinite(ftw) else None,
    )


def measure_costs(
    url: str,
    pid: int,
    transport: Transport | str,
    subscribers: int,
    duration_s: float = 2.0,
    processes: int = 2,
    websocket: TransportCosts | None = None,
    wakeup: Wakeup | None = None,
    runs: list[CpuRun] | None = None,
) -> TransportCosts:
    """CPU µs per delivery of ``transport`` at ``subscribers`` connections (one run).

    Long polling needs ``websocket`` (its costs at the same size): its per-delivery costs
    are taken from there and the rest of the CPU is divided by the requests the server
    answered inside the run's CPU window (``rtsim_connections_opened_total`` in /metrics, less
    each subscriber's first poll, made before the window). The rate is
    :data:`_COST_DPS` / ``subscribers``. With ``wakeup`` (this machine's wake-up CPU by
    idle gap) the costs are net of the wake-ups the run paid (the server and each worker
    once per message, after an idle gap of about the message interval; push transports
    only). ``runs``, if given, receives the run's :class:`~rtsim.sim.stage_calibration.
    CpuRun`. Raises ``RuntimeError`` if nothing was delivered.
    """
    t = parse_transport(transport)
    rate = round(_COST_DPS[t.value] / subscribers, 2)
    before = _poll_requests(url) if t is Transport.LONG_POLLING else 0.0
    r = _run(url, pid, t, subscribers, rate, duration_s, processes)
    s, e = r.summary, r.summary.extra
    if s.deliveries == 0 or e["server_cpu_s"] is None:
        raise RuntimeError(f"the {t.value} cost run delivered nothing; is the server running?")
    if runs is not None:
        runs.append(_cpu_run(r, subscribers, rate, processes))
    srv_us = e["server_cpu_s"] * 1e6
    cli_us = max(e["loadgen_cpu_s"] - e["publisher_cpu_s"], 0.0) * 1e6
    if t is not Transport.LONG_POLLING:
        m = e["published"]
        if wakeup is not None:
            interval_ms = 1e3 / rate
            srv_us -= m * wakeup.cpu_at(interval_ms)
            cli_us -= m * processes * wakeup.cpu_at(interval_ms)
        return TransportCosts(
            server_us=max(srv_us / s.deliveries, 0.5),
            client_us=max(cli_us / s.deliveries, 0.5),
            at_n=subscribers,
        )
    ws = websocket or TransportCosts(server_us=0.0, client_us=0.0)
    # Each subscriber's first poll was made while the workers connected, before the run's
    # CPU window opened: only the later ones were paid for inside it.
    requests = max(1.0, _poll_requests(url) - before - subscribers)
    return TransportCosts(
        server_us=ws.server_us,
        client_us=ws.client_us,
        request_us=max(srv_us - s.deliveries * ws.server_us, 0.0) / requests,
        client_request_us=max(cli_us - s.deliveries * ws.client_us, 0.0) / requests,
        at_n=subscribers,
    )


def calibrate_stage_model(
    url: str,
    pid: int,
    duration_s: float = 3.0,
    processes: int = 2,
    transports: Sequence[Transport | str] = ("websocket", "sse", "long-polling"),
    raw: dict[str, Any] | None = None,
    warmth: bool = True,
) -> tuple[StageCalibration, dict[str, Any]]:
    """Fit the stage model on this machine (about a minute); see the module docstring.

    ``warmth``: also run WebSocket at the rates of :data:`WARMTH_RUNS` and fit what
    work costs after the process slept, by the idle gap (the warm-up law of the server and
    the workers, :func:`~rtsim.sim.warmup.fit_warmup`, and the publisher's burst law,
    :func:`~rtsim.sim.stage_calibration.fit_burst`); every cost is then stored as a busy
    process's, the extra its run paid taken off (:func:`~rtsim.sim.stage_fit.fit_costs`).
    Without it, costs are net of the probe's wake-up CPU instead.

    ``transports``: whose CPU costs to measure (WebSocket always: the traced run is one);
    fewer make a quicker calibration that can predict only those. ``raw``, if given, receives
    the measurements themselves (``run``: the traced :class:`~rtsim.core.results.RunResult`,
    ``wakeup``, ``costs`` and ``measured_costs`` (as measured), ``cost_runs``,
    ``warm_runs``, ``traced`` (its :class:`~rtsim.sim.stage_calibration.CpuRun`), ``rate``,
    ``processes``) to refit offline (:func:`~rtsim.sim.stage_fit.fit_costs`).

    Returns the :class:`~rtsim.sim.stages.StageCalibration` and a dict describing the
    runs (``command``, ``rate``, ``loadavg_1m``, measured p50/p99 of the traced run,
    ``costs`` per transport and size as measured, ``long_polling_fitted``, ``wakeup_ms``).
    """
    from ..live.wakeup import measure_wakeup

    wake = measure_wakeup()
    small, large = COST_SIZES
    cost_runs: dict[tuple[str, int], CpuRun] = {}
    costs: dict[str, dict[int, TransportCosts]] = {}
    wanted = {parse_transport(x) for x in transports} | {Transport.WEBSOCKET}
    for t in (Transport.WEBSOCKET, Transport.SSE, Transport.LONG_POLLING):
        if t not in wanted:
            continue
        costs[t.value] = {}
        for n in (small, large):
            ws = costs.get("websocket", {}).get(n)
            got: list[CpuRun] = []
            costs[t.value][n] = measure_costs(
                url,
                pid,
                t,
                n,
                2.0,
                processes,
                websocket=ws,
                wakeup=None if warmth else wake,
                runs=got,
            )
            cost_runs[(t.value, n)] = got[0]
    warm_runs = [cost_runs[("websocket", small)]]
    if warmth:
        for n, rate_w in WARMTH_RUNS:
            r_w = _run(url, pid, Transport.WEBSOCKET, n, rate_w, 2.0, processes)
            warm_runs.append(_cpu_run(r_w, n, rate_w, processes))
    cfg = CALIBRATION_CONFIG
    subs = int(cfg["subscribers"])
    ws200 = costs["websocket"][subs] if subs in costs["websocket"] else costs["websocket"][small]
    cap = min(1e6 / ws200.server_us, 2e6 / (ws200.server_us + ws200.client_us + 300.0 / subs))
    rate = round(float(cfg["load"]) * cap / subs, 2)
    load = _loadavg()
    r = _run(url, pid, Transport.WEBSOCKET, subs, rate, duration_s, processes, traced=10**9)
    s, e = r.summary, r.summary.extra
    command = (
        f"rtsim load --transport websocket --subscribers {subs} --rate {rate:g}"
        f" --duration {duration_s:g} --processes {processes} --json (every message traced)"
    )
    scal = calibrate_stages(
        r.deliveries,
        e["loadgen_cpu_s"],
        s.deliveries,
        rate,
        os.cpu_count() or 1,
        processes,
        command=command,
        server_cpu_s=e["server_cpu_s"],
        messages=e["published"],
        publisher_cpu_s=e["publisher_cpu_s"],
        wakeup=wake,
    )
    traced = _cpu_run(r, subs, rate, processes)
    scal, fitted = fit_costs(
        scal, costs, cost_runs, warm_runs, traced, law="warmup" if warmth else "none"
    )
    if raw is not None:
        raw.update(
            run=r,
            wakeup=wake,
            costs=costs,
            rate=rate,
            processes=processes,
            cost_runs=cost_runs,
            warm_runs=warm_runs,
            measured_costs=costs,
            traced=traced,
        )
    info = {
        **cfg,
        "rate": rate,
        "duration_s": duration_s,
        "command": command,
        "loadavg_1m": load,
        "measured_p50_ms": s.p50_ms,
        "measured_p99_ms": s.p99_ms,
        "costs": {k: {str(n): vars(c) for n, c in v.items()} for k, v in costs.items()},
        "long_polling_fitted": {str(n): vars(c) for n, c in fitted.items()},
        "cost_command": "rtsim load --transport T --subscribers N --rate R --duration 2"
        f" (N in {list(COST_SIZES)}, R×N = {_COST_DPS} deliveries/s)",
        "wakeup": vars(wake),
        "warmth_runs": [vars(x) for x in warm_runs] if warmth else [],
        "capacity_deliveries_per_s": {k: scal.capacity_deliveries_per_s(k, subs) for k in costs},
    }
    return scal, info


def stage_capacity(scal: StageCalibration, transport: Transport | str, subscribers: int) -> float:
    """Deliveries/s at which the model's server core or all cores are full."""
    return scal.capacity_deliveries_per_s(transport, subscribers)


def ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and its 95% Student-t confidence interval (NaN bounds with one value)."""
    from scipy import stats

    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if len(v) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


def passes(metric: str, simulated: float, low: float, high: float, measured: float) -> bool:
    """The lab's criterion: |error| ≤ 10% (p50) / 20% (p95, p99, throughput), or the
    simulated value inside the measured 95% CI."""
    if not (math.isfinite(simulated) and math.isfinite(measured) and measured):
        return False
    tol = 0.10 if metric == "p50_ms" else 0.20
    inside = math.isfinite(low) and low <= simulated <= high
    return abs(simulated - measured) / measured <= tol or inside


def _simulated(
    scal: StageCalibration,
    t: Transport | str,
    subscribers: int,
    rate: float,
    duration_s: float,
    seed: int,
    **switches: Any,
) -> tuple[pd.DataFrame, Any]:
    """The stage model's frame for one point and the summary of its end-to-end latencies."""
    from ..core.results import Summary
    from ..sim.stages import simulate_stages

    sim = simulate_stages(scal, t, subscribers, rate, duration_s, seed, **switches)
    summary = Summary.from_latencies(
        sim["end_to_end"].to_numpy(),
        duration_s=duration_s,
        wire_bytes=math.nan,
        requests=0,
        connections=subscribers,
        server_memory_bytes=math.nan,
    )
    return sim, summary


def compare_stage_model(
    url: str,
    pid: int,
    scal: StageCalibration,
    transport: Transport | str,
    loads: Sequence[float],
    subscribers: int = 200,
    repeats: int = 3,
    duration_s: float = 3.0,
    seed: int = 0,
    processes: int = 2,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Simulated (stage model) vs measured (``repeats`` live runs, 95% CI) per load.

    ``loads`` are fractions of the model's capacity for ``transport`` at ``subscribers``
    (:func:`stage_capacity`). Returns (rows, stages): rows with ``transport``,
    ``subscribers``, ``load``, ``rate``, ``metric``, ``simulated``, ``measured`` (mean of
    the repeats), ``measured_ci_low``/``high``, ``rel_error``, ``passes``, ``loadavg_1m``
    (1-minute load average before the runs), ``other_cores`` (cores other work took during
    the runs, their mean: ``other_cpu_cores`` of :func:`~rtsim.live.clients.loadgen.
    run_load`; NaN if unknown), ``lost``; stages: per load, per stage p50/p99
    simulated and measured (pooled over the repeats). Raises ``ValueError`` for a load
    outside (0, 1.5) or ``repeats`` < 1.
    """
    from ..core.stages import stage_summary

    t = parse_transport(transport)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    cap = stage_capacity(scal, t, subscribers)
    rows: list[dict[str, Any]] = []
    stages: dict[str, Any] = {}
    for f in loads:
        if not 0 < f < 1.5:
            raise ValueError(f"loads must be in (0, 1.5), got {f}")
        rate = round(max(0.5, f * cap / subscribers), 2)
        sim, s_sum = _simulated(scal, t, subscribers, rate, duration_s, seed)
        load = _loadavg()
        measured: dict[str, list[float]] = {m: [] for m in _METRICS}
        frames = []
        lost = 0
        others = []
        for _ in range(repeats):
            r = _run(url, pid, t, subscribers, rate, duration_s, processes)
            other = r.summary.extra.get("other_cpu_cores")
            others.append(math.nan if other is None else float(other))
            for m in _METRICS:
                measured[m].append(float(getattr(r.summary, m)))
            frames.append(r.deliveries)
            lost += r.summary.lost
        for m in _METRICS:
            mean, low, high = ci95(measured[m])
            sv = float(getattr(s_sum, m))
            rows.append(
                {
                    "transport": t.value,
                    "subscribers": subscribers,
                    "load": f,
                    "rate": rate,
                    "metric": m,
                    "simulated": sv,
                    "measured": mean,
                    "measured_ci_low": low,
                    "measured_ci_high": high,
                    "rel_error": (sv - mean) / mean if mean else math.nan,
                    "passes": passes(m, sv, low, high, mean),
                    "loadavg_1m": load,
                    "other_cores": float(np.mean(others)),
                    "lost": lost,
                }
            )
        pooled = pd.concat(frames, ignore_index=True)
        stages[f"{t.value}/{subscribers}/{f:g}"] = {
            "simulated": stage_summary(sim),
            "measured": stage_summary(pooled),
        }
    return rows, stages


#: The model's mechanisms, each a switch of :func:`rtsim.sim.stages.simulate_stages`.
MECHANISMS: dict[str, str] = {
    "epoll_ms": "whole-millisecond timer wake-ups of the publisher",
    "fanout_variance": "per-message fan-out cost drawn, not its mean",
    "core_sharing": "processes sharing the machine's cores",
    "server_core": "the busy server keeping a core to itself",
    "wake_busy": "no wake-up cost for a loop that finds every core busy",
    "idle_gap": "wake-ups slower after longer idle gaps (measured)",
    "size_law": "CPU per delivery growing with connections (two sizes measured)",
    "wake_cpu": "the CPU a wake-up itself costs, longer after longer idle gaps (measured)",
    "ack": "the server's ack of each publish restarting the publisher's sleep",
    "warmth": "work after an idle gap costing more CPU (the warm-up and burst laws, by gap)",
    "park_order": "long polling: parked polls answered in the order they were parked",
    "stalls": "a slow fan-out's excess as interruptions per stretch of time, not per delivery",
}


def refit(data: dict[str, Any], raw: dict[str, Any], law: str = "warmup") -> dict[str, Any]:
    """``data`` (a saved sweep) with its model refitted, by this commit's code, from the raw
    runs its calibration saved (``bench_compare.py --save-calibration``; the ``raw`` of
    :func:`calibrate_stage_model`): the same measurements, no live runs. ``law`` as in
    :func:`~rtsim.sim.stage_fit.fit_costs`. Returns a copy; the measured side is kept."""
    r = raw["run"]
    s, e = r.summary, r.summary.extra
    scal = calibrate_stages(
        r.deliveries,
        e["loadgen_cpu_s"],
        s.deliveries,
        raw["rate"],
        int(data["calibration"]["model"]["cores"]),
        raw["processes"],
        command=data["calibration"]["command"],
        server_cpu_s=e["server_cpu_s"],
        messages=e["published"],
        publisher_cpu_s=e["publisher_cpu_s"],
        wakeup=raw["wakeup"],
    )
    m = raw["measured_costs"]
    scal, fitted = fit_costs(scal, m, raw["cost_runs"], raw["warm_runs"], raw["traced"], law=law)
    cal = {**data["calibration"], "model": scal.as_dict()}
    cal["long_polling_fitted"] = {str(n): vars(c) for n, c in fitted.items()}
    return {**data, "calibration": cal}


def resimulate(
    data: dict[str, Any],
    loads: Sequence[float] | None = None,
    seed: int = 0,
    duration_s: float = 3.0,
    **switches: Any,
) -> dict[str, Any]:
    """A committed sweep (``benchmarks/results/compare_stages.json``) with its simulated
    side recomputed from the calibration it saved (``calibration.model``); no live runs.

    Every point (or those at ``loads``) is simulated again at its rate for ``duration_s``
    (the sweep's ``--duration``, default 3 s) with ``seed`` and ``switches`` (mechanisms
    of :data:`MECHANISMS` to turn off, e.g. ``ack=False``); the measured side is kept.
    Returns a dict of the same shape: ``rows`` (``simulated``, ``rel_error`` and
    ``passes`` recomputed) and ``stages`` (``simulated`` recomputed). With the model
    unchanged and ``seed=0`` it reproduces the committed simulated values.
    """
    from ..core.stages import stage_summary

    scal = StageCalibration.from_dict(data["calibration"]["model"])
    wanted = None if loads is None else {round(x, 6) for x in loads}
    rows: list[dict[str, Any]] = []
    stages: dict[str, Any] = {}
    sims: dict[tuple[str, int, float], Any] = {}
    for r in data["rows"]:
        key = (r["transport"], int(r["subscribers"]), float(r["load"]))
        if wanted is not None and round(key[2], 6) not in wanted:
            continue
        if key not in sims:
            sim, sims[key] = _simulated(
                scal, key[0], key[1], float(r["rate"]), duration_s, seed, **switches
            )
            name = f"{key[0]}/{key[1]}/{key[2]:g}"
            old = data.get("stages", {}).get(name, {})
            stages[name] = {**old, "simulated": stage_summary(sim)}
        sv = float(getattr(sims[key], r["metric"]))
        mean = r["measured"]
        rows.append(
            {
                **r,
                "simulated": sv,
                "rel_error": (sv - mean) / mean if mean else math.nan,
                "passes": passes(
                    r["metric"], sv, r["measured_ci_low"], r["measured_ci_high"], mean
                ),
            }
        )
    return {**data, "rows": rows, "stages": stages}


def attribution(
    data: dict[str, Any], loads: Sequence[float] = (0.2, 0.5, 0.8), seed: int = 0
) -> pd.DataFrame:
    """What each mechanism of the model contributes: the committed sweep's points at
    ``loads`` re-simulated (:func:`resimulate`) with the model as calibrated and with each
    mechanism of :data:`MECHANISMS` turned off in turn; per variant the mean |error| of p50
    and p99 against the measured means and the points passing (:func:`passes`). One row
    per variant (``"full model"`` first). Takes a few minutes (simulation only)."""
    variants: list[tuple[str, dict[str, Any]]] = [("full model", {})]
    variants += [(f"without {k}", {k: False}) for k in MECHANISMS]
    out = []
    for name, off in variants:
        df = pd.DataFrame(resimulate(data, loads, seed, **off)["rows"])
        df = df[df.metric.isin(["p50_ms", "p99_ms"])]
        err = df.groupby("metric")["rel_error"].apply(lambda e: float(e.abs().mean()))
        out.append(
            {
                "variant": name,
                "what is off": MECHANISMS.get(name.removeprefix("without "), "—"),
                "mean_abs_p50_error": err["p50_ms"],
                "mean_abs_p99_error": err["p99_ms"],
                "points_passing": int(df["passes"].sum()),
                "points": len(df),
            }
        )
    return pd.DataFrame(out)


# Notebook 07's tables and figures of a committed sweep live in their own module.
from .stage_report import (  # noqa: E402
    dominant_stages,
    plot_stage_sweep,
    stage_error_table,
    stage_waterfall,
)
