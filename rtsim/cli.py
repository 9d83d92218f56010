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
import dataclasses
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn, TypeAlias

from .core import strictjson
from .core.params import Spec, check, specs

__all__ = ["build_parser", "main", "print_json", "print_result"]

Handler = Callable[[argparse.Namespace], int]
Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``PROG: error: …``), exit 2."""

    def error(self, message: str) -> NoReturn:
        # "argument --rate: must be > 0, got -3" -> "--rate must be > 0, got -3"
        message = re.sub(r"^argument ([^:]+): (?=must |expects )", r"\1 ", message)
        message = re.sub(r"^argument (-\S+)/(-\S+)", r"argument \2", message)
        self.exit(2, f"{self.prog}: error: {message.splitlines()[0]}\n")


def _typed(spec: Spec) -> Callable[[str], Any]:
    """An argparse ``type`` that parses a number and checks it against ``spec``."""

    def parse(text: str) -> Any:
        try:
            value: Any = int(text) if spec.kind == "int" else float(text)
        except ValueError:
            what = "a whole number" if spec.kind == "int" else "a number"
            raise argparse.ArgumentTypeError(f"expects {what}, got {text!r}") from None
        reason = check(value, spec)
        if reason is not None:
            raise argparse.ArgumentTypeError(reason)
        return value

    parse.__name__ = spec.kind  # argparse names the type in its own messages
    return parse


_positive_float = _typed(Spec(kind="float", lo=0, lo_open=True))
_nonneg_float = _typed(Spec(kind="float", lo=0))
_positive_int = _typed(Spec(kind="int", lo=1))
_nonneg_int = _typed(Spec(kind="int", lo=0))
_SEED = Spec(kind="int", lo=0, help="random seed (same seed, same figures)")


def _flag(name: str, spec: Spec) -> str:
    return "--" + (spec.flag or name.replace("_", "-"))


def _shown(v: Any) -> str:
    v = getattr(v, "value", v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def add_param_flags(
    p: argparse.ArgumentParser,
    cls: Any,
    *,
    required: Iterable[str] = (),
    skip: Iterable[str] = (),
) -> None:
    """One flag per declared field of the dataclass ``cls`` (see :mod:`rtsim.core.params`).

    The flag is ``--field-name`` (or the spec's ``flag``), its type and bounds checked at
    parse time, its help "<help> (<unit>; default <default>)". Fields with ``cli=False``,
    in ``skip`` or without a spec get no flag; those in ``required`` have no default.
    """
    required, skip = set(required), set(skip)
    for f, spec in specs(cls):
        if not spec.cli or f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        default = getattr(default, "value", default)
        unit = f"{spec.unit}; " if spec.unit else ""
        bounds = f"{spec.bounds_text()}; " if spec.lo is not None or spec.hi is not None else ""
        shown = "half-way" if default is None else _shown(default)
        help_text = f"{spec.help} ({unit}{bounds}default {shown})".replace("%", "%%")
        kw: dict[str, Any] = {"dest": f.name, "help": help_text}
        if f.name in required:
            kw["required"] = True
            kw["help"] = f"{spec.help} (required)"
        else:
            kw["default"] = default
        if spec.kind == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        elif spec.kind == "choice":
            kw["choices"] = list(spec.choices or ())
        else:
            kw["type"] = _typed(spec)
            kw["metavar"] = "N" if spec.kind == "int" else "X"
        p.add_argument(_flag(f.name, spec), **kw)


def params_from_args(cls: Any, a: argparse.Namespace, **extra: Any) -> Any:
    """``cls(**fields)`` from the flags :func:`add_param_flags` made, plus ``extra``."""
    kw = {f.name: getattr(a, f.name) for f, _ in specs(cls) if hasattr(a, f.name)}
    kw.update(extra)
    return cls(**{k: v for k, v in kw.items() if v is not None or k in extra})


def _flagify(message: str, cls: Any) -> str:
    """Name flags, not fields, in a model's error (``timeout_s`` -> ``--timeout-s``)."""
    for f, spec in specs(cls):
        if spec.cli:
            message = re.sub(rf"(?<![\w-]){re.escape(f.name)}\b", _flag(f.name, spec), message)
    return message


def _build(cls: Any, a: argparse.Namespace, **extra: Any) -> Any:
    try:
        return params_from_args(cls, a, **extra)
    except ValueError as exc:
        raise ValueError(_flagify(str(exc), cls)) from None


def _progress(a: argparse.Namespace) -> bool:
    """Progress bars only on a terminal, never with ``--json``."""
    return not getattr(a, "json", False) and sys.stderr.isatty()


def _num(v: Any) -> str:
    """A number rounded for reading: 3 significant digits below 10, thousands separators."""
    v = getattr(v, "item", lambda: v)() if not isinstance(v, str | bool) else v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a == 0:
        return "0"
    return f"{v:.3g}"


def print_json(obj: Any) -> None:
    """Print ``obj`` as one strict JSON document (the one printer of every ``--json``)."""
    print(strictjson.dumps(obj))


def print_result(
    summary: dict[str, Any], as_json: bool, title: str, notes: dict[str, str] | None = None
) -> None:
    """Print one summary as strict JSON (one object) or as an aligned, rounded table.

    ``notes`` add a remark after a row (e.g. "overload: utilisation above 1").
    """
    if as_json:
        print_json(summary)
        return
    print(title)
    width = max(len(k) for k in summary)
    for k, v in summary.items():
        note = f"  ({notes[k]})" if notes and k in notes else ""
        print(f"  {k:<{width}}  {_num(v)}{note}")


def _table(rows: list[dict[str, Any]], columns: Sequence[str], indent: str = "  ") -> str:
    """Rows as an aligned text table, numbers rounded for reading."""
    cells = [[str(c) for c in columns]] + [[_num(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for j, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append(indent + "  ".join(parts).rstrip())
        if j == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _add_seed_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=_typed(_SEED), default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


# --- simulate transports ---------------------------------------------------------------------
def _add_transports(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .sim.transports import TransportParams

    p = sub.add_parser(
        "transports",
        help="WebSocket vs SSE vs long polling vs polling (latency, bytes, requests)",
        description="Simulate one transport delivering a Poisson message stream to N clients.",
    )
    add_param_flags(p, TransportParams, required=("transport",))
    _add_seed_json(p)
    p.set_defaults(handler=_run_transports)


def _run_transports(a: argparse.Namespace) -> int:
    from .sim.transports import TransportParams, simulate_transports

    params = _build(TransportParams, a)
    result = simulate_transports(params, seed=a.seed)
    summary = {"seed": a.seed, **result.summary.to_dict()}
    print_result(summary, a.json, f"rtsim simulate transports — {a.transport}, seed {a.seed}")
    return 0


# --- simulate presence -----------------------------------------------------------------------
def _add_presence(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .sim.presence import PresenceParams

    p = sub.add_parser(
        "presence",
        help="heartbeats, TTL expiry and throttled cursors (detection delay, false offline, load)",
        description="Simulate presence for N viewers on each of M resources: heartbeats and a"
        " TTL on the server, crashes vs clean leaves, and cursor updates fanned out to the"
        " other viewers (throttle-hz 0 = no throttle, cursor-hz 0 = no cursors).",
    )
    add_param_flags(p, PresenceParams)
    _add_seed_json(p)
    p.set_defaults(handler=_run_presence)


def _run_presence(a: argparse.Namespace) -> int:
    from .sim.presence import PresenceParams, simulate_presence

    params = _build(PresenceParams, a)
    result = simulate_presence(params, seed=a.seed)
    extra = result.summary.extra
    util = float(extra["server_cpu_utilisation"])
    overloaded = bool(util > 1)
    summary = {
        "seed": a.seed,
        **extra,
        "connections": result.summary.connections,
        "overloaded": overloaded,
    }
    notes = None
    if overloaded:
        notes = {"server_cpu_utilisation": "OVERLOAD: above 1, one core cannot keep up"}
        print(
            f"rtsim simulate presence: warning: server CPU utilisation {util:.2f} > 1: the"
            " server is overloaded; figures assume it keeps up",
            file=sys.stderr,
        )
    title = (
        f"rtsim simulate presence — {a.viewers} viewers × {a.resources} resources, seed {a.seed}"
    )
    print_result(summary, a.json, title, notes)
    return 0


# --- simulate architecture ------------------------------------------------------------------
#: Figures the architecture model does not compute (omitted rather than shown as 0).
_NOT_MODELLED_ARCHITECTURE = ("bytes_per_message", "requests_per_message", "server_memory_bytes")


def _add_architecture(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .sim.architecture import ArchitectureParams

    p = sub.add_parser(
        "architecture",
        help="the 5-step notification architecture at full size (claims C11, C19)",
        description="Publishers → broker → K real-time instances → clients, with replay and"
        " one instance restart half-way through. Bytes, requests and server memory are not"
        " modelled here, so they are not reported.",
    )
    add_param_flags(p, ArchitectureParams)
    p.add_argument("--no-fault", action="store_true", help="skip the instance restart")
    p.add_argument(
        "--mode",
        choices=["bulk", "events"],
        default="bulk",
        help="bulk (vectorised) or events (SimPy); default bulk",
    )
    _add_seed_json(p)
    p.set_defaults(handler=_run_architecture)


def _run_architecture(a: argparse.Namespace) -> int:
    from .sim.architecture import ArchitectureParams, simulate_architecture

    fault = -1.0 if a.no_fault else a.fault_at_s
    params = _build(ArchitectureParams, a, fault_at_s=fault)
    result = simulate_architecture(params, seed=a.seed, mode=a.mode, keep_deliveries=False)
    summary = {"seed": a.seed, **result.summary.to_dict()}
    for key in _NOT_MODELLED_ARCHITECTURE:
        summary.pop(key, None)
    broker = getattr(a.broker, "value", a.broker)
    title = f"rtsim simulate architecture — {broker}, {a.clients:,} clients, seed {a.seed}"
    print_result(summary, a.json, title)
    return 0


# --- validate ---------------------------------------------------------------------------------
#: ``rtsim validate``'s options, declared like a model's parameters.
_REPS = Spec(kind="int", lo=2, help="replications per case (2 at least, for a confidence interval)")
_WORKERS = Spec(kind="int", lo=0, help="processes (0 = one per core)")


def _add_validate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "validate",
        help="check the broker queueing model against M/M/1, M/M/c, M/D/1 and Little's law",
        description="Run each queueing case with replications; exit 1 if a case fails.",
    )
    p.add_argument("--reps", type=_typed(_REPS), default=20, help=f"{_REPS.help}; default 20")
    p.add_argument("--workers", type=_typed(_WORKERS), default=0, help=_WORKERS.help)
    p.add_argument("--seed", type=_typed(_SEED), default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help='print one JSON object {"cases": [...]}')
    p.set_defaults(handler=_run_validate)


def _run_validate(a: argparse.Namespace) -> int:
    from .sim.queueing import validate

    df = validate(reps=a.reps, seed=a.seed, workers=a.workers, progress=_progress(a))
    if a.json:
        print_json({"reps": a.reps, "seed": a.seed, "cases": df.to_dict("records")})
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
class _DeprecatedLatency(argparse.Action):
    """``--latency-ms`` (one way), kept for one release: warns and sets ``rtt_ms`` = 2 ×."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(
            f"{parser.prog}: warning: --latency-ms (one way) is deprecated and will be removed;"
            f" use --rtt-ms (round trip): --rtt-ms {_shown(2 * float(values))}",
            file=sys.stderr,
        )
        namespace.rtt_ms = 2 * float(values)


def _add_editing(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .sim.editing import EditingParams

    p = sub.add_parser(
        "editing",
        help="N editors typing into one paragraph: OT vs CRDT vs last-write-wins",
        description="Simulate editors typing under latency with one conflict strategy.",
    )
    add_param_flags(p, EditingParams, required=("strategy",))
    p.add_argument(
        "--latency-ms",
        type=_nonneg_float,
        action=_DeprecatedLatency,
        metavar="X",
        help="deprecated: one-way latency (ms); use --rtt-ms (= 2 × this)",
    )
    _add_seed_json(p)
    p.set_defaults(handler=_run_editing)


def _run_editing(a: argparse.Namespace) -> int:
    from .sim.editing import EditingParams, simulate_editing

    params = _build(EditingParams, a)
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
        " looked up in $RTSIM_TRACES, else among the traces packaged with rtsim.",
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument("--strategy", required=True, choices=["ot", "crdt", "string"])
    p.add_argument("--limit", type=_positive_int, default=None, help="replay the first N txns")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_replay_trace)


def _run_replay_trace(a: argparse.Namespace) -> int:
    from .lab.traces import load_trace, replay

    try:
        trace = load_trace(a.path)
    except (OSError, LookupError) as exc:
        raise ValueError(str(exc).splitlines()[0] if str(exc) else repr(exc)) from None
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
    from .live import make_token

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
    from .lab.compare import calibrate_stage_model, compare_stage_model, start_server

    with start_server() as (url, pid):
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
    _add_validate,
    _add_serve,
    _add_token,
    _add_load,
    _add_compare,
    _add_replay_trace,
    _add_claims,
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
