"""Claims on the notification architecture (C11, C19): the 5-step architecture at 100k
clients (one run shared by both) and the transport grid's p50/p99 against the targets."""

from __future__ import annotations

import math

from .context import LIVE, NOT_MEASURED, QUICK, Context, committed
from .evidence import Evidence, Verdict

__all__ = ["c11", "c19"]


def c11(ctx: Context) -> Evidence:
    """C11: p50/p99/loss and instance CPU headroom of the architecture at 100k clients."""
    from ...sim.architecture import ArchitectureParams

    a = ctx.architecture
    p = ArchitectureParams()
    busy = (
        a["published_per_s"] * p.cpu_decode_us
        + a["deliveries_per_s"] / p.instances * p.cpu_write_us
    ) * 1e-6
    headroom = 1 / busy if busy > 0 else math.inf
    sim = (
        f"100,000 clients, {p.instances} instances: p50 {a['p50']:.0f} ms, p99 "
        f"{a['p99']:.0f} ms, lost {a['lost']}, instance CPU ~{busy:.0%}, peak "
        f"{a['peak']:,} connections per instance"
    )
    cond = (
        f"sim: redis-streams, 1 notification/user/min, 10 topics every 20 s, "
        f"{a['duration']:.0f} s with one instance restart"
    )
    ok = a["p50"] < 50 and a["p99"] < 500 and a["lost"] == 0
    if ok and headroom >= 2:
        v = Verdict.holds(
            f"targets met, and the instances could take ~{headroom:.0f}× this fan-out "
            "before saturating"
        )
    elif ok:
        v = Verdict.only_when("the fan-out stays near this load", f"~{headroom:.1f}× headroom")
    else:
        v = Verdict.does_not_hold("the targets are missed or messages lost at 100k clients")
    measured = "not measured (100k clients need more than one machine)"
    return Evidence(sim, measured, cond, v, a["source"])


def c19(ctx: Context) -> Evidence:
    """C19: the RTTs at which WebSocket meets p50 < 50 ms and p99 < 500 ms (sim grid)."""
    runs = ctx.c3_runs
    a = ctx.architecture
    fast = runs[runs["rate"] == runs["rate"].max()]
    met = [(float(r.rtt_ms), float(r.ws_p50_ms), float(r.ws_p99_ms)) for r in fast.itertuples()]
    ok_rtts = [rtt for rtt, p50, p99 in met if p50 < 50 and p99 < 500]
    bad_rtts = [rtt for rtt, p50, p99 in met if not (p50 < 50 and p99 < 500)]
    sim = "WebSocket p50/p99 by RTT: " + ", ".join(
        f"{rtt:.0f} ms → {p50:.0f}/{p99:.0f}" for rtt, p50, p99 in met
    )
    sim += f"; architecture at 100k: {a['p50']:.0f}/{a['p99']:.0f} ms"
    src = QUICK if a["source"] == QUICK else f"{QUICK} + {a['source']}"
    if ctx.quick and not ctx.live:
        measured = f"{NOT_MEASURED}: live measurements are off for this run"
    elif ctx.quick:
        lv = ctx.live_runs()
        measured = "loopback: " + ", ".join(
            f"{t} p50 {lv[t].p50_ms:.1f} / p99 {lv[t].p99_ms:.1f} ms"
            for t in ("websocket", "long-polling")
        )
        src += " + " + LIVE
    else:
        rows = [r for r in ctx.fanout.get("fanout", []) if r["server"] == "rtsim"]
        if rows:
            r = rows[0]
            measured = (
                f"loopback fan-out, {r['subscribers']} subscribers × {r['rate']:g}/s: p50 "
                f"{r['p50_ms']:.1f} / p99 {r['p99_ms']:.1f} ms"
            )
            src += " + " + committed("fanout.json")
        else:
            measured = "not measured yet"
    cond = f"sim: 50 clients, {fast['rate'].max():g} msg/s, RTT 20–300 ms"
    if ok_rtts and not bad_rtts:
        v = Verdict.holds("both targets are met at every RTT tried")
    elif ok_rtts:
        v = Verdict.only_when(
            "the round trip is short",
            f"met up to RTT {max(ok_rtts):.0f} ms, missed at {min(bad_rtts):.0f} ms "
            "(p50 ≈ half the RTT + queueing)",
        )
    else:
        v = Verdict.does_not_hold("the targets are missed at every RTT tried")
    return Evidence(sim, measured, cond, v, src)
