"""The live path as stages, each drawn from a distribution measured on this machine.

:func:`calibrate_stages` reads one ``rtsim load`` run with stage timestamps (the lab
calibrates on WebSocket, 200 subscribers, 50% load) into a :class:`StageCalibration`;
:func:`simulate_stages` then predicts any transport, load and subscriber count with the
same stages as :mod:`rtsim.core.stages`:

=====================  ===========================================================  ======
stage                  model                                                        source
=====================  ===========================================================  ======
``publish_timer``      the publisher's sleep ends on a whole millisecond (epoll      [1]
                       timeouts are whole ms: ``ceil`` of the remaining delay) plus
                       the measured residual lateness (empirical quantiles)
``publish_transit``    loopback + parse, empirical (measured transit minus the time  [2]
                       the server was still busy with the previous fan-out), then a
                       FIFO wait for the server's one core
``server_to_fanout``   empirical                                                     [2]
``fanout_to_write``    fan-out in subscription order: write *i* at start + (i+1) ×   [2]
                       c, c drawn per message from the measured per-delivery cost
                       (fan-out duration / n) — its variance included; long polling:
                       a subscriber whose next request has not arrived gets it in
                       that request's answer (per-request cost [3])
``write_to_read``      loopback (empirical, the fastest tenth of write → read), then [2]
                       subscriber's client process: FIFO, ``client_us`` per delivery,
                       stretched by processor sharing when the server and P client
                       processes want more than C cores
``client_handle``      empirical                                                     [2]
=====================  ===========================================================  ======

[1] ``selectors.EpollSelector.select`` rounds its timeout up to whole milliseconds
(CPython ``Lib/selectors.py``; libuv's timers are in ms too).
[2] ``rtsim load --transport websocket --subscribers 200 --rate R --json`` at 50% load:
the stage frame of its traced deliveries (``RunResult.deliveries``), see
:func:`calibrate_stages`. [3] ``TransportParams.cpu_per_request_us`` (100 µs, assumption).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..core.stages import STAGES
from ..core.transport import Transport, parse_transport
from .seeding import as_seed_sequence

__all__ = ["StageCalibration", "calibrate_stages", "simulate_stages"]

_QS = np.linspace(0, 100, 101)


def _quantiles(v: np.ndarray) -> list[float]:
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return [0.0] * len(_QS)
    return [float(x) for x in np.percentile(np.maximum(v, 0.0), _QS)]


def _draw(rng: np.random.Generator, qs: list[float], n: int) -> np.ndarray:
    """``n`` draws from the empirical distribution given by its 0..100th percentiles."""
    out: np.ndarray = np.interp(rng.uniform(0, 100, n), _QS, np.asarray(qs))
    return out


@dataclass(frozen=True)
class StageCalibration:
    """Empirical stage distributions (0..100th percentiles, ms) and costs of one machine."""

    timer_residual_ms: list[float]
    transit_ms: list[float]
    server_to_fanout_ms: list[float]
    per_delivery_us: list[float]
    loopback_ms: list[float]
    client_handle_ms: list[float]
    client_us: float
    cores: int
    client_processes: int
    per_request_us: float = 100.0
    source: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrate_stages(
    frame: pd.DataFrame,
    loadgen_cpu_s: float,
    deliveries: int,
    rate: float,
    cores: int,
    client_processes: int,
    command: str = "",
) -> StageCalibration:
    """A :class:`StageCalibration` from one measured run's stage frame.

    Args:
        frame: ``RunResult.deliveries`` of :func:`~rtsim.live.clients.loadgen.run_load`
            (one row per traced delivery; trace every message for the transit correction).
        loadgen_cpu_s: the load generator's CPU seconds (client cost = this / deliveries).
        deliveries: deliveries of that run.
        rate: its publish rate (messages/s), for the publisher's epoll rounding.
        cores: cores of the machine; client_processes: the load generator's processes.
        command: the command that measured it (recorded as the source).

    Raises ``ValueError`` for an empty frame.
    """
    if len(frame) == 0 or deliveries <= 0:
        raise ValueError("the calibration run has no traced deliveries")
    per_msg = frame.groupby("trace", sort=False).first()
    # Server busy with the previous fan-out when this publish arrived: not transit.
    order = np.argsort(per_msg["publish_timer"].index.map(lambda t: int(str(t).rsplit(":", 1)[1])))
    pm = per_msg.iloc[order]
    interval_ms = 1e3 / rate
    fan_ms = pm["fanout_ms"].to_numpy(dtype=float)
    transit = pm["publish_transit"].to_numpy(dtype=float)
    # The previous fan-out ends (relative to this message's send) roughly at
    # -interval + its own lateness + transit + to_fanout + fan-out duration.
    timer = pm["publish_timer"].to_numpy(dtype=float)
    to_fan = pm["server_to_fanout"].to_numpy(dtype=float)
    prev_end = np.full(len(pm), -np.inf)
    if len(pm) > 1:
        prev_end[1:] = (
            -interval_ms + timer[:-1] + transit[:-1] + to_fan[:-1] + fan_ms[:-1] - timer[1:]
        )
    wait = np.clip(prev_end, 0.0, None)
    free_transit = np.maximum(transit - wait, 0.0)
    epoll = (math.ceil(interval_ms) - interval_ms) if interval_ms > 1 else 0.0
    n = np.maximum(pm["n"].to_numpy(dtype=float), 1)
    # Loopback + client wake-up without a backlog: the fastest tenth of write → read (the
    # rest waited behind other deliveries in the client process, which the model queues).
    w2r = frame["write_to_read"].to_numpy(dtype=float)
    fast = w2r[w2r <= np.percentile(w2r, 10)]
    cmd = command or "rtsim load --transport websocket --subscribers 200 (50% load) --json"
    return StageCalibration(
        timer_residual_ms=_quantiles(timer - epoll),
        transit_ms=_quantiles(free_transit),
        server_to_fanout_ms=_quantiles(to_fan),
        per_delivery_us=_quantiles(fan_ms / n * 1e3),
        loopback_ms=_quantiles(fast),
        client_handle_ms=_quantiles(frame["client_handle"].to_numpy(dtype=float)),
        client_us=loadgen_cpu_s / deliveries * 1e6,
        cores=cores,
        client_processes=client_processes,
        source={
            "stages": cmd,
            "epoll": "CPython selectors.EpollSelector: timeout rounded up to whole ms",
            "per_request_us": "TransportParams.cpu_per_request_us default (assumption)",
        },
    )


def simulate_stages(
    cal: StageCalibration,
    transport: Transport | str,
    subscribers: int,
    rate: float,
    duration_s: float,
    seed: int = 0,
    *,
    epoll_ms: bool = True,
    fanout_variance: bool = True,
    core_sharing: bool = True,
) -> pd.DataFrame:
    """Simulate the stages of every delivery; one row per delivery (ms), the
    :func:`~rtsim.core.stages.stage_frame` columns (``trace`` is the message number).

    The three switches turn one mechanism off each (to measure what it closes):
    ``epoll_ms`` (whole-ms timer wake-ups), ``fanout_variance`` (per-message cost drawn
    instead of its mean), ``core_sharing`` (processor sharing of the cores).
    Raises ``ValueError`` for bad sizes.
    """
    t = parse_transport(transport)
    if subscribers < 1 or not rate > 0 or not duration_s > 0:
        raise ValueError("subscribers must be >= 1, rate and duration_s > 0")
    rng = np.random.default_rng(as_seed_sequence(seed))
    m = max(1, round(rate * duration_s))
    interval = 1.0 / rate
    P = max(1, cal.client_processes)
    C = max(1, cal.cores)
    c_client = cal.client_us * 1e-6
    c_req = cal.per_request_us * 1e-6
    mean_c = float(np.mean(cal.per_delivery_us)) * 1e-6
    # Processor sharing: the server and P client processes on C cores.
    busy_share = min(1.0, C / (P + 1)) if core_sharing else 1.0
    idle_share = min(1.0, C / P) if core_sharing else 1.0
    proc = np.arange(subscribers) % P
    client_free = np.zeros(P)
    server_free = 0.0
    last_sent = 0.0
    timer_res = _draw(rng, cal.timer_residual_ms, m) * 1e-3
    transit = _draw(rng, cal.transit_ms, m) * 1e-3
    to_fan = _draw(rng, cal.server_to_fanout_ms, m) * 1e-3
    per_c = _draw(rng, cal.per_delivery_us, m) * 1e-6 if fanout_variance else np.full(m, mean_c)
    # Long polling: when each subscriber's next request is parked at the server, and the
    # time of the answer it is in (messages published before it share that answer).
    parked = np.zeros(subscribers)
    answer_at = np.full(subscribers, -math.inf)
    answer_rx = np.zeros(subscribers)
    answer_done = np.zeros(subscribers)
    rows: list[pd.DataFrame] = []
    pos = np.arange(subscribers)
    for i in range(m):
        due = i * interval
        # The publisher slept until `due`: the wake-up lands on a whole ms after its last send.
        if epoll_ms and i > 0 and due > last_sent:
            delay_ms = (due - last_sent) * 1e3
            wake = last_sent + math.ceil(delay_ms - 1e-9) * 1e-3
        else:
            wake = max(due, last_sent)
        sent = max(due, wake) + timer_res[i]
        last_sent = sent
        received = max(sent + transit[i], server_free)
        start = received + to_fan[i]
        c = float(per_c[i])  # measured under the calibration's contention: used as is
        if t is Transport.LONG_POLLING:
            ready = parked <= start
            write = np.empty(subscribers)
            k_ready = np.flatnonzero(ready)
            write[k_ready] = start + c * (np.arange(len(k_ready)) + 1)
            end = start + c * len(k_ready)
            late = np.flatnonzero(~ready)
            in_answer = late[answer_at[late] >= start]  # already answered: rides along
            fresh = late[answer_at[late] < start]
            write[in_answer] = answer_at[in_answer]
            # Answered when the request arrives (its cost then; not queued ahead of the
            # next publish: the core is idle meanwhile).
            write[fresh] = np.maximum(parked[fresh], end) + c_req + c
        else:
            write = start + c * (pos + 1)
            end = start + c * subscribers
        server_free = end
        loop = _draw(rng, cal.loopback_ms, subscribers) * 1e-3
        arrive = write + loop
        done = np.empty(subscribers)
        for q in range(P):
            sel = np.flatnonzero(proc == q)
            order = sel[np.argsort(arrive[sel], kind="stable")]
            free = client_free[q]
            a = arrive[order]
            out = np.empty(len(order))
            for j, at in enumerate(a.tolist()):
                s0 = max(at, free)
                share = busy_share if s0 < end else idle_share
                free = s0 + c_client / share
                out[j] = free
            client_free[q] = free
            done[order] = out
        if t is Transport.LONG_POLLING:
            same = write == answer_at
            done[same] = np.maximum(done[same], answer_done[same])
            new = ~same
            answer_at[new] = write[new]
            answer_rx[new] = arrive[new]
            answer_done[new] = done[new]
            parked[new] = done[new] + _draw(rng, cal.transit_ms, int(new.sum())) * 1e-3
        handle = _draw(rng, cal.client_handle_ms, subscribers) * 1e-3
        handled = done + handle
        read = done
        rows.append(
            pd.DataFrame(
                {
                    "trace": i,
                    "n": subscribers,
                    "position": pos,
                    "fanout_ms": (end - start) * 1e3,
                    "publish_timer": (sent - due) * 1e3,
                    "publish_transit": (received - sent) * 1e3,
                    "server_to_fanout": (start - received) * 1e3,
                    "fanout_to_write": (write - start) * 1e3,
                    "write_to_read": (read - write) * 1e3,
                    "client_handle": (handled - read) * 1e3,
                    "end_to_end": (handled - due) * 1e3,
                }
            )
        )
    frame = pd.concat(rows, ignore_index=True)
    assert set(STAGES) <= set(frame.columns)
    return frame
