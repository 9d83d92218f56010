"""The parameters of the architecture model (:mod:`rtsim.sim.architecture`) and their sources.

:class:`ArchitectureParams` declares every field but ``backoff`` and ``profile`` once with
:func:`~rtsim.core.params.param`: its default, bounds, unit, help text and where the
default comes from (the article's claim, a product's documented setting, or a stated
assumption). The CLI builds its flags from that metadata and :data:`DEFAULTS_SOURCES`
(shown in notebook 05) is derived from it. Construction validates every field and raises
``ValueError`` naming the field; an unknown broker name raises ``ValueError`` too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..core.backoff import Backoff
from ..core.params import param, sources, validate
from .brokers import PROFILES, Broker, BrokerProfile, parse_broker

__all__ = ["DEFAULTS_SOURCES", "ArchitectureParams"]

_BROKERS = tuple(b.value for b in Broker)


@dataclass(frozen=True)
class ArchitectureParams:
    """One run of the architecture.

    Every field but ``backoff`` and ``profile`` is declared once with
    :func:`~rtsim.core.params.param` (bounds, unit, help, source) and validated in
    ``__post_init__`` (``ValueError`` naming the field); also ``topics <= clients`` and
    something must be published. :data:`DEFAULTS_SOURCES` is derived from the metadata.
    """

    clients: int = param(
        100_000,
        lo=1,
        unit="clients",
        help="concurrent users",
        source="100,000 concurrent users: the article's claim C11",
    )
    duration_s: float = param(
        600.0, lo=0, lo_open=True, unit="s", help="simulated time", flag="duration"
    )
    broker: Broker = param(Broker.REDIS_STREAMS, choices=_BROKERS, help="message broker")
    instances: int = param(4, lo=1, help="real-time server instances")
    user_rate: float = param(
        1 / 60,
        lo=0,
        unit="msg/s",
        help="notifications per user per second",
        source="1 notification per user per minute (assumption: a busy app)",
    )
    topics: int = param(
        10,
        lo=0,
        help="topic channels; client c follows topic c % topics",
        source="10 broadcast channels (assumption)",
    )
    topic_rate: float = param(
        0.05,
        lo=0,
        unit="msg/s",
        help="messages per topic per second",
        source="one message every 20 s per topic (assumption)",
    )
    broadcast_rate: float = param(
        0.0,
        lo=0,
        unit="msg/s",
        help="messages per second on one channel every client follows",
        source="0: no broadcast channel (the article's scenario has none)",
    )
    cpu_decode_us: float = param(
        5.0,
        lo=0,
        unit="µs",
        help="instance CPU to decode and route one broker message",
        source="5 µs to decode and route one broker message (assumption)",
    )
    cpu_write_us: float = param(
        7.2,
        lo=0,
        unit="µs",
        help="instance CPU per frame written",
        source="7.2 µs per frame written: bare aiohttp send loop measured (docs/facts.md)",
    )
    rtt_ms: float = param(
        50.0,
        lo=0,
        unit="ms",
        help="client round trip",
        source="50 ms RTT, as in the transport model",
    )
    jitter_ms: float = param(
        5.0,
        lo=0,
        unit="ms",
        help="mean exponential one-way jitter",
        source="5 ms mean jitter, as in the transport model",
    )
    dc_transit_ms: float = param(
        0.25,
        lo=0,
        unit="ms",
        help="one way inside the data centre",
        source="0.25 ms one way inside the data centre (assumption)",
    )
    disconnects_per_hour: float = param(
        1.0,
        lo=0,
        unit="1/h",
        help="random disconnects per client",
        source="1 per client per hour (mobile networks; assumption)",
    )
    fault_at_s: float | None = param(
        None,
        kind="float",
        optional=True,
        unit="s",
        help="instance restart time (default: half-way; < 0: no fault)",
    )
    restart_s: float = param(
        10.0,
        lo=0,
        lo_open=True,
        unit="s",
        help="time for one instance to restart",
        source="10 s for one instance to restart (assumption)",
    )
    max_len: int = param(
        100_000,
        lo=1,
        unit="entries",
        help="stream history kept",
        source="100,000 entries of stream history (MAXLEN / max_msgs; assumption)",
    )
    linger_ms: float = param(5.0, lo=0, unit="ms", help="Kafka producer linger")
    partitions: int = param(6, lo=1, help="Kafka partitions")
    backoff: Backoff = field(default_factory=Backoff)
    profile: BrokerProfile | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "broker", parse_broker(self.broker))
        validate(self)
        if self.topics > self.clients:
            raise ValueError(f"topics ({self.topics}) must not exceed clients ({self.clients})")
        if not (
            self.user_rate > 0
            or (self.topics > 0 and self.topic_rate > 0)
            or self.broadcast_rate > 0
        ):
            raise ValueError(
                "nothing is published: set user_rate > 0, topics and topic_rate > 0,"
                " or broadcast_rate > 0"
            )

    @property
    def prof(self) -> BrokerProfile:
        return self.profile if self.profile is not None else PROFILES[self.broker]

    @property
    def fault_time(self) -> float | None:
        t = self.duration_s / 2 if self.fault_at_s is None else self.fault_at_s
        return None if t < 0 or t >= self.duration_s else t

    def with_(self, **changes: Any) -> ArchitectureParams:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["broker"] = self.broker.value
        d["backoff"] = f"{self.backoff.base_s}-{self.backoff.cap_s}s {self.backoff.jitter}"
        d["profile"] = asdict(self.prof)
        return d


#: Where the defaults of :class:`ArchitectureParams` come from (notebook 05); derived from
#: the fields' metadata plus the two defaults that are not fields.
DEFAULTS_SOURCES: dict[str, str] = {
    **sources(ArchitectureParams),
    "backoff": "Backoff(base 1 s, cap 30 s, full jitter) + 3 RTTs to reconnect",
    "broker service": "see rtsim.sim.brokers.DEFAULTS_SOURCES",
}
