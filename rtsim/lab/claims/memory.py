"""Claims on connection memory (C1, C2): measured on a live server and committed peers."""

from __future__ import annotations

import math
import shutil

from .context import LIVE, Context, committed
from .evidence import Evidence, Verdict

__all__ = ["c1", "c2", "mem_total"]


def mem_total() -> float:
    """This machine's RAM in bytes (``MemTotal`` of /proc/meminfo), NaN if unreadable."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return math.nan


def c1(ctx: Context) -> Evidence:
    """C1: KB of server memory per idle WebSocket, ours against 2–10 KB and the peers."""
    if ctx.quick:
        lv = ctx.live_runs()
        kib, n, src = lv["kib_per_conn"], lv["idle"], LIVE + " (rtsim serve subprocess)"
        errors = lv["idle_errors"]
    else:
        m = ctx.committed_memory("rtsim")
        if m is None:
            v = Verdict.does_not_hold("not measured yet")
            why = "no memory rows in fanout.json"
            return Evidence("", "not measured yet", why, v, committed("fanout.json"))
        kib, n, errors = m["kib_per_connection"], m["connections"], m["errors"]
        src = committed("fanout.json")
    kb = kib * 1.024
    peers: list[str] = []
    lean: list[str] = []
    for peer in ("websockets", "node-ws"):
        pm = ctx.committed_memory(peer)
        if pm is not None:
            peers.append(f"{peer} {pm['kib_per_connection']:.1f} KiB")
            if pm["kib_per_connection"] * 1.024 <= 10:
                lean.append(peer)
    measured = f"{kib:.1f} KiB ({kb:.1f} KB) per idle WebSocket, RSS growth over {n:,} conns"
    cond = f"our aiohttp server, one process, idle subscribed WebSockets, {errors} errors"
    if peers:
        cond += f"; peers (committed, fanout.json): {', '.join(peers)}"
    if kb <= 10:
        v = Verdict.holds(f"{kb:.1f} KB per connection is within 2–10 KB")
    elif lean:
        v = Verdict.only_when(
            "the server is leaner than ours", f"{', '.join(lean)} within 10 KB, ours {kb:.1f} KB"
        )
    else:
        v = Verdict.does_not_hold(
            f"{kb:.1f} KB per idle connection for our Python server "
            "(and the committed peers are above 10 KB too)"
        )
    return Evidence("not simulated (memory is measured)", measured, cond, v, src)


def c2(ctx: Context) -> Evidence:
    """C2: how many Node connections this machine's RAM fits at the committed size."""
    node = ctx.committed_memory("node-ws")
    ram = mem_total()
    go = shutil.which("go")
    src = committed("fanout.json")
    if node is None:
        return Evidence("", "not measured yet", "no node-ws memory row in fanout.json",
                        Verdict.does_not_hold("not measured yet"), src)  # fmt: skip
    kib = float(node["kib_per_connection"])
    fit = ram / (kib * 1024)
    need_50k = 50_000 * kib * 1024 / 2**30
    need_1m_gib = 1_000_000 * kib * 1024 / 2**30
    measured = (
        f"Node ws: {kib:.1f} KiB per idle WebSocket ({node['connections']:,} conns) → "
        f"{need_50k:.2f} GiB for 50k; Go: "
        + ("runtime present, not measured" if go else "not measured (no Go runtime here)")
    )
    cond = (
        f"this machine: {ram / 2**30:.1f} GiB RAM fits ~{fit:,.0f} Node connections at that"
        f" size (memory only, no traffic); at this size 1M would need {need_1m_gib:.1f} GiB"
    )
    if fit >= 50_000:
        v = Verdict.holds(
            f"Node's measured size fits ≥50k connections in this machine's RAM "
            f"(~{fit:,.0f}); the Go figure is not measured here"
        )
    else:
        v = Verdict.only_when(
            f"the server has ≥{need_50k:.1f} GiB for connections",
            f"this machine's RAM fits ~{fit:,.0f} Node connections; Go not measured here",
        )
    sim = "not simulated (a memory model: RAM ÷ measured bytes per connection)"
    return Evidence(sim, measured, cond, v, src)
