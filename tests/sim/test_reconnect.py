import numpy as np
import pytest

from rtsim.core.backoff import Jitter
from rtsim.sim.reconnect import (
    FallbackParams,
    StormParams,
    simulate_fallback,
    simulate_reconnect_storm,
    storm_comparison,
)


def test_fallback_lands_every_client_on_the_best_transport_it_can_use() -> None:
    p = FallbackParams(clients=400, blocked={"websocket": 0.3, "sse": 0.3, "long-polling": 0.5})
    df = simulate_fallback(p, seed=1)
    assert df["connected_s"].notna().all()
    counts = df["transport"].value_counts()
    # 70% reach WebSocket, then 30%·70% SSE, then 30%·30%·50% each long polling / polling.
    assert counts["websocket"] / 400 == pytest.approx(0.7, abs=0.07)
    assert counts["sse"] / 400 == pytest.approx(0.21, abs=0.06)
    assert set(counts.index) <= {"websocket", "sse", "long-polling", "polling"}
    ws = df[df.transport == "websocket"]
    assert (ws["attempts"] == 1).all() and np.allclose(ws["connected_s"], 0.15)
    slower = df[df.transport != "websocket"]["connected_s"]
    assert (slower > 0.15).all()


def test_fallback_nobody_blocked() -> None:
    df = simulate_fallback(FallbackParams(clients=50, blocked={}), seed=0)
    assert (df["transport"] == "websocket").all()


def test_storm_everyone_comes_back_and_jitter_beats_lockstep() -> None:
    base = StormParams(clients=10_000, connect_timeout_s=3.0)
    df = storm_comparison(base, [Jitter.NONE, Jitter.FULL], seed=0).set_index("jitter")
    assert (df["reconnected"] == 10_000).all()
    # In lock-step every client retries at the same instant and the accept queue overflows.
    assert df.loc["none", "timeouts"] > 2 * df.loc["full", "timeouts"]
    assert df.loc["none", "t99_s"] > 1.5 * df.loc["full", "t99_s"]


def test_storm_timeline_counts_attempts() -> None:
    r = simulate_reconnect_storm(StormParams(clients=200, horizon_s=60), seed=2)
    tl = r.timeline(bin_s=0.5)
    assert tl["attempts"].sum() == len(r.attempts)
    assert tl["connected"].sum() == 200
    assert r.summary["attempts_per_client"] >= 1


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"clients": 0}, "clients must be >= 1"),
        ({"handshake_ms": 0}, "handshake_ms must be > 0"),
        ({"jitter": "wobbly"}, "wobbly"),
        ({"backoff_base_s": 5, "backoff_cap_s": 1}, "cap_s"),
    ],
)
def test_storm_bad_parameters(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StormParams(**kw)  # type: ignore[arg-type]


def test_fallback_bad_parameters() -> None:
    with pytest.raises(ValueError, match="unknown transport"):
        FallbackParams(blocked={"gopher": 0.5})
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        FallbackParams(blocked={"sse": 1.5})
