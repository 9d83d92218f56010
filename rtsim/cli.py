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


# --- simulate presence -----------------------------------------------------------------------
def _add_presence(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "presence",
        help="heartbeats, TTL expiry and throttled cursors (detection delay, false offline, load)",
        description="Simulate presence for N viewers on each of M resources: heartbeats and a"
        " TTL on the server, crashes vs clean leaves, and cursor updates fanned out to the"
        " other viewers (throttle-hz 0 = no throttle, cursor-hz 0 = no cursors).",
    )
    p.add_argument("--viewers", type=_positive_int, default=10, help="per resource")
    p.add_argument("--resources", type=_positive_int, default=10)
    p.add_argument("--heartbeat-s", type=_positive_float, default=30.0)
    p.add_argument("--timeout-s", type=_positive_float, default=60.0)
    p.add_argument("--cursor-hz", type=_nonneg_float, default=60.0, help="0 = no cursors")
    p.add_argument("--throttle-hz", type=_nonneg_float, default=10.0, help="0 = no throttle")
    p.add_argument("--loss", type=_nonneg_float, default=0.0, help="probability a message is lost")
    p.add_argument("--rtt-ms", type=_nonneg_float, default=50.0)
    p.add_argument("--jitter-ms", type=_nonneg_float, default=20.0)
    p.add_argument("--session-mean-s", type=_positive_float, default=1800.0)
    p.add_argument("--crash-fraction", type=_nonneg_float, default=0.3)
    p.add_argument("--duration", type=_positive_float, default=600.0, help="seconds")
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_presence)


def _run_presence(a: argparse.Namespace) -> int:
    from .sim.presence import PresenceParams, simulate_presence

    params = PresenceParams(
        viewers=a.viewers,
        resources=a.resources,
        heartbeat_s=a.heartbeat_s,
        timeout_s=a.timeout_s,
        cursor_hz=a.cursor_hz,
        throttle_hz=a.throttle_hz,
        loss=a.loss,
        rtt_ms=a.rtt_ms,
        jitter_ms=a.jitter_ms,
        session_mean_s=a.session_mean_s,
        crash_fraction=a.crash_fraction,
        duration_s=a.duration,
    )
    result = simulate_presence(params, seed=a.seed)
    extra = result.summary.extra
    summary = {"seed": a.seed, **extra, "connections": result.summary.connections}
    title = (
        f"rtsim simulate presence — {a.viewers} viewers × {a.resources} resources, seed {a.seed}"
    )
    print_result(summary, a.json, title)
    return 0


# --- simulate architecture ------------------------------------------------------------------
def _add_architecture(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "architecture",
        help="the 5-step notification architecture at full size (claims C11, C19)",
        description="Publishers → broker → K real-time instances → clients, with replay and"
        " one instance restart half-way through.",
    )
    p.add_argument("--clients", type=_positive_int, default=100_000)
    p.add_argument("--duration", type=_positive_float, default=600.0, help="seconds")
    p.add_argument(
        "--broker",
        default="redis-streams",
        choices=["redis-pubsub", "redis-streams", "jetstream", "kafka"],
    )
    p.add_argument("--instances", type=_positive_int, default=4)
    p.add_argument("--user-rate", type=_nonneg_float, default=1 / 60, help="per user, msg/s")
    p.add_argument("--topics", type=_nonneg_int, default=10)
    p.add_argument("--topic-rate", type=_nonneg_float, default=0.05, help="per topic, msg/s")
    p.add_argument("--disconnects-per-hour", type=_nonneg_float, default=1.0)
    p.add_argument("--max-len", type=_positive_int, default=100_000, help="stream history kept")
    p.add_argument("--no-fault", action="store_true", help="skip the instance restart")
    p.add_argument("--mode", choices=["bulk", "events"], default="bulk")
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_architecture)


def _run_architecture(a: argparse.Namespace) -> int:
    from .sim.architecture import ArchitectureParams, simulate_architecture

    params = ArchitectureParams(
        clients=a.clients,
        duration_s=a.duration,
        broker=a.broker,
        instances=a.instances,
        user_rate=a.user_rate,
        topics=a.topics,
        topic_rate=a.topic_rate,
        disconnects_per_hour=a.disconnects_per_hour,
        max_len=a.max_len,
        fault_at_s=-1.0 if a.no_fault else None,
    )
    result = simulate_architecture(params, seed=a.seed, mode=a.mode, keep_deliveries=False)
    summary = {"seed": a.seed, **result.summary.to_dict()}
    title = f"rtsim simulate architecture — {a.broker}, {a.clients:,} clients, seed {a.seed}"
    print_result(summary, a.json, title)
    return 0


# --- validate ---------------------------------------------------------------------------------
def _add_validate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "validate",
        help="check the broker queueing model against M/M/1, M/M/c, M/D/1 and Little's law",
        description="Run each queueing case with replications; exit 1 if a case fails.",
    )
    p.add_argument("--reps", type=_positive_int, default=20)
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument("--workers", type=_nonneg_int, default=0, help="processes (0 = one per core)")
    p.add_argument("--json", action="store_true", help="print one JSON object per case")
    p.set_defaults(handler=_run_validate)


def _run_validate(a: argparse.Namespace) -> int:
    from .sim.queueing import validate

    if a.reps < 2:
        raise ValueError(f"reps must be >= 2 for a confidence interval, got {a.reps}")
    df = validate(reps=a.reps, seed=a.seed, workers=a.workers, progress=not a.json)
    if a.json:
        for row in df.to_dict("records"):
            print(json.dumps(row, default=_json_default))
    else:
        print(f"rtsim validate — {a.reps} replications, seed {a.seed}")
        for r in df.itertuples():
            mark = "PASS" if r.passed else "FAIL"
            print(
                f"  {mark}  {r.case:<20} {r.check}\n"
                f"        closed form {r.closed_form:.4f}  simulated {r.simulated:.4f}"
                f" ± {r.ci95:.4f} (95% CI)  rel. error {r.rel_err:.2%}"
                f" (tolerance {r.tolerance:.0%}, in CI: {r.in_ci})"
            )
    return 0 if bool(df["passed"].all()) else 1


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
    _add_architecture,
    _add_presence,
    _add_editing,
]


# --- serve and token ---------------------------------------------------------------------
def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the live server (WebSocket, SSE, long polling)",
        description="Run the live server until Ctrl-C. Without --secret it runs in open mode"
        " (anyone may subscribe and publish), which is refused on a non-loopback address.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_nonneg_int, default=8765, help="0 = any free port")
    p.add_argument("--secret", default=None, help="HS256 secret for tokens (rtsim token)")
    p.add_argument(
        "--backplane",
        default="memory",
        help="message bus: memory (default), redis-streams://HOST:PORT, redis-pubsub://HOST:PORT"
        " or nats://HOST:PORT (JetStream); options as ?maxlen=1000&prefix=rtsim",
    )
    p.add_argument("--replay", type=_positive_int, default=1000, help="messages kept per channel")
    p.add_argument("--send-queue", type=_positive_int, default=1024, help="per connection")
    p.add_argument("--max-connections", type=_positive_int, default=10000)
    p.add_argument("--presence-timeout", type=_positive_float, default=60.0, help="seconds")
    p.add_argument(
        "--disable",
        default="",
        metavar="T[,T]",
        help="transports to turn off (websocket, sse, long-polling), e.g. to watch the demo"
        " page fall back: --disable websocket,sse",
    )
    p.set_defaults(handler=_run_serve)


def _run_serve(a: argparse.Namespace) -> int:
    from .live.metrics import TRANSPORTS
    from .live.server import ServerConfig, run_server

    off = {t.strip() for t in a.disable.split(",") if t.strip()}
    if off - set(TRANSPORTS):
        raise ValueError(f"--disable takes {', '.join(TRANSPORTS)}; got {', '.join(sorted(off))}")
    config = ServerConfig(
        host=a.host,
        port=a.port,
        secret=a.secret,
        backplane=a.backplane,
        replay_len=a.replay,
        send_queue=a.send_queue,
        max_connections=a.max_connections,
        presence_timeout_s=a.presence_timeout,
        transports=tuple(t for t in TRANSPORTS if t not in off),
    )

    def ready(url: str) -> None:
        mode = "open mode" if config.open_mode else "tokens required"
        print(f"rtsim serve: listening on {url} ({mode}, backplane {a.backplane})", flush=True)
        print(f"rtsim serve: demo page {url}/ (add ?token=T in secret mode)", flush=True)

    try:
        run_server(config, ready)
    except OSError as exc:  # operational (port in use, address not on this host): exit 1
        print(f"rtsim serve: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


# --- load ---------------------------------------------------------------------------------------
def _add_load(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "load",
        help="open-loop load test of a live server (latency, loss, duplicates, server RSS)",
        description="Subscribers over one transport, publishing at a constant rate over one"
        " WebSocket; latency from each message's scheduled send time into HdrHistogram.",
    )
    p.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8765")
    p.add_argument("--transport", required=True, choices=["websocket", "sse", "long-polling"])
    p.add_argument("--subscribers", type=_positive_int, default=100)
    p.add_argument("--channels", type=_positive_int, default=1)
    p.add_argument("--rate", type=_positive_float, default=100.0, help="messages/s published")
    p.add_argument("--duration", type=_positive_float, default=10.0, help="seconds")
    p.add_argument("--payload-bytes", type=_nonneg_int, default=100)
    p.add_argument("--token", default=None, help="a token allowed to publish and subscribe")
    p.add_argument("--processes", type=_nonneg_int, default=0, help="0 = automatic")
    p.add_argument("--server-pid", type=_positive_int, default=None)
    p.add_argument(
        "--capacity",
        action="store_true",
        help="step the rate (x1.5 from --rate) until p95 exceeds --sla-p95-ms",
    )
    p.add_argument("--sla-p95-ms", type=_positive_float, default=250.0)
    p.add_argument("--max-rate", type=_positive_float, default=100_000.0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_load)


def _run_load(a: argparse.Namespace) -> int:
    from .live.errors import ServerUnreachableError
    from .live.loadgen import LoadParams, capacity_search, run_load

    params = LoadParams(
        url=a.url.rstrip("/"),
        transport=a.transport,
        subscribers=a.subscribers,
        channels=a.channels,
        rate=a.rate,
        duration_s=a.duration,
        payload_bytes=a.payload_bytes,
        token=a.token,
        processes=a.processes,
        server_pid=a.server_pid,
    )
    if a.capacity:
        rates = []
        r = a.rate
        while r <= a.max_rate:
            rates.append(r)
            r *= 1.5
        try:
            curve = capacity_search(params, rates, sla_p95_ms=a.sla_p95_ms, progress=not a.json)
        except ServerUnreachableError as exc:
            print(f"rtsim load: {exc}", file=sys.stderr)
            return 1
        if a.json:
            print(json.dumps({"capacity_curve": curve.to_dict("records")}, default=_json_default))
        else:
            print(curve.to_string(index=False))
        return 0
    try:
        result = run_load(params, progress=not a.json)
    except ServerUnreachableError as exc:
        print(f"rtsim load: {exc}", file=sys.stderr)
        return 1
    summary = result.summary.to_dict()
    summary.pop("error_samples", None) if a.json else None
    print_result(summary, a.json, f"rtsim load — {a.transport}, {a.subscribers} subscribers")
    return 0


def _add_token(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "token",
        help="print a token for the live server",
        description="Print a signed token (JWT, HS256). Patterns are comma-separated channel"
        " names in which * matches anything, e.g. 'user:alice,team:*'.",
    )
    p.add_argument("--secret", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--subscribe", default="", help="channel patterns the user may subscribe to")
    p.add_argument("--publish", default="", help="channel patterns the user may publish to")
    p.add_argument("--ttl", type=_positive_float, default=3600.0, help="seconds")
    p.set_defaults(handler=_run_token)


def _run_token(a: argparse.Namespace) -> int:
    from .live.auth import make_token

    print(make_token(a.secret, a.user, a.subscribe, a.publish, a.ttl))
    return 0


# --- compare -----------------------------------------------------------------------------------
def _add_compare(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "compare",
        help="simulated vs measured latency and throughput on this machine",
        description="Start `rtsim serve` in its own process, calibrate the transport model on"
        " it (CPU per delivery of the server and of the load generator), then run the"
        " simulation and the live load test with the same parameters, side by side.",
    )
    p.add_argument("--transport", required=True, choices=["websocket", "sse", "long-polling"])
    p.add_argument("--subscribers", type=_positive_int, default=200)
    p.add_argument("--rate", type=_positive_float, default=20.0, help="messages/s published")
    p.add_argument("--duration", type=_positive_float, default=5.0, help="seconds")
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_compare)


def _run_compare(a: argparse.Namespace) -> int:
    from .lab.compare import calibrate, compare, start_server

    with start_server() as (url, pid):
        ws_cost = None
        if a.transport == "long-polling":
            ws_cost = calibrate(url, pid, "websocket").server_cpu_per_delivery_us
        cal = calibrate(url, pid, a.transport, ws_server_cpu_per_delivery_us=ws_cost)
        df = compare(url, pid, cal, a.subscribers, a.rate, a.duration, seed=a.seed)
    if a.json:
        out = {"calibration": cal.as_dict(), "comparison": df.to_dict("records")}
        print(json.dumps(out, default=_json_default))
    else:
        print(f"rtsim compare — {a.transport}, {a.subscribers} subscribers, {a.rate:g} msg/s")
        print(f"  calibration: {cal.as_dict()}")
        cols = ["metric", "simulated", "measured", "rel_error"]
        print(df[cols].to_string(index=False, float_format=lambda v: f"{v:,.3f}"))
    return 0


#: Top-level commands other than ``simulate``; each adds its own sub-parser.
def _add_claims(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "claims",
        help="the claims ledger: simulated vs measured figure and a verdict per claim (C1–C21)",
        description="Compute the claims ledger from the lab's own runs: quick simulations and"
        " small live measurements by default (about 1–2 minutes), or the committed full"
        " results with --full. Each row names its source.",
    )
    p.add_argument("--json", action="store_true", help='print one JSON object {"claims": [...]}')
    p.add_argument(
        "--full", action="store_true", help="use committed full results where they exist"
    )
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.set_defaults(handler=_run_claims)


def _run_claims(a: argparse.Namespace) -> int:
    from .lab.ledger import ledger, ledger_json

    df = ledger(quick=not a.full, seed=a.seed)
    if a.json:
        print(ledger_json(df))
        return 0
    mode = "committed full results where they exist" if a.full else "quick runs"
    print(f"rtsim claims — {mode}, seed {a.seed}")
    for r in df.to_dict("records"):
        print(f"\n{r['id']:<4} {r['claim']}")
        for key in ("simulated", "measured", "conditions", "verdict", "source"):
            print(f"     {key + ':':<12}{r[key]}")
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _add_validate,
    _add_serve,
    _add_token,
    _add_load,
    _add_compare,
    _add_replay_trace,
    _add_claims,
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
