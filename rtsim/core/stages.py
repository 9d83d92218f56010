"""The stages of a message's latency, shared by the live measurement and the model.

A delivery's end-to-end latency (scheduled publish → handled by the subscriber) is the sum
of six stages, each the difference of two timestamps on CLOCK_MONOTONIC:

=====================  ==============================================================
``publish_timer``      scheduled publish → publish sent (the publisher's timer lateness
                       and its frame encoding)
``publish_transit``    sent → the server read and parsed the publish (loopback, the
                       server loop's wake-up, frame parsing)
``server_to_fanout``   received → the hub's fan-out began (auth, JSON check, backplane)
``fanout_to_write``    fan-out began → this subscriber's bytes were handed to its socket
                       (its position in the fan-out; for long polling also the wait for
                       its next request)
``write_to_read``      written → the client read them (loopback, the client loop's
                       wake-up, other connections of its process served first)
``client_handle``      read → handled (JSON decoding, bookkeeping)
=====================  ==============================================================

:func:`stage_frame` builds the per-delivery frame from the two sides' records (the load
generator's and the server's ``GET /debug/stages``); :func:`stage_summary` reduces any
such frame — measured or simulated — to p50/p99 per stage with
:func:`~rtsim.core.results.percentile` (HdrHistogram, the lab's one percentile).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .results import percentile

__all__ = ["STAGES", "Wakeup", "stage_frame", "stage_summary", "timer_residual"]

#: The stages in path order; their sum is ``end_to_end`` (all in milliseconds).
STAGES: tuple[str, ...] = (
    "publish_timer",
    "publish_transit",
    "server_to_fanout",
    "fanout_to_write",
    "write_to_read",
    "client_handle",
)

_COLUMNS = ("trace", "port", "scheduled", "sent", "received", "fanout_start", "written")


def stage_frame(
    client: Iterable[tuple[str, int, float, float, float, float]],
    server: Mapping[str, Mapping[str, Any]],
) -> pd.DataFrame:
    """Per traced delivery, the stage durations in milliseconds.

    Args:
        client: ``(trace, port, scheduled, sent, read, handled)`` per traced delivery the
            subscribers handled (seconds on CLOCK_MONOTONIC; ``port`` the connection's
            local port).
        server: ``GET /debug/stages`` records by trace key (``received``,
            ``fanout_start``, ``fanout_end``, ``n``, ``writes``: port → seconds).

    Returns one row per client delivery whose trace and port the server recorded, with
    columns ``trace``, ``n`` (subscribers of that fan-out), ``position`` (0-based order of
    this write in the fan-out, by time), ``fanout_ms`` (the fan-out loop's duration), each
    of :data:`STAGES` and ``end_to_end`` (ms). Deliveries the server did not record (no
    trace, or an unknown port) are left out; compare ``len`` with the input to count them.
    """
    rows = []
    order: dict[str, dict[int, int]] = {}
    for trace, port, scheduled, sent, read, handled in client:
        rec = server.get(trace)
        if rec is None:
            continue
        writes = rec.get("writes") or {}
        written = writes.get(str(port), writes.get(port))  # type: ignore[call-overload]
        received, start = rec.get("received"), rec.get("fanout_start")
        if written is None or received is None or start is None or not math.isfinite(sent):
            continue
        pos = order.get(trace)
        if pos is None:
            ranked = sorted(writes.items(), key=lambda kv: kv[1])
            pos = order[trace] = {int(k): i for i, (k, _) in enumerate(ranked)}
        end = rec.get("fanout_end")
        t = (scheduled, sent, float(received), float(start), float(written), read, handled)
        rows.append(
            {
                "trace": trace,
                "n": int(rec.get("n", 0)),
                "position": pos.get(int(port), -1),
                "fanout_ms": (float(end) - float(start)) * 1e3 if end is not None else math.nan,
                **{s: (t[i + 1] - t[i]) * 1e3 for i, s in enumerate(STAGES)},
                "end_to_end": (handled - scheduled) * 1e3,
            }
        )
    cols = ["trace", "n", "position", "fanout_ms", *STAGES, "end_to_end"]
    return pd.DataFrame(rows, columns=cols)


def stage_summary(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """``{stage: {"p50_ms", "p99_ms", "mean_ms", "n"}}`` for :data:`STAGES` and
    ``end_to_end`` of a per-delivery frame (measured or simulated; NaN rows skipped).

    Negative durations (clock reads a few µs apart in different processes) are kept in
    the mean and clipped at 0 for the percentiles. Empty frame: NaN figures, ``n`` 0.
    """
    out: dict[str, dict[str, float]] = {}
    for s in (*STAGES, "end_to_end"):
        v = frame[s].to_numpy(dtype=float) if s in frame else np.zeros(0)
        v = v[np.isfinite(v)]
        clipped = np.maximum(v, 0.0)
        out[s] = {
            "p50_ms": percentile(clipped, 50),
            "p99_ms": percentile(clipped, 99),
            "mean_ms": float(v.mean()) if len(v) else math.nan,
            "n": float(len(v)),
        }
    return out


@dataclass(frozen=True)
class Wakeup:
    """Per idle gap (ms, ascending): the median one-way loopback latency into the woken
    loop (``latency_ms``) and the median CPU the woken process spent from waking to
    having read the message (``cpu_us``: on a virtual machine this grows with the gap —
    cold caches and the vCPU's own wake-up are charged to it)."""

    gaps_ms: list[float]
    latency_ms: list[float]
    cpu_us: list[float]

    def cpu_at(self, gap_ms: float) -> float:
        """CPU µs a wake-up after ``gap_ms`` idle costs beyond one after the shortest gap
        probed (that much is the reading itself, already in any per-message cost), never
        below 0 (a longer gap that measured cheaper is noise); interpolated on log gap."""
        gaps, cpu = np.asarray(self.gaps_ms), np.asarray(self.cpu_us)
        order = np.argsort(gaps)
        y = np.maximum(cpu[order] - cpu[order[0]], 0.0)
        return float(np.interp(math.log(max(gap_ms, 1e-3)), np.log(gaps[order]), y))


def timer_residual(
    timer: np.ndarray, due: np.ndarray, base: np.ndarray, consecutive: np.ndarray
) -> tuple[np.ndarray, float]:
    """The publisher's wake-up latency beyond its sleep's whole-millisecond rounding (ms).

    ``timer``: each message's ``publish_timer`` (ms); ``due`` its scheduled time; ``base``
    the last event known to have woken the publisher after the previous message (ms, one
    clock): its stamp, or the server's fan-out end, after which the server's ``ack`` for it
    comes back; ``consecutive[k]``: message ``k + 1`` directly follows message ``k`` (both
    traced). Returns (the residuals of the consecutive pairs, ``w``).

    The publisher's loop last went to sleep ``w`` ms after ``base`` (the send's work, or
    the ack's return), with a timeout of ``ceil(due - base - w)`` whole ms (epoll). A wrong
    ``w`` puts the sleeps whose fractional part lies between the two a whole millisecond
    off, spreading the residuals over about 1 ms; so ``w`` is estimated as the offset, on
    a 0.01 ms grid from 0 to 1.5 ms, that makes the residuals tightest (10th–90th
    percentile): the right one leaves only the wake-up's own variation. With fewer than
    3 pairs: (``timer``, 0).
    """
    delay = due[1:] - base[:-1]
    best: tuple[float, np.ndarray, float] | None = None
    for w in np.arange(0.0, 1.5, 0.01):
        d = delay - w
        ok = consecutive & (d > 0)
        if ok.sum() < 3:
            continue
        r = (timer[1:] - (np.ceil(d - 1e-9) - d))[ok]
        spread = float(np.percentile(r, 90) - np.percentile(r, 10))
        if best is None or spread < best[0] - 1e-9:
            best = (spread, r, float(w))
    return (best[1], best[2]) if best is not None else (timer, 0.0)
