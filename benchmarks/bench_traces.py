"""Replay the automerge-paper trace (259,778 edits) through pycrdt, plain strings and our OT.

    .venv/bin/python benchmarks/bench_traces.py [--quick]

For each strategy: wall-clock seconds, bytes exchanged per edit, encoded document size and
peak Python memory (tracemalloc; pycrdt's Rust heap is not seen by tracemalloc, so its
row also reports the growth of the process's max RSS). Also: raw pycrdt (``Doc``/``Text``,
one transaction per edit, no rtsim wrapper) and the two concurrent traces. Results go to
``benchmarks/results/traces.md`` with the machine and the command.
"""

from __future__ import annotations

import gc
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from pycrdt import Doc, Text

from rtsim.lab.traces import Trace, load_trace, replay, traces_dir

OUT = Path(__file__).resolve().parent / "results" / "traces.md"


def _maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(trace: Trace, strategy: str) -> dict[str, Any]:
    gc.collect()
    rss0 = _maxrss_kib()
    tracemalloc.start()
    r = replay(trace, strategy)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Second run without tracemalloc for the time (tracemalloc slows Python code down).
    r2 = replay(trace, strategy)
    r["seconds"] = r2["seconds"]
    r["peak_python_mib"] = peak / 2**20
    r["maxrss_growth_mib"] = (_maxrss_kib() - rss0) / 1024
    return r


def raw_pycrdt(trace: Trace) -> dict[str, Any]:
    doc: Doc[Any] = Doc(client_id=1)
    text = doc.get("text", type=Text)
    sizes = [0]
    doc.observe(lambda e: sizes.__setitem__(0, sizes[0] + len(e.update)))
    t0 = time.perf_counter()
    for t in trace.txns:
        for pos, dele, ins in t["patches"]:
            with doc.transaction():
                if dele:
                    del text[pos : pos + dele]
                if ins:
                    text.insert(pos, ins)
    seconds = time.perf_counter() - t0
    return {
        "strategy": "pycrdt raw",
        "seconds": seconds,
        "matches_end_content": str(text) == trace.end,
        "bytes_per_edit": sizes[0] / trace.edits,
        "final_doc_bytes": len(doc.get_update()),
    }


def main() -> None:
    quick = "--quick" in sys.argv
    if not (traces_dir() / "automerge-paper.json.gz").exists():
        where = "$RTSIM_TRACES" if os.environ.get("RTSIM_TRACES") else "the packaged folder"
        print(f"automerge-paper.json.gz not found in {traces_dir()} ({where})", file=sys.stderr)
        sys.exit(1)
    seq = load_trace("automerge-paper")
    if quick:
        seq = Trace(seq.name, False, seq.start, seq.end, seq.txns[:20000], 1)
    rows = [measure(seq, s) for s in ("string", "ot", "crdt")]
    raw = raw_pycrdt(seq)
    conc = [measure(load_trace(n), s) for n in ("friendsforever", "clownschool")
            for s in ("crdt", "ot")]  # fmt: skip

    lines = [
        "# Editing-trace replay benchmark",
        "",
        f"Command: `.venv/bin/python benchmarks/{Path(__file__).name}"
        f"{' --quick' if quick else ''}`  ",
        f"Machine: `{' '.join(platform.uname())}`, nproc "
        f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()},"
        f" Python {platform.python_version()}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}  ",
        "Traces: josephg/editing-traces, CC BY 4.0 (see rtsim/data/editing-traces/"
        "ATTRIBUTION.md). One transaction per edit. Seconds are one wall-clock run on a"
        " shared 2-core VM (other jobs may run): read ratios, not absolutes.",
        "",
        f"## automerge-paper ({seq.edits:,} edits, sequential)",
        "",
        "| strategy | matches endContent | seconds | bytes/edit | final doc bytes |"
        " peak Python MiB | max-RSS growth MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['strategy']} | {r['matches_end_content']} | {r['seconds']:.2f} |"
            f" {r['bytes_per_edit']:.1f} | {r['final_doc_bytes']:,} |"
            f" {r['peak_python_mib']:.1f} | {r['maxrss_growth_mib']:.1f} |"
        )
    lines.append(
        f"| pycrdt raw (no wrapper) | {raw['matches_end_content']} | {raw['seconds']:.2f} |"
        f" {raw['bytes_per_edit']:.1f} | {raw['final_doc_bytes']:,} | – | – |"
    )
    lines += [
        "",
        "string: bytes are the patches as JSON `[pos, del, ins]`; final doc bytes = UTF-8 text."
        " ot: ot.js client + server, bytes are `{v, op}` JSON + a 12-byte ack per edit."
        " crdt: rtsim's CrdtReplica (pycrdt 0.14), bytes are the Yjs v1 update of each edit;"
        " final doc bytes = `encode_state()` (the whole CRDT, tombstones included).",
        "",
        "## Concurrent traces",
        "",
        "| trace | strategy | matches endContent | seconds | bytes exchanged | final doc bytes |"
        " peak Python MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in conc:
        lines.append(
            f"| {r['trace']} | {r['strategy']} | {r['matches_end_content']} |"
            f" {r['seconds']:.2f} | {r['bytes_exchanged']:,} | {r['final_doc_bytes']:,} |"
            f" {r['peak_python_mib']:.1f} |"
        )
    lines.append("")
    text = "\n".join(lines)
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)


if __name__ == "__main__":
    main()
