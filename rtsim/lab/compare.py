"""Simulation vs reality: calibrate the transport model on this machine, then compare.

1. :func:`start_server` runs ``rtsim serve`` as its own process (so its CPU time can be
   read from /proc and it does not share the interpreter with the clients).
2. :func:`calibrate` runs a short load test per transport and reads off the server's CPU
   time per delivery (and, for long polling, per HTTP request) and the load generator's CPU
   time per delivery.
3. :func:`compare` runs the SimPy model with those costs — including the load generator's
   own processes and the cores they share with the server — and the live measurement with
   the same parameters, and puts p50/p95/p99 and throughput side by side with relative
   errors. :func:`sweep_compare` does it from 10% to 90% of the estimated capacity.
"""

from __future__ import annotations

import math
import os
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from ..core.transport import LONG_POLL_HOLD_S, Transport, parse_transport
from ..live.clients.loadgen import LoadParams, run_load
from ..live.process import serve_process
from ..sim.transports import TransportParams, simulate_transports

__all__ = [
    "Calibration",
    "calibrate",
    "compare",
    "comparison_controls",
    "small_comparison",
    "start_server",
    "sweep_compare",
]

#: Loopback: a round trip well under a millisecond (assumption; the model is not sensitive).
LOOPBACK_RTT_MS = 0.05
LOOPBACK_JITTER_MS = 0.05


@dataclass(frozen=True)
class Calibration:
    """Per-message costs of this machine, measured by a short load run."""

    transport: str
    server_cpu_per_delivery_us: float
    server_cpu_per_request_us: float
    client_cpu_per_delivery_us: float
    client_processes: int
    cores: int
    deliveries: int

    def capacity_deliveries_per_s(self) -> float:
        """Deliveries/s at which the server's core or all cores together are full."""
        server = self.server_cpu_per_delivery_us + self.server_cpu_per_request_us
        total = server + self.client_cpu_per_delivery_us
        return min(1e6 / server, self.cores * 1e6 / total)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: ``rtsim serve`` in its own process: yields (url, pid). (Kept under this name for callers.)
start_server = serve_process


def _poll_requests(url: str) -> float:
    """Long-poll requests the server has answered so far (from /metrics)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith('rtsim_connections_opened_total{transport="long-polling"}'):
                return float(line.split()[-1])
    return 0.0


def calibrate(
    url: str,
    pid: int,
    transport: Transport | str,
    subscribers: int = 200,
    rate: float = 20.0,
    duration_s: float = 4.0,
    processes: int = 2,
    ws_server_cpu_per_delivery_us: float | None = None,
) -> Calibration:
    """Measure the per-message costs of ``transport`` on the server at ``url`` (pid ``pid``).

    For long polling the server's CPU is split into a per-delivery part (taken from a
    WebSocket calibration, ``ws_server_cpu_per_delivery_us``, when given) and a per-request
    part (the rest, divided by the requests counted in /metrics).
    """
    t = parse_transport(transport)
    before = _poll_requests(url) if t is Transport.LONG_POLLING else 0.0
    p = LoadParams(
        url=url,
        transport=t,
        subscribers=subscribers,
        rate=rate,
        duration_s=duration_s,
        server_pid=pid,
        processes=processes,
        settle_s=1.0,
    )
    s = run_load(p, progress=False).summary
    if s.deliveries == 0 or s.extra["server_cpu_s"] is None:
        raise RuntimeError("calibration delivered nothing; is the server running?")
    server_us = s.extra["server_cpu_s"] / s.deliveries * 1e6
    request_us = 0.0
    if t is Transport.LONG_POLLING:
        requests = max(1.0, _poll_requests(url) - before)
        per_delivery = ws_server_cpu_per_delivery_us or 0.0
        request_us = max(0.0, (s.extra["server_cpu_s"] * 1e6 - per_delivery * s.deliveries))
        request_us /= requests
        server_us = per_delivery
    return Calibration(
        transport=t.value,
        server_cpu_per_delivery_us=server_us,
        server_cpu_per_request_us=request_us,
        client_cpu_per_delivery_us=s.extra["loadgen_cpu_s"] / s.deliveries * 1e6,
        client_processes=processes,
        cores=os.cpu_count() or 1,
        deliveries=s.deliveries,
    )


def sim_params(
    cal: Calibration, subscribers: int, rate: float, duration_s: float
) -> TransportParams:
    """The transport model set up like the live run: loopback, calibrated CPU costs."""
    return TransportParams(
        transport=parse_transport(cal.transport),
        clients=subscribers,
        rate=rate,
        duration_s=duration_s,
        rtt_ms=LOOPBACK_RTT_MS,
        jitter_ms=LOOPBACK_JITTER_MS,
        bandwidth_mbps=10_000.0,
        tls=False,
        cpu_per_delivery_us=cal.server_cpu_per_delivery_us,
        cpu_per_request_us=cal.server_cpu_per_request_us,
        hold_timeout_s=LONG_POLL_HOLD_S,
        client_processes=cal.client_processes,
        cpu_client_per_delivery_us=cal.client_cpu_per_delivery_us,
        cores=float(cal.cores),
        arrivals="constant",  # the load generator publishes on a fixed schedule
    )


_METRICS = ("p50_ms", "p95_ms", "p99_ms", "deliveries_per_s")


def compare(
    url: str,
    pid: int,
    cal: Calibration,
    subscribers: int,
    rate: float,
    duration_s: float,
    seed: int = 0,
) -> pd.DataFrame:
    """Simulated and measured figures side by side; one row per metric, with relative error."""
    sim = simulate_transports(sim_params(cal, subscribers, rate, duration_s), seed=seed).summary
    live = run_load(
        LoadParams(
            url=url,
            transport=parse_transport(cal.transport),
            subscribers=subscribers,
            rate=rate,
            duration_s=duration_s,
            server_pid=pid,
            processes=cal.client_processes,
            settle_s=1.5,
        ),
        progress=False,
    ).summary
    rows = []
    for m in _METRICS:
        s_val, l_val = float(getattr(sim, m)), float(getattr(live, m))
        rows.append(
            {
                "transport": cal.transport,
                "subscribers": subscribers,
                "rate": rate,
                "metric": m,
                "simulated": s_val,
                "measured": l_val,
                "rel_error": (s_val - l_val) / l_val if l_val else math.nan,
                "lost": live.lost,
            }
        )
    return pd.DataFrame(rows)


def small_comparison(
    transport: Transport | str = Transport.WEBSOCKET,
    subscribers: int = 100,
    rate: float = 20.0,
    duration_s: float = 2.0,
    seed: int = 0,
) -> pd.DataFrame:
    """One small simulated-vs-measured comparison on a fresh ``rtsim serve`` (notebook 07).

    Starts the server in its own process, calibrates ``transport`` there (long polling
    takes its per-delivery cost from a WebSocket calibration first, as in
    :func:`calibrate`), then runs :func:`compare` with the same ``subscribers`` and
    ``rate`` (messages/s) for ``duration_s`` seconds; stops the server. Returns
    :func:`compare`'s frame (one row per metric: ``simulated``, ``measured``,
    ``rel_error``, ``lost``). Defaults are those of notebook 07's first comparison.
    Raises ``ValueError`` for an unknown transport, ``RuntimeError`` if the calibration
    delivered nothing.
    """
    t = parse_transport(transport)
    with start_server() as (url, pid):
        ws_us = None
        if t is Transport.LONG_POLLING:
            ws = calibrate(url, pid, Transport.WEBSOCKET, subscribers, rate, duration_s)
            ws_us = ws.server_cpu_per_delivery_us
        cal = calibrate(
            url, pid, t, subscribers, rate, duration_s, ws_server_cpu_per_delivery_us=ws_us
        )
        return compare(url, pid, cal, subscribers, rate, duration_s, seed=seed)


#: Choices of :func:`comparison_controls` (kept small: each run takes a few seconds).
CONTROL_TRANSPORTS = (Transport.WEBSOCKET, Transport.SSE, Transport.LONG_POLLING)


def comparison_controls() -> Any:
    """Widgets for notebook 07: transport, subscribers (20–200) and rate (5–50 messages/s);
    each change reruns :func:`small_comparison` (2 s) and shows its table.

    Returns an ``ipywidgets.interactive``; the sliders send their value on release only
    (``continuous_update=False``), so a drag starts one run, not one per step.
    """
    import ipywidgets as w
    from IPython.display import display

    def show(transport: str, subscribers: int, rate: float) -> None:
        df = small_comparison(transport, subscribers, rate)
        cols = ["transport", "metric", "simulated", "measured", "rel_error", "lost"]
        display(df[cols].round(3))  # type: ignore[no-untyped-call]

    return w.interactive(
        show,
        transport=w.Dropdown(options=[t.value for t in CONTROL_TRANSPORTS], value="websocket"),
        subscribers=w.IntSlider(
            value=100, min=20, max=200, step=20, continuous_update=False, description="subscribers"
        ),
        rate=w.IntSlider(
            value=20, min=5, max=50, step=5, continuous_update=False, description="msgs/s"
        ),
    )


def sweep_compare(
    url: str,
    pid: int,
    cal: Calibration,
    subscribers: int = 200,
    fractions: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
    duration_s: float = 5.0,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`compare` at ``fractions`` of the calibrated capacity."""
    cap = cal.capacity_deliveries_per_s()
    frames = []
    for f in fractions:
        if not 0 < f < 1.5:
            raise ValueError(f"fractions must be in (0, 1.5), got {f}")
        rate = max(0.5, f * cap / subscribers)
        df = compare(url, pid, cal, subscribers, round(rate, 2), duration_s, seed)
        df.insert(3, "load_fraction", f)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


# --- committed results, for notebook 07 --------------------------------------------------------
def results_dir() -> Any:
    """``benchmarks/results`` of this checkout."""
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def load_result(name: str) -> dict[str, Any]:
    """A committed benchmark result (``benchmarks/results/<name>.json``)."""
    import json

    path = results_dir() / f"{name}.json"
    if not path.exists():
        raise ValueError(f"no committed result {path}; run benchmarks/bench_{name}.py")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def comparison_table(data: dict[str, Any]) -> pd.DataFrame:
    """The committed sweep as a wide table: one row per transport and load level."""
    df = pd.DataFrame(data["comparison"])
    wide = df.pivot_table(
        index=["transport", "load_fraction", "rate"],
        columns="metric",
        values=["simulated", "measured", "rel_error"],
    )
    wide.columns = [f"{c[1]}_{c[0]}" for c in wide.columns.to_flat_index()]
    return wide


def plot_comparison(data: dict[str, Any]) -> Any:
    """Simulated vs measured p50 and p99 against load, one panel per transport."""
    import matplotlib.pyplot as plt

    df = pd.DataFrame(data["comparison"])
    transports = list(dict.fromkeys(df["transport"]))
    fig, axes = plt.subplots(1, len(transports), figsize=(4 * len(transports), 3.2))
    for ax, t in zip(list(axes), transports, strict=True):
        for metric, style in (("p50_ms", "o"), ("p99_ms", "s")):
            d = df[(df.transport == t) & (df.metric == metric)]
            ax.plot(d["load_fraction"], d["measured"], style + "-", label=f"{metric} measured")
            ax.plot(d["load_fraction"], d["simulated"], style + "--", label=f"{metric} simulated")
        ax.set_title(t)
        ax.set_xlabel("load (fraction of capacity)")
        ax.set_yscale("log")
    axes[0].set_ylabel("latency ms (log)")
    axes[-1].legend(fontsize="small")
    fig.tight_layout()
    return fig


def error_summary(data: dict[str, Any], max_fraction: float = 0.8) -> pd.DataFrame:
    """Worst relative error of p50, p99 and throughput per transport up to ``max_fraction``."""
    df = pd.DataFrame(data["comparison"])
    df = df[df["load_fraction"] <= max_fraction + 1e-9]
    out = df.assign(abs_err=df["rel_error"].abs()).pivot_table(
        index="transport", columns="metric", values="abs_err", aggfunc="max"
    )
    out["p50_within_20%"] = out["p50_ms"] <= 0.20
    out["p99_within_30%"] = out["p99_ms"] <= 0.30
    return out


# --- the stage model lives in rtsim.lab.stage_compare (re-exported for callers) -------------
from .stage_compare import (  # noqa: E402
    CALIBRATION_CONFIG,
    calibrate_stage_model,
    compare_stage_model,
    passes,
    stage_capacity,
)

__all__ += [
    "CALIBRATION_CONFIG",
    "calibrate_stage_model",
    "compare_stage_model",
    "passes",
    "stage_capacity",
]
