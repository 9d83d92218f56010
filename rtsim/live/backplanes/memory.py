"""The in-memory backplane: one process, no broker (the default).

:class:`MemoryBackplane` drives the core :class:`~rtsim.core.replaylog.ReplayLog`
unchanged, with the event loop's clock as ``now``. The interface it implements is
:class:`~rtsim.live.backplanes.base.Backplane`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rtsim.core.envelope import Envelope
from rtsim.core.replaylog import ReadResult, ReplayLog, parse_id

from .base import OnMessage

__all__ = ["MemoryBackplane"]


class MemoryBackplane:
    """One process, no broker: the core replay log in memory (the default).

    Args:
        max_len: messages kept per channel for replay.
        max_age_s: optional age limit of the replay log.
        clock: the time source (defaults to the running loop's ``time()``).
    """

    name = "memory"
    durable_replay = True

    @classmethod
    def from_url(
        cls, url: str, *, max_len: int = 1000, max_age_s: float | None = None
    ) -> MemoryBackplane:
        """``memory`` or ``memory://`` (no options); raises ``ValueError`` for anything else."""
        if url not in ("memory", "memory://"):
            raise ValueError(f"the memory backplane takes no host or options, got {url!r}")
        return cls(max_len=max_len, max_age_s=max_age_s)

    def __init__(
        self,
        max_len: int = 1000,
        max_age_s: float | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.log = ReplayLog(max_len=max_len, max_age_s=max_age_s)
        self._clock = clock
        self._on_message: OnMessage | None = None
        #: Never called: one process has no feed that could skip messages.
        self.on_feed_gap: Callable[[], object] | None = None

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    @property
    def epoch(self) -> str:
        """This server run's id space (random per instance: a restart starts a new one)."""
        return self.log.epoch

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
