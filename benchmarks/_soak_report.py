"""Writing ``bench_soak.py``'s results: ``benchmarks/results/soak.md`` and ``soak.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "results" / "soak.md"
RESULTS_JSON = HERE / "results" / "soak.json"


def kept_parts(done: set[str]) -> list[dict[str, Any]]:
    """The parts of soak.json other than ``done`` (an older file's command, load average and
    machine lines apply to all its parts)."""
    if not RESULTS_JSON.exists():
        return []
    old = json.loads(RESULTS_JSON.read_text())
    lines = RESULTS_MD.read_text().splitlines() if RESULTS_MD.exists() else []
    facts = ("- date:", "- machine:", "- python:", "- commit:")
    legacy = {
        "command": old.get("command", "?").strip(),
        "machine": "".join(line + "\n" for line in lines if line.startswith(facts)),
        "loadavg_after": old.get("loadavg", [0.0, 0.0, 0.0]),
    }
    return [{"run": legacy, **x} for x in old.get("parts", []) if x["part"] not in done]


def write_results(results: list[dict[str, Any]]) -> None:
    """soak.json and soak.md from ``results`` (each part's ``run``: command, machine, load)."""
    RESULTS_JSON.write_text(json.dumps({"parts": results}, indent=1) + "\n")
    runs = []
    for r in results:
        run, load = r["run"], r["run"]["loadavg_after"]
        runs.append(
            f"**{r['backplane']}**: `{run['command']}` — {r['clients']} clients,"
            f" {r['messages']} messages"
            + (
                " (the full size)"
                if r["clients"] >= 1000 and r["messages"] >= 100_000
                else " (scaled down; the full size is `--clients 1000 --messages 100000`)"
            )
            + f", replay log {r['maxlen']} per channel"
            f" ({r['messages'] // r['channels']} published per channel)\n\n"
            + run["machine"]
            + f"- load average after the part: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
        )
    lines = [
        "# Soak: exactly once through drops and restarts\n",
        *runs,
        "| part | clients (ws/sse/poll) | messages | deliveries expected | received | lost |"
        " duplicated | out of order | gaps (missed; reported) | drops | reconnects |"
        " wire dups | restarts | ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cpt = "/".join(str(v) for v in r["clients_per_transport"].values())
        lines.append(
            f"| {r['backplane']} | {r['clients']} ({cpt}) | {r['messages']} |"
            f" {r['expected_deliveries']} | {r['received']} | {r['lost']} | {r['duplicated']} |"
            f" {r['out_of_order']} | {r['gaps']} ({r['gap_missed']};"
            f" {r.get('gap_missed_reported', '-')}) | {r['drops']} |"
            f" {r['reconnects']} | {r['wire_duplicates']} | {'; '.join(r['events'])} |"
            f" {r['ok']} |"
        )
    lines.append(
        "\n*wire dups*: copies a client received twice on the wire (after a reconnect) and"
        " dropped by id; *duplicated* counts copies handed to the application."
        " *gaps (missed; reported)*: gap notices for a trimmed log, the messages they"
        " skipped (counted from the stored ids: exact), and the sum of the notices'"
        " `missed` (a lower bound, 1, for a resume after a trimmed id, as documented for"
        " both backplanes). *lost* counts messages neither received nor skipped by a gap."
    )
    lines.append(
        "\nSeconds per part (connect / publish with drops and restarts / catch up and"
        " check; publish rate over the publishing phases, restarts included): "
        + "; ".join(
            f"{r['backplane']} {r['seconds']['connect']} /"
            f" {r['seconds']['publish_and_restarts']} / {r['seconds']['catch_up_and_check']}"
            f" ({r['messages'] / max(r['seconds']['publish_and_restarts'], 1e-9):.0f} msg/s)"
            for r in results
        )
        + "."
    )
    RESULTS_MD.write_text("\n".join(lines) + "\n")
