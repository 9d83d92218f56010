"""Small, fast runs of the soak, fuzz and leak benchmarks (benchmarks/bench_{soak,fuzz,leak}.py).

These check that the harnesses work and see what they should (counts and booleans), not the
full-size numbers: those are in benchmarks/results/{soak,fuzz,leak}.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.live.broker_fixtures import require_binary

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_fuzz
import bench_leak
import bench_soak

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", ["redis", "jetstream"])
def test_soak_small_exactly_once_through_restarts(kind: str) -> None:
    require_binary("redis-server" if kind == "redis" else "nats-server")
    part = bench_soak.Part(
        kind, clients=9, messages=120, channels=4, procs=1, drops_per_s=10.0,
        server_restart=kind == "redis",
    )  # fmt: skip
    r = bench_soak.run_part(part, log=lambda _: None)
    assert r["clients_per_transport"] == {"websocket": 3, "sse": 3, "long-polling": 3}
    assert r["messages"] == 120
    # every client got every message of its channels: nothing lost, doubled or reordered
    assert r["received"] == r["expected_deliveries"], r["examples"]
    assert (r["lost"], r["duplicated"], r["out_of_order"], r["not_caught_up"]) == (0, 0, 0, 0)
    assert r["gaps"] == 0 and not r["log_trimmed_possible"]
    assert r["drops"] > 0
    assert len(r["events"]) == (2 if kind == "redis" else 1)
    assert r["ok"]


def test_fuzz_small_no_5xx_and_bystanders_unaffected() -> None:
    r = bench_fuzz.run_fuzz(inputs=200, batch=20)
    assert r["inputs"] == 200
    assert set(r["per_target"]) == set(bench_fuzz.TARGETS)
    assert r["server_errors"] == 0, r["failures"]
    assert r["server_alive"] and r["healthz_ok"]
    by = r["bystanders"]
    assert by["published"] > 0
    assert all(by[t]["exact"] for t in ("websocket", "sse", "long-polling")), by
    assert r["ok"]


def test_leak_small_rss_back_near_baseline() -> None:
    r = bench_leak.run_leak(cycles=400, warmup=100, concurrency=10, channels=20, tolerance=0.10)
    assert sum(r["completed"].values()) == 400
    assert set(r["completed"]) == set(bench_leak.KINDS)
    assert r["errors"] == {}
    assert r["peak_mib"] >= r["baseline_mib"] > 0
    assert r["after_over_baseline"] <= 1.10
    assert r["ok"]


def test_soak_accounting_counts_gaps_from_the_stored_ids() -> None:
    from rtsim.live.clients.client import GapNotice

    stored = [(n, f"e1:{10 + n}") for n in range(10)]  # data n stored with id 10+n
    # Received 0-2, a trimmed-log gap after id 12 whose first held id is 16 (3, 4, 5
    # skipped; the notice says "at least 1"), then 6-9 except 8.
    gap = GapNotice("c", "e1:12", 1, "16", epoch="e1")
    got = [0, 1, 2, 6, 7, 9]
    counts = bench_soak.account(got, [gap], stored)
    assert counts["gap_missed"] == 3 and counts["gap_missed_reported"] == 1
    assert counts["lost"] == 1  # 8: neither received nor inside the gap
    assert bench_soak.missing_of(got, [gap], stored) == [8]
    assert (counts["duplicated"], counts["out_of_order"], counts["gap_but_received"]) == (0, 0, 0)
    # Stored order is what counts: 1 stored before 0 (a resent publish) is in order.
    swapped = [stored[1], stored[0], *stored[2:]]
    assert bench_soak.account([1, 0, 2, 3, 4, 5, 6, 7, 8, 9], [], swapped)["out_of_order"] == 0
    assert bench_soak.account([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [], swapped)["out_of_order"] == 1
    twice = bench_soak.account([0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9], [], stored)
    assert (twice["duplicated"], twice["out_of_order"], twice["lost"]) == (1, 1, 0)
