"""Replay the automerge-paper trace (259,778 edits) through pycrdt, Yjs, plain strings and our OT.

    .venv/bin/python benchmarks/bench_traces.py [--quick] [--repeats N]

For each strategy: process CPU seconds and wall-clock seconds (medians of ``--repeats``
rounds, default 3, the order of the strategies reversed every other round), bytes exchanged
per edit, encoded document size, and (one extra run each) peak Python memory (tracemalloc;
pycrdt's Rust heap is not seen by tracemalloc, so its row also reports the growth of the
process's max RSS). Besides rtsim's ``CrdtReplica`` (``crdt``), three rows do the same work
per edit (one transaction, its Yjs v1 update captured) without it: raw pycrdt through its
public API, pycrdt's native transaction (the floor of any wrapper over pycrdt) and Yjs in
Node (``benchmarks/peers/yjs_replay.mjs``; ``npm ci`` in ``benchmarks/peers`` first, else
its row says why it is missing). Then the two concurrent traces. Results go to
``benchmarks/results/traces.md`` and ``traces.json`` with the machine, command and load.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from _machine import machine
from pycrdt import Doc, Text

from rtsim.lab.traces import Trace, load_trace, replay, traces_dir

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "traces.md"
YJS = HERE / "peers" / "yjs_replay.mjs"


def _maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(trace: Trace, strategy: str) -> dict[str, Any]:
    """One run under tracemalloc (peak Python memory, max-RSS growth), one timed run."""
    gc.collect()
    rss0 = _maxrss_kib()
    tracemalloc.start()
    r = replay(trace, strategy)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    r["peak_python_mib"] = peak / 2**20
    r["maxrss_growth_mib"] = (_maxrss_kib() - rss0) / 1024
    r.update(timed(lambda: replay(trace, strategy)))
    return r


def timed(fn: Any) -> dict[str, Any]:
    """Run ``fn()``; its result with ``cpu_s`` (this process's CPU) and ``wall_s``."""
    gc.collect()
    c0, w0 = time.process_time(), time.perf_counter()
    r = fn()
    r["cpu_s"], r["wall_s"] = time.process_time() - c0, time.perf_counter() - w0
    return dict(r)


def raw_pycrdt(trace: Trace) -> dict[str, Any]:
    """pycrdt's public API: one ``doc.transaction()`` per edit, updates from ``doc.observe``."""
    doc: Doc[Any] = Doc(client_id=1)
    text = doc.get("text", type=Text)
    sizes = [0]
    sub = doc.observe(lambda e: sizes.__setitem__(0, sizes[0] + len(e.update)))
    for t in trace.txns:
        for pos, dele, ins in t["patches"]:
            with doc.transaction():
                if dele:
                    del text[pos : pos + dele]
                if ins:
                    text.insert(pos, ins)
    doc.unobserve(sub)
    return _row("pycrdt raw (public API)", trace, str(text), sizes[0], len(doc.get_update()))


def native_pycrdt(trace: Trace) -> dict[str, Any]:
    """pycrdt's native transaction per edit (what ``CrdtReplica`` does), updates captured:
    the least any Python wrapper over pycrdt 0.14 can spend. ASCII traces only."""
    doc: Doc[Any] = Doc(client_id=1)
    text = doc.get("text", type=Text)
    native, ntext = doc._doc, text.integrated
    sizes = [0]
    sub = native.observe(lambda e: sizes.__setitem__(0, sizes[0] + len(e.update)))
    for t in trace.txns:
        txn = native.create_transaction()
        for pos, dele, ins in t["patches"]:
            if dele:
                ntext.remove_range(txn, pos, dele)
            if ins:
                ntext.insert(txn, pos, ins, None)
        txn.commit()
        txn.drop()
    del sub
    return _row("pycrdt native txn (floor)", trace, str(text), sizes[0], len(doc.get_update()))


def _row(name: str, trace: Trace, end: str, sent: int, final: int) -> dict[str, Any]:
    return {"strategy": name, "matches_end_content": end == trace.end,
            "bytes_per_edit": sent / trace.edits, "final_doc_bytes": final}  # fmt: skip


def yjs(trace: Trace, path: Path, limit: int | None) -> dict[str, Any]:
    """Yjs in Node on the same trace file (its own CPU and wall, as it reports them)."""
    node = shutil.which("node")
    if node is None or not (YJS.parent / "node_modules" / "yjs").is_dir():
        why = "no node" if node is None else "no yjs: npm ci in benchmarks/peers"
        return {"strategy": "yjs", "missing": why}
    cmd = [node, str(YJS), str(path)] + ([str(limit)] if limit else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    r["strategy"] = f"yjs {r['yjs']} (node {r['node']})"
    if limit:
        r["matches_end_content"] = None
    return dict(r)


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    r = dict(runs[-1])
    for k in ("cpu_s", "wall_s"):
        r[k] = statistics.median(x[k] for x in runs)
        r[k + "_all"] = [round(x[k], 3) for x in runs]
    return r


def main() -> None:
    quick = "--quick" in sys.argv
    repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 3
    path = traces_dir() / "automerge-paper.json.gz"
    if not path.exists():
        where = "$RTSIM_TRACES" if os.environ.get("RTSIM_TRACES") else "the packaged folder"
        print(f"automerge-paper.json.gz not found in {traces_dir()} ({where})", file=sys.stderr)
        sys.exit(1)
    seq = load_trace("automerge-paper")
    limit = 20000 if quick else None
    if limit:
        seq = Trace(seq.name, False, seq.start, seq.end, seq.txns[:limit], 1)
    # The loaded trace is ~1.3 M Python objects; keep full collections from re-scanning them
    # in every Python strategy (Node's heap holds its own copy and pays its own GC).
    gc.collect()
    gc.freeze()
    load0 = os.getloadavg()
    memory = {s: measure(seq, s) for s in ("string", "ot", "crdt")}
    runners: dict[str, Any] = {
        "string": lambda: timed(lambda: replay(seq, "string")),
        "ot": lambda: timed(lambda: replay(seq, "ot")),
        "crdt": lambda: timed(lambda: replay(seq, "crdt")),
        "pycrdt raw": lambda: timed(lambda: raw_pycrdt(seq)),
        "pycrdt native": lambda: timed(lambda: native_pycrdt(seq)),
        "yjs": lambda: yjs(seq, path, limit),
    }
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in runners}
    order = list(runners)
    for i in range(repeats):
        for k in order if i % 2 == 0 else order[::-1]:
            r = runners[k]()
            if "missing" in r:
                runs[k] = [r]
                continue
            runs[k].append(r)
            print(f"round {i + 1}: {k} cpu {r['cpu_s']:.2f} s wall {r['wall_s']:.2f} s",
                  file=sys.stderr)  # fmt: skip
    rows = {k: (v[0] if "missing" in v[0] else _median(v)) for k, v in runs.items()}
    for k in ("string", "ot", "crdt"):
        rows[k]["peak_python_mib"] = memory[k]["peak_python_mib"]
        rows[k]["maxrss_growth_mib"] = memory[k]["maxrss_growth_mib"]
    load1 = os.getloadavg()
    conc = [measure(load_trace(n), s) for n in ("friendsforever", "clownschool")
            for s in ("crdt", "ot")]  # fmt: skip

    cmd = f".venv/bin/python benchmarks/{Path(__file__).name}" + (" --quick" if quick else "")
    cmd += f" --repeats {repeats}"
    lines = [
        "# Editing-trace replay benchmark",
        "",
        f"Command: `{cmd}` (after `npm ci` in benchmarks/peers)",
        "",
        machine().rstrip(),
        f"- load average (1/5/15 min) before the timed rounds: {load0[0]:.2f} / {load0[1]:.2f}"
        f" / {load0[2]:.2f}; after: {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f}"
        f" (nproc {os.cpu_count()}, a shared VM)",
        "",
        "Traces: josephg/editing-traces, CC BY 4.0 (see rtsim/data/editing-traces/"
        f"ATTRIBUTION.md). One transaction per edit. CPU and wall are medians of {repeats}"
        " rounds (strategies in reverse order every other round); CPU is the process's own"
        " (Python: `time.process_time`, Node: `process.cpuUsage`), which other jobs on the"
        " machine disturb less than wall time.",
        "",
        f"## automerge-paper ({seq.edits:,} edits, sequential)",
        "",
        "| strategy | matches endContent | CPU s | wall s | CPU runs | bytes/edit |"
        " final doc bytes | peak Python MiB | max-RSS growth MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k, r in rows.items():
        if "missing" in r:
            lines.append(f"| {k} | not run: {r['missing']} | | | | | | | |")
            continue
        mem = (f"{r['peak_python_mib']:.1f} | {r['maxrss_growth_mib']:.1f}"
               if "peak_python_mib" in r else "– | –")  # fmt: skip
        lines.append(
            f"| {r['strategy']} | {r['matches_end_content']} | {r['cpu_s']:.2f} |"
            f" {r['wall_s']:.2f} | {', '.join(f'{x:.2f}' for x in r['cpu_s_all'])} |"
            f" {r['bytes_per_edit']:.2f} | {r['final_doc_bytes']:,} | {mem} |"
        )
    if "missing" not in rows["yjs"]:
        y = rows["yjs"]["cpu_s"]
        lines += ["", "CPU against Yjs in this run: " + ", ".join(
            f"{k} {rows[k]['cpu_s'] / y:.2f}×" for k in ("crdt", "pycrdt raw", "pycrdt native")
        ) + "."]  # fmt: skip
    lines += [
        "",
        "string: bytes are the patches as JSON `[pos, del, ins]`; final doc bytes = UTF-8 text."
        " ot: ot.js client + server, bytes are `{v, op}` JSON + a 12-byte ack per edit."
        " crdt: rtsim's CrdtReplica (pycrdt 0.14), bytes are the Yjs v1 update of each edit;"
        " final doc bytes = `encode_state()` (the whole CRDT, tombstones included)."
        " pycrdt raw: `with doc.transaction()` + `del text[a:b]` / `text.insert` per edit."
        " pycrdt native: pycrdt's native transaction per edit (no Python wrapper at all)."
        " yjs: `doc.transact` per edit, each update from `doc.on('update')`, then the state"
        " encoded and read into a fresh doc (as `crdt` does).",
        "",
        "## Concurrent traces",
        "",
        "| trace | strategy | matches endContent | CPU s | wall s | bytes exchanged |"
        " final doc bytes | peak Python MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in conc:
        lines.append(
            f"| {r['trace']} | {r['strategy']} | {r['matches_end_content']} |"
            f" {r['cpu_s']:.2f} | {r['wall_s']:.2f} | {r['bytes_exchanged']:,} |"
            f" {r['final_doc_bytes']:,} | {r['peak_python_mib']:.1f} |"
        )
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if quick:
        return
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    data = {"command": cmd, "load_before": load0, "load_after": load1,
            "automerge_paper": rows, "concurrent": conc}  # fmt: skip
    OUT.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
