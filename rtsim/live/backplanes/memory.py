"""The message bus behind the server: one small interface, an in-memory default.

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

:class:`MemoryBackplane` drives the core :class:`~rtsim.core.replaylog.ReplayLog`
unchanged, with the event loop's clock as ``now``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from rtsim.core.envelope import Envelope
from rtsim.core.replaylog import ReadResult, ReplayLog, parse_id

__all__ = ["Backplane", "MemoryBackplane", "OnMessage", "make_backplane"]

OnMessage = Callable[[Envelope], None]


@runtime_checkable
class Backplane(Protocol):
    """What the server needs from a message bus (see the module docstring)."""

    name: str
    durable_replay: bool

    async def start(self, on_message: OnMessage) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, channel: str, data: Any) -> Envelope: ...

    async def read_after(
        self, channel: str, after_id: str, limit: int | None = None
    ) -> ReadResult: ...

    async def latest_id(self, channel: str) -> str: ...

    def order_key(self, message_id: str) -> tuple[int, ...]: ...

    def healthy(self) -> bool: ...


class MemoryBackplane:
    """One process, no broker: the core replay log in memory (the default).

    Args:
        max_len: messages kept per channel for replay.
        max_age_s: optional age limit of the replay log.
        clock: the time source (defaults to the running loop's ``time()``).
    """

    name = "memory"
    durable_replay = True

    def __init__(
        self,
        max_len: int = 1000,
        max_age_s: float | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.log = ReplayLog(max_len=max_len, max_age_s=max_age_s)
        self._clock = clock
        self._on_message: OnMessage | None = None

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message

    async def close(self) -> None:
        self._on_message = None

    async def publish(self, channel: str, data: Any) -> Envelope:
        env = self.log.append(channel, data, now=self._now())
        if self._on_message is not None:
            self._on_message(env)
        return env

    async def read_after(self, channel: str, after_id: str, limit: int | None = None) -> ReadResult:
        return self.log.read_after(channel, after_id, limit, now=self._now())

    async def latest_id(self, channel: str) -> str:
        return self.log.latest_id(channel)

    def order_key(self, message_id: str) -> tuple[int, ...]:
        return (parse_id(message_id),)

    def healthy(self) -> bool:
        return True


def make_backplane(url: str, *, max_len: int = 1000, max_age_s: float | None = None) -> Backplane:
    """The backplane named by ``url``: ``memory`` (default), ``redis-streams://HOST:PORT``,
    ``redis-pubsub://HOST:PORT`` or ``nats://HOST:PORT`` (JetStream); see
    :mod:`rtsim.live.redis_backplane` and :mod:`rtsim.live.nats_backplane` for options."""
    if url in ("memory", "memory://"):
        return MemoryBackplane(max_len=max_len, max_age_s=max_age_s)
    from .base import make_broker_backplane  # imports redis / nats only when asked

    return make_broker_backplane(url, max_len=max_len, max_age_s=max_age_s)
