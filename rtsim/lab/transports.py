"""Notebook helpers for ``01-transports``: runs, plots and the explorer.

The claims registry (:mod:`rtsim.lab.claims`) reads :func:`c3_runs`, :func:`tabs_table`
and :func:`storm_table` for C3, C5 and C21; this module does not import the registry, so
dependencies point one way (claims → lab helpers → sim, core).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..core.backoff import Jitter
from ..core.params import slider_range
from ..core.reconnect import TRANSITIONS
from ..core.transport import CASCADE, Transport
from ..sim.reconnect import (
    FallbackParams,
    StormParams,
    simulate_fallback,
    simulate_reconnect_storm,
)
from ..sim.runner import sweep
from ..sim.theory import long_polling_mean_latency
from ..sim.transports import DEFAULTS_SOURCES, TransportParams, simulate_transports

__all__ = [
    "COLORS",
    "RATE_STEPS",
    "RTT_STEPS_MS",
    "STORM_BIN_S",
    "c3_runs",
    "compare_transports",
    "defaults_table",
    "explorer",
    "fallback_table",
    "plot_bytes",
    "plot_latency",
    "plot_storm",
    "plot_three_transits",
    "storm_table",
    "tabs_table",
    "three_transits",
    "transition_table",
]

from .style import REFERENCE, TRANSPORT_COLORS, legend_outside

COLORS = TRANSPORT_COLORS  # the lab's one palette (rtsim.lab.style)
SUMMARY_COLUMNS = [
    "transport",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "deliveries_per_s",
    "bytes_per_message",
    "requests_per_message",
    "connections",
    "server_cpu_utilisation",
]


def defaults_table() -> pd.DataFrame:
    """Every default of the transport model with its source."""
    d = TransportParams().as_dict()
    rows = []
    for name, source in DEFAULTS_SOURCES.items():
        rows.append({"parameter": name, "default": d.get(name, ""), "source": source})
    return pd.DataFrame(rows)


def compare_transports(
    base: TransportParams,
    seed: int = 0,
    transports: Iterable[Transport | str] = CASCADE,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run ``base`` once per transport (same seed, same message arrivals).

    Returns (summary table, all deliveries concatenated).
    """
    rows, frames = [], []
    for t in transports:
        r = simulate_transports(base.with_(transport=t), seed=seed)
        rows.append(r.summary.to_dict())
        frames.append(r.deliveries)
    summary = pd.DataFrame(rows)[SUMMARY_COLUMNS].set_index("transport")
    deliveries = pd.concat(frames, ignore_index=True)
    deliveries["transport"] = deliveries["transport"].astype(str)
    return summary.round(3), deliveries


def plot_latency(deliveries: pd.DataFrame, ax: Any = None) -> Any:
    """Empirical CDF of delivery latency per transport (log x axis)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    for t, g in deliveries.groupby("transport", sort=False):
        x = np.sort(g["latency_ms"].to_numpy())
        ax.plot(x, np.arange(1, len(x) + 1) / len(x), label=str(t), color=COLORS.get(str(t)))
    ax.set_xscale("log")
    ax.set_xlabel("delivery latency (ms, log scale)")
    ax.set_ylabel("fraction of deliveries")
    ax.axhline(0.99, color=REFERENCE, lw=0.5, ls=":", label="p99")
    legend_outside(ax)
    ax.set_title("Latency distribution per transport")
    return ax


def plot_bytes(summary: pd.DataFrame) -> Any:
    """Bytes on the wire and HTTP requests per delivered message, side by side."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3))
    colors: Any = [COLORS.get(str(t), "grey") for t in summary.index]
    summary["bytes_per_message"].plot.bar(ax=a, color=colors)
    a.set_ylabel("bytes on the wire / message")
    summary["requests_per_message"].plot.bar(ax=b, color=colors)
    b.set_ylabel("HTTP requests / message")
    for ax in (a, b):
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return fig


def three_transits(
    rtt_ms: float = 100.0,
    rates: Sequence[float] = (0.2, 0.5, 1, 2, 5, 10, 20, 50),
    reps: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Long-polling mean and max latency vs message rate, simulated and RFC 6202's closed form.

    An idealised long-poll client (no jitter, no server time) so the analysis applies.
    """
    base = TransportParams(
        transport=Transport.LONG_POLLING,
        clients=1,
        rtt_ms=rtt_ms,
        jitter_ms=0.0,
        cpu_per_delivery_us=0.0,
        cpu_per_request_us=0.0,
        bandwidth_mbps=1e9,
        hold_timeout_s=1e6,
        duration_s=200.0,
    )
    df = sweep(
        simulate_transports,
        base,
        {"rate": list(rates)},
        metrics=("mean_ms", "max_ms"),
        reps=reps,
        seed=seed,
        progress=False,
    )
    wide = df.pivot(index="rate", columns="metric", values=["mean", "ci_low", "ci_high"])
    wide.columns = [f"{c[1]}_{c[0]}" for c in wide.columns.to_flat_index()]
    transit_s = rtt_ms / 2000
    wide["theory_mean_ms"] = [long_polling_mean_latency(r, transit_s) * 1000 for r in wide.index]
    wide["transits_mean"] = wide["mean_ms_mean"] / (transit_s * 1000)
    wide["transits_max"] = wide["max_ms_mean"] / (transit_s * 1000)
    return wide.round(2)


def plot_three_transits(df: pd.DataFrame, rtt_ms: float = 100.0) -> Any:
    """Simulated mean (with 95% CI) and max against the closed form, in transits."""
    t = rtt_ms / 2
    _fig, ax = plt.subplots(figsize=(7, 3.5))
    x = df.index.to_numpy()
    ax.errorbar(
        x,
        df["mean_ms_mean"] / t,
        yerr=(df["mean_ms_ci_high"] - df["mean_ms_mean"]) / t,
        fmt="o",
        label="simulated mean (95% CI)",
        color="tab:orange",
    )
    ax.plot(x, df["theory_mean_ms"] / t, "-", color="black", label="closed form (RFC 6202)")
    ax.plot(x, df["max_ms_mean"] / t, "s--", color="tab:red", label="simulated max")
    ax.axhline(1, color="grey", ls=":")
    ax.axhline(3, color="grey", ls=":")
    ax.set_xscale("log")
    ax.set_ylim(0, 4.0)
    ax.set_xlabel("messages per second")
    ax.set_ylabel("latency in one-way transits")
    ax.set_title(f"Long polling: one transit when idle, up to three when busy (RTT {rtt_ms:g} ms)")
    ax.legend(loc="upper left", ncol=3, fontsize="small")
    return ax


def tabs_table(tabs: Sequence[int] = (1, 4, 6, 8, 12), seed: int = 0) -> pd.DataFrame:
    """SSE with several tabs per browser under HTTP/1.1 and HTTP/2 (claim C5)."""
    rows = []
    for n in tabs:
        for version in ("1.1", "2"):
            p = TransportParams(
                transport=Transport.SSE,
                clients=20,
                tabs_per_client=n,
                rate=5,
                duration_s=20,
                http_version=version,
            )
            s = simulate_transports(p, seed=seed).summary
            expected = s.extra["expected_deliveries"]
            rows.append(
                {
                    "tabs": n,
                    "http": version,
                    "tabs_served_%": round(100 * (1 - s.lost / expected), 1),
                    "connections_per_browser": s.connections / 20,
                }
            )
    return pd.DataFrame(rows).pivot(
        index="tabs", columns="http", values=["tabs_served_%", "connections_per_browser"]
    )


def transition_table() -> pd.DataFrame:
    """The reconnect/fallback state machine, straight from the core's transition table."""
    rows = [
        {"state": s.value, "event": e.__name__, "next state": n.value, "effect": eff}
        for (s, e), (n, eff) in TRANSITIONS.items()
    ]
    return pd.DataFrame(rows)


def fallback_table(params: FallbackParams | None = None, seed: int = 0) -> pd.DataFrame:
    """Where clients end up and how long it takes them (claim C20)."""
    df = simulate_fallback(params or FallbackParams(), seed=seed)
    g = df.groupby("transport")
    out = pd.DataFrame(
        {
            "clients": g.size(),
            "attempts_mean": g["attempts"].mean(),
            "connected_p50_s": g["connected_s"].median(),
            "connected_max_s": g["connected_s"].max(),
        }
    )
    order = [t.value for t in CASCADE if t.value in out.index]
    return out.loc[order].round(3)


#: Width of the bins (s) in which the storm's attempts are counted, in the table's peak
#: and in the plot alike, so the two show the same quantity.
STORM_BIN_S = 0.25


def storm_table(
    base: StormParams | None = None, seed: int = 0, bin_s: float = STORM_BIN_S
) -> pd.DataFrame:
    """The reconnection storm with no, full and equal jitter (claim C21).

    One row per jitter mode (index ``jitter``): ``t50_s``/``t99_s`` (s until 50%/99% of the
    clients are back), ``attempts_per_client``, ``timeouts`` and ``peak_attempts_per_s``:
    the most attempts counted in one ``bin_s``-second bin, per second (the bins of
    :func:`plot_storm`; default :data:`STORM_BIN_S`). ``base`` defaults to ``StormParams()``.
    """
    base = base or StormParams()
    rows = []
    for j in Jitter:
        r = simulate_reconnect_storm(replace(base, jitter=j), seed=seed)
        peak = float(r.timeline(bin_s)["attempts_per_s"].max())
        rows.append({"jitter": j.value, **r.summary, "peak_attempts_per_s": peak})
    cols = ["jitter", "t50_s", "t99_s", "attempts_per_client", "timeouts", "peak_attempts_per_s"]
    return pd.DataFrame(rows)[cols].set_index("jitter").round(2)


def plot_storm(base: StormParams | None = None, seed: int = 0, bin_s: float = STORM_BIN_S) -> Any:
    """Connection attempts per second after a restart, without and with jitter.

    Counted in ``bin_s``-second bins (default :data:`STORM_BIN_S`, the bins of
    :func:`storm_table`'s peak); x in s after the restart, y in attempts (and connections)
    per s.
    """
    base = base or StormParams()
    fig, axes = plt.subplots(2, 1, figsize=(9, 4.5), sharex=True)
    for ax, j in zip(axes, (Jitter.NONE, Jitter.FULL), strict=True):
        tl = simulate_reconnect_storm(replace(base, jitter=j), seed=seed).timeline(bin_s)
        tl = tl[tl["t"] <= 60]
        ax.fill_between(
            tl["t"],
            tl["attempts_per_s"],
            step="post",
            alpha=0.5,
            color="tab:blue",
            label=f"attempts/s ({bin_s:g} s bins)",
        )
        ax.step(
            tl["t"],
            tl["connected"] / bin_s,
            where="post",
            color="black",
            lw=0.8,
            label="connected/s",
        )
        ax.set_ylabel("per s")
        ax.set_title(f"jitter = {j.value}", fontsize=10)
        legend_outside(ax, fontsize=8)
    axes[-1].set_xlabel("s after the restart")
    fig.tight_layout()
    return fig


#: The explorer's round slider stops: RTT (ms) and message rate (messages/s per client).
RTT_STEPS_MS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
RATE_STEPS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)


def _labelled(values: Sequence[float]) -> list[tuple[str, float]]:
    return [(f"{v:g}", v) for v in values]


def explorer() -> Any:
    """Sliders for RTT, message rate, clients and HTTP version; redraws the comparison."""
    import ipywidgets as w

    def show(rtt_ms: float, rate: float, clients: int, http_version: str, loss_pct: float) -> None:
        base = TransportParams(
            clients=clients,
            rate=rate,
            rtt_ms=rtt_ms,
            http_version=http_version,
            loss=loss_pct / 100,
            duration_s=30,
        )
        summary, deliveries = compare_transports(base)
        plot_latency(deliveries)
        plt.show()
        from IPython.display import display

        display(summary)  # type: ignore[no-untyped-call]

    # Ranges chosen for reading, clipped to the bounds TransportParams declares.
    c_lo, c_hi = slider_range(TransportParams, "clients", 10, 2000)
    _, loss_hi = slider_range(TransportParams, "loss", 0, 0.05)
    return w.interactive(
        show,
        # Round values on a 1-2-5 log scale (a FloatLogSlider reads 63.1, 158.5, ...).
        rtt_ms=w.SelectionSlider(options=_labelled(RTT_STEPS_MS), value=50.0, description="RTT ms"),
        rate=w.SelectionSlider(options=_labelled(RATE_STEPS), value=5.0, description="msgs/s"),
        clients=w.IntSlider(
            value=100, min=int(c_lo), max=int(c_hi), step=10, description="clients"
        ),
        http_version=w.ToggleButtons(options=["1.1", "2"], description="HTTP"),
        loss_pct=w.FloatSlider(value=0, min=0, max=loss_hi * 100, step=0.5, description="loss %"),
    )


def c3_runs(seed: int = 0) -> pd.DataFrame:
    """WebSocket vs long polling over RTT 20–300 ms × 0.5/20 msg/s (50 clients, 60 s).

    One row per (rtt_ms, rate): both p50s and p99s, the extra p50 of long polling and its
    bytes per message over WebSocket's. The claims registry reads it (C3, C19).
    """
    rows = []
    for rtt in (20.0, 100.0, 300.0):
        for rate in (0.5, 20.0):
            base = TransportParams(clients=50, rate=rate, rtt_ms=rtt, duration_s=60)
            ws = simulate_transports(base, seed=seed).summary
            lp = simulate_transports(base.with_(transport="long-polling"), seed=seed).summary
            rows.append(
                {
                    "rtt_ms": rtt,
                    "rate": rate,
                    "ws_p50_ms": ws.p50_ms,
                    "ws_p99_ms": ws.p99_ms,
                    "lp_p50_ms": lp.p50_ms,
                    "lp_p99_ms": lp.p99_ms,
                    "extra_p50_ms": lp.p50_ms - ws.p50_ms,
                    "bytes_ratio": lp.bytes_per_message / ws.bytes_per_message,
                }
            )
    return pd.DataFrame(rows)
