"""Fitting the stage model's CPU costs to the calibration's CPU runs.

:func:`fit_costs` turns the CPU of the calibration's load runs (:class:`~rtsim.sim.
stage_calibration.CpuRun`) into the costs :func:`~rtsim.sim.stages.simulate_stages`
charges: a law for what work costs after the process slept (the warm-up law,
:func:`~rtsim.sim.warmup.fit_warmup`, a slower start; the burst law,
:func:`~rtsim.sim.stage_calibration.fit_burst`, additive; or the older warmth law,
:func:`~rtsim.sim.stage_calibration.fit_warmth`, a factor), each transport's costs as a
busy process's at two sizes (:func:`hot_costs`) and their size law
(:meth:`~rtsim.sim.stage_calibration.TransportCosts.fit`), the publisher's send, and long
polling's per-request costs fitted through the model itself (:func:`fit_request_costs`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..core.transport import Transport
from .stage_calibration import CpuRun, StageCalibration, TransportCosts, fit_burst, fit_warmth
from .stages import simulate_stages
from .warmup import fit_warmup, hot_work_us

__all__ = ["fit_costs", "fit_request_costs", "hot_costs"]


def fit_request_costs(
    cal: StageCalibration,
    run: CpuRun,
    seed: int = 0,
    iterations: int = 8,
    tolerance: float = 0.01,
) -> TransportCosts:
    """Long polling's per-request costs at ``run``'s size, made to reproduce ``run`` (a
    measured long-polling cost run) in the model itself.

    The measured costs (``cal.cost("long-polling")``, CPU per request divided by one
    warmth factor for the run's idle gap) assume the whole run is one burst after that
    gap; in the model a message's answers are one burst and the re-polls that follow come
    as many short ones, which the warmth law charges less. So the run is simulated, and
    ``request_us`` and ``client_request_us`` are scaled until the model's server and
    worker CPU equal the run's (``server_cpu_s``; ``loadgen_cpu_s`` less
    ``publisher_cpu_s``), and ``answer_share`` until the model's ``fanout_to_write`` p50
    equals the run's (when it was traced): each at most ``iterations`` rounds, stopping
    when every ratio is within ``tolerance``. The answer share stays in [0.05, 1].
    Returns the fitted :class:`TransportCosts` (``at_n`` = the run's subscribers, no size
    exponents). Raises ``ValueError`` if the run published nothing.
    """
    if run.published < 1 or not run.rate > 0:
        raise ValueError("the cost run published nothing")
    lp = Transport.LONG_POLLING
    c = replace(cal.cost(lp).at(run.subscribers), at_n=run.subscribers)
    cal = replace(cal, client_processes=run.processes)
    duration = run.published / run.rate
    meas_cli = max(run.loadgen_cpu_s - run.publisher_cpu_s, 0.0)
    for _ in range(iterations):
        f = simulate_stages(cal.with_costs(lp, c), lp, run.subscribers, run.rate, duration, seed)
        sim = f.attrs["cpu_s"]
        ks = run.server_cpu_s / sim["server"] if sim["server"] > 0 else 1.0
        kc = meas_cli / sim["client"] if sim["client"] > 0 else 1.0
        ka = 1.0
        ftw = float(np.nanmedian(f["fanout_to_write"]))
        if run.fanout_to_write_p50_ms and ftw > 0:
            ka = run.fanout_to_write_p50_ms / ftw
        if max(abs(ks - 1), abs(kc - 1), abs(ka - 1)) <= tolerance:
            break
        req = c.request_us * ks
        answer = (c.server_us + c.answer_share * c.request_us) * ka
        share = min(max((answer - c.server_us) / req, 0.05), 1.0) if req > 0 else c.answer_share
        cli = c.client_request_us * kc
        c = replace(c, request_us=req, client_request_us=cli, answer_share=share)
    return c


def hot_costs(
    cal: StageCalibration, c: TransportCosts, run: CpuRun, websocket: TransportCosts | None = None
) -> TransportCosts:
    """``c`` (measured in ``run``, CPU per delivery and per request) as a busy process's.

    With a burst law (``cal.burst``) the burst each message's work paid after the run's
    idle gap is taken off, shared over the deliveries of the server and of one worker;
    long polling's per-delivery parts are then ``websocket``'s (hot, same size) and the
    rest is per request. With a warmth law instead every cost is divided by the factor of
    the run's gap. Costs stay at least 0.5 µs per delivery and 0 per request.
    """
    if not cal.burst:
        fs = cal.warm_factor("server", run.gap_ms("server"))
        fc = cal.warm_factor("client", run.gap_ms("client"))
        return replace(
            c,
            server_us=c.server_us / fs,
            request_us=c.request_us / fs,
            client_us=c.client_us / fc,
            client_request_us=c.client_request_us / fc,
        )
    if not (c.request_us or c.client_request_us):
        return replace(
            c,
            server_us=max(_hot(cal, "server", c.server_us, run), 0.5),
            client_us=max(_hot(cal, "client", c.client_us, run), 0.5),
        )
    ws = websocket or c
    srv = _hot(cal, "server", c.server_us + c.request_us, run)
    cli = _hot(cal, "client", c.client_us + c.client_request_us, run)
    return replace(
        c,
        server_us=ws.server_us,
        client_us=ws.client_us,
        request_us=max(srv - ws.server_us, 0.0),
        client_request_us=max(cli - ws.client_us, 0.0),
    )


def _hot(cal: StageCalibration, role: str, per_unit_us: float, run: CpuRun) -> float:
    """``role``'s CPU per unit of work in ``run`` as a busy process's: the warm-up law's
    extra (where the role has one) or the burst of the run's idle gap taken off."""
    units = run.units(role)
    gap = run.gap_ms(role)
    if role in cal.warmup:
        amp, tau = cal.warmup_at(role, gap)
        return hot_work_us(per_unit_us * units, amp, tau) / units
    return per_unit_us - cal.burst_us(role, gap) / units


def fit_costs(
    cal: StageCalibration,
    measured: dict[str, dict[int, TransportCosts]],
    cost_runs: dict[tuple[str, int], CpuRun],
    warm_runs: list[CpuRun],
    traced: CpuRun,
    law: str = "burst",
) -> tuple[StageCalibration, dict[int, TransportCosts]]:
    """``cal`` with its CPU costs fitted to the calibration's CPU runs.

    ``measured``: per transport and size (two sizes each), the costs measured in
    ``cost_runs[(transport, size)]``; ``warm_runs``: WebSocket runs at several rates
    (the law's points; for the burst law the larger WebSocket cost run is added, whose
    sleep matches one of them); ``traced``: the traced calibration run (the publisher's
    cost). ``law``: ``"warmup"`` (:func:`~rtsim.sim.warmup.fit_warmup` for the server and
    the workers, the burst law for the publisher; what the lab calibrates with), ``"burst"``
    (:func:`~rtsim.sim.stage_calibration.fit_burst`),
    ``"warmth"`` (:func:`~rtsim.sim.stage_calibration.fit_warmth`) or ``"none"`` (costs as
    measured). Returns the calibration and long polling's fitted costs per size (empty
    without long polling). Raises ``ValueError`` for another ``law``.
    """
    if law not in ("warmup", "burst", "warmth", "none"):
        raise ValueError(f"law must be warmup, burst, warmth or none, got {law!r}")
    sizes = sorted({n for by_n in measured.values() for n in by_n})
    if law in ("burst", "warmup"):
        ws_runs = [r for (t, _n), r in cost_runs.items() if t == "websocket"]
        runs = list({id(r): r for r in [*warm_runs, *ws_runs]}.values())
        burst, _unit = fit_burst(runs)
        warmup = fit_warmup([*runs, traced]) if law == "warmup" else {}
        cal = replace(cal, burst=burst, warmth={}, warmup=warmup)
    elif law == "warmth":
        cal = replace(cal, warmth=fit_warmth(warm_runs), burst={})
    if law != "none":
        ws_hot = {
            n: hot_costs(cal, c, cost_runs[("websocket", n)])
            for n, c in measured.get("websocket", {}).items()
        }
        measured = {
            name: {
                n: hot_costs(cal, c, cost_runs[(name, n)], ws_hot.get(n)) for n, c in by_n.items()
            }
            for name, by_n in measured.items()
        }
        pub = traced.per_message_us("publisher")
        gap = traced.gap_ms("publisher")
        if law in ("burst", "warmup"):
            cal = replace(cal, publish_us=max(pub - cal.burst_us("publisher", gap), 0.5))
        else:
            cal = replace(cal, publish_us=pub / cal.warm_factor("publisher", gap))
    small, large = sizes[0], sizes[-1]
    for name, by_n in measured.items():
        cal = cal.with_costs(name, TransportCosts.fit(by_n[small], by_n[large]))
    fitted: dict[int, TransportCosts] = {}
    if "long-polling" in measured:
        # Per-request costs made to reproduce their own cost runs in the model.
        for n, c in measured["long-polling"].items():
            lp_cal = cal.with_costs("long-polling", c)
            fitted[n] = fit_request_costs(lp_cal, cost_runs[("long-polling", n)])
        cal = cal.with_costs("long-polling", TransportCosts.fit(fitted[small], fitted[large]))
    return cal, fitted
