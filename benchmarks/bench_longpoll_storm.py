"""The long-polling storm, measured: where a message's time goes at 2,000 subscribers.

At 2,000 long-polling subscribers each message is a storm: the server answers every parked
poll, each load-generator worker reads its answers and polls again, and the server reads
and parks the re-polls. This runs ``rtsim load --transport long-polling`` with every
message traced against an ``rtsim serve`` whose ``/poll`` handler logs each request's
arrival, and samples every few ms the CPU (run time) and run-queue wait of the server and
each worker (``/proc/PID/task/*/schedstat``, ns) and the machine's busy time
(``/proc/stat``). Per message it reports:

* the timeline in 50 ms bins: server writes, each worker's reads, re-polls arriving at the
  handler, the CPU each process got;
* the accounting: CPU, run-queue wait and sleep of each process until the last read, and
  the cores that other work took meanwhile (machine busy less the run's own CPU);
* the server's CPU while answering (receipt → last answer) against its CPU for the whole
  storm: the answer share (:data:`rtsim.sim.stage_calibration.ANSWER_SHARE`);
* how the answers alternate between the workers (runs of one worker in the write order);
* the stage model (the committed calibration, ``compare_stages.json``) for the same
  message with the machine's cores and with the cores the run was left (trace-driven).

On a shared machine the wall-clock figures depend on what else runs; CPU seconds and the
trace-driven ratios do not. ``rtsim serve`` and the load generator run as in
``bench_compare.py`` (two worker processes).

    .venv/bin/python benchmarks/bench_longpoll_storm.py [--subscribers 2000] [--rate 0.5]
        [--duration 10] [--runs 2]

Writes ``benchmarks/results/longpoll_storm.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import itertools
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import machine  # noqa: E402

from rtsim.core.transport import Transport  # noqa: E402
from rtsim.live.clients import loadgen  # noqa: E402
from rtsim.live.server import longpoll  # noqa: E402
from rtsim.live.server.stages import peer_port  # noqa: E402
from rtsim.sim.stages import StageCalibration, simulate_stages  # noqa: E402

RESULTS = HERE / "results" / "longpoll_storm"
BIN_MS = 50.0
LOG_DIR = os.environ.get("STORM_LOG_DIR")

# --- measurement hooks (this benchmark only) ----------------------------------------------
# The server's /poll handler logs (client port, arrival, return); each load worker logs
# (port, read time, trace) of its deliveries. Workers are spawned processes that import
# this file as __mp_main__, so the hook is installed in them too.
_POLLS: list[tuple[int, float, float]] = []
_READS: list[tuple[int, float, str | None]] = []


def _install_hooks() -> None:
    poll, got, main = longpoll.LongPollHandler.poll, loadgen._Worker._got, loadgen._Worker.main

    async def logged_poll(self: Any, request: Any) -> Any:
        t0, port = time.monotonic(), peer_port(request.transport)
        try:
            return await poll(self, request)
        finally:
            _POLLS.append((port, t0, time.monotonic()))

    def logged_got(self: Any, k: int, data: Any, read_at: float, port: int) -> None:
        trace = data.get("trace") if isinstance(data, dict) else None
        _READS.append((port, read_at, trace))
        got(self, k, data, read_at, port)

    async def logged_main(self: Any, conn: Any) -> None:
        try:
            await main(self, conn)
        finally:
            path = Path(LOG_DIR or ".") / f"worker-{os.getpid()}.json"
            path.write_text(json.dumps({"pid": os.getpid(), "reads": _READS}))

    longpoll.LongPollHandler.poll = logged_poll  # type: ignore[method-assign]
    loadgen._Worker._got = logged_got  # type: ignore[method-assign]
    loadgen._Worker.main = logged_main  # type: ignore[method-assign]


if LOG_DIR:
    _install_hooks()


def _serve(port: int) -> None:
    """``rtsim serve`` with the hooks; the poll log is written at exit."""
    from rtsim.cli import main
    from rtsim.lab.stage_compare import SERVER_ARGS

    atexit.register(lambda: (Path(LOG_DIR or ".") / "polls.json").write_text(json.dumps(_POLLS)))
    sys.exit(main(["serve", "--port", str(port), *SERVER_ARGS]))


# --- sampling ------------------------------------------------------------------------------
def _schedstat(pid: int) -> tuple[int, int]:
    """(run ns, run-queue wait ns) of all threads of ``pid``."""
    run = wait = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                a, b, _ = f.read().split()
        except OSError:
            continue
        run, wait = run + int(a), wait + int(b)
    return run, wait


def _machine_busy() -> tuple[int, int]:
    """(busy, idle) of all cores, USER_HZ ticks (/proc/stat)."""
    with open("/proc/stat", encoding="ascii") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v) - v[3] - v[4], v[3] + v[4]


class Sampler(threading.Thread):
    """Every ``every_s``: schedstat of the server and this process's children (the
    workers), and the machine's busy ticks."""

    def __init__(self, server_pid: int, every_s: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.server_pid, self.every_s = server_pid, every_s
        self.rows: list[tuple[float, int, int, int]] = []
        self.stop = threading.Event()

    def _children(self) -> list[int]:
        me, out = os.getpid(), []
        for tid in os.listdir(f"/proc/{me}/task"):
            try:
                with open(f"/proc/{me}/task/{tid}/children", encoding="ascii") as f:
                    out += [int(x) for x in f.read().split()]
            except OSError:
                continue
        return [p for p in out if p != self.server_pid]

    def run(self) -> None:
        kids: list[int] = []
        kids_at = -1.0
        while not self.stop.is_set():
            t = time.monotonic()
            if t - kids_at > 0.5:
                kids, kids_at = self._children(), t
            for p in [self.server_pid, os.getpid(), *kids]:
                try:
                    self.rows.append((t, p, *_schedstat(p)))
                except OSError:
                    continue
            self.rows.append((t, -1, *_machine_busy()))
            time.sleep(self.every_s)


# --- one run -------------------------------------------------------------------------------
def measure(subscribers: int, rate: float, duration_s: float, logs: Path) -> dict[str, Any]:
    """One traced run; its raw records (see the module docstring)."""
    from rtsim.lab.stage_compare import _run as run_point
    from rtsim.live.process import free_port

    port = free_port()
    env = dict(os.environ, STORM_LOG_DIR=str(logs))
    srv = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        os.environ["STORM_LOG_DIR"] = str(logs)  # the spawned workers install the hooks
        sampler = Sampler(srv.pid)
        sampler.start()
        load0 = os.getloadavg()[0]
        # One run as bench_compare.py makes them (two workers, 1.5 s to settle), all traced.
        res = run_point(
            url, srv.pid, Transport.LONG_POLLING, subscribers, rate, duration_s, 2, 10**6
        )
        load1 = os.getloadavg()[0]
        sampler.stop.set()
        sampler.join()
        q = f"{url}/debug/stages?prefix={res.params['run_id']}:"
        with urllib.request.urlopen(q, timeout=10) as r:
            stages = json.loads(r.read())["records"]
    finally:
        os.environ.pop("STORM_LOG_DIR", None)
        srv.terminate()
        srv.wait(timeout=30)
    workers = [json.loads(p.read_text()) for p in sorted(logs.glob("worker-*.json"))]
    return {
        "server_pid": srv.pid,
        "driver_pid": os.getpid(),
        "samples": sampler.rows,
        "stages": stages,
        "polls": json.loads((logs / "polls.json").read_text()),
        "workers": workers,
        "loadavg": [load0, load1],
        "p50_ms": res.summary.p50_ms,
        "p99_ms": res.summary.p99_ms,
        "cores": os.cpu_count() or 1,
    }


# --- analysis ------------------------------------------------------------------------------
class Clock:
    """Interpolated cumulative counters per process (``-1``: the machine)."""

    def __init__(self, rows: list[tuple[float, int, int, int]]) -> None:
        by: dict[int, list[tuple[float, int, int]]] = collections.defaultdict(list)
        for t, p, a, b in rows:
            by[p].append((t, a, b))
        self.s = {p: np.asarray(v, dtype=float) for p, v in by.items()}

    def delta(self, p: int, a: float, b: float, col: int = 1) -> float:
        """Counter ``col`` (1: run/busy, 2: wait/idle) of ``p`` between ``a`` and ``b``:
        seconds (process) or USER_HZ ticks (machine)."""
        v = self.s[p]
        x = np.interp([a, b], v[:, 0], v[:, col])
        return float(x[1] - x[0]) / (1e9 if p >= 0 else 1.0)


def analyse(raw: dict[str, Any], cal: StageCalibration) -> list[dict[str, Any]]:
    """One record per message: timeline, accounting, answer share, order, model."""
    clock = Clock(raw["samples"])
    srv = raw["server_pid"]
    pids = [w["pid"] for w in raw["workers"]]
    worker_of = {int(r[0]): i for i, w in enumerate(raw["workers"]) for r in w["reads"]}
    reads = {(r[2], int(r[0])): r[1] for w in raw["workers"] for r in w["reads"] if r[2]}
    polls = np.asarray(raw["polls"], dtype=float).reshape(-1, 3)
    recs = sorted(raw["stages"].items(), key=lambda kv: kv[1]["received"])
    hz = os.sysconf("SC_CLK_TCK")
    out = []
    for i, (trace, rec) in enumerate(recs):
        t0 = float(rec["received"])
        nxt = float(recs[i + 1][1]["received"]) if i + 1 < len(recs) else t0 + 1 / 0.5
        writes = sorted((float(t), int(p)) for p, t in rec["writes"].items())
        w_t = np.array([t for t, _ in writes])
        rd = {
            w: np.array(
                sorted(
                    reads[(trace, p)]
                    for _, p in writes
                    if worker_of.get(p) == w and (trace, p) in reads
                )
            )
            for w in range(len(pids))
        }
        all_reads = np.sort(np.concatenate(list(rd.values())))
        last = float(all_reads[-1])
        e2e = (all_reads - (t0 - 0.0)) * 1e3
        repolls = np.sort(polls[(polls[:, 1] > w_t[0]) & (polls[:, 1] < nxt), 1])
        bins = np.arange(0, 1000 + BIN_MS, BIN_MS)

        def hist(x: np.ndarray, t0: float = t0, bins: np.ndarray = bins) -> list[int]:
            return [int(v) for v in np.histogram((x - t0) * 1e3, bins)[0]]

        def share(p: int, t0: float = t0, bins: np.ndarray = bins) -> list[float]:
            edges = t0 + bins / 1e3
            return [
                round(clock.delta(p, a, b) / (BIN_MS / 1e3), 2)
                for a, b in itertools.pairwise(edges)
            ]

        span = last - t0
        ours = [srv, *pids]
        acct = {}
        for name, p in zip(["server", *[f"w{j}" for j in range(len(pids))]], ours, strict=True):
            run, wait = clock.delta(p, t0, last), clock.delta(p, t0, last, 2)
            acct[name] = {
                "cpu_ms": run * 1e3,
                "runq_ms": wait * 1e3,
                "sleep_ms": (span - run - wait) * 1e3,
            }
        # The run's own CPU: the server, the workers and this process (publisher, sampler).
        mine = sum(clock.delta(p, t0, last) for p in [*ours, raw["driver_pid"]])
        busy = clock.delta(-1, t0, last) / hz
        others = max(busy - mine, 0.0) / span
        left = max(raw["cores"] - others, 0.05)
        answer_cpu = clock.delta(srv, t0, float(w_t[-1]))
        storm_cpu = clock.delta(srv, t0 - 0.01, nxt - 0.01)
        order = np.array([worker_of.get(p, -1) for _, p in writes])
        runs = 1 + int(np.sum(order[1:] != order[:-1]))
        model = {}
        for name, cores, ded in (
            ("machine", cal.cores, True),
            ("left", min(left, cal.cores), left >= cal.cores),
        ):
            f = simulate_stages(
                replace(cal, cores=cores),
                "long-polling",
                len(writes),
                0.5,
                4.0,
                seed=1,
                server_core=ded,
            )
            e = f[f["trace"] == 1]["end_to_end"].to_numpy()
            model[name] = {
                "cores": cores,
                "p50_ms": float(np.percentile(e, 50)),
                "p99_ms": float(np.percentile(e, 99)),
            }
        out.append(
            {
                "message": i,
                "subscribers": len(writes),
                "storm_ms": span * 1e3,
                "writes_ms": [float((w_t[0] - t0) * 1e3), float((w_t[-1] - t0) * 1e3)],
                "reads_ms": {
                    f"w{w}": [float((v[0] - t0) * 1e3), float((v[-1] - t0) * 1e3)]
                    for w, v in rd.items()
                    if len(v)
                },
                "repolls_ms": [float((repolls[0] - t0) * 1e3), float((repolls[-1] - t0) * 1e3)]
                if len(repolls)
                else [],
                "live_p50_ms": float(np.percentile(e2e, 50)),
                "live_p99_ms": float(np.percentile(e2e, 99)),
                "accounting": acct,
                "others_cores": others,
                "cores_left": left,
                "answer_us": answer_cpu / len(writes) * 1e6,
                "storm_server_us": storm_cpu / len(writes) * 1e6,
                "answer_share": answer_cpu / storm_cpu,
                "order_runs": runs,
                "model": model,
                "timeline": {
                    "bins_ms": [int(b) for b in bins[:-1]],
                    "server writes": hist(w_t),
                    **{f"w{w} reads": hist(v) for w, v in rd.items()},
                    "re-polls at handler": hist(repolls),
                    "server cpu": share(srv),
                    **{f"w{j} cpu": share(p) for j, p in enumerate(pids)},
                },
            }
        )
    return out


# --- report --------------------------------------------------------------------------------
def _mean(msgs: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([m[key] for m in msgs]))


def per(a: dict[str, dict[str, float]], key: str, workers: list[str]) -> str:
    """``server / w0 + w1`` of one accounting figure (ms)."""
    return f"{a['server'][key]:.0f} / " + " + ".join(f"{a[w][key]:.0f}" for w in workers)


def write(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    msgs = [m for r in runs for m in r["messages"]]
    cmd = "`.venv/bin/python benchmarks/bench_longpoll_storm.py " + " ".join(sys.argv[1:]) + "`"
    data = {"command": cmd, "machine": machine(), "runs": runs}
    RESULTS.with_suffix(".json").write_text(json.dumps(data, indent=1))
    cal_cores = msgs[0]["model"]["machine"]["cores"]
    ratio = {
        k: float(np.mean([m[f"live_{k}_ms"] / m["model"]["left"][f"{k}_ms"] for m in msgs]))
        for k in ("p50", "p99")
    }
    ratio_m = {
        k: float(np.mean([m[f"live_{k}_ms"] / m["model"]["machine"][f"{k}_ms"] for m in msgs]))
        for k in ("p50", "p99")
    }
    shares = [m["answer_share"] for m in msgs]
    gap = [m["repolls_ms"][0] - m["writes_ms"][1] for m in msgs if m["repolls_ms"]]
    lines = [
        "# The long-polling storm, measured",
        "",
        f"Command: {cmd} ({args.subscribers} subscribers, {args.rate} msgs/s, every message"
        " traced; CPU from /proc/PID/schedstat every 5 ms, other work from /proc/stat).",
        "",
        data["machine"],
        "## Summary",
        "",
        f"- {len(msgs)} messages in {len(runs)} runs; 1-minute load average"
        f" {min(r['loadavg'][0] for r in runs):.1f}-{max(r['loadavg'][1] for r in runs):.1f}"
        f"; other work took {_mean(msgs, 'others_cores'):.2f} of {cal_cores:g} cores on average"
        " during the storms.",
        f"- Server CPU per subscriber per storm: {_mean(msgs, 'storm_server_us'):.0f} µs, of"
        f" which {_mean(msgs, 'answer_us'):.0f} µs while answering (receipt → last answer):"
        f" answer share {_mean(msgs, 'answer_share'):.2f}"
        f" ({min(shares):.2f}-{max(shares):.2f}).",
        "- No re-poll reaches the handler before the last answer: first re-poll"
        f" {np.mean(gap):.0f} ms (min {min(gap):.0f})"
        " after the last answer on average.",
        f"- Write order: {_mean(msgs, 'order_runs'):.0f} runs of one worker's subscribers on"
        f" average (strict alternation: {msgs[0]['subscribers']}); first messages:"
        f" {', '.join(str(r['messages'][0]['order_runs']) for r in runs)}.",
        f"- Live / model, per message: p50 {ratio_m['p50']:.2f}, p99 {ratio_m['p99']:.2f} with"
        f" the machine's {cal_cores:g} cores; p50 {ratio['p50']:.2f}, p99 {ratio['p99']:.2f}"
        " with the cores other work left the run (trace-driven).",
        "",
        "## Per message",
        "",
        "| run | msg | storm ms | writes ms | reads ms (per worker) | re-polls ms | others"
        " (cores) | CPU ms server / workers | runq ms server / workers | answer share"
        " | order runs | live p50/p99 | model p50/p99 (machine) | model p50/p99 (left) |",
        "|---:|---:|---:|---|---|---|---:|---|---|---:|---:|---|---|---|",
    ]
    for ri, r in enumerate(runs):
        for m in r["messages"]:
            a = m["accounting"]
            ws = [k for k in a if k != "server"]
            mm, ml = m["model"]["machine"], m["model"]["left"]
            lines.append(
                f"| {ri} | {m['message']} | {m['storm_ms']:.0f}"
                f" | {m['writes_ms'][0]:.0f}-{m['writes_ms'][1]:.0f}"
                f" | {'; '.join(f'{k} {v[0]:.0f}-{v[1]:.0f}' for k, v in m['reads_ms'].items())}"
                f" | {'-'.join(f'{x:.0f}' for x in m['repolls_ms'])}"
                f" | {m['others_cores']:.2f}"
                f" | {per(a, 'cpu_ms', ws)} | {per(a, 'runq_ms', ws)}"
                f" | {m['answer_share']:.2f} | {m['order_runs']}"
                f" | {m['live_p50_ms']:.0f}/{m['live_p99_ms']:.0f}"
                f" | {mm['p50_ms']:.0f}/{mm['p99_ms']:.0f}"
                f" | {ml['p50_ms']:.0f}/{ml['p99_ms']:.0f} ({ml['cores']:.2f} cores) |"
            )
    first = runs[0]["messages"][min(1, len(runs[0]["messages"]) - 1)]
    tl = first["timeline"]
    lines += [
        "",
        f"## Timeline of run 0, message {first['message']} ({BIN_MS:.0f} ms bins from the"
        " publish's receipt; counts, or cores of CPU)",
        "",
        "| | " + " | ".join(str(b) for b in tl["bins_ms"]) + " |",
        "|---|" + "---:|" * len(tl["bins_ms"]),
    ]
    for k, v in tl.items():
        if k != "bins_ms":
            lines.append(f"| {k} | " + " | ".join(f"{x:g}" for x in v) + " |")
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--subscribers", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=0.5)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve is not None:
        _serve(a.serve)
        return
    saved = json.loads((HERE / "results" / "compare_stages.json").read_text())
    cal = StageCalibration.from_dict(saved["calibration"]["model"])
    runs = []
    for _ in range(a.runs):
        with TemporaryDirectory() as tmp:
            raw = measure(a.subscribers, a.rate, a.duration, Path(tmp))
        runs.append(
            {
                "loadavg": raw["loadavg"],
                "p50_ms": raw["p50_ms"],
                "p99_ms": raw["p99_ms"],
                "messages": analyse(raw, cal),
            }
        )
    write(runs, a)


if __name__ == "__main__":
    main()
