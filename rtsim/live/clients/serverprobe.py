"""What the load generator asks of the server it loads: its CPU and RSS (``/proc`` when its
pid is known, else ``/metrics``) and the stage records of a run (``GET /debug/stages``)."""

from __future__ import annotations

import json
from typing import Any

from ..process import process_cpu_s, process_rss_bytes
from .load_params import LoadParams

__all__ = ["server_stages", "server_stats"]


def server_stats(p: LoadParams) -> tuple[float | None, float | None]:
    """(RSS bytes, CPU seconds) of the server: /proc when its pid is known, else /metrics."""
    if p.server_pid is not None:
        try:
            return float(process_rss_bytes(p.server_pid)), process_cpu_s(p.server_pid)
        except (OSError, RuntimeError):
            return None, None
    import urllib.request

    try:
        with urllib.request.urlopen(f"{p.url}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None, None
    rss: float | None = None
    cpu: float | None = None
    for line in text.splitlines():
        if line.startswith("process_resident_memory_bytes "):
            rss = float(line.split()[1])
        elif line.startswith("process_cpu_seconds_total "):
            cpu = float(line.split()[1])
    return rss, cpu


def _stage_records(p: LoadParams, url: str) -> dict[str, Any]:
    """The stage records of this run on the server at ``url`` (``GET /debug/stages``);
    {} if unavailable."""
    import urllib.request

    req = urllib.request.Request(f"{url}/debug/stages?prefix={p.run_id}:")
    if p.token:
        req.add_header("Authorization", f"Bearer {p.token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            records: dict[str, Any] = json.loads(r.read())["records"]
    except (OSError, ValueError, KeyError):
        return {}
    return records


def server_stages(p: LoadParams) -> dict[str, Any]:
    """The subscribers' server's stage records of this run; {} if unavailable.

    When the publisher sends to another server (``p.publish_url``), ``received`` is that
    server's, so ``server_to_fanout`` spans the backplane (publish on one instance →
    fan-out on the other; both on CLOCK_MONOTONIC of this machine)."""
    records = _stage_records(p, p.url)
    if p.publisher_url != p.url:
        received = _stage_records(p, p.publisher_url)
        for trace, rec in records.items():
            rec["received"] = received.get(trace, {}).get("received")
    return records
