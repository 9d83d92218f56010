"""The backplane interface, and what every broker backplane shares.

A :class:`Backplane` assigns ids, keeps the replay log and tells the server about every
message published — by this server or, with a shared broker, by another instance. The
server never touches a log itself, so a Redis Streams or NATS JetStream backplane (issue
7) plugs in behind the same five methods:

* :meth:`~Backplane.start` ``(on_message)``: begin delivering; ``on_message(envelope)``
  is called once per message, in id order per channel, on the event loop;
* :meth:`~Backplane.publish` ``(channel, data)`` → the stored :class:`Envelope` (its id);
* :meth:`~Backplane.read_after` ``(channel, after_id, limit)`` → ``Messages`` or ``Gap``
  (the core replay log's answer types), raising ``ValueError`` for an id it cannot place;
* :meth:`~Backplane.latest_id` ``(channel)``: where "from now on" starts;
* :meth:`~Backplane.close`.

Plus :meth:`~Backplane.order_key` (ids compare by this key, for de-duplication) and
:attr:`~Backplane.durable_replay` (False for a broker that cannot replay, such as Redis
Pub/Sub, so the server can say so).

Broker backplanes
-----------------

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
owner to report (``rtsim serve`` does, see :func:`rtsim.live.server.app.broker_note`).

Subclasses set ``scheme`` and ``default_port`` and implement ``_connect``, ``_run``
(returns only on close, raises on a broker error) and ``_disconnect``. URLs carry their
options as query parameters, see :func:`parse_broker_url`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, TypeVar, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rtsim.core.backoff import Backoff
from rtsim.core.envelope import Envelope
from rtsim.core.positions import MalformedPositionError, split_epoch
from rtsim.core.replaylog import Gap, MalformedIdError, ReadResult

from ..protocol import ProtocolError
from ..tasks import cancel_and_wait

__all__ = [
    "Backplane",
    "BackplaneClass",
    "BackplaneCollector",
    "BackplaneUnavailable",
    "BrokerBackplane",
    "BrokerStats",
    "BrokerUrl",
    "OnMessage",
    "parse_broker_url",
    "wall_to_loop",
]

log = logging.getLogger("rtsim.live.backplane")

_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


OnMessage = Callable[[Envelope], None]


@runtime_checkable
class Backplane(Protocol):
    """What the server needs from a message bus (see the module docstring)."""

    name: str
    durable_replay: bool
    #: The id space ids belong to (docs/protocol.md "Epochs"): a cursor of another epoch is
    #: answered by ``read_after`` with a ``Gap(reason="epoch")`` of everything held.
    epoch: str
    #: Set by the server: called when the feed skipped messages, so live subscribers
    #: resume from their cursors (:attr:`BrokerBackplane.on_feed_gap`).
    on_feed_gap: Callable[[], object] | None

    async def start(self, on_message: OnMessage) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, channel: str, data: Any) -> Envelope: ...

    async def read_after(
        self, channel: str, after_id: str, limit: int | None = None
    ) -> ReadResult: ...

    async def latest_id(self, channel: str) -> str: ...

    def order_key(self, message_id: str) -> tuple[int, ...]: ...

    def healthy(self) -> bool: ...


class BackplaneClass(Protocol):
    """What the factory needs of a backplane class: build one from its URL.

    ``max_len`` (messages kept per channel) and ``max_age_s`` come from
    :class:`~rtsim.live.server.config.ServerConfig` (``replay_len``, ``replay_age_s``); a
    broker that trims by itself may ignore them or take its own from the URL's options.
    Raises ``ValueError`` for a malformed URL or an unknown option.
    """

    def from_url(
        self, url: str, *, max_len: int = 1000, max_age_s: float | None = None
    ) -> Backplane: ...


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
    reads_from_memory: int = 0  # reads answered from the feed's recent messages, no request
    broker_reads: int = 0  # read requests sent to the broker (one per message where it must)
    last_error: str = ""
    down_since: float | None = None  # loop time of the last up -> down transition


def wall_to_loop(wall_ts: float) -> float:
    """A wall-clock timestamp (another process's) on this process's event-loop clock.

    The server measures publish → send latency on the loop clock; brokers carry the
    publisher's wall clock, so a message published on another instance (or host, up to
    clock skew) still gets a meaningful latency.
    """
    return wall_ts + (asyncio.get_running_loop().time() - time.time())


_T = TypeVar("_T")

#: How long a publish whose answer timed out is sent again (s). Each broker stores such a
#: publish once: Redis Streams by the token its script checks, JetStream by ``Nats-Msg-Id``
#: within its duplicate window (2 min by default, longer than this).
PUBLISH_RETRY_S = 30.0


class BrokerBackplane(abc.ABC):
    """Base class: supervision, state, health and the metrics of a broker connection."""

    name = "broker"
    durable_replay = True
    #: The URL scheme (``redis-streams``…) and the port used when the URL gives none.
    scheme = ""
    default_port = 0

    @classmethod
    def from_url(cls, url: str, *, max_len: int = 1000, max_age_s: float | None = None) -> Self:
        """The backplane of ``url`` (``scheme://HOST[:PORT][?option=value&...]``); see
        :class:`BackplaneClass`. Raises ``ValueError`` for a bad URL or option."""
        parsed = parse_broker_url(url, cls.default_port)
        # Every concrete broker backplane takes (url, max_len, max_age_s).
        return cls(parsed, max_len=max_len, max_age_s=max_age_s)  # type: ignore[call-arg]

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
        #: The broker's id space (set on connect by each broker; "" until then).
        self.epoch = ""
        #: Called when the feed skipped messages (trimmed or lost before this server read
        #: them, or the stream re-created): live subscribers would miss them without a
        #: word, so the server makes them resume from their own cursors (the hub's
        #: :meth:`~rtsim.live.server.hub.Hub.resync`). None: only counted.
        self.on_feed_gap: Callable[[], object] | None = None

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

    # --- epochs ------------------------------------------------------------------------
    @staticmethod
    def _split(after_id: str) -> tuple[str | None, str]:
        """``(epoch or None, bare id)`` of a resume position; :class:`MalformedIdError`."""
        try:
            return split_epoch(after_id)
        except MalformedPositionError as exc:
            raise MalformedIdError(str(exc)) from None

    def _epoch_gap(self, read_from_start: ReadResult, after_id: str) -> Gap:
        """The answer to ``after_id`` of another epoch: ``read_from_start`` (a read after
        ``"0"``) as a ``Gap(reason="epoch")`` in the current epoch."""
        r = read_from_start
        first = r.messages[0].id if r.messages else None
        return Gap(
            channel=r.channel,
            after_id=after_id,
            missed=r.missed if isinstance(r, Gap) else 0,
            first_available_id=r.first_available_id if isinstance(r, Gap) else first,
            messages=r.messages,
            last_id=r.last_id,
            more=r.more,
            reason="epoch",
            epoch=self.epoch,
            resume_id="0",
        )

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
        await cancel_and_wait(self._task)
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
    def _feed_gap(self) -> None:
        """The feed skipped messages: count it and tell the server (:attr:`on_feed_gap`)."""
        self.stats.feed_gaps += 1
        log.warning(
            "%s: the feed skipped messages (trimmed before this server read them);"
            " live subscribers resume from their cursors",
            self.name,
        )
        if self.on_feed_gap is not None:
            self.on_feed_gap()

    def healthy(self) -> bool:
        return self._up

    async def _resend_on_timeout(
        self,
        send: Callable[[], Awaitable[_T]],
        timeouts: tuple[type[BaseException], ...],
        pause_s: float = 0.0,
    ) -> _T:
        """``await send()``, sent again (after ``pause_s`` seconds) each time it raises one of
        ``timeouts`` — the broker may have run it, so ``send`` must be idempotent (the same
        token or message id) — until it answers or :data:`PUBLISH_RETRY_S` pass; then raises
        :class:`BackplaneUnavailable` saying the outcome is unknown. Other errors propagate."""
        give_up = time.monotonic() + PUBLISH_RETRY_S
        while True:
            try:
                return await send()
            except timeouts as exc:
                if time.monotonic() >= give_up:
                    raise self._unavailable(exc, unknown=True) from None
                if pause_s:
                    await asyncio.sleep(pause_s)

    def _unavailable(
        self, exc: BaseException | None = None, *, unknown: bool = False
    ) -> BackplaneUnavailable:
        """The error for a publish or read the broker did not serve; ``unknown``: a publish
        that was sent but never answered (it may have been stored)."""
        self.stats.publish_rejected += 1
        why = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
        if unknown:
            return BackplaneUnavailable(
                f"the {self.name} broker at {self.url.address} did not answer{why};"
                " the message may or may not have been published"
            )
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
            "reads_from_memory": self.stats.reads_from_memory,
            "broker_reads": self.stats.broker_reads,
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
            ("reads_from_memory", "Resumes and polls answered from the feed's recent messages"),
            ("broker_reads", "Read requests sent to the broker"),
        ):
            c = CounterMetricFamily(f"rtsim_backplane_{attr}", doc, labels=["name"])
            c.add_metric(labels, float(getattr(stats, attr)))
            yield c
