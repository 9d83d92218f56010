"""The parameters of the transport model (:mod:`rtsim.sim.transports`) and their sources.

:class:`TransportParams` declares every field once with :func:`~rtsim.core.params.param`:
its default, bounds, unit, help text and where the default comes from (a measurement on
this machine, an RFC, a product's documented setting, or a stated assumption; see
``docs/facts.md``). The CLI builds its ``rtsim simulate transports`` flags from that
metadata and :data:`DEFAULTS_SOURCES` (shown in notebook 01) is derived from it.
Construction validates every field and raises ``ValueError`` naming the field.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..core.backoff import Backoff
from ..core.params import param, sources, validate
from ..core.transport import LONG_POLL_HOLD_S, Transport, parse_transport
from .network import Link

__all__ = ["DEFAULTS_SOURCES", "KIB", "TransportParams"]

KIB = 1024

_TRANSPORTS = tuple(t.value for t in Transport)


@dataclass(frozen=True)
class TransportParams:
    """Parameters of one transport run.

    Every field is declared once with :func:`~rtsim.core.params.param` (bounds, unit, help,
    source); ``__post_init__`` validates them all and raises ``ValueError`` naming the
    field (``loss must be in [0, 1), got 1.5``). :data:`DEFAULTS_SOURCES` is derived.
    """

    transport: Transport = param(
        Transport.WEBSOCKET, choices=_TRANSPORTS, help="how messages reach the clients"
    )
    clients: int = param(100, lo=1, unit="clients", help="subscribed clients (browsers)")
    rate: float = param(
        10.0, lo=0, lo_open=True, unit="messages/s", help="messages published, over all channels"
    )
    duration_s: float = param(
        60.0, lo=0, lo_open=True, unit="s", help="simulated time", flag="duration"
    )
    channels: int = param(1, lo=1, help="channels; clients subscribe round robin")
    payload_bytes: int = param(
        100,
        lo=0,
        unit="B",
        help="application data per message",
        source="100 B of application data per message (a chat message / notification)",
    )
    rtt_ms: float = param(
        50.0,
        lo=0,
        unit="ms",
        help="network round trip",
        source="50 ms: a same-continent broadband/4G round trip (assumption; vary it)",
    )
    jitter_ms: float = param(
        5.0,
        lo=0,
        unit="ms",
        help="mean exponential one-way jitter",
        source="5 ms mean exponential one-way jitter (assumption)",
    )
    bandwidth_mbps: float = param(
        50.0,
        lo=0,
        lo_open=True,
        unit="Mbit/s",
        help="client downlink",
        source="50 Mbit/s client downlink (assumption); only matters for big payloads",
    )
    loss: float = param(
        0.0,
        lo=0,
        hi=1,
        hi_open=True,
        unit="probability",
        help="packet loss probability",
        source="0: no packet loss unless asked; RTO min 200 ms is Linux's TCP_RTO_MIN",
    )
    http_version: str = param("1.1", choices=("1.1", "2"), help="HTTP version (SSE, polling)")
    tls: bool = param(True, help="TLS handshake in the connection setup", cli=False)
    tabs_per_client: int = param(
        1, lo=1, unit="tabs", help="tabs per browser (SSE, claim C5)", flag="tabs"
    )
    cpu_per_delivery_us: float = param(
        7.2,
        lo=0,
        unit="µs",
        help="server CPU per message written to one connection",
        source="7.2 µs: bare aiohttp send loop measured on this machine (docs/facts.md);"
        " websockets broadcast() 8.7 µs, Node ws 10.2 µs",
    )
    cpu_per_request_us: float = param(
        100.0,
        lo=0,
        unit="µs",
        help="server CPU per HTTP request",
        source="100 µs per HTTP request: ~10k req/s/core, typical for an asyncio"
        " Python server (assumption; `rtsim compare` calibrates it)",
    )
    conn_memory_kib: float = param(
        15.7,
        lo=0,
        unit="KiB",
        help="server memory per connection",
        source="15.7 KiB per connection: websockets library measured here with"
        " compression off (docs/facts.md); Node ws 8.3 KiB; Centrifugo ~30 KB",
    )
    request_header_bytes: int = param(
        700,
        lo=0,
        unit="B",
        help="HTTP/1.1 request headers",
        source="700 B per HTTP/1.1 request: RFC 6202 / common 500–800+ B with"
        " cookies (docs/facts.md)",
    )
    response_header_bytes: int = param(
        250,
        lo=0,
        unit="B",
        help="HTTP/1.1 response headers",
        source="250 B per HTTP/1.1 response (assumption: status line, date,"
        " content-type, length, cache-control)",
    )
    hold_timeout_s: float = param(
        LONG_POLL_HOLD_S,
        lo=0,
        lo_open=True,
        unit="s",
        help="long-poll hold before an empty answer",
        source="25 s (rtsim.core.transport.LONG_POLL_HOLD_S): under the 30 s idle"
        " timeout common in proxies; the live server holds as long",
    )
    poll_interval_s: float = param(
        5.0,
        lo=0,
        lo_open=True,
        unit="s",
        help="polling interval",
        source="5 s: the article's 'poll every 5–10 s' fallback (claim C20)",
        flag="poll-interval",
    )
    max_h1_connections: int = param(
        6,
        lo=1,
        help="HTTP/1.1 connections per origin",
        source="6 HTTP/1.1 connections per origin (browsers; Mercure docs)",
    )
    reconnects_per_hour: float = param(
        0.0, lo=0, unit="1/h", help="random drops of a persistent connection per client"
    )
    backoff: Backoff = field(default_factory=Backoff)
    stable_after_s: float = param(
        5.0,
        lo=0,
        unit="s",
        help="connected this long before the backoff restarts (else it keeps growing)",
        source="5 s: reconnecting-websocket's minUptime (5000 ms), as the core policy",
    )
    # The clients' side, for comparing with a load generator on the same machine:
    # subscribers are spread over ``client_processes`` processes, each a FIFO CPU that
    # spends ``cpu_client_per_delivery_us`` per message received (0 processes: not modelled).
    client_processes: int = param(
        0,
        lo=0,
        help="client processes (0: clients' CPU not modelled)",
        source="0: the clients' CPU is not modelled (set it to compare with `rtsim load`)",
    )
    cpu_client_per_delivery_us: float = param(
        0.0, lo=0, unit="µs", help="client CPU per message received"
    )
    arrivals: str = param(
        "poisson",
        choices=("poisson", "constant"),
        help="publish schedule",
        source="poisson: many independent publishers; `compare` uses constant, like `rtsim load`",
    )
    # Cores shared by the server and the clients; when their CPU demand exceeds them, every
    # CPU cost is stretched by demand / cores (processor sharing). inf: not modelled.
    cores: float = param(
        math.inf,
        lo=0,
        lo_open=True,
        inf_ok=True,
        help="cores shared by server and clients (inf: not modelled)",
        source="inf: server and clients do not compete for CPU (2 on this machine for `compare`)",
        cli=False,
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "transport", parse_transport(self.transport))
        object.__setattr__(self, "http_version", str(self.http_version))
        validate(self)
        if self.channels > self.clients:
            raise ValueError(f"channels ({self.channels}) must not exceed clients ({self.clients})")

    @property
    def link(self) -> Link:
        return Link(
            rtt_s=self.rtt_ms / 1000,
            jitter_s=self.jitter_ms / 1000,
            bandwidth_bps=self.bandwidth_mbps * 1e6,
            loss=self.loss,
        )

    def with_(self, **changes: Any) -> TransportParams:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["transport"] = self.transport.value
        d["backoff"] = f"{self.backoff.base_s}-{self.backoff.cap_s}s/{self.backoff.jitter}"
        return d


#: Where every default of :class:`TransportParams` comes from (shown in notebook 01);
#: derived from the fields' metadata, plus the two defaults that are not fields.
DEFAULTS_SOURCES: dict[str, str] = {
    **sources(TransportParams),
    "h2_header_bytes": "40 B request / 20 B response headers with HPACK after the first"
    " request (assumption from RFC 7541 indexed fields) + 9 B frame headers",
    "setup_rtts": "TCP 1 RTT + TLS 1.3 1 RTT + HTTP request/upgrade 1 RTT",
    "backoff": "reconnect after Backoff(base 1 s, cap 30 s, full jitter)",
}
