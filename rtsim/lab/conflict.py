"""Helpers for notebook 04 (conflict resolution): tables and plots over rtsim.sim.editing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from ..core.ot_puzzles import compose_vs_stepwise, dopt_puzzle, tp2_counterexample
from ..sim.editing import (
    STRATEGIES,
    EditingParams,
    RecordParams,
    simulate_editing,
    simulate_records,
)
from .style import REFERENCE, STRATEGY_COLORS, legend_outside, log_ticks
from .traces import load_trace, replay, traces_dir

__all__ = [
    "c12_table",
    "c15_table",
    "head_to_head",
    "plot_c12",
    "plot_c15",
    "plot_head_to_head",
    "puzzles_table",
    "trace_table",
    "traces_available",
]

COLUMNS = [
    "strategy",
    "converged",
    "lost_updates",
    "lost_fraction",
    "bytes_per_op",
    "convergence_ms_p50",
    "convergence_ms_p99",
    "corrected_fraction",
    "rejected_fraction",
]


def head_to_head(seed: int = 0, **params: Any) -> pd.DataFrame:
    """One run per strategy with the same parameters and seed; one row each."""
    rows = []
    for s in STRATEGIES:
        x = simulate_editing(EditingParams(strategy=s, **params), seed=seed).summary.extra
        rows.append({k: x[k] for k in COLUMNS})
    return pd.DataFrame(rows).set_index("strategy")


def plot_head_to_head(df: pd.DataFrame) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    for ax, col, title in zip(
        axes,
        ["lost_fraction", "bytes_per_op", "convergence_ms_p99"],
        ["inserted characters lost", "bytes on the wire per edit", "convergence p99 (ms)"],
        strict=True,
    ):
        df[col].plot.bar(ax=ax, color=[STRATEGY_COLORS.get(str(k), "grey") for k in df.index])
        ax.set_title(title)
        ax.set_xlabel("")
    fig.tight_layout()
    plt.show()


def c12_table(latencies_ms: Iterable[float], seed: int = 0, **params: Any) -> pd.DataFrame:
    """Perceived latency with and without optimistic apply, by one-way latency (OT).

    ``latencies_ms`` are one-way (ms); each run uses ``rtt_ms = 2 × latency``. Columns:
    ``latency_ms`` (one way, as given), ``rtt_ms`` and the perceived-latency figures (ms).
    """
    rows = []
    for lat in latencies_ms:
        x = simulate_editing(
            EditingParams(strategy="ot", rtt_ms=2 * lat, **params), seed=seed
        ).summary.extra
        rows.append(
            {
                "latency_ms": lat,
                "rtt_ms": 2 * lat,
                "optimistic_p50_ms": x["perceived_ms_p50_optimistic"],
                "pessimistic_p50_ms": x["perceived_ms_p50_pessimistic"],
                "pessimistic_p99_ms": x["perceived_ms_p99_pessimistic"],
                "corrected_fraction": x["corrected_fraction"],
            }
        )
    return pd.DataFrame(rows)


def plot_c12(df: pd.DataFrame) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(df["latency_ms"], df["pessimistic_p50_ms"], "o-", label="wait for server (p50)")
    ax.plot(df["latency_ms"], df["pessimistic_p99_ms"], "o--", label="wait for server (p99)")
    ax.plot(df["latency_ms"], df["optimistic_p50_ms"], "s-", label="optimistic apply")
    ax.axhline(100, color="grey", lw=0.8, ls=":")
    ax.text(df["latency_ms"].min(), 104, "100 ms: 'instant' (Nielsen)", fontsize=8)
    ax.set_xlabel("one-way latency (ms)")
    ax.set_ylabel("keystroke → visible (ms)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()


def c15_table(
    fields: Iterable[int], users: Iterable[int], seed: int = 0, **params: Any
) -> pd.DataFrame:
    rows = []
    for f in fields:
        for u in users:
            x = simulate_records(RecordParams(fields=f, users=u, **params), seed=seed)
            e = x.summary.extra
            rows.append(
                {
                    "fields": f,
                    "users": u,
                    "same_field_fraction": e["same_field_fraction"],
                    "uniform_theory": e["uniform_theory"],
                    "lost_fraction": e["lost_fraction"],
                }
            )
    return pd.DataFrame(rows)


def plot_c15(df: pd.DataFrame) -> None:
    """Share of concurrent record edits that hit the same field vs fields per record (C15)."""
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    for u, g in df.groupby("users"):
        ax.plot(g["fields"], g["same_field_fraction"], "o-", label=f"{u} users")
    first = df[df["users"] == df["users"].min()]
    ax.plot(first["fields"], first["uniform_theory"], "k:", label="1 / fields")
    ax.axhline(0.05, color=REFERENCE, lw=0.8, ls="--", label="5% (article: '~95% handled')")
    ax.set_xlabel("fields per record")
    ax.set_ylabel("same-field share of\nconcurrent edits (0–1)")
    ax.set_xscale("log")
    log_ticks(ax, df["fields"])
    ax.set_ylim(bottom=0)
    legend_outside(ax, fontsize=8)
    fig.tight_layout()
    plt.show()


def puzzles_table() -> pd.DataFrame:
    rows = []
    for name, r in [
        ("dOPT puzzle", dopt_puzzle()),
        ("TP2 counterexample (3 peers)", tp2_counterexample()),
        ("compose vs step-by-step", compose_vs_stepwise()),
    ]:
        rows.append({"puzzle": name, "start": r.start, **{"results": r.sites}})
    return pd.DataFrame(rows).set_index("puzzle")


def traces_available() -> bool:
    return (traces_dir() / "friendsforever.json.gz").exists()


def trace_table(
    plan: Iterable[tuple[str, str]], limit: int | None = None, timings: bool = False
) -> pd.DataFrame:
    """Replay (trace, strategy) pairs; ``timings`` keeps the (machine-dependent) seconds."""
    rows = []
    for name, strategy in plan:
        tr = load_trace(name)
        lim = limit if not tr.concurrent else None
        r = replay(tr, strategy, limit=lim)
        keep = ["trace", "strategy", "edits", "matches_end_content", "bytes_per_edit",
                "final_doc_bytes"]  # fmt: skip
        if timings:
            keep.append("seconds")
        rows.append({k: r[k] for k in keep})
    return pd.DataFrame(rows)
