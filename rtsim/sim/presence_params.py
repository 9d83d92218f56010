"""The parameters of the presence model (:mod:`rtsim.sim.presence`) and their sources.

:class:`PresenceParams` declares every field once with :func:`~rtsim.core.params.param`:
its default, bounds, unit, help text and where the default comes from (a measurement, a
product's documented setting, or a stated assumption). The CLI builds its flags from that
metadata and :data:`DEFAULTS_SOURCES` (shown in notebook 03) is derived from it.
Construction validates every field and raises ``ValueError`` naming the field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from ..core.params import param, sources, validate
from .network import Link

__all__ = ["DEFAULTS_SOURCES", "PresenceParams"]


@dataclass(frozen=True)
class PresenceParams:
    """Parameters of one presence run.

    Every field is declared once with :func:`~rtsim.core.params.param` (bounds, unit, help,
    source) and validated in ``__post_init__`` (``ValueError`` naming the field); also
    ``timeout_s >= heartbeat_s`` and ``viewers × resources <= 200,000``.
    :data:`DEFAULTS_SOURCES` is derived from the metadata.
    """

    viewers: int = param(10, lo=1, unit="viewers", help="viewers per resource")
    resources: int = param(10, lo=1, unit="resources", help="documents being viewed")
    heartbeat_s: float = param(
        30.0,
        lo=0,
        lo_open=True,
        unit="s",
        help="heartbeat interval",
        source="30 s: the article's 'heartbeat every 15–30 s' (claim C17)",
    )
    timeout_s: float = param(
        60.0,
        lo=0,
        lo_open=True,
        unit="s",
        help="offline after this long without a heartbeat (>= heartbeat)",
        source="60 s: the article's 'offline after 60 s without one' (claim C17)",
    )
    cursor_hz: float = param(
        60.0,
        lo=0,
        unit="Hz",
        help="cursor samples per moving viewer (0 = no cursors)",
        source="60 Hz: a browser samples the pointer once per animation frame",
    )
    throttle_hz: float = param(
        10.0,
        lo=0,
        unit="Hz",
        help="cursor throttle (0 = no throttle)",
        source="10 Hz: the article's 'throttle to 5–10 updates/s' (claim C16)",
    )
    loss: float = param(
        0.0,
        lo=0,
        hi=1,
        hi_open=True,
        unit="probability",
        help="probability a message is lost",
        source="0: no message lost unless asked; a lost heartbeat is a dropped connection",
    )
    duration_s: float = param(
        600.0, lo=0, lo_open=True, unit="s", help="simulated time", flag="duration"
    )
    rtt_ms: float = param(
        50.0,
        lo=0,
        unit="ms",
        help="network round trip",
        source="50 ms round trip (assumption, as in the transport model)",
    )
    jitter_ms: float = param(
        20.0,
        lo=0,
        unit="ms",
        help="mean exponential one-way jitter",
        source="20 ms mean exponential one-way jitter (assumption: a mobile-ish path)",
    )
    session_mean_s: float = param(
        1800.0,
        lo=0,
        lo_open=True,
        unit="s",
        help="mean stay on a document",
        source="30 min mean stay on a document (assumption)",
    )
    crash_fraction: float = param(
        0.3,
        lo=0,
        hi=1,
        unit="fraction",
        help="departures without a goodbye",
        source="30% of departures are crashes/closed lids with no goodbye (assumption)",
    )
    heartbeat_bytes: int = param(
        40,
        lo=1,
        unit="B",
        help="one heartbeat message",
        source='40 B: {"t":"hb","r":"doc-123","c":"u-4567"} (JSON)',
    )
    cursor_bytes: int = param(
        48,
        lo=1,
        unit="B",
        help="one cursor update",
        source='48 B: {"t":"cur","c":"u-4567","x":1234,"y":567} (JSON)',
    )
    member_event_bytes: int = param(
        96,
        lo=1,
        unit="B",
        help="one join/leave event",
        source="96 B: a join/leave with a small state (name, colour)",
    )
    cpu_per_message_us: float = param(
        7.2,
        lo=0,
        unit="µs",
        help="server CPU per message in or out",
        source="7.2 µs per message: bare aiohttp send loop measured (docs/facts.md)",
    )
    render_fps: float = param(60.0, lo=0, lo_open=True, unit="Hz", help="receiver frame rate")
    cursor_speed_px_s: float = param(
        400.0,
        lo=0,
        unit="px/s",
        help="RMS pointer speed while moving",
        source="400 px/s RMS pointer speed while moving (assumption)",
    )
    cursor_pairs: int = param(8, lo=0, help="sender/receiver pairs traced for cursor error")
    cursor_window_s: float = param(
        20.0, lo=0, lo_open=True, unit="s", help="time traced per cursor pair"
    )
    db_commits_per_s: float = param(
        6000.0,
        lo=0,
        lo_open=True,
        unit="commits/s",
        help="database capacity for presence writes",
        source="6,000 single-row UPDATE commits/s: SQLite, WAL, synchronous=FULL,"
        " measured 5.9–6.9k/s on this machine by benchmarks/bench_presence_store.py (a stand-in"
        " for a primary database with durable commits)",
    )
    ttl_ops_per_s: float = param(
        65000.0,
        lo=0,
        lo_open=True,
        unit="ops/s",
        help="TTL store capacity",
        source="65,000 Redis SET key EX ops/s: one Python client pipelining 100,"
        " measured 66–67k/s on this machine by benchmarks/bench_presence_store.py (one round"
        " trip each: 6.6–8.1k/s)",
    )
    cursor_engine: str = param(
        "closed-form",
        choices=("closed-form", "core"),
        help="closed-form cursor counts, or drive the core throttle for every viewer",
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.timeout_s < self.heartbeat_s:
            raise ValueError(
                f"timeout_s ({self.timeout_s:g}) must be >= heartbeat_s ({self.heartbeat_s:g}):"
                " a healthy viewer would go offline between two heartbeats"
            )
        if self.viewers * self.resources > 200_000:
            raise ValueError(
                f"viewers × resources must be <= 200,000 clients, got "
                f"{self.viewers * self.resources:,}; scale the result instead"
            )

    @property
    def link(self) -> Link:
        return Link(rtt_s=self.rtt_ms / 1000, jitter_s=self.jitter_ms / 1000)

    @property
    def cursor_rate_hz(self) -> float:
        """Updates per second one moving viewer actually sends: min(cursor, throttle)."""
        if self.cursor_hz == 0:
            return 0.0
        if self.throttle_hz == 0:
            return float(self.cursor_hz)
        return float(min(self.cursor_hz, self.throttle_hz))

    def with_(self, **changes: Any) -> PresenceParams:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Where the defaults of :class:`PresenceParams` come from (shown in notebook 03); derived
#: from the fields' metadata.
DEFAULTS_SOURCES: dict[str, str] = sources(PresenceParams)
