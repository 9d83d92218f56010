"""Simulation vs measurement: the stage model, calibrated once, against held-out runs.

Starts `rtsim serve` as its own process, calibrates the stage model (rtsim.sim.stages) on
ONE configuration (WebSocket, 200 subscribers, 50% load; every message traced), then for
each transport × subscriber count × load runs the model and `--repeats` live load tests,
and reports the measured mean with its 95% CI beside the simulated value, the relative
error, whether the point passes (|error| ≤ 10% p50 / 20% p99, or simulated inside the CI),
the 1-minute load average before the point and the cores other work took during its runs
(/proc/stat less the runs' own CPU: a CPU-bound point, such as long polling at 2,000
subscribers, runs slower by as much).
Writes benchmarks/results/compare_stages.md and .json (compare.json keeps the round-1
sweep of the mean-cost model, which notebook 07 and the claims read until they move over).

    .venv/bin/python benchmarks/bench_compare.py            # the full held-out sweep
    .venv/bin/python benchmarks/bench_compare.py --transports websocket --loads 0.2,0.5 \
        --subscribers 50 --repeats 3 --duration 2           # a smaller one
    .venv/bin/python benchmarks/bench_compare.py --resimulate \
        benchmarks/results/compare_stages.json --out /tmp/resim  # the model again, no runs
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import machine  # noqa: E402

from rtsim.core import strictjson  # noqa: E402
from rtsim.lab.stage_compare import (  # noqa: E402
    attribution,
    calibrate_stage_model,
    compare_stage_model,
    refit,
    resimulate,
    stage_error_table,
    stage_server,
)

RESULTS_MD = HERE / "results" / "compare_stages.md"
RESULTS_JSON = HERE / "results" / "compare_stages.json"
FULL_LOADS = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--transports", default="websocket,sse,long-polling")
    ap.add_argument("--loads", default=FULL_LOADS)
    ap.add_argument("--subscribers", default="50,2000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--note", default="", help="a line for the results file")
    ap.add_argument(
        "--out",
        default=str(RESULTS_JSON.with_suffix("")),
        help="results path without suffix (default: benchmarks/results/compare_stages)",
    )
    ap.add_argument(
        "--save-calibration",
        default="",
        metavar="FILE",
        help="also pickle the calibration's raw runs to FILE (to refit the model offline)",
    )
    ap.add_argument(
        "--rewrite-md", action="store_true", help="only rewrite the .md from the committed .json"
    )
    ap.add_argument(
        "--attribution",
        action="store_true",
        help="re-simulate the committed sweep with each model mechanism off (no live runs)",
    )
    ap.add_argument(
        "--resimulate",
        default="",
        metavar="JSON",
        help="re-simulate every point of a saved sweep with its saved calibration and the"
        " current model (no live runs); writes --out .json/.md and prints before/after",
    )
    ap.add_argument(
        "--refit",
        default="",
        metavar="PKL",
        help="with --resimulate: first refit the model with this commit's code from the raw"
        " calibration runs saved by --save-calibration (the same sweep's)",
    )
    a = ap.parse_args()
    if a.resimulate:
        write_resimulation(Path(a.resimulate), Path(a.out), a.duration, a.refit)
        return
    if a.rewrite_md:
        write_md(json.loads(RESULTS_JSON.read_text()))
        return
    if a.attribution:
        write_attribution(json.loads(RESULTS_JSON.read_text()))
        return
    loads = _floats(a.loads)
    subs = [int(x) for x in a.subscribers.split(",")]
    transports = [t for t in a.transports.split(",") if t]
    rows, stages = [], {}
    with stage_server() as (url, pid):
        raw: dict = {}
        scal, info = calibrate_stage_model(url, pid, duration_s=a.duration, raw=raw)
    if a.save_calibration:
        import pickle

        Path(a.save_calibration).write_bytes(pickle.dumps(raw))
    print(json.dumps(info), flush=True)
    for t in transports:
        for n in subs:
            # A fresh server per group: each load run leaves its channels' history behind,
            # and a server holding a whole sweep's spends tens of ms in each full collection.
            with stage_server() as (url, pid):
                r, st = compare_stage_model(url, pid, scal, t, loads, n, a.repeats, a.duration)
                rows += r
                stages.update(st)
                for x in r:
                    print(
                        f"{t} {n} {x['load']:.0%} {x['metric']} sim {x['simulated']:.2f}"
                        f" meas {x['measured']:.2f} err {x['rel_error']:+.0%}"
                        f" pass {x['passes']} load1m {x['loadavg_1m']:.2f}",
                        flush=True,
                    )
    cmd = "`.venv/bin/python benchmarks/bench_compare.py " + " ".join(sys.argv[1:]) + "`"
    data = {
        "command": cmd,
        "machine": machine(),
        "note": a.note,
        "repeats": a.repeats,
        "calibration": {**info, "model": scal.as_dict()},
        "rows": rows,
        "stages": stages,
    }
    out = Path(a.out)
    out.with_suffix(".json").write_text(strictjson.dumps(data))
    write_md(data, out.with_suffix(".md"))


def scores(data: dict, max_load: float = 0.8) -> pd.DataFrame:
    """Per transport and subscriber count up to ``max_load``: p50/p99 points passing and
    the mean |error| of p50 and p99."""
    df = pd.DataFrame(data["rows"])
    df = df[(df["load"] <= max_load + 1e-9) & df["metric"].isin(["p50_ms", "p99_ms"])]
    df = df.assign(abs_err=df["rel_error"].abs())
    g = df.groupby(["transport", "subscribers"])
    out = pd.DataFrame({"points": g.size(), "passing": g["passes"].sum()})
    for m in ("p50_ms", "p99_ms"):
        out[f"mean_abs_{m[:3]}_error"] = (
            df[df.metric == m].groupby(["transport", "subscribers"])["abs_err"].mean()
        )
    total = {
        "points": int(out["points"].sum()),
        "passing": int(out["passing"].sum()),
        "mean_abs_p50_error": float(df[df.metric == "p50_ms"]["abs_err"].mean()),
        "mean_abs_p99_error": float(df[df.metric == "p99_ms"]["abs_err"].mean()),
    }
    out.loc[("all", 0), list(total)] = list(total.values())
    return out


def write_resimulation(saved: Path, out: Path, duration_s: float, raw_pkl: str = "") -> None:
    """The saved sweep re-simulated (``resimulate``; refitted first from ``raw_pkl`` when
    given, ``refit``): OUT.json/.md and before/after scores."""
    before = json.loads(saved.read_text())
    source = before
    if raw_pkl:
        import pickle

        source = refit(before, pickle.loads(Path(raw_pkl).read_bytes()))
    after = resimulate(source, duration_s=duration_s)
    after["calibration"] = source["calibration"]
    cmd = "`.venv/bin/python benchmarks/bench_compare.py " + " ".join(sys.argv[1:]) + "`"
    what = "its calibration runs refitted and its measurements" if raw_pkl else "its calibration"
    after["note"] = (
        f"Re-simulated from {saved.name} ({what}; the model of this commit) by {cmd}. "
        + before.get("note", "")
    )
    out.with_suffix(".json").write_text(strictjson.dumps(after))
    write_md(after, out.with_suffix(".md"))
    both = pd.concat({"before": scores(before), "after": scores(after)}, axis=1)
    print(both.to_string(float_format=lambda v: f"{v:.3f}"))


def write_attribution(data: dict) -> None:
    """compare_attribution.json/.md: what each mechanism of the model contributes."""
    df = attribution(data)
    out = HERE / "results" / "compare_attribution"
    out.with_suffix(".json").write_text(strictjson.dumps({"rows": df.to_dict("records")}))
    lines = [
        "# What each mechanism of the stage model contributes",
        "",
        "Command: `.venv/bin/python benchmarks/bench_compare.py --attribution` (simulation only:"
        " the committed sweep's points at 20/50/80% load re-simulated with the calibrated model,"
        " and with each mechanism turned off in turn; errors against the measured means).",
        "",
        machine(),
        "| variant | what is off | mean abs. p50 error | mean abs. p99 error | points passing |",
        "|---|---|---:|---:|---:|",
    ]
    for r in df.itertuples():
        lines.append(
            f"| {r.variant} | {r._2} | {r.mean_abs_p50_error:.0%} | {r.mean_abs_p99_error:.0%}"
            f" | {r.points_passing} of {r.points} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(df.to_string())


def write_md(data: dict, path: Path = RESULTS_MD) -> None:
    """benchmarks/results/compare_stages.md (or ``path``) from the JSON of a run."""
    info = data["calibration"]
    rows, stages = data["rows"], data["stages"]
    lines = ["# Simulation (stage model) vs measurement", "", f"Command: {data['command']}", ""]
    lines += [data["machine"]]
    if data.get("note"):
        lines += [f"**Note:** {data['note']}", ""]
    summary = stage_error_table(data)
    total, ok = int(summary["points"].sum()), int(summary["passing"].sum())
    lines += [
        "## Summary (p50 and p99 points up to 80% load)",
        "",
        f"{ok} of {total} points pass (|error| ≤ 10% p50, ≤ 20% p99, or the simulated value"
        " inside the measured 95% CI).",
        "",
        "| transport | subscribers | points | passing | worst p50 error | worst p99 error |",
        "|---|---:|---:|---:|---:|---:|",
        *[
            f"| {t} | {n} | {int(r.points)} | {int(r.passing)} | {r.worst_p50_error:.0%}"
            f" | {r.worst_p99_error:.0%} |"
            for (t, n), r in summary.iterrows()
        ],
        "",
        "## Calibration (the only configuration whose latencies the model was fitted on)",
        "",
        f"`{info['command']}` — 1-minute load average {info['loadavg_1m']:.2f}, measured"
        f" p50 {info['measured_p50_ms']:.2f} ms, p99 {info['measured_p99_ms']:.2f} ms.",
        f"CPU costs per transport: `{info.get('cost_command', '')}`; idle-loop wake-up by"
        " gap: `rtsim.live.wakeup.measure_wakeup()`.",
        "",
        "## Comparison (rel. error = (simulated − measured) / measured; measured = mean of"
        f" {data.get('repeats', 3)} runs with its 95% CI)",
        "",
        "| transport | subs | load | msgs/s | metric | simulated | measured | 95% CI "
        "| rel. error | pass | load avg 1m | other work (cores) |",
        "|---|---:|---:|---:|---|---:|---:|---|---:|---|---:|---:|",
    ]

    def f(v: float) -> str:
        return f"{v:.2f}" if math.isfinite(v) else "—"

    for r in rows:
        err = f"{r['rel_error']:+.0%}" if math.isfinite(r["rel_error"]) else "—"
        lines.append(
            f"| {r['transport']} | {r['subscribers']} | {r['load']:.0%} | {r['rate']:g} "
            f"| {r['metric']} | {f(r['simulated'])} | {f(r['measured'])} "
            f"| {f(r['measured_ci_low'])}–{f(r['measured_ci_high'])} | {err} "
            f"| {'yes' if r['passes'] else 'no'} | {r['loadavg_1m']:.2f}"
            f" | {f(r.get('other_cores', math.nan))} |"
        )
    lines += ["", "## Stages (p50 ms, simulated / measured)", ""]
    names = list(next(iter(stages.values()))["simulated"]) if stages else []
    lines += ["| point | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key, st in stages.items():
        cells = [
            f"{st['simulated'][s]['p50_ms']:.2f} / {st['measured'][s]['p50_ms']:.2f}" for s in names
        ]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
