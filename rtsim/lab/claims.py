"""The article's claims (docs/claims.md) and where the lab tests each one."""

from __future__ import annotations

import pandas as pd

__all__ = ["CLAIMS", "claims_table"]

#: (id, claim, how the lab tests it, notebook)
CLAIMS: tuple[tuple[str, str, str, str], ...] = (
    (
        "C1",
        "A WebSocket connection costs roughly 2–10 KB of server memory",
        "live server: memory per idle connection",
        "07",
    ),
    (
        "C2",
        "Node.js holds 50k–100k WebSocket connections; Go passes 1M",
        "memory model per stack; local measurement where a runtime exists",
        "07",
    ),
    (
        "C3",
        "Long polling adds 100–500 ms per message and much more HTTP overhead",
        "sim over RTT × rate; bytes and requests per message",
        "01",
    ),
    (
        "C4",
        "EventSource reconnects by itself, with retry and Last-Event-ID",
        "real browser against the live SSE endpoint",
        "06",
    ),
    (
        "C5",
        "SSE benefits from HTTP/2 multiplexing (HTTP/1.1: ~6 connections per origin)",
        "sim of tabs per origin under HTTP/1.1 vs HTTP/2",
        "01",
    ),
    (
        "C6",
        "A basic SSE endpoint is about 15 lines",
        "the lab's minimal SSE example, counted",
        "06",
    ),
    (
        "C7",
        "One Redis instance sustains 500k+ pub/sub messages per second",
        "sim broker capacity; live measurement",
        "02",
    ),
    (
        "C8",
        "Redis Pub/Sub is fire-and-forget: a disconnected subscriber loses messages",
        "loss vs outage length, sim and live",
        "02",
    ),
    (
        "C9",
        "Redis Streams / NATS JetStream let a consumer catch up",
        "same experiment, zero loss expected",
        "02",
    ),
    (
        "C10",
        "Kafka is for millions of events per second; rarely worth it below",
        "sim: partitioned, batched log vs the others",
        "02",
    ),
    (
        "C11",
        "The 5-step architecture serves 100,000 concurrent users",
        "sim of the whole architecture at 100k clients",
        "05",
    ),
    (
        "C12",
        "Without optimistic UI, even <100 ms round trips feel slow",
        "sim of perceived latency with and without optimistic updates",
        "04",
    ),
    (
        "C13",
        "OT converges, but transformation functions are hard to get right",
        "OT convergence properties; a broken transform diverging",
        "04",
    ),
    (
        "C14",
        "CRDTs merge without conflicts; Yjs: 100k+ ops, sub-ms merges",
        "pycrdt convergence and merge time",
        "04",
    ),
    (
        "C15",
        "Field-level last-write-wins handles ~95% of real collaboration",
        "sim: same-field collision fraction",
        "04",
    ),
    (
        "C16",
        "Throttle presence to 5–10 updates/s; 60 fps would overwhelm",
        "sim: load vs viewers² and rate",
        "03",
    ),
    (
        "C17",
        "Heartbeat every 15–30 s; offline after 60 s",
        "sim: detection delay vs false offline",
        "03",
    ),
    (
        "C18",
        "Keep presence out of the primary database; Redis with TTL",
        "sim: database vs TTL write load",
        "03",
    ),
    (
        "C19",
        "P50 < 50 ms and P99 < 500 ms are reasonable targets",
        "the load at which each transport stops meeting them",
        "05",
    ),
    (
        "C20",
        "Degrade gracefully: WebSocket → SSE → long polling → polling every 5–10 s",
        "the core fallback cascade in sim (and the real clients)",
        "01",
    ),
    (
        "C21",
        "Reconnect with exponential backoff",
        "sim of a reconnection storm with and without jitter",
        "01",
    ),
)


def claims_table() -> pd.DataFrame:
    """The claims as a frame: id, claim, how the lab tests it, notebook."""
    return pd.DataFrame(CLAIMS, columns=["id", "claim", "how the lab tests it", "notebook"])
