"""What ``rtsim serve`` can set: :class:`ServerConfig`, validated once when it is built."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field

from rtsim.core.transport import LONG_POLL_HOLD_S, Transport, parse_transport

from .auth import check_secret

__all__ = ["ServerConfig"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``rtsim serve`` can set. Invalid values raise ``ValueError``.

    Defaults are the server's own (the CLI flags of ``rtsim serve`` repeat them); units
    are in the names (``_s`` seconds, ``_ms`` milliseconds, ``_bytes``). ``transports``
    names the enabled transports as :class:`~rtsim.core.transport.Transport` values
    (strings are converted); ``None`` enables every one the server serves
    (:data:`rtsim.live.server.app.SERVED`), and one the server does not serve is refused
    with ``ValueError`` when the server is built.

    Per-address limits (``request.remote``, the TCP peer; loopback clients count too, and
    ``X-Forwarded-For`` is not trusted, so behind a proxy every client shares its address):

    * ``max_connections_per_ip`` (default 1000): open connections (WebSocket, SSE, Yjs,
      waiting long polls) from one address; the next one gets 429
      ``too_many_connections_per_ip``. A tenth of ``max_connections``, so one address
      cannot take the whole server, yet far above what one person's browser opens and
      room for an office behind one NAT and for the load generator's usual runs from
      127.0.0.1 (``rtsim load`` defaults to 100 subscribers, ``rtsim compare`` to 200).
      Runs with more connections from one host raise it (``--max-connections-per-ip``).
    * ``publish_rate_per_ip`` (default 1000 messages/s, bursts of one second's worth):
      publishes (``POST /publish`` and WebSocket ``publish`` frames) from one address; the
      next one gets 429 ``too_many_publishes_per_ip``. Chat lines and cursor moves come at
      tens per second per person; 1000/s leaves room for a NAT and ten times the load
      generator's default rate (100/s) while one address cannot flood the backplane.

    Overload (:mod:`rtsim.live.server.overload`, claim C20):

    * ``overload_lag_ms`` (default 0: degradation off; 250 ms is the suggested setting):
      event-loop lag above which a sample counts as overloaded (3 in a row enter; 10 below
      half of it leave). Off by default because this server is a measuring instrument: a
      load test or ``rtsim compare`` near capacity must measure push delivery, not a
      server that has sent its clients to polling. With 250 ms: a healthy loop lags a few
      ms and a GC pause or a burst may cost 100 ms once; a timer a quarter of a second late
      three times in a row (about a second) means the loop cannot keep up, and every
      message is already that late for every client.
    * ``degrade_poll_s`` (default 5 s, the article's 5–10 s polling interval): how often
      degraded clients poll.
    * ``overload_sample_s`` (0.1 s): the lag timer's period; ``overload_hold_s`` (5 s, one
      polling interval): the least time between entering and leaving overload.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    secret: str | None = None
    backplane: str = "memory"
    replay_len: int = 1000  # messages kept per channel for resume
    replay_age_s: float | None = None
    max_frame_bytes: int = 65536  # WebSocket frames and HTTP bodies
    send_queue: int = 1024  # messages queued per connection before it counts as slow
    max_subscriptions: int = 100  # channels per connection
    max_connections: int = 10000  # WebSocket + SSE + Yjs + waiting long polls
    max_connections_per_ip: int = 1000  # see the class docstring for the reasons
    publish_rate_per_ip: float = 1000.0  # messages/s per address, burst of one second's worth
    max_errors: int = 20  # consecutive protocol errors before a WebSocket is closed
    presence_timeout_s: float = 60.0  # C17: offline after 60 s without a heartbeat
    keepalive_s: float = 15.0  # SSE comment keep-alive interval
    retry_ms: int = 2000  # SSE retry: hint
    poll_timeout_s: float = LONG_POLL_HOLD_S  # default long-poll hold
    poll_timeout_max_s: float = 60.0
    poll_batch: int = 1000  # messages per long-poll answer and channel
    ws_ping_s: float | None = 30.0  # WebSocket ping interval (None: off)
    close_grace_s: float = 2.0  # how long a close frame to a slow client may take
    transports: tuple[Transport, ...] | None = None  # enabled transports (None: all served)
    overload_lag_ms: float = 0.0  # see the class docstring; 0: never degrade (default)
    degrade_poll_s: float = 5.0  # the article's 5-10 s polling interval
    overload_sample_s: float = 0.1  # the lag timer's period
    overload_hold_s: float = 5.0  # least time between entering and leaving overload
    allow_open_remote: bool = field(default=False, repr=False)  # only for tests of the refusal

    def __post_init__(self) -> None:
        if not (0 <= self.port <= 65535):
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if self.secret is not None:
            check_secret(self.secret)
        if self.secret is None and not _is_loopback(self.host) and not self.allow_open_remote:
            raise ValueError(
                f"refusing open mode (no --secret) on non-loopback address {self.host!r};"
                " give --secret S or bind to 127.0.0.1"
            )
        for name in ("replay_len", "max_frame_bytes", "send_queue", "max_subscriptions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_connections", "max_connections_per_ip", "max_errors", "poll_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("presence_timeout_s", "keepalive_s", "poll_timeout_max_s", "close_grace_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be > 0, got {v}")
        if not (0 <= self.poll_timeout_s <= self.poll_timeout_max_s):
            raise ValueError(
                f"poll_timeout_s must be in 0..poll_timeout_max_s, got {self.poll_timeout_s}"
            )
        if not (math.isfinite(self.publish_rate_per_ip) and self.publish_rate_per_ip >= 1):
            raise ValueError(f"publish_rate_per_ip must be >= 1, got {self.publish_rate_per_ip}")
        if not (math.isfinite(self.overload_lag_ms) and self.overload_lag_ms >= 0):
            raise ValueError(f"overload_lag_ms must be >= 0, got {self.overload_lag_ms}")
        for name in ("degrade_poll_s", "overload_sample_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be > 0, got {v}")
        if not (math.isfinite(self.overload_hold_s) and self.overload_hold_s >= 0):
            raise ValueError(f"overload_hold_s must be >= 0, got {self.overload_hold_s}")
        if self.retry_ms < 0:
            raise ValueError(f"retry_ms must be >= 0, got {self.retry_ms}")
        if self.transports is not None:
            if isinstance(self.transports, str) or not self.transports:
                raise ValueError(
                    f"transports must be a non-empty tuple of transports, got {self.transports!r}"
                )
            parsed = tuple(dict.fromkeys(parse_transport(t) for t in self.transports))
            object.__setattr__(self, "transports", parsed)

    @property
    def open_mode(self) -> bool:
        return self.secret is None
