"""What every broker backplane shares: the connection supervisor, its state and its metrics.

A :class:`BrokerBackplane` keeps one background task, the *supervisor*: connect, run the
feed (the loop that receives every message from the broker and hands it to the server),
and when the broker goes away, mark the backplane down, wait a backoff delay (the core
:class:`~rtsim.core.backoff.Backoff` policy, capped exponential with full jitter) and try
again. While it is down:

* local WebSocket/SSE connections stay open (they just receive nothing new);
* ``/healthz`` says ``"degraded"`` with the broker's state, and ``/metrics`` has
  ``rtsim_backplane_up 0`` plus outage and reconnect counters (:class:`BackplaneCollector`);
* :meth:`publish` raises :class:`BackplaneUnavailable`, which the server answers with
  ``503 {"error": {"code": "backplane_unavailable"}}`` (an ``error`` frame over WebSocket):
  a message the broker did not take is refused, never accepted and dropped.

When the connection is back, the feed resumes after the last message it delivered (Redis
Streams and JetStream), so connected clients get what was published in between.

Logging (logger ``rtsim.live.backplane``): one line per change of state after the start,
"unreachable … retrying" (WARNING) and "reachable again" (INFO); failed retries while it is
down are logged at DEBUG only, never with a traceback. The state at the start is for the
owner to report (``rtsim serve`` does, see :func:`rtsim.live.server.broker_note`).

Subclasses implement ``_connect``, ``_run`` (returns only on close, raises on a broker
error) and ``_disconnect``. URLs carry their options as query parameters, see
:func:`parse_broker_url`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rtsim.core.backoff import Backoff

from ..protocol import ProtocolError
from .memory import Backplane, OnMessage

__all__ = [
    "BackplaneCollector",
    "BackplaneUnavailable",
    "BrokerBackplane",
    "BrokerStats",
    "BrokerUrl",
    "make_broker_backplane",
    "parse_broker_url",
]

log = logging.getLogger("rtsim.live.backplane")

_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class BackplaneUnavailable(ProtocolError):
    """The broker cannot take the request now (the server answers 503)."""

    def __init__(self, message: str) -> None:
        super().__init__("backplane_unavailable", message)


@dataclass(frozen=True)
class BrokerUrl:
    """A parsed ``scheme://host:port?option=value&...`` backplane URL."""

    scheme: str
    host: str
    port: int
    options: dict[str, str] = field(default_factory=dict)

    def take_int(self, name: str, default: int, minimum: int = 1) -> int:
        raw = self.options.pop(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"backplane option {name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise ValueError(f"backplane option {name} must be >= {minimum}, got {value}")
        return value

    def take_float(self, name: str, default: float) -> float:
        raw = self.options.pop(name, None)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"backplane option {name} must be a number, got {raw!r}") from None
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"backplane option {name} must be > 0, got {raw}")
        return value

    def take_choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.options.pop(name, default)
        if value not in choices:
            raise ValueError(f"backplane option {name} must be one of {choices}, got {value!r}")
        return value

    def take_prefix(self, default: str = "rtsim") -> str:
        value = self.options.pop("prefix", default)
        if not _PREFIX.match(value):
            raise ValueError(
                f"backplane option prefix must be 1..64 letters, digits, _ or -, got {value!r}"
            )
        return value

    def take_backoff(self) -> Backoff:
        base = self.take_float("backoff_base", 0.25)
        cap = self.take_float("backoff_cap", 5.0)
        return Backoff(base_s=base, cap_s=max(cap, base))

    def done(self) -> None:
        """Raise if an option was given that nobody took."""
        if self.options:
            raise ValueError(
                f"unknown {self.scheme} backplane option(s): {', '.join(sorted(self.options))}"
            )

    @property
    def address(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_broker_url(url: str, default_port: int) -> BrokerUrl:
    """Split a backplane URL; options are the query parameters (each given at most once)."""
    parts = urlsplit(url)
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError(f"backplane URL {url!r} must be scheme://HOST:PORT[?option=value&...]")
    try:
        port = parts.port or default_port
    except ValueError:
        raise ValueError(f"backplane URL {url!r} has an invalid port") from None
    options: dict[str, str] = {}
    for k, v in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if k in options:
            raise ValueError(f"backplane option {k} given twice in {url!r}")
        options[k] = v
    return BrokerUrl(parts.scheme, parts.hostname or "127.0.0.1", port, options)


@dataclass
class BrokerStats:
    """Counters of one backplane's connection to its broker (read by metrics and /healthz)."""

    outages: int = 0  # up -> down transitions
    reconnects: int = 0  # down -> up transitions after the first connection
    connect_failures: int = 0  # attempts that failed
    publish_rejected: int = 0  # publishes refused (503) because the broker was unreachable
    feed_gaps: int = 0  # the feed found that the broker dropped messages it had not delivered
    last_error: str = ""
    down_since: float | None = None  # loop time of the last up -> down transition


def wall_to_loop(wall_ts: float) -> float:
    """A wall-clock timestamp (another process's) on this process's event-loop clock.

    The server measures publish → send latency on the loop clock; brokers carry the
    publisher's wall clock, so a message published on another instance (or host, up to
    clock skew) still gets a meaningful latency.
    """
    return wall_ts + (asyncio.get_running_loop().time() - time.time())


class BrokerBackplane(abc.ABC):
    """Base class: supervision, state, health and the metrics of a broker connection."""

    name = "broker"
    durable_replay = True

    def __init__(self, url: BrokerUrl, backoff: Backoff, start_wait_s: float = 2.0) -> None:
        self.url = url
        self.backoff = backoff
        self.stats = BrokerStats()
        self.start_wait_s = start_wait_s
        self._rng = np.random.default_rng()
        self._on_message: OnMessage | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._up = False
        self._ever_up = False
        self._first: asyncio.Event | None = None  # set after the first connection attempt
        self._started = False  # start() returned: from now on state changes are logged

    # --- what each broker implements -------------------------------------------------
    @abc.abstractmethod
    async def _connect(self) -> None:
        """Open the broker connection (raise on failure; the supervisor retries)."""

    @abc.abstractmethod
    async def _run(self) -> None:
        """Read the shared feed and hand each message to ``on_message`` until it fails."""

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Close the broker connection."""

    # --- life cycle --------------------------------------------------------------------
    async def start(self, on_message: OnMessage) -> None:
        """Start the supervisor; wait for the first connection attempt to end (at most
        ``start_wait_s`` seconds, 2 s by default).

        The server starts even if the broker is down (refused at once or silent): it runs
        degraded and connects as soon as the broker is reachable.
        """
        self._on_message = on_message
        self._first = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._supervise())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first.wait(), self.start_wait_s)
        self._started = True

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self._disconnect()
        self._on_message = None

    async def _supervise(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                await self._connect()
                self._set_up(True)
                attempt = 0
                await self._run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if not self._up:
                    self.stats.connect_failures += 1
                log.debug("backplane %s: %s", self.url.address, self.stats.last_error)
            finally:
                self._set_up(False)
                with contextlib.suppress(Exception):
                    await self._disconnect()
            if self._first is not None:
                self._first.set()  # the first attempt failed: start() need not wait on
            if self._closing:
                return
            await asyncio.sleep(self.backoff.delay(attempt, self._rng))
            attempt += 1

    def _set_up(self, up: bool) -> None:
        if up == self._up:
            return
        self._up = up
        if up:
            if self._ever_up:
                self.stats.reconnects += 1
            self._ever_up = True
            self.stats.down_since = None
            if self._first is not None:
                self._first.set()
            if self._started:
                log.info("backplane %s: broker reachable again", self.url.address)
        else:
            self.stats.outages += 1
            self.stats.down_since = asyncio.get_running_loop().time()
            if self._started and not self._closing:
                log.warning(
                    "backplane %s: broker unreachable (%s); retrying in the background",
                    self.url.address,
                    self.stats.last_error or "connection lost",
                )

    def _deliver(self, env: Any) -> None:
        if self._on_message is not None:
            self._on_message(env)

    # --- state ---------------------------------------------------------------------------
    def healthy(self) -> bool:
        return self._up

    def _unavailable(self, exc: BaseException | None = None) -> BackplaneUnavailable:
        self.stats.publish_rejected += 1
        why = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
        return BackplaneUnavailable(
            f"the {self.name} broker at {self.url.address} is unreachable{why};"
            " the message was not published — retry later"
        )

    def status(self) -> dict[str, Any]:
        """The broker's state for ``/healthz``."""
        down_for = None
        if self.stats.down_since is not None:
            down_for = round(asyncio.get_running_loop().time() - self.stats.down_since, 3)
        return {
            "broker": self.url.address,
            "connected": self._up,
            "durable_replay": self.durable_replay,
            "down_for_s": down_for,
            "outages": self.stats.outages,
            "reconnects": self.stats.reconnects,
            "publish_rejected": self.stats.publish_rejected,
            "last_error": self.stats.last_error or None,
        }


class BackplaneCollector(Collector):
    """Prometheus metrics of any backplane: up, outages, reconnects, refused publishes."""

    def __init__(self, backplane: Any) -> None:
        self.backplane = backplane

    def collect(self) -> Iterator[Metric]:
        bp = self.backplane
        labels = [str(getattr(bp, "name", "?"))]
        up = GaugeMetricFamily(
            "rtsim_backplane_up", "1 while the backplane's broker is reachable", labels=["name"]
        )
        up.add_metric(labels, 1.0 if bp.healthy() else 0.0)
        yield up
        durable = GaugeMetricFamily(
            "rtsim_backplane_durable_replay",
            "1 if resume replays from the broker, 0 if only from this server's buffer",
            labels=["name"],
        )
        durable.add_metric(labels, 1.0 if getattr(bp, "durable_replay", True) else 0.0)
        yield durable
        stats = getattr(bp, "stats", None) or BrokerStats()
        for attr, doc in (
            ("outages", "Times the broker became unreachable"),
            ("reconnects", "Times the connection to the broker was re-established"),
            ("connect_failures", "Failed attempts to connect to the broker"),
            ("publish_rejected", "Publishes refused (503) because the broker was unreachable"),
            ("feed_gaps", "Times the broker had dropped messages before this server read them"),
        ):
            c = CounterMetricFamily(f"rtsim_backplane_{attr}", doc, labels=["name"])
            c.add_metric(labels, float(getattr(stats, attr)))
            yield c


SCHEMES = ("redis-streams", "redis-pubsub", "nats")


def make_broker_backplane(
    url: str, *, max_len: int = 1000, max_age_s: float | None = None
) -> Backplane:
    """A broker backplane for ``url`` (``max_len``: messages kept per channel by default)."""
    scheme = url.partition("://")[0]
    if scheme in ("redis-streams", "redis-pubsub"):
        from .redis import RedisPubSubBackplane, RedisStreamsBackplane

        parsed = parse_broker_url(url, 6379)
        if scheme == "redis-streams":
            return RedisStreamsBackplane(parsed, max_len=max_len)
        return RedisPubSubBackplane(parsed, max_len=max_len, max_age_s=max_age_s)
    if scheme == "nats":
        from .nats import JetStreamBackplane

        return JetStreamBackplane(parse_broker_url(url, 4222), max_len=max_len)
    raise ValueError(
        f"unknown backplane {url!r}; available: memory, redis-streams://HOST:PORT,"
        " redis-pubsub://HOST:PORT, nats://HOST:PORT"
    )
