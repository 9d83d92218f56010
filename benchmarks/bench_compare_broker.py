"""One broker path, simulated vs measured: two `rtsim serve` instances over Redis Streams.

Measures Redis XADD → XREAD BLOCK on this machine (the model's broker hop), starts two
instances on a real Redis, publishes on A and subscribes on B (WebSocket, one channel),
and for each rate compares the architecture model (broker redis-streams, 2 instances,
loopback RTT) with `--repeats` live runs: p50 and p99 from the scheduled publish on A to
the handling on B, the measured mean with its 95% CI, the relative error and whether the
point passes (|error| <= 10% p50, <= 20% p99, or the simulated value inside the CI).
The library function is rtsim.lab.broker_compare.compare_broker.
Writes benchmarks/results/compare_broker.md and .json.

    .venv/bin/python benchmarks/bench_compare_broker.py     # 200 subscribers, 10/50/100 msgs/s
    .venv/bin/python benchmarks/bench_compare_broker.py --subscribers 50 --rates 20 \
        --repeats 2 --duration 2                            # a smaller one
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import machine  # noqa: E402

from rtsim.core import strictjson  # noqa: E402
from rtsim.lab.broker_compare import STAGE_GROUPS, BrokerComparison, compare_broker  # noqa: E402

RESULTS_MD = HERE / "results" / "compare_broker.md"
RESULTS_JSON = HERE / "results" / "compare_broker.json"
PROG = "bench_compare_broker"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message.splitlines()[0]}\n")


def _fail(message: str) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _args() -> argparse.Namespace:
    ap = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=200, help="on instance B (200)")
    ap.add_argument("--rates", default="10,50,100", help="msgs/s, comma-separated (10,50,100)")
    ap.add_argument("--repeats", type=int, default=3, help="live runs per rate (3)")
    ap.add_argument("--duration", type=float, default=4.0, help="s per live run (4)")
    ap.add_argument("--settle", type=float, default=5.0, help="s to wait for stragglers (5)")
    ap.add_argument("--hop-samples", type=int, default=400, help="XADDs timed (400)")
    ap.add_argument("--sim-duration", type=float, default=60.0, help="simulated s (60)")
    ap.add_argument("--processes", type=int, default=2, help="load-generator processes (2)")
    ap.add_argument("--redis", default="127.0.0.1:6379", help="HOST:PORT (127.0.0.1:6379)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ap.add_argument("--note", default="", help="a line for the results file")
    a = ap.parse_args()
    try:
        a.rate_list = [float(x) for x in a.rates.split(",") if x.strip()]
    except ValueError:
        _fail(f"--rates must be numbers separated by commas, got {a.rates!r}")
    if not a.rate_list or not all(math.isfinite(r) and r > 0 for r in a.rate_list):
        _fail(f"--rates must be > 0, got {a.rates!r}")
    for flag, v, lo in (
        ("--subscribers", a.subscribers, 1),
        ("--repeats", a.repeats, 1),
        ("--hop-samples", a.hop_samples, 10),
        ("--processes", a.processes, 1),
    ):
        if v < lo:
            _fail(f"{flag} must be >= {lo}, got {v}")
    for flag, x in (("--duration", a.duration), ("--sim-duration", a.sim_duration)):
        if not (math.isfinite(x) and x > 0):
            _fail(f"{flag} must be > 0, got {x}")
    if not (math.isfinite(a.settle) and a.settle >= 0):
        _fail(f"--settle must be >= 0, got {a.settle}")
    host, _, port = a.redis.rpartition(":")
    if not host or not port.isdigit():
        _fail(f"--redis must be HOST:PORT, got {a.redis!r}")
    a.host, a.port = host, int(port)
    return a


def _f(v: float, digits: int = 2) -> str:
    return f"{v:.{digits}f}" if isinstance(v, int | float) and math.isfinite(v) else "—"


def _verdict(row: dict[str, Any]) -> str:
    """ "yes" (within the tolerance), "yes (CI)" (only inside the measured CI) or "no"."""
    if row["within_tolerance"]:
        return "yes"
    return "yes (CI)" if row["passes"] else "no"


def _markdown(c: BrokerComparison, a: argparse.Namespace, loads: dict[str, Any]) -> str:
    cmd = f"`.venv/bin/python benchmarks/bench_compare_broker.py {shlex.join(sys.argv[1:])}`"
    h, cal = c.hop, c.calibration
    lines = ["# One broker path: Redis Streams, two instances, simulated vs measured", ""]
    lines += [f"Command: {cmd}", "", machine().rstrip()]
    lines += [
        f"- load average (1/5/15 min): before {loads['before']}, after {loads['after']}",
        f"- niceness of the run: {loads['nice']}",
        "",
    ]
    if a.note:
        lines += [f"**Note:** {a.note}", ""]
    cfg = c.config
    lines += [
        "## Set-up",
        "",
        f"Two `rtsim serve` instances on `redis-streams://{a.redis}` (a fresh prefix),"
        f" {cfg['subscribers']} WebSocket subscribers on B (one channel,"
        f" {cfg['processes']} load-generator processes), the publisher on A; {cfg['repeats']}"
        f" live runs of {cfg['duration_s']:g} s per rate, each waiting {cfg['settle_s']:g} s"
        " for stragglers (later counts as lost). Latency: scheduled publish on A → handled"
        " by the subscriber on B.",
        "",
        "The model: the architecture model with broker redis-streams and 2 instances, each"
        " holding as many clients as B, one topic at the live rate (Poisson publishes; the"
        " live publisher keeps a fixed schedule), loopback `rtt_ms`/`jitter_ms` of"
        f" rtsim.lab.compare, {cfg['sim_duration_s']:g} simulated seconds. The command of"
        f" the first rate (`hop`): `{next(iter(c.commands.values()))['hop']}`; every command"
        " is in the JSON (`model_commands`).",
        "",
        f"- **broker hop** (`dc_transit_ms` = p50 / 2 = {h.p50_ms / 2:.3f} ms): Redis XADD →"
        f" XREAD BLOCK p50 {h.p50_ms:.3f} ms, p99 {h.p99_ms:.3f} ms, mean {h.mean_ms:.3f} ms"
        f" over {h.samples} samples; source: `{h.source}`.",
        f"- **`hop+cpu`** also sets `cpu_write_us` to instance B's CPU per delivery,"
        f" {_f(cal.get('server_b_cpu_us_per_delivery', math.nan))} µs (/proc), from one"
        f" calibration run at {cal.get('rate', math.nan):g} msgs/s kept apart from the repeats"
        f" (its p50 {_f(cal.get('measured_p50_ms', math.nan))} ms,"
        f" p99 {_f(cal.get('measured_p99_ms', math.nan))} ms). `hop` keeps the model's"
        " default costs (5 µs decode, 7.2 µs per frame).",
        "- **`stages+hop`** models the measuring machine instead of a deployment: the"
        " architecture model gives clients no CPU (in a deployment they have their own"
        " machines), while here the subscribers are load-generator processes sharing the 2"
        " cores with both instances. The stage model (rtsim.sim.stages) calibrated on a"
        " separate in-memory server (the single-instance sweep's calibration: WebSocket,"
        " 200 subscribers, 50% load; it never sees a broker), with instance A as a relay"
        f" process ({_f(cal.get('relay_us', math.nan))} µs of CPU per message beyond its"
        f" wake-ups; A measured {_f(cal.get('instance_a_cpu_us_per_message', math.nan))} µs"
        " per message in all) and the measured hop's whole distribution between A and B.",
        "",
        "## Simulated vs measured (rel. error = (simulated − measured) / measured)",
        "",
        "Pass: |error| ≤ 10% (p50) or ≤ 20% (p99) — *yes*; or the simulated value inside the"
        " measured 95% CI — *yes (CI)*, which with a CI this wide says the measurement is"
        " too noisy to judge, not that the model is right.",
        "",
        "| msgs/s | metric | model | simulated | measured (mean) | 95% CI | runs | rel. error"
        " | pass | lost | load avg 1m |",
        "|---:|---|---|---:|---:|---|---|---:|---|---:|---:|",
    ]
    for r in c.rows:
        err = f"{r['rel_error']:+.0%}" if math.isfinite(r["rel_error"]) else "—"
        runs = ", ".join(_f(v) for v in r["repeats_values"])
        lines.append(
            f"| {r['rate']:g} | {r['metric']} | {r['model']} | {_f(r['simulated'])}"
            f" | {_f(r['measured'])} | {_f(r['measured_ci_low'])}–{_f(r['measured_ci_high'])}"
            f" | {runs} | {err} | {_verdict(r)} | {r['lost']}"
            f" | {_f(r['loadavg_1m'])} |"
        )
    variants = ("measured", "hop", "hop+cpu", "stages+hop")
    lines += ["", "## Where the time goes (p50 ms per stage group: " + " / ".join(variants) + ")"]
    lines += [""]
    groups = list(STAGE_GROUPS)
    head = "| msgs/s | " + " | ".join(groups) + " | largest miss (hop) |"
    lines += [head, "|---:|" + "---|" * (len(groups) + 1)]
    for rate, st in c.stages.items():
        cells = [" / ".join(_f(st[k][g], 3) for k in variants if k in st) for g in groups]
        gap = {g: st["measured"][g] - st["hop"][g] for g in groups}
        worst = max(gap, key=lambda g: abs(gap[g]) if math.isfinite(gap[g]) else -1.0)
        cells.append(f"{worst} ({gap[worst]:+.2f} ms)")
        lines.append(f"| {rate} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Groups: "
        + "; ".join(f"`{g}` = {' + '.join(parts)}" for g, parts in STAGE_GROUPS.items())
        + " (rtsim.core.stages). The architecture model's figures are its parameters at zero"
        " queueing (rtsim.lab.broker_compare.model_stages); the stage model's are the p50 of"
        " its simulated stages. Measured, per stage (p50 / p99 ms):",
        "",
    ]
    names = list(next(iter(c.stage_detail.values()))) if c.stage_detail else []
    lines += ["| msgs/s | " + " | ".join(names) + " |", "|---:|" + "---|" * len(names)]
    for rate, st in c.stage_detail.items():
        cells = [f"{_f(st[s]['p50_ms'], 3)} / {_f(st[s]['p99_ms'], 3)}" for s in names]
        lines.append(f"| {rate} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _loads() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    a = _args()
    import redis

    before = _loads()
    try:
        c = compare_broker(
            a.subscribers,
            a.rate_list,
            a.repeats,
            a.duration,
            host=a.host,
            port=a.port,
            hop_samples=a.hop_samples,
            processes=a.processes,
            sim_duration_s=a.sim_duration,
            seed=a.seed,
            settle_s=a.settle,
        )
    except redis.exceptions.ConnectionError as exc:
        print(f"{PROG}: no Redis at {a.redis}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    loads = {"before": before, "after": _loads(), "nice": os.nice(0)}
    data = {**c.as_dict(), "load_average": loads, "command": sys.argv[1:], "note": a.note}
    RESULTS_JSON.write_text(strictjson.dumps(data) + "\n")
    RESULTS_MD.write_text(_markdown(c, a, loads))
    if a.json:
        print(strictjson.dumps(data))
    else:
        print(c.table().drop(columns=["repeats_values"]).to_string(index=False))
        print(f"wrote {RESULTS_MD} and {RESULTS_JSON.name}")


if __name__ == "__main__":
    main()
