"""Wall time of `rtsim simulate architecture --clients 100000 --duration 600` per broker.

    .venv/bin/python benchmarks/bench_architecture.py

Writes benchmarks/results/architecture.md and architecture.json (the full-size figures
notebook 05 shows).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from rtsim.sim.architecture import ArchitectureParams, simulate_architecture

OUT = Path(__file__).parent / "results"
KEYS = (
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "deliveries",
    "lost",
    "replayed",
    "fan_out_ratio",
    "max_broker_backlog",
    "max_instance_backlog",
    "peak_connections_per_instance",
)


def main() -> None:
    rows = []
    for broker in ("redis-pubsub", "redis-streams", "jetstream", "kafka"):
        p = ArchitectureParams(clients=100_000, duration_s=600, broker=broker, instances=4)
        t0 = time.perf_counter()
        s = simulate_architecture(p, 0, keep_deliveries=False).summary.to_dict()
        wall = time.perf_counter() - t0
        row = {"broker": broker, "wall_s": round(wall, 2), **{k: s[k] for k in KEYS}}
        rows.append(row)
        print(json.dumps(row))
    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    OUT.mkdir(exist_ok=True)
    (OUT / "architecture.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        "# Architecture scenario at full size",
        "",
        "Command: `.venv/bin/python benchmarks/bench_architecture.py` (equivalent to",
        "`rtsim simulate architecture --clients 100000 --duration 600 --broker B --instances 4"
        " --seed 0`, bulk mode, in-process).",
        "",
        f"Machine: `{uname}`, nproc {nproc}, Python {platform.python_version()}",
        "",
        "The CLI end to end (process start to exit) and 300k / 1M clients: `sim_scale.md`"
        " (`benchmarks/bench_sim_scale.py`).",
        "",
        "| broker | wall s | " + " | ".join(KEYS) + " |",
        "|---" * (len(KEYS) + 2) + "|",
    ]
    for r in rows:
        vals = [f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in KEYS]
        lines.append(f"| {r['broker']} | {r['wall_s']} | " + " | ".join(vals) + " |")
    (OUT / "architecture.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
