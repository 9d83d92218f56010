"""The warm-up law: a process that slept runs slower at first and warms up as it works.

After an idle gap of ``g`` ms a process's work costs ``1 + A(g)·exp(-w/τ)`` times a busy
process's, ``w`` being the CPU (µs) it has done since it woke: the first part of a burst
pays most (caches and the hypervisor's idle handling refilled as it goes), a long burst
pays at most ``A(g)·τ`` in all. So a short burst costs about ``1 + A`` times its work (a
factor, as :func:`~rtsim.sim.stage_calibration.fit_warmth` has it) and a long one a fixed
extra (as :func:`~rtsim.sim.stage_calibration.fit_burst` has it); neither alone fits
WebSocket runs on this 2-core VM, where a 200-subscriber fan-out after a 37 ms sleep cost
the server 15 µs per delivery, a 1,000-subscriber one after the same sleep 12.25 and a
200-subscriber one after 3 ms 9.9 (``rtsim load --transport websocket --subscribers N
--rate R --duration 2``; :data:`rtsim.lab.stage_compare.WARMTH_RUNS`).

A law is ``[gaps_ms, amplitudes, [tau_us], [unit_us]]`` per role: ``A`` at each measured
gap (non-decreasing), ``τ`` in µs of work and the busy cost per unit of work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["extra_us", "fit_warmup", "hot_work_us", "warmup_amplitude"]

#: Roles with a warm-up law (the publisher's one send per message has no size to tell
#: τ from A: it keeps the burst law).
WARMUP_ROLES: tuple[str, ...] = ("server", "client")


def _isotonic(y: list[float]) -> list[float]:
    """The non-decreasing sequence closest to ``y`` in least squares (pool adjacent
    violators)."""
    blocks: list[list[float]] = []  # [mean, count]
    for v in y:
        blocks.append([v, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m2, c2), (m1, c1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * c1 + m2 * c2) / (c1 + c2), c1 + c2])
    return [m for m, c in blocks for _ in range(int(c))]


def extra_us(amp: float, tau_us: float, done_us: float, work_us: float) -> float:
    """Extra CPU µs of ``work_us`` of busy-cost work done after ``done_us`` of work since
    the process woke, at amplitude ``amp`` and time constant ``tau_us``."""
    if amp <= 0 or work_us <= 0 or not tau_us > 0:
        return 0.0
    return amp * tau_us * (math.exp(-done_us / tau_us) - math.exp(-(done_us + work_us) / tau_us))


def hot_work_us(total_us: float, amp: float, tau_us: float) -> float:
    """The busy-cost work ``W`` of a burst that cost ``total_us`` after waking at ``amp``:
    the root of ``W + extra_us(amp, tau_us, 0, W) = total_us`` (0 for ``total_us`` ≤ 0)."""
    if total_us <= 0:
        return 0.0
    lo, hi = total_us / (1 + max(amp, 0.0)), total_us
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if mid + extra_us(amp, tau_us, 0.0, mid) > total_us:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def warmup_amplitude(law: Sequence[Sequence[float]], gap_ms: float) -> float:
    """``A`` after an idle gap of ``gap_ms``: interpolated in log(gap) between the
    measured gaps, flat beyond the longest, falling linearly to 0 at no gap below the
    shortest."""
    g = np.asarray(law[0], dtype=float)
    a = np.asarray(law[1], dtype=float)
    if len(g) == 0:
        return 0.0
    if gap_ms < g[0]:
        return float(a[0] * max(gap_ms, 0.0) / g[0])
    return float(np.interp(math.log(gap_ms), np.log(g), a))


def _tau(pair: tuple[Any, Any], unit: float, role: str) -> float | None:
    """τ (µs) with which the two runs (same gap, different sizes) have the same ``A``."""
    (a, b) = sorted(pair, key=lambda r: r.units(role))
    wa, wb = float(a.units(role) * unit), float(b.units(role) * unit)
    xa = float(a.per_message_us(role)) - wa
    xb = float(b.per_message_us(role)) - wb
    if not (xa > 0 and xb > 0):
        return None
    ratio = xb / xa  # (1 - e^{-wb/τ}) / (1 - e^{-wa/τ}): 1 as τ → 0, wb/wa as τ → ∞

    def f(tau: float) -> float:
        return (1 - math.exp(-wb / tau)) / (1 - math.exp(-wa / tau)) - ratio

    if ratio <= 1.0 + 1e-9:
        return wa * 0.05  # additive: all of the extra paid at once
    if ratio >= wb / wa - 1e-9:
        return wb * 20.0  # multiplicative over both bursts
    lo, hi = wa * 1e-3, wb * 1e3
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        if f(mid) > 0:  # f grows with τ
            hi = mid
        else:
            lo = mid
    return math.sqrt(lo * hi)


def fit_warmup(runs: Sequence[Any]) -> dict[str, list[list[float]]]:
    """Per role of :data:`WARMUP_ROLES`, the warm-up law fitted to CPU runs
    (:class:`~rtsim.sim.stage_calibration.CpuRun`): the busy cost per unit is the lowest
    CPU per unit among the runs of the most common size (the shortest gaps, where the
    extra is least); ``τ`` from the pair of runs of different sizes (at least 2×) at the
    most similar gap (within 1.5×), so that both have the same ``A``; each run's ``A``
    from its extra over the busy cost, then made non-decreasing in the gap. Returns ``{}``
    for a role without such a pair or with fewer than three runs."""
    out: dict[str, list[list[float]]] = {}
    if len(runs) < 3:
        return out
    for role in WARMUP_ROLES:
        sizes = [r.units(role) for r in runs]
        common = max(set(sizes), key=sizes.count)
        unit = min(r.per_message_us(role) / r.units(role) for r in runs if r.units(role) == common)
        pairs = [
            (a, b)
            for i, a in enumerate(runs)
            for b in runs[i + 1 :]
            if max(a.gap_ms(role), b.gap_ms(role)) <= 1.5 * min(a.gap_ms(role), b.gap_ms(role))
            and max(a.units(role), b.units(role)) >= 2 * min(a.units(role), b.units(role))
        ]
        if not pairs:
            continue
        pair = min(pairs, key=lambda p: abs(math.log(p[0].gap_ms(role) / p[1].gap_ms(role))))
        tau = _tau(pair, unit, role)
        if tau is None:
            continue
        pts = []
        # Runs much smaller than the common size pay per-message costs the law does not
        # describe (a 50-subscriber run's publish handling is a third of its CPU).
        for r in sorted(
            (r for r in runs if r.units(role) >= common / 2), key=lambda r: r.gap_ms(role)
        ):
            w = r.units(role) * unit
            x = max(r.per_message_us(role) - w, 0.0)
            pts.append((r.gap_ms(role), x / (tau * (1 - math.exp(-w / tau)))))
        amps = _isotonic([a for _, a in pts])
        out[role] = [[float(g) for g, _ in pts], [float(a) for a in amps], [tau], [unit]]
    return out
