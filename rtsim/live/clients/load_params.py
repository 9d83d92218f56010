"""The parameters of one load run (:func:`rtsim.live.clients.loadgen.run_load`), validated
on construction (``ValueError`` naming the field)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from rtsim.core.transport import Transport, parse_transport

from .transports import CLIENT_TRANSPORTS, LOAD_LP_CLIENTS, LOAD_SSE_CLIENTS, LOAD_WS_CLIENTS

__all__ = ["LoadParams"]


def _choices(names: Sequence[str]) -> str:
    """``"a, b or c"``."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


@dataclass(frozen=True)
class LoadParams:
    """One load run. ``url`` is the server's base URL (``http://host:port``).

    ``publish_url``: the server the publisher sends to (None: ``url``). With two instances
    joined by a backplane, the subscribers connect to ``url`` and the messages are
    published on ``publish_url``, so every delivery crosses the broker.
    """

    url: str
    transport: Transport = Transport.WEBSOCKET
    subscribers: int = 100
    channels: int = 1
    rate: float = 100.0  # messages published per second, over all channels
    duration_s: float = 10.0
    payload_bytes: int = 100
    token: str | None = None
    processes: int = 0  # 0: one per core, at most one per 100 subscribers
    settle_s: float = 2.0  # wait for stragglers after the last publish
    ws_path: str = "/ws"
    server_pid: int | None = None  # read RSS/CPU from /proc instead of /metrics
    kill_before_publish: int = 0  # subscribers that disconnect before publishing starts
    connect_timeout_s: float = 60.0
    traced: int = 200  # messages (spread evenly) that carry a trace key: stage timestamps
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    publish_url: str | None = None
    ws_client: str = "raw"
    sse_client: str = "raw"
    lp_client: str = "raw"

    def __post_init__(self) -> None:
        object.__setattr__(self, "transport", parse_transport(self.transport))
        checks = [
            (_http_url(self.url), f"url must be http(s)://host:port, got {self.url!r}"),
            (
                self.publish_url is None or _http_url(self.publish_url),
                f"publish_url must be http(s)://host:port, got {self.publish_url!r}",
            ),
            (
                self.transport in CLIENT_TRANSPORTS,
                "transport must be " + _choices([t.value for t in CLIENT_TRANSPORTS]),
            ),
            (
                self.ws_client in LOAD_WS_CLIENTS,
                f"ws_client must be {_choices(list(LOAD_WS_CLIENTS))}, got {self.ws_client!r}",
            ),
            (
                self.sse_client in LOAD_SSE_CLIENTS,
                f"sse_client must be {_choices(list(LOAD_SSE_CLIENTS))}, got {self.sse_client!r}",
            ),
            (
                self.lp_client in LOAD_LP_CLIENTS,
                f"lp_client must be {_choices(list(LOAD_LP_CLIENTS))}, got {self.lp_client!r}",
            ),
            (self.subscribers >= 1, f"subscribers must be >= 1, got {self.subscribers}"),
            (
                1 <= self.channels <= self.subscribers,
                f"channels must be between 1 and subscribers, got {self.channels}",
            ),
            (math.isfinite(self.rate) and self.rate > 0, f"rate must be > 0, got {self.rate}"),
            (
                math.isfinite(self.duration_s) and self.duration_s > 0,
                f"duration must be > 0, got {self.duration_s}",
            ),
            (self.payload_bytes >= 0, f"payload_bytes must be >= 0, got {self.payload_bytes}"),
            (self.processes >= 0, f"processes must be >= 0, got {self.processes}"),
            (self.traced >= 0, f"traced must be >= 0, got {self.traced}"),
            (self.settle_s >= 0, f"settle_s must be >= 0, got {self.settle_s}"),
            (
                0 <= self.kill_before_publish <= self.subscribers,
                "kill_before_publish must be between 0 and subscribers",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def publisher_url(self) -> str:
        """The server the publisher sends to: ``publish_url``, else ``url``."""
        return self.publish_url or self.url

    @property
    def messages(self) -> int:
        return max(1, round(self.rate * self.duration_s))

    @property
    def trace_every(self) -> int:
        """Every how many messages one is traced (0: none)."""
        if self.traced == 0:
            return 0
        return max(1, self.messages // self.traced)

    @property
    def load_client(self) -> str:
        """The library the subscribers of this run use: ``ws_client`` for WebSocket,
        ``sse_client`` for SSE, ``lp_client`` for long polling."""
        if self.transport is Transport.WEBSOCKET:
            return self.ws_client
        return self.sse_client if self.transport is Transport.SSE else self.lp_client

    def channel_name(self, k: int) -> str:
        return f"load-{self.run_id}-{k % self.channels}"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["transport"] = self.transport.value
        d.pop("token")
        return d


# --- subscribers (worker processes) -------------------------------------------------------
