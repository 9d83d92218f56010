"""The context of one ledger run: mode, seed, and the shared runs several claims read.

Each shared run (the transport grid of C3/C19, the architecture run of C11/C19, the live
server runs of C1/C3/C19, …) is a cached property, computed at most once per
:class:`Context` however many claims read it.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

T = TypeVar("T")

__all__ = [
    "LIVE",
    "NOT_MEASURED",
    "QUICK",
    "RESULTS",
    "Context",
    "LiveOff",
    "committed",
    "describe_error",
]

#: Committed full-size results (``rtsim claims --full`` reads them).
RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results"
QUICK = "quick run"
LIVE = "live measurement"
NOT_MEASURED = "not measured here"


def committed(name: str) -> str:
    """The ``source`` text of a committed result file."""
    return f"committed result: benchmarks/results/{name}"


class LiveOff(RuntimeError):
    """Raised by :meth:`Context.require_live` when live measurements are off."""


def describe_error(exc: BaseException) -> str:
    """One short line for an exception: its type and the first line of its message."""
    if isinstance(exc, LiveOff):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:120]


def load_result(name: str) -> Any:
    """A committed JSON result from ``benchmarks/results/``, or None if it is missing."""
    path = RESULTS / name
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _live_server_runs(idle: int = 300) -> dict[str, Any]:
    """Memory per idle WebSocket and loopback latency per transport, on one fresh
    ``rtsim serve`` subprocess: ``idle`` idle connections, then 50 subscribers × 50 msg/s
    for 3 s over WebSocket and long polling."""
    from ...core.transport import Transport
    from ...live.clients.loadgen import LoadParams, run_load
    from ...live.process import process_rss_bytes, serve_process

    out: dict[str, Any] = {}
    with serve_process() as (url, pid):
        base = process_rss_bytes(pid)
        p = LoadParams(
            url=url,
            subscribers=idle,
            rate=1,
            duration_s=0.5,
            server_pid=pid,
            processes=1,
            settle_s=0.2,
        )
        s = run_load(p, progress=False).summary
        connected = s.extra["server_rss_connected_bytes"]
        out["idle"] = idle
        out["idle_errors"] = s.extra["errors"]
        out["kib_per_conn"] = (float(connected) - base) / idle / 1024 if connected else math.nan
        for t in (Transport.WEBSOCKET, Transport.LONG_POLLING):
            q = replace(
                p,
                transport=t,
                subscribers=50,
                channels=5,
                rate=50,
                duration_s=3,
                settle_s=1.0,
                run_id=uuid.uuid4().hex[:8],
            )
            out[t.value] = run_load(q, progress=False).summary
    return out


class Context:
    """One ledger run.

    ``quick`` (default True): run small simulations and live measurements now;
    ``quick=False``: read committed full results from ``benchmarks/results/`` where they
    exist. ``live=False`` skips every live measurement (servers, Redis, timing on this
    machine) and reports it as not measured; verdicts of seeded simulations do not change.
    ``seed`` (int ≥ 0) seeds every simulation; raises ``ValueError`` otherwise.
    ``tabs``/``storm`` may pass in runs a notebook already made (see
    :func:`rtsim.lab.transports.tabs_table` with 4 and 8 tabs, and ``storm_table``).
    """

    def __init__(
        self,
        quick: bool = True,
        seed: int = 0,
        live: bool = True,
        tabs: pd.DataFrame | None = None,
        storm: pd.DataFrame | None = None,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.quick = bool(quick)
        self.seed = int(seed)
        self.live = bool(live)
        if tabs is not None:
            self.__dict__["tabs"] = tabs
        if storm is not None:
            self.__dict__["storm"] = storm
        self._live_error: str | None = None
        self._once: dict[str, Any] = {}

    def once(self, key: str, make: Callable[[], T]) -> T:
        """``make()`` the first time ``key`` is asked for in this run, the same value after.

        For runs shared by claims of one topic (e.g. the broker loss run of C8 and C9)."""
        if key not in self._once:
            self._once[key] = make()
        value: T = self._once[key]
        return value

    def require_live(self, what: str) -> None:
        """Raise :class:`LiveOff` if live measurements are switched off for this run."""
        if not self.live:
            raise LiveOff(f"live measurements are off for this run ({what})")

    @cached_property
    def fanout(self) -> dict[str, Any]:
        """``benchmarks/results/fanout.json`` (memory and fan-out rows), or ``{}``."""
        return load_result("fanout.json") or {}

    def committed_memory(self, server: str, transport: str = "websocket") -> dict[str, Any] | None:
        """The committed memory row of ``server`` with the most connections, or None."""
        rows = self.fanout.get("memory") or []
        mine = [r for r in rows if r.get("server") == server and r.get("transport") == transport]
        return max(mine, key=lambda r: r["connections"]) if mine else None

    @cached_property
    def _live_runs(self) -> dict[str, Any] | None:
        if not self.live:
            self._live_error = "live measurements are off for this run"
            return None
        try:
            return _live_server_runs()
        except Exception as exc:  # reported by every claim that needs it
            self._live_error = describe_error(exc)
            return None

    def live_runs(self) -> dict[str, Any]:
        """The shared live server runs (see ``_live_server_runs``), made once; raises
        ``RuntimeError`` with the reason if they could not run."""
        runs = self._live_runs
        if runs is None:
            raise RuntimeError(f"live server runs failed: {self._live_error}")
        return runs

    @cached_property
    def c3_runs(self) -> pd.DataFrame:
        """WebSocket vs long polling over RTT × rate (:func:`rtsim.lab.transports.c3_runs`)."""
        from ..transports import c3_runs

        return c3_runs(self.seed)

    @cached_property
    def tabs(self) -> pd.DataFrame:
        """SSE tabs under HTTP/1.1 and HTTP/2, 4 and 8 tabs per browser."""
        from ..transports import tabs_table

        return tabs_table((4, 8), seed=self.seed)

    @cached_property
    def storm(self) -> pd.DataFrame:
        """The reconnection storm with no, full and equal jitter (default StormParams)."""
        from ...sim.reconnect import StormParams
        from ..transports import storm_table

        return storm_table(StormParams(), seed=self.seed)

    @cached_property
    def architecture(self) -> dict[str, Any]:
        """The 5-step architecture at 100k clients: committed (full mode, if present) or a
        60 s seeded run; p50/p99 in ms, rates per second."""
        from ...sim.architecture import ArchitectureParams, simulate_architecture

        p = ArchitectureParams()
        if not self.quick:
            data = load_result("architecture.json") or []
            rows = [r for r in data if r.get("broker") == "redis-streams"]
            if rows:
                r = rows[0]
                return {
                    "p50": r["p50_ms"],
                    "p99": r["p99_ms"],
                    "lost": r["lost"],
                    "duration": p.duration_s,
                    "deliveries_per_s": r["deliveries"] / p.duration_s,
                    "published_per_s": r["deliveries"] / r["fan_out_ratio"] / p.duration_s,
                    "peak": r["peak_connections_per_instance"],
                    "source": committed("architecture.json"),
                }
        q = p.with_(duration_s=60.0)
        s = simulate_architecture(q, self.seed, keep_deliveries=False).summary
        return {
            "p50": s.p50_ms,
            "p99": s.p99_ms,
            "lost": s.lost,
            "duration": q.duration_s,
            "deliveries_per_s": s.deliveries / q.duration_s,
            "published_per_s": s.extra["published"] / q.duration_s,
            "peak": s.extra["peak_connections_per_instance"],
            "source": QUICK,
        }
