"""``rtsim`` — every experiment of the lab, headless.

    rtsim simulate transports --transport sse --clients 1000 --rate 10 --json

Bad parameters exit with status 2 and a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def _nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


def print_result(summary: dict[str, Any], as_json: bool, title: str) -> None:
    """Print one summary as JSON (one object) or as an aligned table."""
    if as_json:
        print(json.dumps(summary, default=_json_default, allow_nan=True))
        return
    print(title)
    width = max(len(k) for k in summary)
    for k, v in summary.items():
        if isinstance(v, float):
            text = f"{v:,.3f}" if abs(v) < 1e6 else f"{v:,.0f}"
        else:
            text = str(v)
        print(f"  {k:<{width}}  {text}")


def _json_default(o: object) -> Any:
    if hasattr(o, "item"):
        return o.item()
    return str(o)


# --- simulate transports ---------------------------------------------------------------------
def _add_transports(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "transports",
        help="WebSocket vs SSE vs long polling vs polling (latency, bytes, requests)",
        description="Simulate one transport delivering a Poisson message stream to N clients.",
    )
    p.add_argument(
        "--transport",
        required=True,
        choices=["websocket", "sse", "long-polling", "polling"],
    )
    p.add_argument("--clients", type=_positive_int, default=100)
    p.add_argument("--rate", type=_positive_float, default=10.0, help="messages/s published")
    p.add_argument("--rtt-ms", type=_nonneg_float, default=50.0)
    p.add_argument("--jitter-ms", type=_nonneg_float, default=5.0)
    p.add_argument("--loss", type=_nonneg_float, default=0.0, help="packet loss probability")
    p.add_argument("--duration", type=_positive_float, default=60.0, help="seconds")
    p.add_argument("--channels", type=_positive_int, default=1)
    p.add_argument("--payload-bytes", type=_nonneg_int, default=100)
    p.add_argument("--http-version", choices=["1.1", "2"], default="1.1")
    p.add_argument("--tabs", type=_positive_int, default=1, help="tabs per browser (SSE, C5)")
    p.add_argument("--poll-interval", type=_positive_float, default=5.0, help="seconds")
    p.add_argument("--reconnects-per-hour", type=_nonneg_float, default=0.0)
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_transports)


def _run_transports(a: argparse.Namespace) -> int:
    from .sim.transports import TransportParams, simulate_transports

    params = TransportParams(
        transport=a.transport,
        clients=a.clients,
        rate=a.rate,
        rtt_ms=a.rtt_ms,
        jitter_ms=a.jitter_ms,
        loss=a.loss,
        duration_s=a.duration,
        channels=a.channels,
        payload_bytes=a.payload_bytes,
        http_version=a.http_version,
        tabs_per_client=a.tabs,
        poll_interval_s=a.poll_interval,
        reconnects_per_hour=a.reconnects_per_hour,
    )
    result = simulate_transports(params, seed=a.seed)
    summary = {"seed": a.seed, **result.summary.to_dict()}
    print_result(summary, a.json, f"rtsim simulate transports — {a.transport}, seed {a.seed}")
    return 0


# --- simulate editing ------------------------------------------------------------------------
def _add_editing(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "editing",
        help="N editors typing into one paragraph: OT vs CRDT vs last-write-wins",
        description="Simulate editors typing under latency with one conflict strategy.",
    )
    p.add_argument("--strategy", required=True, choices=["ot", "crdt", "lww"])
    p.add_argument("--editors", type=_positive_int, default=2)
    p.add_argument("--ops-per-s", type=_positive_float, default=3.0, help="edits/s per editor")
    p.add_argument("--latency-ms", type=_nonneg_float, default=50.0, help="one way")
    p.add_argument("--jitter-ms", type=_nonneg_float, default=10.0)
    p.add_argument("--delete-fraction", type=_nonneg_float, default=0.3)
    p.add_argument("--duration", type=_positive_float, default=10.0, help="seconds of typing")
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_editing)


def _run_editing(a: argparse.Namespace) -> int:
    from .sim.editing import EditingParams, simulate_editing

    params = EditingParams(
        strategy=a.strategy,
        editors=a.editors,
        ops_per_s=a.ops_per_s,
        latency_ms=a.latency_ms,
        jitter_ms=a.jitter_ms,
        delete_fraction=a.delete_fraction,
        duration_s=a.duration,
    )
    extra = simulate_editing(params, seed=a.seed).summary.extra
    summary = {"seed": a.seed, **extra}
    print_result(summary, a.json, f"rtsim simulate editing — {a.strategy}, seed {a.seed}")
    return 0


# --- replay-trace ----------------------------------------------------------------------------
def _add_replay_trace(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay-trace",
        help="replay a real editing trace (josephg/editing-traces) through OT, CRDT or strings",
        description="Replay an editing trace (.json or .json.gz) and check it ends at endContent."
        " PATH may also be a trace name (automerge-paper, friendsforever, clownschool)"
        " looked up in $RTSIM_TRACES or ../shared/data/editing-traces.",
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument("--strategy", required=True, choices=["ot", "crdt", "string"])
    p.add_argument("--limit", type=_positive_int, default=None, help="replay the first N txns")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_replay_trace)


def _run_replay_trace(a: argparse.Namespace) -> int:
    from .lab.traces import load_trace, replay

    trace = load_trace(a.path)
    result = replay(trace, a.strategy, limit=a.limit)
    print_result(result, a.json, f"rtsim replay-trace — {trace.name}, {a.strategy}")
    return 0


#: ``rtsim simulate <name>`` targets; each adds its own sub-parser.
SIMULATIONS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _add_transports,
    _add_editing,
]
#: Top-level commands other than ``simulate``; each adds its own sub-parser.
COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _add_replay_trace,
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="rtsim", description="A lab for real-time web features: simulate, then measure."
    )
    parser.add_argument("--version", action="version", version=f"rtsim {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sim = commands.add_parser("simulate", help="run a simulation headless")
    targets = sim.add_subparsers(dest="target", metavar="MODEL", required=True)
    for add in SIMULATIONS:
        add(targets)
    for add in COMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ValueError as exc:
        print(f"rtsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
