"""Notebook helpers for brokers (02) and the notification architecture (05)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..sim.brokers import Broker, BrokerParams, capacity_curve, lag_over_time, simulate_broker
from .style import color, legend_outside

__all__ = ["capacity_plot", "full_size_results", "lag_plot", "loss_table"]

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "architecture.json"


def loss_table(
    outage: tuple[float, float] = (10.0, 25.0),
    rate: float = 50.0,
    max_len: int = 10_000,
    seed: int = 1,
) -> pd.DataFrame:
    """One row per broker: published during subscriber 0's outage, lost, replayed."""
    rows = []
    for b in Broker:
        p = BrokerParams(broker=b, publish_rate=rate, duration_s=40, outages=(outage,))
        s = simulate_broker(p.with_(max_len=max_len), seed).summary
        rows.append(
            {
                "broker": b.value,
                "published": s.extra["published"],
                "during_outage": s.extra["published_during_outage"],
                "lost": s.lost,
                "replayed": s.extra["replayed"],
                "duplicates": s.extra["duplicates"],
            }
        )
    return pd.DataFrame(rows)


def lag_plot(outage: tuple[float, float] = (10.0, 25.0), rate: float = 50.0, ax: Any = None) -> Any:
    """Consumer lag over time for Pub/Sub vs Streams around one outage."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    t = np.linspace(0, 40, 400)
    for b in (Broker.REDIS_PUBSUB, Broker.REDIS_STREAMS):
        p = BrokerParams(broker=b, publish_rate=rate, duration_s=40, outages=(outage,))
        lag = lag_over_time(simulate_broker(p, 1), t)
        ax.plot(lag["time_s"], lag["lag"], label=b.value, color=color(b))
    ax.axvspan(*outage, color="grey", alpha=0.2, label="subscriber offline")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("messages not yet received")
    legend_outside(ax)
    return ax


def capacity_plot(subscribers: int = 1, ax: Any = None) -> Any:
    """p99 time in the broker vs publish rate, per broker (bulk FIFO station)."""
    import matplotlib.pyplot as plt

    from ..sim.brokers import broker_capacity

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    for b in Broker:
        cap = broker_capacity(b, subscribers)
        rates = cap * np.array([0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95])
        df = capacity_curve(b, rates, subscribers=subscribers, messages=20_000)
        ax.plot(
            df["rate"] / 1000,
            df["p99_us"],
            marker="o",
            color=color(b),
            label=f"{b.value} (cap {cap / 1e3:.0f}k/s)",
        )
    ax.set_xlabel("publish rate (thousand msg/s)")
    ax.set_ylabel("p99 time in broker (µs)")
    ax.set_yscale("log")
    legend_outside(ax, fontsize=8)
    return ax


def full_size_results(path: Path = RESULTS) -> pd.DataFrame:
    """The committed 100,000-client × 600 s results (benchmarks/bench_architecture.py)."""
    return pd.DataFrame(json.loads(path.read_text()))
