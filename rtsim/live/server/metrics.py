"""The server's Prometheus metrics, the ones the article lists, in one registry per server.

Each server gets its own :class:`prometheus_client.CollectorRegistry`, so several servers
in one process (tests, notebooks) never mix their figures. ``GET /metrics`` serves it in
the Prometheus text format; :meth:`Metrics.sample` reads one value back (for tests and
notebooks). Per-transport series are labelled with
:class:`~rtsim.core.transport.Transport` values and created up front for the transports
the server serves, so they read 0 rather than being absent.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from rtsim.core.transport import Transport

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
_FANOUT_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


class Metrics:
    """One server's metrics. ``transports``: the transports it serves (their labels exist
    from the start; the hot-path children are in ``latency_by``, ``deliveries_by`` and
    ``connections_by``, keyed by :class:`~rtsim.core.transport.Transport`)."""

    def __init__(self, transports: Iterable[Transport]) -> None:
        served = tuple(transports)
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge(
            "rtsim_connections", "Open connections (waiting polls for long polling)",
            ["transport"], registry=r,
        )  # fmt: skip
        self.connections_opened = Counter(
            "rtsim_connections_opened", "Connections accepted", ["transport"], registry=r
        )
        self.rejected = Counter(
            "rtsim_rejected", "Requests or connections refused, by reason", ["reason"], registry=r
        )
        self.token_expired = Counter(
            "rtsim_token_expired",
            "Connections ended because their token expired",
            ["transport"],
            registry=r,
        )
        self.latency = Histogram(
            "rtsim_delivery_latency_seconds",
            "Publish to send (handed to the socket), per delivery",
            ["transport"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.deliveries = Counter(
            "rtsim_deliveries", "Messages handed to a client socket", ["transport"], registry=r
        )
        self.published = Counter("rtsim_published", "Messages published", registry=r)
        self.fanout = Histogram(
            "rtsim_fanout",
            "Streaming subscribers (WebSocket + SSE) a message was queued for",
            buckets=_FANOUT_BUCKETS,
            registry=r,
        )
        self.reconnections = Counter(
            "rtsim_reconnections",
            "Subscriptions that resumed from a client's last id",
            ["transport"],
            registry=r,
        )
        self.replayed = Counter(
            "rtsim_replayed", "Messages sent from the replay log on resume", registry=r
        )
        self.gaps = Counter(
            "rtsim_replay_gaps", "Resumes older than the replay log holds (gap sent)", registry=r
        )
        self.slow_drops = Counter(
            "rtsim_slow_consumer_drops",
            "Connections closed because their send queue was full",
            ["transport"],
            registry=r,
        )
        self.send_failures = Counter(
            "rtsim_send_failures",
            "Connections dropped because a send to them raised (the others are unaffected)",
            ["transport"],
            registry=r,
        )
        self.errors = Counter(
            "rtsim_protocol_errors", "Error answers to clients, by code", ["code"], registry=r
        )
        self.presence_members = Gauge(
            "rtsim_presence_members", "Members present over all channels", registry=r
        )
        self.presence_expired = Counter(
            "rtsim_presence_expired", "Members removed because their TTL ran out", registry=r
        )
        self.overloaded = Gauge(
            "rtsim_overloaded", "1 while the server sends clients to polling (overload)",
            registry=r,
        )  # fmt: skip
        self.degraded = Counter(
            "rtsim_degraded",
            "Clients told to step down: degrade frames/events, degraded long polls, 503 refusals",
            registry=r,
        )
        self.transport_level = Gauge(
            "rtsim_transport_level",
            "The best transport clients may use: 0 WebSocket, 1 SSE, 2 long polling, 3 polling"
            " (overload, or a facilitator's step-down)",
            registry=r,
        )
        self.interval_polls = Counter(
            "rtsim_interval_polls",
            "Polls answered at once (timeout=0): interval polling, about poll_s x this rate"
            " clients",
            registry=r,
        )
        self.loop_lag = Gauge(
            "rtsim_loop_lag_seconds", "Event-loop lag, the last sample", registry=r
        )
        # Resolved children for the hot path (label lookups cost more than the increment).
        self.latency_by = {t: self.latency.labels(t.value) for t in served}
        self.deliveries_by = {t: self.deliveries.labels(t.value) for t in served}
        self.connections_by = {t: self.connections.labels(t.value) for t in served}
        for t in served:
            self.connections_opened.labels(t.value)
            self.reconnections.labels(t.value)
            self.slow_drops.labels(t.value)
            self.send_failures.labels(t.value)
            self.token_expired.labels(t.value)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The current value of sample ``name`` (e.g. ``"rtsim_published_total"``), else 0."""
        value = self.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value
