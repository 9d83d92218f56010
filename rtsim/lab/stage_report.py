"""Notebook 07's tables and figures of a committed stage-model sweep
(``benchmarks/results/compare_stages.json``, written by ``benchmarks/bench_compare.py``):
the error table, the sweep plot with the measured CI band, the stage waterfall and the
dominant stage per configuration. Re-exported by :mod:`rtsim.lab.stage_compare`.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

__all__ = ["dominant_stages", "plot_stage_sweep", "stage_error_table", "stage_waterfall"]


def stage_error_table(data: dict[str, Any], max_load: float = 0.8) -> pd.DataFrame:
    """Per transport and subscriber count up to ``max_load``: points, points passing,
    worst |error| of p50 and p99 (from ``benchmarks/results/compare_stages.json``)."""
    df = pd.DataFrame(data["rows"])
    df = df[(df["load"] <= max_load + 1e-9) & df["metric"].isin(["p50_ms", "p99_ms"])]
    df = df.assign(abs_err=df["rel_error"].abs())
    g = df.groupby(["transport", "subscribers"])
    out = pd.DataFrame(
        {
            "points": g["passes"].size(),
            "passing": g["passes"].sum(),
            "worst_p50_error": df[df.metric == "p50_ms"]
            .groupby(["transport", "subscribers"])["abs_err"]
            .max(),
            "worst_p99_error": df[df.metric == "p99_ms"]
            .groupby(["transport", "subscribers"])["abs_err"]
            .max(),
        }
    )
    return out


def plot_stage_sweep(data: dict[str, Any], metric: str = "p50_ms") -> Any:
    """Measured mean with its 95% CI band and the simulated line against load; one panel
    per transport × subscriber count (log latency axis)."""
    import matplotlib.pyplot as plt

    from .style import color as transport_color

    df = pd.DataFrame(data["rows"])
    df = df[df.metric == metric]
    keys = list(dict.fromkeys(zip(df["transport"], df["subscribers"], strict=True)))
    cols = max(1, len({k[0] for k in keys}))
    rows_n = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.0 * rows_n), squeeze=False)
    for ax, (t, n) in zip(axes.T.ravel(), keys, strict=False):
        d = df[(df.transport == t) & (df.subscribers == n)].sort_values("load")
        c = transport_color(t)
        lo = d["measured_ci_low"].fillna(d["measured"])
        hi = d["measured_ci_high"].fillna(d["measured"])
        ax.fill_between(d["load"], lo, hi, color=c, alpha=0.25, label="measured 95% CI")
        ax.plot(d["load"], d["measured"], "o-", color=c, label="measured (mean)")
        ax.plot(d["load"], d["simulated"], "k--", label="simulated")
        ax.set_title(f"{t}, {n} subscribers", fontsize="medium")
        ax.set_xlabel("load (fraction of capacity)")
        ax.set_ylabel(f"{metric.replace('_ms', '')} latency (ms)")
        ax.set_yscale("log")
    for ax in axes.ravel()[len(keys) :]:
        ax.set_visible(False)
    axes.ravel()[0].legend(fontsize="small", loc="upper left")
    fig.tight_layout()
    return fig


def stage_waterfall(data: dict[str, Any], point: str) -> Any:
    """Stacked p50 of each stage, simulated beside measured, for one sweep point
    (a key of ``data["stages"]``, e.g. ``"websocket/50/0.5"``)."""
    import matplotlib.pyplot as plt

    from ..core.stages import STAGES

    st = data["stages"][point]
    fig, ax = plt.subplots(figsize=(7.5, 2.4))
    colors = [plt.get_cmap("tab10")(i) for i in range(10)]
    for y, side in ((1, "measured"), (0, "simulated")):
        left = 0.0
        for i, s in enumerate(STAGES):
            v = float(st[side][s]["p50_ms"])
            ax.barh(y, v, left=left, color=colors[i], label=s if y == 1 else None)
            left += v
    ax.set_yticks([0, 1], ["simulated", "measured"])
    ax.set_xlabel("p50 of each stage, stacked (ms)")
    ax.set_title(point.replace("/", ", ") + " load", fontsize="medium")
    ax.legend(fontsize="x-small", ncol=3, bbox_to_anchor=(0, 1.18, 1, 0.2), loc="lower left")
    fig.tight_layout()
    return fig


def dominant_stages(data: dict[str, Any]) -> pd.DataFrame:
    """Per transport and subscriber count, the stage with the largest measured p50 (mean
    over the loads up to 80%) and its share of the summed stage p50s."""
    from ..core.stages import STAGES

    rows = []
    for key, st in data["stages"].items():
        t, n, load = key.split("/")
        if float(load) > 0.8 + 1e-9:
            continue
        rows.append(
            {"transport": t, "subscribers": int(n)}
            | {s: float(st["measured"][s]["p50_ms"]) for s in STAGES}
        )
    df = pd.DataFrame(rows).groupby(["transport", "subscribers"]).mean()
    total = df[list(STAGES)].sum(axis=1)
    out = pd.DataFrame(
        {
            "dominant stage": df[list(STAGES)].idxmax(axis=1),
            "its p50_ms": df[list(STAGES)].max(axis=1),
            "share of the stages": df[list(STAGES)].max(axis=1) / total,
        }
    )
    return out
