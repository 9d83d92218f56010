"""``rtsim plan SCENARIO``: a capacity plan from a scenario file, and its live check.

    rtsim plan chat --sweep instances=2..16
    rtsim plan my-product.toml --json
    rtsim plan dashboard --check

SCENARIO is a TOML file (``docs/scenarios.md``) or the bare name of a packaged example
(``notifications``, ``chat``, ``dashboard``). A bad file, a bad ``--sweep`` or a bad
number exits 2 with one line naming the field; a live check that cannot run exits 1 with
one line.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from ..core.params import Spec
from .common import Sub, _add_seed_json, _progress, _table, _typed, print_json

__all__ = ["PLAN_COMMANDS", "parse_sweep"]

_REPS = Spec(kind="int", lo=1, hi=50, help="replications per configuration")
_CHECK_CLIENTS = Spec(kind="int", lo=2, hi=2000, help="live subscribers in the check")
_CHECK_REPEATS = Spec(kind="int", lo=3, hi=20, help="live repeats in the check (>= 3 for a CI)")
_SWEEP_MAX = 1000


def parse_sweep(text: str) -> list[int]:
    """``instances=2..16`` (inclusive) or ``instances=2,4,8`` → the instance counts.

    Raises ``ValueError`` (one line) for any other field or a malformed range.
    """
    m = re.fullmatch(r"\s*([a-z_]+)\s*=\s*(.+?)\s*", text)
    if not m:
        raise ValueError(f"--sweep must look like instances=2..16 or instances=2,4,8; got {text!r}")
    key, spec = m.groups()
    if key != "instances":
        raise ValueError(f"--sweep can vary instances only, got {key!r}")
    r = re.fullmatch(r"(\d+)\s*\.\.\s*(\d+)", spec)
    try:
        if r:
            a, b = int(r.group(1)), int(r.group(2))
            if a > b:
                raise ValueError
            values = list(range(a, b + 1))
        else:
            values = [int(x) for x in spec.split(",")]
    except ValueError:
        raise ValueError(
            "--sweep instances must be A..B (A <= B) or a comma list of whole numbers;"
            f" got {spec!r}"
        ) from None
    if min(values) < 1 or max(values) > _SWEEP_MAX:
        raise ValueError(f"--sweep instances must be in [1, {_SWEEP_MAX}], got {spec!r}")
    return values


def _add_plan(sub: Sub) -> None:
    p = sub.add_parser(
        "plan",
        help="a capacity plan from a scenario file (latency, utilisation, memory, bandwidth)",
        description="Map a scenario (TOML, docs/scenarios.md; or a packaged example:"
        " notifications, chat, dashboard) onto the architecture model, run replications per"
        " instance count and report latency with CIs, utilisation, memory, bandwidth, what"
        " saturates first and the smallest configuration meeting every target. --check runs"
        " a scaled-down copy live and puts measured beside simulated.",
    )
    p.add_argument("scenario", metavar="SCENARIO")
    p.add_argument("--sweep", default=None, metavar="instances=A..B", help="instance counts")
    p.add_argument("--reps", type=_typed(_REPS), default=3, help=f"{_REPS.help} (default 3)")
    p.add_argument("--check", action="store_true", help="run a scaled-down copy live")
    p.add_argument(
        "--check-clients",
        type=_typed(_CHECK_CLIENTS),
        default=300,
        help=f"{_CHECK_CLIENTS.help} (default 300)",
    )
    p.add_argument(
        "--check-repeats",
        type=_typed(_CHECK_REPEATS),
        default=3,
        help=f"{_CHECK_REPEATS.help} (default 3)",
    )
    p.add_argument(
        "--check-duration", type=_typed(Spec(kind="float", lo=1, hi=120)), default=4.0,
        help="seconds of publishing per live repeat (default 4)",
    )  # fmt: skip
    _add_seed_json(p)
    p.set_defaults(handler=_run_plan)


def _run_plan(a: argparse.Namespace) -> int:
    from ..lab.plan import plan
    from ..sim.scenario import load_scenario

    s = load_scenario(a.scenario)
    ks = parse_sweep(a.sweep) if a.sweep else None
    if a.check:
        return _run_check(a, s)
    pl = plan(s, ks, reps=a.reps, seed=a.seed, progress=_progress(a))
    if a.json:
        print_json(pl.to_dict())
        return 0
    print(f"rtsim plan — {s.name}: {s.description}" if s.description else f"rtsim plan — {s.name}")
    t = s.targets
    print(f"targets p50 ≤ {t.p50_ms:g} ms, p99 ≤ {t.p99_ms:g} ms; broker {s.broker.name}")
    rows = [_row(r) for r in pl.rows]
    cols = ["instances", "p50 ms", "p95 ms", "p99 ms", "inst CPU", "broker CPU", "conns/inst",
            "MiB/inst", "Mbit/s/inst", "saturates first", "meets all"]  # fmt: skip
    print(_table(rows, cols))
    if pl.smallest is None:
        print("\nno configuration meets every target; try a wider --sweep")
    else:
        print(f"\nsmallest configuration meeting every target: {pl.smallest} instances")
    print("\nnotes:")
    for n in pl.notes:
        print(f"  - {n}")
    return 0


def _pm(mean: float, hw: float) -> str:
    return f"{mean:.1f}" if hw != hw else f"{mean:.1f} ± {hw:.1f}"


def _row(r: dict[str, Any]) -> dict[str, Any]:
    failed = [k for k, ok in r["meets"].items() if not ok]
    return {
        "instances": r["instances"],
        "p50 ms": _pm(r["p50_ms"], r["p50_ci_ms"]),
        "p95 ms": _pm(r["p95_ms"], r["p95_ci_ms"]),
        "p99 ms": _pm(r["p99_ms"], r["p99_ci_ms"]),
        "inst CPU": f"{r['instance_utilisation']:.0%}",
        "broker CPU": f"{r['broker_utilisation']:.1%}",
        "conns/inst": round(r["connections_per_instance"]),
        "MiB/inst": r["memory_mib_per_instance"],
        "Mbit/s/inst": r["bandwidth_mbit_s_per_instance"],
        "saturates first": r["saturates_first"],
        "meets all": "yes" if not failed else "no: " + ",".join(failed),
    }


def _run_check(a: argparse.Namespace, s: Any) -> int:
    from ..lab.plan import CheckUnavailable, check_live

    try:
        chk = check_live(
            s,
            clients=a.check_clients,
            repeats=a.check_repeats,
            duration_s=a.check_duration,
            seed=a.seed,
            progress=_progress(a),
        )
    except CheckUnavailable as exc:
        print(f"rtsim plan: {exc}", file=sys.stderr)
        return 1
    if a.json:
        print_json(chk)
        return 0
    print(f"rtsim plan --check — {s.name}, scaled down to this machine")
    for n in chk["notes"]:
        print(f"  - {n}")
    print("\nsimulated vs measured (error = simulated / measured - 1; measured ± 95% CI over"
          f" {chk['repeats']} repeats)")  # fmt: skip
    rows = [
        {
            "quantity": r["metric"],
            "simulated": r["simulated"],
            "measured": _pm(r["measured"], r["measured_ci"]),
            "error": f"{r['rel_error']:+.0%}" if r["rel_error"] == r["rel_error"] else "—",
        }
        for r in chk["comparison"]
    ]
    print(_table(rows, ["quantity", "simulated", "measured", "error"]))
    return 0


#: ``rtsim plan``.
PLAN_COMMANDS = [_add_plan]
