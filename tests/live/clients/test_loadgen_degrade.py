"""`rtsim load` under an overloaded server: subscribers poll, come back, and every message
is still counted exactly once (claim C20, server side)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from rtsim.live.background import BackgroundServer, serve_in_background
from rtsim.live.clients.loadgen import LoadParams, run_load


def _force(srv: BackgroundServer, overloaded: bool) -> None:
    async def go() -> None:
        srv.server.overload.force(overloaded)

    srv.call(go)


def _wait_published(srv: BackgroundServer, n: int, limit_s: float = 60) -> None:
    end = time.monotonic() + limit_s
    while srv.metric("rtsim_published_total") < n:
        assert time.monotonic() < end, "the load run did not publish"
        time.sleep(0.02)


@pytest.mark.parametrize("transport", ["websocket", "sse", "long-polling"])
def test_load_counts_every_message_once_through_degradation(transport: str) -> None:
    srv = serve_in_background(degrade_poll_s=0.5, overload_hold_s=0, overload_lag_ms=0)
    try:
        p = LoadParams(
            url=srv.url,
            transport=transport,
            subscribers=12,
            channels=2,
            rate=40,
            duration_s=4,
            processes=1,
            settle_s=1.0,
            traced=0,
        )
        out: dict[str, Any] = {}

        def run() -> None:
            try:
                out["summary"] = run_load(p, progress=False).summary
            except BaseException as exc:  # reported below
                out["error"] = exc

        t = threading.Thread(target=run)
        t.start()
        _wait_published(srv, 30)
        _force(srv, True)
        _wait_published(srv, 100)
        _force(srv, False)
        t.join(timeout=120)
        assert not t.is_alive()
        assert "error" not in out, out.get("error")
        s = out["summary"]
        assert s.extra["errors"] == 0, s.extra["error_samples"]
        assert s.extra["degraded_clients"] == 12  # every subscriber was sent to polling
        assert s.extra["expected"] == 160 // 2 * 6 * 2
        assert s.lost == 0 and s.extra["duplicates"] == 0
        assert s.deliveries == s.extra["expected"]
        assert srv.metric("rtsim_degraded_total") >= 12
    finally:
        srv.stop()
