"""Simulation vs measurement, per transport, from 10% to 90% of the calibrated capacity.

Starts `rtsim serve` as its own process, calibrates the transport model on it, then for
each load level runs the SimPy model and the live load test with the same parameters.
Writes benchmarks/results/compare.md and compare.json (read by notebook 07).

    .venv/bin/python benchmarks/bench_compare.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import machine  # noqa: E402

from rtsim.lab.compare import calibrate, start_server, sweep_compare  # noqa: E402

RESULTS_MD = HERE / "results" / "compare.md"
RESULTS_JSON = HERE / "results" / "compare.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    subscribers = 100 if a.quick else 200
    duration = 2.0 if a.quick else 5.0
    fractions = (0.1, 0.5) if a.quick else (0.1, 0.3, 0.5, 0.7, 0.9)
    frames, cals = [], []
    with start_server() as (url, pid):
        ws = calibrate(url, pid, "websocket")
        for t in ("websocket", "sse", "long-polling"):
            cal = (
                ws
                if t == "websocket"
                else calibrate(
                    url, pid, t, ws_server_cpu_per_delivery_us=ws.server_cpu_per_delivery_us
                )
            )
            cals.append(
                cal.as_dict() | {"capacity_deliveries_per_s": cal.capacity_deliveries_per_s()}
            )
            df = sweep_compare(url, pid, cal, subscribers, fractions, duration)
            frames.append(df)
            print(df.round(3).to_string(index=False), flush=True)
    out = pd.concat(frames, ignore_index=True)
    RESULTS_JSON.write_text(
        json.dumps({"calibration": cals, "comparison": out.to_dict("records")}, indent=1)
    )
    cmd = "`.venv/bin/python benchmarks/bench_compare.py" + (" --quick`" if a.quick else "`")
    lines = [
        "# Simulation vs measurement",
        "",
        f"Command: {cmd}",
        "",
        machine(),
        "## Calibration",
        "",
        "| transport | server µs/delivery | server µs/request | load-gen µs/delivery "
        "| capacity deliveries/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for c in cals:
        lines.append(
            f"| {c['transport']} | {c['server_cpu_per_delivery_us']:.1f} "
            f"| {c['server_cpu_per_request_us']:.1f} | {c['client_cpu_per_delivery_us']:.1f} "
            f"| {c['capacity_deliveries_per_s']:,.0f} |"
        )
    lines += [
        "",
        "## Comparison (relative error = (simulated − measured) / measured)",
        "",
        "| transport | load | msgs/s | metric | simulated | measured | rel. error | lost |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in out.to_dict("records"):
        lines.append(
            f"| {r['transport']} | {r['load_fraction']:.0%} | {r['rate']:g} | {r['metric']} "
            f"| {r['simulated']:.2f} | {r['measured']:.2f} | {r['rel_error']:+.0%} | {r['lost']} |"
        )
    RESULTS_MD.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS_MD}")


if __name__ == "__main__":
    main()
