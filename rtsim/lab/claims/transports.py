"""Claims on transports (C3, C5, C20, C21): seeded transport, tab and reconnect models,
with small live checks where a server can run here.

Notebook 01 shows them with :func:`~rtsim.lab.claims.verdict_table`, passing a
:class:`~rtsim.lab.claims.Context` that reuses its own tab and storm runs, so the notebook
and ``rtsim claims`` cannot disagree.
"""

from __future__ import annotations

from typing import Any

from .context import LIVE, NOT_MEASURED, QUICK, Context, describe_error
from .evidence import Evidence, Verdict

__all__ = ["c3", "c5", "c20", "c21", "fallback_live"]


def _f(x: Any) -> float:
    """A pandas scalar as a float (keeps mypy's pandas stubs quiet)."""
    return float(x)


def c3(ctx: Context) -> Evidence:
    """C3: the extra p50 of long polling over WebSocket across RTT × rate, and its bytes."""
    runs = ctx.c3_runs
    lo, hi = float(runs["extra_p50_ms"].min()), float(runs["extra_p50_ms"].max())
    ratio = float(runs["bytes_ratio"].min())
    sim = (
        f"long polling adds {lo:.0f}–{hi:.0f} ms to p50 over WebSocket and carries "
        f"≥{ratio:.1f}× its bytes per message"
    )
    cond = "sim: 50 clients, RTT 20–300 ms, 0.5 and 20 msg/s, 60 s, seed " + str(ctx.seed)
    measured, src = "not measured in full mode (see quick)", QUICK
    if ctx.quick and not ctx.live:
        measured = f"{NOT_MEASURED}: live measurements are off for this run"
    elif ctx.quick:
        lv = ctx.live_runs()
        ws, lp = lv["websocket"], lv["long-polling"]
        measured = (
            f"loopback: p50 {lp.p50_ms:.1f} ms long polling vs {ws.p50_ms:.1f} ms WebSocket"
            f" (+{lp.p50_ms - ws.p50_ms:.1f} ms; lost {lp.lost}/{ws.lost}); bytes on the "
            "wire not measured yet"
        )
        cond += "; live: 50 subscribers, 5 channels, 50 msg/s, 3 s, RTT ≈ 0"
        src = QUICK + " + " + LIVE
    overhead = "; the extra HTTP overhead holds" if ratio > 1.2 else "; the overhead is small"
    if lo >= 100:
        v = Verdict.holds("long polling adds ≥100 ms everywhere in the grid" + overhead)
    elif hi >= 100:
        v = Verdict.only_when(
            "links are slow and messages frequent",
            f"long polling adds up to two extra transits ({lo:.0f}–{hi:.0f} ms here), not a "
            "fixed 100–500 ms" + overhead,
        )
    else:
        v = Verdict.does_not_hold(f"the added latency stays under 100 ms ({hi:.0f} ms)" + overhead)
    return Evidence(sim, measured, cond, v, src)


def c5(ctx: Context) -> Evidence:
    """C5: share of SSE tabs served with 4 and 8 tabs per browser, HTTP/1.1 vs HTTP/2."""
    t = ctx.tabs
    h1 = _f(t.loc[8, ("tabs_served_%", "1.1")])
    h2 = _f(t.loc[8, ("tabs_served_%", "2")])
    h1_4 = _f(t.loc[4, ("tabs_served_%", "1.1")])
    sim = f"8 SSE tabs per browser: {h1:.0f}% served on HTTP/1.1, {h2:.0f}% on HTTP/2"
    sim += f"; 4 tabs: {h1_4:.0f}% on HTTP/1.1"
    cond = "sim: 20 browsers, 5 msg/s, 20 s, 6 connections per origin on HTTP/1.1"
    if h2 > h1 and h1_4 < h2:
        v = Verdict.holds("HTTP/1.1 starves SSE streams, HTTP/2 multiplexes them")
    elif h2 > h1:
        v = Verdict.only_when(
            "a browser opens more than 6 streams to one origin",
            f"with 4 tabs HTTP/1.1 serves {h1_4:.0f}%, with 8 {h1:.0f}% (HTTP/2: {h2:.0f}%)",
        )
    else:
        v = Verdict.does_not_hold("HTTP/2 serves no more tabs than HTTP/1.1")
    return Evidence(sim, "not measured (needs browsers)", cond, v, QUICK)


def fallback_live(ctx: Context) -> dict[str, Any]:
    """The Python client against an in-process server that offers only long polling."""
    ctx.require_live("fallback demo")
    from ...live.background import serve_in_background
    from ..live import fallback_demo

    with serve_in_background(transports=("long-polling",)) as srv:
        return fallback_demo(srv.url)


def c20(ctx: Context) -> Evidence:
    """C20: the fallback cascade in sim (500 clients) and one live client stepping down."""
    from ...sim.reconnect import FallbackParams, simulate_fallback

    fb = simulate_fallback(FallbackParams(clients=500), seed=ctx.seed)
    connected = float(fb["connected_s"].notna().mean())
    fell = float((fb["transport"] != "websocket").mean())
    sim = (
        f"10% block WebSocket, 5% SSE: {connected:.0%} connect, {fell:.0%} fell back, the "
        f"slowest after {fb['connected_s'].max():.1f} s"
    )
    try:
        live = fallback_live(ctx)
        measured = (
            f"server offering only long polling: the Python client ended on "
            f"{live['transport']} after {len(live['fallbacks'])} fallback steps"
        )
        live_ok = str(live["transport"]) == "long-polling"
        src = QUICK + " + " + LIVE
    except Exception as exc:
        measured, live_ok, src = f"{NOT_MEASURED}: {describe_error(exc)}", True, QUICK
    cond = "sim: 500 clients, RTT 50 ms; live: in-process server, loopback"
    if connected == 1 and live_ok:
        v = Verdict.holds("every client lands on some transport after a few failed attempts")
    else:
        v = Verdict.does_not_hold("some clients found no transport")
    return Evidence(sim, measured, cond, v, src)


def c21(ctx: Context) -> Evidence:
    """C21: time for 99% of clients to reconnect after a restart, with and without jitter."""
    from ...sim.reconnect import StormParams

    st = ctx.storm
    none, full = _f(st.loc["none", "t99_s"]), _f(st.loc["full", "t99_s"])
    peak_none = _f(st.loc["none", "peak_attempts_per_s"])
    peak_full = _f(st.loc["full", "peak_attempts_per_s"])
    sim = (
        f"{StormParams().clients:,} clients after a restart: 99% back in {none:.0f} s "
        f"without jitter, {full:.0f} s with full jitter (peak {peak_none:,.0f} vs "
        f"{peak_full:,.0f} attempts/s)"
    )
    cond = "sim: 2 s outage, 1 ms handshakes on one core, 3 s connect timeout"
    if none > 1.5 * full:
        v = Verdict.only_when(
            "the backoff is jittered",
            "plain exponential backoff keeps clients in lock-step and the herd overflows the "
            "accept queue again",
        )
    elif full <= none:
        v = Verdict.holds("backoff alone spreads the reconnections at this size")
    else:
        v = Verdict.does_not_hold("backoff made recovery slower")
    return Evidence(sim, "not measured (10k clients)", cond, v, QUICK)
