"""``rtsim simulate …``, ``rtsim validate`` and ``rtsim replay-trace``: the seeded models.

Each model's flags are generated from its parameter dataclass; the handlers build the
dataclass, run the model and print its summary.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ..core.params import Spec
from .common import (
    _SEED,
    Sub,
    _add_seed_json,
    _build,
    _nonneg_float,
    _positive_int,
    _progress,
    _shown,
    _typed,
    add_param_flags,
    print_json,
    print_result,
)

__all__ = ["MODEL_COMMANDS", "SIMULATIONS"]


# --- simulate transports ---------------------------------------------------------------------
def _add_transports(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ..sim.transports import TransportParams

    p = sub.add_parser(
        "transports",
        help="WebSocket vs SSE vs long polling vs polling (latency, bytes, requests)",
        description="Simulate one transport delivering a Poisson message stream to N clients.",
    )
    add_param_flags(p, TransportParams, required=("transport",))
    _add_seed_json(p)
    p.set_defaults(handler=_run_transports)


def _run_transports(a: argparse.Namespace) -> int:
    from ..sim.transports import TransportParams, simulate_transports

    params = _build(TransportParams, a)
    result = simulate_transports(params, seed=a.seed)
    summary = {"seed": a.seed, **result.summary.to_dict()}
    print_result(summary, a.json, f"rtsim simulate transports — {a.transport}, seed {a.seed}")
    return 0


# --- simulate presence -----------------------------------------------------------------------
def _add_presence(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ..sim.presence import PresenceParams

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
    from ..sim.presence import PresenceParams, simulate_presence

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
_DASK_WORKERS = Spec(
    kind="int",
    lo=1,
    help="worker processes of a local Dask cluster that delivers the channels (bulk mode;"
    " same figures as 1, which runs in this process); default 1",
)


def _add_architecture(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ..sim.architecture import ArchitectureParams

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
    p.add_argument("--workers", type=_typed(_DASK_WORKERS), default=1, help=_DASK_WORKERS.help)
    _add_seed_json(p)
    p.set_defaults(handler=_run_architecture)


def _run_architecture(a: argparse.Namespace) -> int:
    from ..sim.architecture import ArchitectureParams, simulate_architecture

    fault = -1.0 if a.no_fault else a.fault_at_s
    params = _build(ArchitectureParams, a, fault_at_s=fault)
    if a.workers > 1 and a.mode != "bulk":
        raise ValueError("--workers > 1 needs --mode bulk (the events engine runs in one process)")
    if a.workers > 1:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ValueError("--workers > 1 needs the 'distributed' package") from None
        with (
            LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=a.workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,  # type: ignore[no-untyped-call]
        ):
            result = simulate_architecture(params, seed=a.seed, mode="bulk", client=client)
    else:
        result = simulate_architecture(params, seed=a.seed, mode=a.mode)
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
    from ..sim.queueing import validate

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
    from ..sim.editing import EditingParams

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
    from ..sim.editing import EditingParams, simulate_editing

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
    from ..lab.traces import load_trace, replay

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


#: Top-level commands that run a model without ``simulate`` (``rtsim validate``, ``rtsim
#: replay-trace``).
MODEL_COMMANDS: list[Callable[[Sub], None]] = [_add_validate, _add_replay_trace]
