"""The claims registry: every claim of the article once, in order, with its evidence.

A :class:`Claim` names the claim in our words, how the lab tests it, the notebook that
shows it, its topic module, and the function that evaluates it against a
:class:`~rtsim.lab.claims.context.Context`. ``rtsim claims``, the notebooks' verdict
cells and notebook 00's table all read :data:`CLAIMS`.

To add a claim: write its evidence function in the topic module (or a new one) and add
one :class:`Claim` line below.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd

from . import architecture, brokers, conflict, memory, presence, sse, transports
from .context import Context, describe_error
from .evidence import Evidence, Verdict

__all__ = [
    "CLAIMS",
    "COLUMNS",
    "Claim",
    "claim",
    "claims_table",
    "evaluate",
    "ledger",
    "ledger_json",
    "verdict_table",
]

#: The columns of a ledger row, in order.
COLUMNS = ["id", "claim", "simulated", "measured", "conditions", "verdict", "source"]


@dataclass(frozen=True)
class Claim:
    """One claim: ``id`` ("C1"…), ``statement`` (the article's claim, in our words),
    ``how`` (how the lab tests it), ``notebook`` ("00"–"07"), ``topic`` (the module in
    :mod:`rtsim.lab.claims` holding its evidence), and ``evaluate(ctx) -> Evidence``."""

    id: str
    statement: str
    how: str
    notebook: str
    topic: str
    evaluate: Callable[[Context], Evidence]


def _c(cid: str, statement: str, how: str, nb: str, fn: Callable[[Context], Evidence]) -> Claim:
    return Claim(cid, statement, how, nb, fn.__module__.rsplit(".", 1)[-1], fn)


# fmt: off
#: Every claim, in the article's order.
CLAIMS: tuple[Claim, ...] = (
    _c("C1", "A WebSocket connection costs roughly 2–10 KB of server memory",
       "live server: memory per idle connection", "07", memory.c1),
    _c("C2", "Node.js holds 50k–100k WebSocket connections; Go passes 1M",
       "memory model per stack; local measurement where a runtime exists", "07", memory.c2),
    _c("C3", "Long polling adds 100–500 ms per message and much more HTTP overhead",
       "sim over RTT × rate; bytes and requests per message", "01", transports.c3),
    _c("C4", "EventSource reconnects by itself, with retry and Last-Event-ID",
       "live SSE endpoint: retry: and id: in the stream, a dropped stream resumed from "
       "Last-Event-ID (Python client, EventSource rules); the browser's own EventSource in "
       "the browser tests", "06", sse.c4),
    _c("C5", "SSE benefits from HTTP/2 multiplexing (HTTP/1.1: ~6 connections per origin)",
       "sim of tabs per origin under HTTP/1.1 vs HTTP/2", "01", transports.c5),
    _c("C6", "A basic SSE endpoint is about 15 lines",
       "the lab's minimal SSE example, counted", "06", sse.c6),
    _c("C7", "One Redis instance sustains 500k+ pub/sub messages per second",
       "sim broker capacity; live measurement", "02", brokers.c7),
    _c("C8", "Redis Pub/Sub is fire-and-forget: a disconnected subscriber loses messages",
       "loss vs outage length, sim and live", "02", brokers.c8),
    _c("C9", "Redis Streams / NATS JetStream let a consumer catch up",
       "same experiment, zero loss expected", "02", brokers.c9),
    _c("C10", "Kafka is for millions of events per second; rarely worth it below",
       "sim: partitioned, batched log vs the others", "02", brokers.c10),
    _c("C11", "The 5-step architecture serves 100,000 concurrent users",
       "sim of the whole architecture at 100k clients", "05", architecture.c11),
    _c("C12", "Without optimistic UI, even <100 ms round trips feel slow",
       "sim of perceived latency with and without optimistic updates", "04", conflict.c12),
    _c("C13", "OT converges, but transformation functions are hard to get right",
       "OT convergence properties; a broken transform diverging", "04", conflict.c13),
    _c("C14", "CRDTs merge without conflicts; Yjs: 100k+ ops, sub-ms merges",
       "pycrdt convergence and merge time", "04", conflict.c14),
    _c("C15", "Field-level last-write-wins handles ~95% of real collaboration",
       "sim: same-field collision fraction", "04", conflict.c15),
    _c("C16", "Throttle presence to 5–10 updates/s; 60 fps would overwhelm",
       "sim: load vs viewers² and rate", "03", presence.c16),
    _c("C17", "Heartbeat every 15–30 s; offline after 60 s",
       "sim: detection delay vs false offline", "03", presence.c17),
    _c("C18", "Keep presence out of the primary database; Redis with TTL",
       "sim: database vs TTL write load", "03", presence.c18),
    _c("C19", "P50 < 50 ms and P99 < 500 ms are reasonable targets",
       "the load at which each transport stops meeting them", "05", architecture.c19),
    _c("C20", "Degrade gracefully: WebSocket → SSE → long polling → polling every 5–10 s",
       "the core fallback cascade in sim (and the real clients)", "01", transports.c20),
    _c("C21", "Reconnect with exponential backoff",
       "sim of a reconnection storm with and without jitter", "01", transports.c21),
)
# fmt: on
_BY_ID = {c.id: c for c in CLAIMS}


def claim(cid: str) -> Claim:
    """The registered claim ``cid`` ("C1"…"C21"); raises ``KeyError`` for an unknown id."""
    try:
        return _BY_ID[cid]
    except KeyError:
        raise KeyError(f"unknown claim {cid!r}; known: {', '.join(_BY_ID)}") from None


def claims_table() -> pd.DataFrame:
    """The registry as a frame (notebook 00): id, claim, how the lab tests it, notebook."""
    rows = [(c.id, c.statement, c.how, c.notebook) for c in CLAIMS]
    return pd.DataFrame(rows, columns=["id", "claim", "how the lab tests it", "notebook"])


def evaluate(c: Claim, ctx: Context) -> Evidence:
    """``c.evaluate(ctx)``; a failing experiment gives a *does not hold here* row with the
    reason (source "error") instead of raising, so one failure hides no other claim."""
    try:
        return c.evaluate(ctx)
    except Exception as exc:
        return Evidence(
            "",
            "not measured here",
            f"the experiment failed: {describe_error(exc)}",
            Verdict.does_not_hold("not evaluated (the experiment failed)"),
            "error",
        )


def _row(c: Claim, ev: Evidence) -> dict[str, str]:
    return {
        "id": c.id,
        "claim": c.statement,
        "simulated": ev.simulated,
        "measured": ev.measured,
        "conditions": ev.conditions,
        "verdict": str(ev.verdict),
        "source": ev.source,
    }


def ledger(quick: bool = True, seed: int = 0, live: bool = True) -> pd.DataFrame:
    """The claims ledger: one row per registered claim (:data:`COLUMNS`), in order.

    ``quick`` (default) runs small simulations and live measurements now (about a minute
    on 2 cores); ``quick=False`` reads committed full results (``benchmarks/results/``)
    where they exist. ``live=False`` skips live measurements. Raises ``ValueError`` for a
    seed that is not an integer ≥ 0.
    """
    ctx = Context(quick=quick, seed=_seed(seed), live=live)
    return pd.DataFrame([_row(c, evaluate(c, ctx)) for c in CLAIMS], columns=COLUMNS)


def verdict_table(
    ids: Iterable[str],
    seed: int = 0,
    quick: bool = True,
    live: bool = False,
    ctx: Context | None = None,
) -> pd.DataFrame:
    """Verdicts for some claims (a notebook's), indexed by id: claim, simulated,
    measured, verdict. Live measurements are off by default (``live``), so the verdicts
    of seeded claims are the ones ``rtsim claims --seed SEED`` gives. ``ctx`` may pass
    a :class:`Context` with runs the notebook already made. Raises ``KeyError`` for an
    unknown id and ``ValueError`` for a bad seed."""
    ctx = ctx or Context(quick=quick, seed=_seed(seed), live=live)
    rows = [_row(c, evaluate(c, ctx)) for c in (claim(i) for i in ids)]
    cols = ["id", "claim", "simulated", "measured", "verdict"]
    return pd.DataFrame(rows, columns=COLUMNS)[cols].set_index("id")


def ledger_json(df: pd.DataFrame) -> str:
    """The ledger as one JSON object: ``{"claims": [{id, claim, ...}, ...]}``."""
    return json.dumps({"claims": df[COLUMNS].to_dict("records")}, ensure_ascii=False)


def _seed(seed: object) -> int:
    import numpy as np

    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)
