"""``rtsim`` — every experiment of the lab, headless.

    rtsim simulate transports --transport sse --clients 1000 --rate 10 --json

Every bad value exits with status 2 and one line on stderr (``rtsim <command>: error:
--loss must be in [0, 1), got 1.5``), never a usage block (that is for ``-h``). The
``simulate`` flags are generated from each model's parameter dataclass
(:mod:`rtsim.core.params`): name, type, bounds, unit, default and help are declared once
there. ``--json`` prints one strict RFC 8259 object (NaN and infinity become ``null``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence

from .commands.common import (
    _SEED,
    Handler,
    Sub,
    _add_seed_json,
    _nonneg_int,
    _num,
    _Parser,
    _positive_float,
    _positive_int,
    _progress,
    _table,
    _typed,
    print_json,
    print_result,
)
from .commands.plan import PLAN_COMMANDS
from .commands.simulate import MODEL_COMMANDS, SIMULATIONS
from .core.params import Spec
from .core.transport import Transport

__all__ = ["build_parser", "main", "print_json", "print_result"]

#: The transports the live server and clients speak (interval polling is modelled only).
_LIVE_TRANSPORTS = [t.value for t in Transport if t is not Transport.POLLING]


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
    p.add_argument(
        "--max-connections-per-ip",
        type=_positive_int,
        default=None,
        metavar="N",
        help="open connections from one client address, loopback included (default 1000, see"
        " ServerConfig; raise it for load runs of more subscribers from one host)",
    )
    p.add_argument(
        "--publish-rate-per-ip",
        type=_typed(Spec(kind="float", lo=1)),
        default=None,
        metavar="R",
        help="publishes per second from one client address, bursts of one second's worth"
        " (default 1000, see ServerConfig)",
    )
    p.add_argument("--presence-timeout", type=_positive_float, default=60.0, help="seconds")
    p.add_argument(
        "--overload-lag-ms",
        type=_typed(Spec(kind="float", lo=0)),
        default=None,
        metavar="MS",
        help="event-loop lag above which the server is overloaded and sends clients to"
        " interval polling (default 0 = never, see ServerConfig; 250 is the suggested setting)",
    )
    p.add_argument(
        "--degrade-poll-s",
        type=_positive_float,
        default=None,
        metavar="S",
        help="how often degraded clients poll, seconds (default 5, the article's 5-10 s)",
    )
    p.add_argument(
        "--disable",
        default="",
        metavar="T[,T]",
        help="transports to turn off (websocket, sse, long-polling), e.g. to watch the demo"
        " page fall back: --disable websocket,sse",
    )
    p.set_defaults(handler=_run_serve)


def _run_serve(a: argparse.Namespace) -> int:
    from .live.server import SERVED, ServerConfig, run_server

    off = {t.strip() for t in a.disable.split(",") if t.strip()}
    served = ", ".join(t.value for t in SERVED)
    if off - set(SERVED):
        raise ValueError(f"--disable takes {served}; got {', '.join(sorted(off))}")
    if off >= set(SERVED):
        raise ValueError(f"--disable must leave one of {served} on")
    config = ServerConfig(
        host=a.host,
        port=a.port,
        secret=a.secret,
        backplane=a.backplane,
        replay_len=a.replay,
        send_queue=a.send_queue,
        max_connections=a.max_connections,
        presence_timeout_s=a.presence_timeout,
        transports=tuple(t for t in SERVED if t.value not in off),
        **{
            name: value
            for name, value in (
                ("max_connections_per_ip", a.max_connections_per_ip),
                ("publish_rate_per_ip", a.publish_rate_per_ip),
                ("overload_lag_ms", a.overload_lag_ms),
                ("degrade_poll_s", a.degrade_poll_s),
            )
            if value is not None
        },
    )

    def ready(url: str) -> None:
        mode = "open mode" if config.open_mode else "tokens required"
        print(f"rtsim serve: listening on {url} ({mode}, backplane {a.backplane})", flush=True)
        print(f"rtsim serve: demo page {url}/ (add ?token=T in secret mode)", flush=True)
        admin = "" if config.open_mode else " (add ?token=T from rtsim token --admin)"
        print(f"rtsim serve: the room's screen {url}/facilitator{admin}", flush=True)

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
    p.add_argument("--transport", required=True, choices=_LIVE_TRANSPORTS)
    p.add_argument("--subscribers", type=_positive_int, default=100)
    p.add_argument("--channels", type=_positive_int, default=1)
    p.add_argument("--rate", type=_positive_float, default=100.0, help="messages/s published")
    p.add_argument("--duration", type=_positive_float, default=10.0, help="seconds")
    p.add_argument("--payload-bytes", type=_nonneg_int, default=100)
    p.add_argument("--token", default=None, help="a token allowed to publish and subscribe")
    p.add_argument("--processes", type=_nonneg_int, default=0, help="0 = automatic")
    p.add_argument("--server-pid", type=_positive_int, default=None)
    p.add_argument(
        "--ws-client",
        default="raw",
        help="library of the WebSocket subscribers: raw (default, a bare asyncio Protocol), "
        "picows or aiohttp",
    )
    p.add_argument(
        "--sse-client",
        default="raw",
        help="library of the SSE subscribers: raw (default, a bare asyncio Protocol) or aiohttp",
    )
    p.add_argument(
        "--lp-client",
        default="raw",
        help="library of the long-polling subscribers: raw (default, a bare asyncio Protocol "
        "on one keep-alive connection) or aiohttp",
    )
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
    from .live.clients.loadgen import LoadParams, capacity_search, run_load
    from .live.errors import ServerUnreachableError

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
        ws_client=a.ws_client,
        sse_client=a.sse_client,
        lp_client=a.lp_client,
    )
    if a.capacity:
        rates = []
        r = a.rate
        while r <= a.max_rate:
            rates.append(r)
            r *= 1.5
        try:
            curve = capacity_search(params, rates, sla_p95_ms=a.sla_p95_ms, progress=_progress(a))
        except ServerUnreachableError as exc:
            print(f"rtsim load: {exc}", file=sys.stderr)
            return 1
        if a.json:
            print_json({"capacity_curve": curve.to_dict("records")})
        else:
            print(curve.to_string(index=False))
        return 0
    try:
        result = run_load(params, progress=_progress(a))
    except ServerUnreachableError as exc:
        print(f"rtsim load: {exc}", file=sys.stderr)
        return 1
    summary = result.summary.to_dict()
    summary.pop("error_samples", None) if a.json else None
    stages = summary.pop("stages", {}) if not a.json else {}
    print_result(summary, a.json, f"rtsim load — {a.transport}, {a.subscribers} subscribers")
    if stages:
        print("\nstages of the traced deliveries (ms; they add up to end_to_end)")
        rows = [{"stage": k, **v} for k, v in stages.items()]
        print(_table(rows, ["stage", "p50_ms", "p99_ms", "mean_ms", "n"]))
    return 0


def _add_token(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "token",
        help="print a token for the live server (or one join link per learner)",
        description="Print a signed token (JWT, HS256). Patterns are comma-separated channel"
        " names in which * matches anything, e.g. 'user:alice,team:*'. With --links N, print"
        " N lines instead, one join link per learner: BASE_URL/?room=ROOM&name=USERnn&token=T,"
        " each token for user USERnn (USER defaults to 'learner').",
    )
    p.add_argument("--secret", required=True)
    p.add_argument("--user", help="the token's user; with --links, the prefix of the names")
    p.add_argument("--subscribe", help=f"channel patterns the user may subscribe to (default"
                   f" '', with --links {_ROOM_CHANNELS!r})")  # fmt: skip
    p.add_argument("--publish", help=f"channel patterns the user may publish to (default"
                   f" '', with --links {_ROOM_CHANNELS!r})")  # fmt: skip
    p.add_argument("--ttl", type=_positive_float, default=3600.0, help="seconds")
    p.add_argument("--links", type=_positive_int, metavar="N", help="print N join links")
    p.add_argument(
        "--base-url",
        default="http://127.0.0.1:8765",
        help="the server's address as learners reach it, for --links (default %(default)s)",
    )
    p.add_argument("--room", default="lobby", help="demo-page room for --links (default lobby)")
    p.add_argument(
        "--admin",
        action="store_true",
        help="a facilitator's token: it may step the room's transports down and up (open"
        " http://HOST:PORT/facilitator?token=T); not with --links",
    )
    p.set_defaults(handler=_run_token)


#: What the demo page's room needs (its chat and cursor channels): the default for --links.
_ROOM_CHANNELS = "chat:*,cursor:*"


def _run_token(a: argparse.Namespace) -> int:
    from urllib.parse import urlencode, urlsplit

    from .live import make_token

    if a.links is None:
        if not a.user:
            raise ValueError("the following arguments are required: --user (or --links N)")
        sub, pub = a.subscribe or "", a.publish or ""
        print(make_token(a.secret, a.user, sub, pub, a.ttl, admin=a.admin))
        return 0
    if a.admin:
        raise ValueError("--admin makes one facilitator token: give --user, not --links")
    base = urlsplit(a.base_url)
    if base.scheme not in ("http", "https") or not base.netloc:
        raise ValueError(f"--base-url must be an http(s) URL, got {a.base_url!r}")
    sub = _ROOM_CHANNELS if a.subscribe is None else a.subscribe
    pub = _ROOM_CHANNELS if a.publish is None else a.publish
    prefix = a.user or "learner"
    width = max(2, len(str(a.links)))
    for i in range(1, a.links + 1):
        name = f"{prefix}{i:0{width}d}"
        query = urlencode(
            {"room": a.room, "name": name, "token": make_token(a.secret, name, sub, pub, a.ttl)}
        )
        print(f"{a.base_url.rstrip('/')}/?{query}")
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
    p.add_argument(
        "--loads",
        type=_loads,
        default=None,
        help="comma-separated fractions of capacity, e.g. 0.2,0.5,0.8: compare the stage"
        " model (calibrated once on websocket, 200 subscribers, 50%% load) instead of --rate",
    )
    p.add_argument(
        "--repeats", type=_positive_int, default=3, help="live runs per load (default 3)"
    )
    _add_seed_json(p)
    p.set_defaults(handler=_run_compare)


def _loads(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects numbers like 0.2,0.5, got {text!r}") from None
    if not values or not all(0 < v < 1.5 for v in values):
        raise argparse.ArgumentTypeError(f"must be fractions in (0, 1.5), got {text!r}")
    return values


def _run_compare_stages(a: argparse.Namespace) -> int:
    from .lab.stage_compare import calibrate_stage_model, compare_stage_model, stage_server

    with stage_server() as (url, pid):
        scal, info = calibrate_stage_model(url, pid, duration_s=a.duration)
        rows, stages = compare_stage_model(
            url, pid, scal, a.transport, a.loads, a.subscribers, a.repeats, a.duration, a.seed
        )
    if a.json:
        print_json(
            {"calibration": {**info, "model": scal.as_dict()}, "rows": rows, "stages": stages}
        )
        return 0
    print(f"rtsim compare — {a.transport}, {a.subscribers} subscribers, stage model")
    print(f"\ncalibrated once: {info['command']} (load average {info['loadavg_1m']:.2f})")
    print("\nsimulated vs measured (mean of repeats, 95% CI; error = simulated / measured - 1)")
    shown = [
        r
        | {
            "ci": f"{_num(r['measured_ci_low'])}–{_num(r['measured_ci_high'])}",
            "error": f"{r['rel_error']:+.0%}" if math.isfinite(r["rel_error"]) else "—",
            "pass": "yes" if r["passes"] else "no",
        }
        for r in rows
    ]
    print(_table(shown, ["load", "metric", "simulated", "measured", "ci", "error", "pass"]))
    for key, st in stages.items():
        print(f"\nstages {key} (p50 ms simulated / measured)")
        srows = [
            {
                "stage": k,
                "sim_p50": st["simulated"][k]["p50_ms"],
                "meas_p50": st["measured"][k]["p50_ms"],
                "sim_p99": st["simulated"][k]["p99_ms"],
                "meas_p99": st["measured"][k]["p99_ms"],
            }
            for k in st["simulated"]
        ]
        print(_table(srows, ["stage", "sim_p50", "meas_p50", "sim_p99", "meas_p99"]))
    return 0


def _run_compare(a: argparse.Namespace) -> int:
    from .lab.compare import calibrate, compare, start_server

    if a.loads is not None:
        return _run_compare_stages(a)
    with start_server() as (url, pid):
        ws_cost = None
        if a.transport == "long-polling":
            ws_cost = calibrate(url, pid, "websocket").server_cpu_per_delivery_us
        cal = calibrate(url, pid, a.transport, ws_server_cpu_per_delivery_us=ws_cost)
        df = compare(url, pid, cal, a.subscribers, a.rate, a.duration, seed=a.seed)
    if a.json:
        print_json({"calibration": cal.as_dict(), "comparison": df.to_dict("records")})
        return 0
    print(f"rtsim compare — {a.transport}, {a.subscribers} subscribers, {a.rate:g} msg/s")
    print("\ncalibration")
    cal_rows = [{"quantity": k, "value": v} for k, v in cal.as_dict().items()]
    print(_table(cal_rows, ["quantity", "value"]))
    print("\nsimulated vs measured (error = simulated / measured - 1)")
    rows = [
        {
            "quantity": r["metric"],
            "simulated": r["simulated"],
            "measured": r["measured"],
            "error": f"{r['rel_error']:+.0%}" if math.isfinite(r["rel_error"]) else "—",
        }
        for r in df.to_dict("records")
    ]
    print(_table(rows, ["quantity", "simulated", "measured", "error"]))
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
    p.add_argument("--seed", type=_typed(_SEED), default=0, help="random seed (default 0)")
    p.set_defaults(handler=_run_claims)


def _run_claims(a: argparse.Namespace) -> int:
    from .lab.claims import ledger, ledger_json

    df = ledger(quick=not a.full, seed=a.seed)
    if a.json:
        import json

        print_json(json.loads(ledger_json(df)))  # re-printed strictly (NaN -> null)
        return 0
    mode = "committed full results where they exist" if a.full else "quick runs"
    print(f"rtsim claims — {mode}, seed {a.seed}")
    for r in df.to_dict("records"):
        print(f"\n{r['id']:<4} {r['claim']}")
        for key in ("simulated", "measured", "conditions", "verdict", "source"):
            print(f"     {key + ':':<12}{r[key]}")
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    *MODEL_COMMANDS,
    _add_serve,
    _add_token,
    _add_load,
    _add_compare,
    _add_claims,
    *PLAN_COMMANDS,
]


def build_parser(simulate: bool = True) -> argparse.ArgumentParser:
    """The ``rtsim`` parser; every sub-parser reports errors in one line, exit 2.

    ``simulate=False`` leaves out the models' flags (they import the models, ~1 s), for a
    command line that does not run ``rtsim simulate``.
    """
    from . import __version__

    parser: argparse.ArgumentParser = _Parser(
        prog="rtsim", description="A lab for real-time web features: simulate, then measure."
    )
    parser.add_argument("--version", action="version", version=f"rtsim {__version__}")
    commands: Sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sim = commands.add_parser("simulate", help="run a simulation headless")
    targets: Sub = sim.add_subparsers(dest="target", metavar="MODEL", required=True)
    for add in SIMULATIONS if simulate else []:
        add(targets)
    for add in COMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (2: a bad value, one line on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(simulate="simulate" in argv)
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    prog = " ".join(x for x in ("rtsim", args.command, getattr(args, "target", None)) if x)
    try:
        return handler(args)
    except ValueError as exc:
        print(f"{prog}: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `rtsim … | head`: the reader is gone, nothing to say
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stays open until exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
