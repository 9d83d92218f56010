"""What notebook 03 (presence) needs: experiment tables, plots and a slider panel.

Every function here is a thin layer over :mod:`rtsim.sim.presence`; the notebook calls them
in one line each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from ..sim.presence import PresenceParams, exact_cursor_msgs_per_s, simulate_presence
from .style import REFERENCE, legend_outside, log_ticks

__all__ = [
    "fanout_table",
    "interpolation_table",
    "plot_fanout",
    "plot_interpolation",
    "plot_store",
    "plot_tradeoff",
    "presence_panel",
    "store_table",
    "tradeoff_table",
]

#: A core of a Python asyncio server sends roughly this many messages per second
#: (1 / 7.2 µs, the measured bare aiohttp send loop; see DEFAULTS_SOURCES).
CORE_MSGS_PER_S = 1e6 / 7.2


def fanout_table(
    viewers: Sequence[int] = (2, 5, 10, 20, 50, 100),
    rates: Sequence[float] = (60, 10, 5),
    *,
    seed: int = 0,
) -> pd.DataFrame:
    """Cursor messages the server sends per second for one document, simulated and exact."""
    rows = []
    for n in viewers:
        for hz in rates:
            p = PresenceParams(
                viewers=n,
                resources=1,
                cursor_hz=60,
                throttle_hz=0 if hz >= 60 else hz,
                duration_s=60,
                cursor_pairs=0,
            )
            s = simulate_presence(p, seed=seed).summary.extra
            rows.append(
                {
                    "viewers": n,
                    "rate_hz": hz,
                    "server_out_per_s": s["cursor_msgs_out_per_s"],
                    "exact_per_s": exact_cursor_msgs_per_s(p),
                    "cores": s["cursor_msgs_out_per_s"] / CORE_MSGS_PER_S,
                    "per_client_down_kbps": s["per_client_down_kbps"],
                }
            )
    return pd.DataFrame(rows)


def plot_fanout(df: pd.DataFrame) -> Any:
    """Server cursor messages/s vs viewers, one line per update rate (log–log)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for hz, g in df.groupby("rate_hz"):
        ax.plot(g["viewers"], g["server_out_per_s"], "o-", label=f"{hz:g} Hz")
    ax.axhline(CORE_MSGS_PER_S, color=REFERENCE, ls="--", lw=1)
    ax.text(df["viewers"].min(), CORE_MSGS_PER_S * 1.15, "one server core", color=REFERENCE)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="viewers of one document",
        ylabel="cursor messages sent by the server per s",
        title="Cursor fan-out grows with viewers²",
    )
    legend_outside(ax, title="updates per viewer")
    fig.tight_layout()
    plt.close(fig)  # shown once, as the cell's value
    return fig


def tradeoff_table(
    heartbeats: Sequence[float] = (10, 15, 20, 30),
    timeouts: Sequence[float] = (30, 45, 60, 90),
    *,
    loss: float = 0.05,
    clients: int = 100,
    duration_s: float = 3600,
    seed: int = 0,
) -> pd.DataFrame:
    """Detection delay of crashes vs false offline per client-hour, for each (H, T)."""
    rows = []
    for h in heartbeats:
        for t in timeouts:
            p = PresenceParams(
                viewers=clients // 10,
                resources=10,
                heartbeat_s=h,
                timeout_s=t,
                loss=loss,
                cursor_hz=0,
                duration_s=duration_s,
                session_mean_s=1200,
                crash_fraction=1.0,
            )
            s = simulate_presence(p, seed=seed).summary.extra
            rows.append(
                {
                    "heartbeat_s": h,
                    "timeout_s": t,
                    "crash_detection_p50_s": s["crash_detection_p50_s"],
                    "crash_detection_p99_s": s["crash_detection_p99_s"],
                    "false_offline_per_hour": s["false_offline_per_hour"],
                    "heartbeats_per_client_s": 1 / h,
                }
            )
    return pd.DataFrame(rows)


def plot_tradeoff(df: pd.DataFrame) -> Any:
    """False offline per client-hour vs p99 crash detection delay, one line per heartbeat."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for h, g in df.groupby("heartbeat_s"):
        g = g.sort_values("timeout_s")
        ax.plot(g["crash_detection_p99_s"], g["false_offline_per_hour"] + 1e-3, "o-", label=h)
        for _, r in g.iterrows():
            ax.annotate(
                f"T={r['timeout_s']:g}",
                (r["crash_detection_p99_s"], r["false_offline_per_hour"] + 1e-3),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set(
        yscale="log",
        xlabel="p99 delay to show a crashed viewer offline (s)",
        ylabel="false 'offline' per client-hour (+0.001)",
        title="Heartbeat/timeout trade-off under message loss",
    )
    legend_outside(ax, title="heartbeat (s)")
    fig.tight_layout()
    plt.close(fig)  # shown once, as the cell's value
    return fig


def store_table(
    clients: Sequence[int] = (1_000, 10_000, 100_000, 1_000_000),
    *,
    heartbeat_s: float = 30.0,
    throttle_hz: float = 10.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Write load of presence in a database vs TTL keys, scaled from one simulated run."""
    base = PresenceParams(
        viewers=10,
        resources=100,
        heartbeat_s=heartbeat_s,
        throttle_hz=throttle_hz,
        duration_s=600,
        cursor_pairs=0,
    )
    s = simulate_presence(base, seed=seed).summary.extra
    simulated = base.viewers * base.resources
    rows = []
    for n in clients:
        k = n / simulated
        rows.append(
            {
                "clients": n,
                "db_writes_per_s": s["db_writes_per_s"] * k,
                "db_with_cursors_per_s": s["db_writes_with_cursors_per_s"] * k,
                "ttl_ops_per_s": s["ttl_ops_per_s"] * k,
                "db_utilisation": s["db_utilisation"] * k,
                "db_with_cursors_utilisation": s["db_utilisation_with_cursors"] * k,
                "ttl_utilisation": s["ttl_utilisation"] * k,
            }
        )
    return pd.DataFrame(rows)


def plot_store(df: pd.DataFrame) -> Any:
    """Fraction of the measured write capacity used, database vs TTL store."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(df["clients"], df["db_utilisation"], "o-", label="database: heartbeats")
    ax.plot(df["clients"], df["db_with_cursors_utilisation"], "s-", label="database: + cursors")
    ax.plot(df["clients"], df["ttl_utilisation"], "^-", label="TTL keys (Redis)")
    ax.axhline(1.0, color=REFERENCE, ls="--", lw=1, label="capacity measured on this machine")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="online clients",
        ylabel="share of write capacity (1 = full)",
        title="Presence writes: database table vs TTL keys",
    )
    legend_outside(ax)
    fig.tight_layout()
    plt.close(fig)  # shown once, as the cell's value
    return fig


def interpolation_table(
    rates: Sequence[float] = (2, 5, 10, 20, 60), *, seed: int = 0
) -> pd.DataFrame:
    """What a viewer sees of another's cursor: snapping vs interpolating, per update rate."""
    rows = []
    for hz in rates:
        p = PresenceParams(
            viewers=2,
            resources=1,
            throttle_hz=0 if hz >= 60 else hz,
            duration_s=20,
            cursor_pairs=6,
            cursor_window_s=20,
        )
        s = simulate_presence(p, seed=seed).summary.extra
        rows.append(
            {
                "rate_hz": hz,
                "snap_error_px_p95": s["cursor_snap_error_px_p95"],
                "interp_error_px_p95": s["cursor_interp_error_px_p95"],
                "snap_jump_px_p95": s["cursor_snap_jump_px_p95"],
                "interp_jump_px_p95": s["cursor_interp_jump_px_p95"],
                "display_delay_ms": s["cursor_display_delay_ms"],
            }
        )
    return pd.DataFrame(rows)


def plot_interpolation(df: pd.DataFrame) -> Any:
    """Shape error (p95) of the drawn cursor vs update rate, snapping vs interpolating."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.plot(df["rate_hz"], df["snap_error_px_p95"], "o-", color="tab:red", label="snap to latest")
    a1.plot(df["rate_hz"], df["interp_error_px_p95"], "s-", color="tab:blue", label="interpolate")
    a1.set(
        xscale="log",
        xlabel="cursor updates per s",
        ylabel="p95 position error (px)",
        title="Shape",
    )
    a1.legend(loc="upper right", title="drawn by")
    a2.plot(df["rate_hz"], df["display_delay_ms"], "s-", color="tab:blue", label="interpolate")
    a2.set(
        xscale="log",
        xlabel="cursor updates per s",
        ylabel="display delay (ms)",
        title="Interpolation display delay",
    )
    for ax in (a1, a2):
        log_ticks(ax, df["rate_hz"])
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    plt.close(fig)  # shown once, as the cell's value
    return fig


def presence_panel(
    viewers: int = 10,
    throttle_hz: float = 10.0,
    heartbeat_s: float = 30.0,
    timeout_s: float = 60.0,
    loss: float = 0.02,
) -> pd.DataFrame:
    """One run of 10 documents, the headline figures as a small table (for a slider)."""
    p = PresenceParams(
        viewers=viewers,
        resources=10,
        throttle_hz=throttle_hz,
        heartbeat_s=heartbeat_s,
        timeout_s=timeout_s,
        loss=loss,
        duration_s=1800,
        cursor_pairs=2,
        cursor_window_s=10,
    )
    s = simulate_presence(p, seed=0).summary.extra
    keys = [
        "server_msgs_per_s",
        "per_client_msgs_per_s",
        "server_cpu_utilisation",
        "per_client_down_kbps",
        "crash_detection_p50_s",
        "crash_detection_p99_s",
        "false_offline_per_hour",
        "cursor_interp_error_px_p95",
    ]
    return pd.DataFrame({"value": [s[k] for k in keys]}, index=pd.Index(keys)).round(3)
