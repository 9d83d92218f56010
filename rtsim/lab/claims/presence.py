"""Claims on presence (C16–C18): cursor fan-out, heartbeat timing, and where to store it."""

from __future__ import annotations

from typing import Any

from .context import QUICK, Context, committed, load_result
from .evidence import Evidence, Verdict

__all__ = ["c16", "c17", "c18"]


def _f(x: Any) -> float:
    return float(x)


def c16(ctx: Context) -> Evidence:
    """C16: cores to fan out cursors per document at 60 fps, 10 Hz and 5 Hz."""
    from ..presence import fanout_table

    t = fanout_table((10, 20, 50, 100), (60, 10, 5), seed=ctx.seed)
    cores = t.pivot(index="viewers", columns="rate_hz", values="cores")
    over60 = cores.index[cores[60] > 1]
    over10 = cores.index[cores[10] > 1]
    sim = "cores to send cursors for one document: " + ", ".join(
        f"{n} viewers {_f(cores.loc[n, 60]):.2f} at 60 fps / {_f(cores.loc[n, 10]):.2f} at 10 Hz"
        for n in (20, 50, 100)
    )
    cond = "sim: 7.2 µs per message sent (measured aiohttp send loop), fan-out ∝ viewers²"
    if len(over60) and not len(over10):
        v = Verdict.holds(
            f"60 fps overflows a core from {min(over60)} viewers; 5–10 Hz stays under one up "
            f"to {cores.index.max()}"
        )
    elif len(over60):
        v = Verdict.only_when(
            f"rooms stay under {min(over10)} viewers", "beyond, even 10 Hz overflows a core"
        )
    else:
        v = Verdict.does_not_hold("even 60 fps fits one core at every size tried")
    return Evidence(sim, "not measured", cond, v, QUICK)


def c17(ctx: Context) -> Evidence:
    """C17: false 'offline' per client-hour with 15 s and 30 s heartbeats, 60 s timeout."""
    from ..presence import tradeoff_table

    t = tradeoff_table((15, 30), (60,), seed=ctx.seed).set_index("heartbeat_s")
    f15 = _f(t.loc[15, "false_offline_per_hour"])
    f30 = _f(t.loc[30, "false_offline_per_hour"])
    d99 = t["crash_detection_p99_s"].max()
    sim = (
        f"offline after 60 s: false 'offline' per client-hour {f15:.2f} with a 15 s "
        f"heartbeat, {f30:.2f} with 30 s; crash detected within {d99:.0f} s (p99)"
    )
    cond = "sim: 100 clients, 5% message loss, 1 h"
    limit = 0.1
    if f15 < limit and f30 < limit:
        v = Verdict.holds("both ends of 15–30 s stay quiet under 5% loss")
    elif f15 < limit:
        v = Verdict.only_when(
            "the heartbeat is nearer 15 s",
            f"at 30 s two lost heartbeats flag {f30:.2f} false offlines per client-hour",
        )
    else:
        v = Verdict.does_not_hold("even a 15 s heartbeat flickers offline under 5% loss")
    return Evidence(sim, "not measured", cond, v, QUICK)


def c18(ctx: Context) -> Evidence:
    """C18: database vs TTL-store share of write capacity, 1k–100k clients."""
    from ..presence import store_table

    t = store_table(seed=ctx.seed).set_index("clients")
    db, dbc, ttl = t["db_utilisation"], t["db_with_cursors_utilisation"], t["ttl_utilisation"]
    sim = (
        f"share of write capacity at 100k clients: database {db.loc[100_000]:.0%} "
        f"(heartbeats), {dbc.loc[100_000]:.0f}× with cursors; TTL keys {ttl.loc[100_000]:.0%}"
    )
    store = load_result("presence_store.json")
    measured = "capacities: "
    if store:
        r = store["results"]
        measured += (
            f"SQLite WAL {r['sqlite_wal_full_commits_per_s']:,.0f} commits/s, Redis SET EX "
            f"{r['redis_set_ex_pipelined_per_s']:,.0f}/s pipelined (this machine)"
        )
    else:
        measured += "not measured yet"
    cond = "sim: 30 s heartbeat, 10 Hz cursors, capacities as in the presence model"
    over = db.index[db > 1]
    if dbc.iloc[0] > 1 and ttl.loc[100_000] < 1:
        v = Verdict.holds("a database cannot take presence with cursors even at 1k clients")
    elif len(over):
        v = Verdict.only_when(f"there are more than ~{min(over):,} clients")
    else:
        v = Verdict.does_not_hold("the database keeps up at every size tried")
    return Evidence(sim, measured, cond, v, QUICK + " + " + committed("presence_store.json"))
