"""Broadcast fan-out and memory per connection: rtsim's server beside two peers, one run.

Servers, each started fresh as its own process:

* ``rtsim``          — ``rtsim serve`` (asyncio's default loop)
* ``rtsim+uvloop``   — the same server on uvloop
* ``websockets``     — a minimal broadcast server on the `websockets` library (broadcast())
* ``node-ws``        — a minimal broadcast server on Node's `ws`
* ``rtsim (baseline)`` — with ``--baseline PATH``: ``rtsim serve`` from another checkout
  (e.g. the commit before a change), run in the same run beside this tree's
* ``C floor``        — not a server: ``peers/send_floor.c`` (compiled here with ``gcc -O2``
  into a temporary directory) opens as many loopback TCP connections as there are
  subscribers and, for each broadcast, does one ``send()`` of a pre-framed 120-byte
  WebSocket frame per connection, with live receivers: a second process reads the client
  ends as data arrives (as the load generator's subscribers do), so each ``send()`` also
  wakes a waiting reader; broadcasts are as far apart as the servers'. Its CPU per
  delivery is the floor on this machine (on loopback the receiver's TCP work runs inside
  the sender's ``send()``), and every server's CPU per delivery is also given as a
  multiple of it.

With ``--pairs N`` the floor, this tree's ``rtsim`` and (with ``--baseline``) the baseline
run N times, alternating (floor, A, B, floor, A, B, …), and each row reports the median
of its runs (every run is kept in the JSON): on a shared machine two runs minutes apart
differ by 10-30%, so one A/B pair says little.

The same load generator (``rtsim.live.clients.loadgen``) drives all of them over WebSocket. The
headline is the server's own CPU time per delivered message, read from /proc for the
server process; latency percentiles, deliveries/s and the load generator's own CPU time
stand beside it. Memory per idle connection is the RSS growth of a fresh server holding N
subscribers, over its RSS before the first connection.

    .venv/bin/python benchmarks/bench_fanout.py [--quick] [--only fanout|memory]
        [--sizes 1000,5000,10000] [--baseline PATH] [--pairs N]

The result files carry the machine, the command and the load average before and after the
run: on a shared machine CPU time (from /proc) and RSS still mean something, latency
percentiles do not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import machine  # noqa: E402

from rtsim.live.clients.loadgen import LoadParams, run_load  # noqa: E402
from rtsim.live.process import free_port, process_rss_bytes  # noqa: E402

RESULTS_MD = HERE / "results" / "fanout.md"
RESULTS_JSON = HERE / "results" / "fanout.json"
UVLOOP_SERVE = (
    "import sys, uvloop; uvloop.install(); from rtsim.cli import main; sys.exit(main(sys.argv[1:]))"
)


BASELINE = "rtsim (baseline)"
FLOOR_LABEL = "C send loop, live receivers"


def git_commit(tree: Path) -> str:
    """The short commit checked out at ``tree`` (``?`` if it is not a git checkout)."""
    out = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "?"


def start(kind: str, baseline: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start server ``kind`` (``BASELINE``: rtsim from the checkout ``baseline``)."""
    port = free_port()
    py = sys.executable
    serve = ["serve", "--port", str(port), "--max-connections", "50000"]
    serve += ["--max-connections-per-ip", "50000"]  # every subscriber is on 127.0.0.1
    # ``-m``/``-c`` put the working directory first on sys.path: each rtsim server runs in
    # the root of the tree it comes from (this one, or the baseline checkout).
    env, cwd = dict(os.environ), HERE.parent
    if kind in ("rtsim", "rtsim+uvloop"):  # this tree's rtsim, whatever PYTHONPATH says
        env["PYTHONPATH"] = str(HERE.parent)
    if kind == "rtsim":
        cmd = [py, "-m", "rtsim.cli", *serve]
    elif kind == BASELINE:
        if baseline is None:
            raise ValueError("the baseline server needs --baseline PATH")
        env["PYTHONPATH"], cwd = str(baseline), baseline
        cmd = [py, "-m", "rtsim.cli", *serve]
    elif kind == "rtsim+uvloop":
        cmd = [py, "-c", UVLOOP_SERVE, *serve]
    elif kind == "websockets":
        cmd = [py, str(HERE / "peers" / "websockets_broadcast.py"), "--port", str(port)]
    elif kind == "node-ws":
        if not (HERE / "peers" / "node_modules" / "ws").exists():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE / "peers", check=True)
        cmd = ["node", str(HERE / "peers" / "node_ws_broadcast.mjs"), str(port)]
    else:
        raise ValueError(kind)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    time.sleep(0.3)
    return proc, f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def send_floor(subscribers: int, rounds: int, gap_s: float) -> dict[str, object] | None:
    """CPU µs per delivery of the C send loop with live receivers, broadcasts ``gap_s``
    apart (None without gcc); raises on its failure."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    with tempfile.TemporaryDirectory(prefix="rtsim-floor-") as tmp:
        exe = Path(tmp) / "send_floor"
        subprocess.run(
            [gcc, "-O2", "-o", str(exe), str(HERE / "peers" / "send_floor.c")], check=True
        )
        out = subprocess.run(
            [str(exe), str(subscribers), str(rounds), "120", "live", str(round(gap_s * 1000))],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    row: dict[str, object] = json.loads(out)
    row["server"] = FLOOR_LABEL
    return row


def median_row(runs: list[dict[str, object]]) -> dict[str, object]:
    """One row of the medians of ``runs`` (same server; numbers only), all runs kept."""
    row: dict[str, object] = dict(runs[0])
    for k, v in runs[0].items():
        if isinstance(v, int | float) and not isinstance(v, bool):
            m = statistics.median(float(r[k]) for r in runs)  # type: ignore[arg-type]
            row[k] = int(m) if isinstance(v, int) and m.is_integer() else m  # counts stay ints
    row["runs"] = len(runs)
    if len(runs) > 1:
        row["each"] = runs
    return row


def fanout(
    kind: str,
    subscribers: int,
    rate: float,
    duration: float,
    baseline: Path | None = None,
    traced: int = 10,
) -> dict[str, object]:
    proc, url = start(kind, baseline)
    try:
        p = LoadParams(
            url=url,
            transport="websocket",
            subscribers=subscribers,
            rate=rate,
            duration_s=duration,
            server_pid=proc.pid,
            processes=2,
            settle_s=2.0,
            traced=traced,
        )
        s = run_load(p, progress=False).summary
        return {
            "server": kind,
            "subscribers": subscribers,
            "rate": rate,
            "deliveries": s.deliveries,
            "lost": s.lost,
            "duplicates": s.extra["duplicates"],
            "server_cpu_us_per_delivery": s.extra["server_cpu_us_per_delivery"],
            "deliveries_per_s": s.deliveries_per_s,
            "p50_ms": s.p50_ms,
            "p95_ms": s.p95_ms,
            "p99_ms": s.p99_ms,
            "max_ms": s.max_ms,
            "loadgen_cpu_s": s.extra["loadgen_cpu_s"],
            "server_cpu_s": s.extra["server_cpu_s"],
        }
    finally:
        stop(proc)


def memory(kind: str, transport: str, n: int) -> dict[str, object]:
    proc, url = start(kind)
    try:
        base = process_rss_bytes(proc.pid)
        p = LoadParams(
            url=url,
            transport=transport,
            subscribers=n,
            rate=1,
            duration_s=0.5,
            server_pid=proc.pid,
            processes=2,
            settle_s=0.2,
            channels=1,
        )
        s = run_load(p, progress=False).summary
        connected = s.extra["server_rss_connected_bytes"]
        assert isinstance(connected, float)
        return {
            "server": kind,
            "transport": transport,
            "connections": n,
            "rss_before_mib": base / 2**20,
            "rss_connected_mib": connected / 2**20,
            "kib_per_connection": (connected - base) / n / 1024,
            "errors": s.extra["errors"],
        }
    finally:
        stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["fanout", "memory"], help="re-run one part, keep the other")
    ap.add_argument("--sizes", help="memory: connection counts, comma-separated")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="fan-out: also run rtsim from this checkout (e.g. the commit before a change)",
    )
    ap.add_argument(
        "--pairs",
        type=int,
        default=1,
        help="fan-out: run the floor, rtsim and the baseline N times, alternating; medians",
    )
    ap.add_argument(
        "--traced",
        type=int,
        default=10,
        help="fan-out: messages that carry stage timestamps (a sample, as in production"
        " tracing; every message traced costs rtsim about 1 µs per delivery more)",
    )
    a = ap.parse_args()
    if a.traced < 0:
        ap.error(f"--traced must be >= 0, got {a.traced}")
    if a.pairs < 1:
        ap.error(f"--pairs must be >= 1, got {a.pairs}")
    if a.baseline is not None and not (a.baseline / "rtsim" / "cli.py").exists():
        ap.error(f"--baseline must be an rtsim checkout (no rtsim/cli.py in {a.baseline})")
    load_before = os.getloadavg()
    old = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    peers = ["rtsim+uvloop", "websockets"] + (["node-ws"] if shutil.which("node") else [])
    paired = ["rtsim"] + ([BASELINE] if a.baseline is not None else [])
    subs, rate, dur = (500, 10.0, 3.0) if a.quick else (2000, 10.0, 10.0)
    fan = [] if a.only != "memory" else old.get("fanout", [])
    floor = None
    if a.only == "memory":
        floor = old.get("floor")
    else:
        floors: list[dict[str, object]] = []
        runs: dict[str, list[dict[str, object]]] = {k: [] for k in paired}
        for _ in range(a.pairs):  # floor, A, B, floor, A, B, ...
            f = send_floor(subs, round(rate * dur), 1 / rate)
            if f is not None:
                floors.append(f)
                print(json.dumps(f), flush=True)
            for kind in paired:
                row = fanout(kind, subs, rate, dur, a.baseline, a.traced)
                if kind == BASELINE:
                    row["commit"] = git_commit(a.baseline)
                runs[kind].append(row)
                print(json.dumps(row), flush=True)
        floor = median_row(floors) if floors else None
        fan += [median_row(runs[k]) for k in paired]
        for kind in peers:
            row = fanout(kind, subs, rate, dur, traced=a.traced)
            fan.append(row)
            print(json.dumps(row), flush=True)
    floor_us = floor["cpu_us_per_delivery"] if floor else None
    for r in fan:
        r["x_floor"] = r["server_cpu_us_per_delivery"] / floor_us if floor_us else None
    mem = [] if a.only != "fanout" else old.get("memory", [])
    sizes: tuple[int, ...] = (500,) if a.quick else (1000, 5000, 10_000)
    if a.sizes:
        sizes = tuple(int(x) for x in a.sizes.split(","))
    if a.only == "fanout":
        sizes = ()
    for n in sizes:
        for kind, transport in [
            ("rtsim", "websocket"),
            ("rtsim", "sse"),
            ("rtsim", "long-polling"),
            ("websockets", "websocket"),
        ] + ([("node-ws", "websocket")] if shutil.which("node") else []):
            row = memory(kind, transport, n)
            mem.append(row)
            print(json.dumps(row), flush=True)
    cmd = (
        "`.venv/bin/python benchmarks/bench_fanout.py"
        + "".join(" " + x for x in sys.argv[1:])
        + "`"
    )
    load_after = os.getloadavg()
    load = (
        f"- load average (1/5/15 min): before {'/'.join(f'{x:.2f}' for x in load_before)}, "
        f"after {'/'.join(f'{x:.2f}' for x in load_after)}\n"
    )
    lines = [
        "# Fan-out and memory per connection",
        "",
        f"Command: {cmd}",
        "",
        machine() + load,
        *(
            [
                f"The {'memory' if a.only == 'fanout' else 'fan-out'} table is kept from an "
                f"earlier run: `{old.get('command', '?')}` "
                f"({old.get('date', 'date not recorded')}).",
                "",
            ]
            if a.only
            else []
        ),
        "Other work shared this machine's cores during the run (see the load average): "
        "CPU seconds (read from /proc) and RSS are meaningful, latency percentiles are not.",
        "",
        f"## Broadcast fan-out: {subs:,} WebSocket subscribers, one channel, {rate:g} "
        f"broadcasts/s for {dur:g} s",
        "",
        "Server CPU µs per delivery is the headline (server process CPU from /proc ÷ "
        "deliveries); the load generator's own CPU seconds are shown beside it. "
        f"× floor is that figure over the {FLOOR_LABEL} (one `send()` of a pre-framed "
        "120-byte frame per connection, same number of loopback connections and broadcasts, "
        "the receiving ends read by another process as data arrives). "
        f"{min(a.traced, round(rate * dur))} of the {round(rate * dur)} broadcasts carry stage"
        " timestamps (`--traced`: rtsim records each write's time for them; the peers ignore"
        " the key)."
        + (
            f" The floor, rtsim and the baseline ran {a.pairs} times, alternating; their rows "
            "are medians (each run is in fanout.json)."
            if a.pairs > 1
            else ""
        )
        + (
            f" rtsim (baseline) is `rtsim serve` from {a.baseline} "
            f"(commit {git_commit(a.baseline)}) in the same run."
            if a.baseline is not None
            else ""
        ),
        "",
        "| server | CPU µs/delivery | × floor | deliveries/s | p50 ms | p95 ms | p99 ms | lost "
        "| dup | server CPU s | load-gen CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    if floor:
        lines.append(
            f"| {FLOOR_LABEL} | {floor['cpu_us_per_delivery']:.2f} | 1.00 | | | | "
            f"| | | {floor['send_cpu_s']:.2f} | |"
        )
    for r in fan:
        xf = f"{r['x_floor']:.2f}" if r.get("x_floor") else "–"
        name = f"{r['server']} {r['commit']}" if r.get("commit") else r["server"]
        lines.append(
            f"| {name} | {r['server_cpu_us_per_delivery']:.2f} | {xf} "
            f"| {r['deliveries_per_s']:,.0f} "
            f"| {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['lost']} "
            f"| {r['duplicates']} | {r['server_cpu_s']:.2f} | {r['loadgen_cpu_s']:.2f} |"
        )
    lines += [
        "",
        "## Memory per idle connection (RSS growth of a fresh server)",
        "",
        "| server | transport | connections | RSS before MiB | RSS connected MiB | KiB/conn |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in mem:
        lines.append(
            f"| {r['server']} | {r['transport']} | {r['connections']:,} "
            f"| {r['rss_before_mib']:.1f} | {r['rss_connected_mib']:.1f} "
            f"| {r['kib_per_connection']:.1f} |"
        )
    RESULTS_MD.parent.mkdir(exist_ok=True)
    RESULTS_MD.write_text("\n".join(lines) + "\n")
    RESULTS_JSON.write_text(
        json.dumps(
            {
                "command": cmd.strip("`") if not a.only else old.get("command", ""),
                "date": f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC"
                if not a.only
                else old.get("date", ""),
                "last_command": cmd.strip("`"),
                "machine": machine(),
                "load_average": {"before": load_before, "after": load_after},
                "floor": floor,
                "fanout": fan,
                "memory": mem,
            },
            indent=1,
        )
    )
    print(f"wrote {RESULTS_MD}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
