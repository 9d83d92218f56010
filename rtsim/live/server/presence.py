"""Presence on the live server: the core tracker, the event loop's clock and a timer task.

:class:`PresenceService` feeds the core :class:`~rtsim.core.presence.PresenceTracker`
(unchanged) with what clients say, broadcasts the events it returns to the channel's
subscribers, and runs the one timer the tracker asks for (:meth:`next_deadline`), calling
:meth:`expire` when it fires. A resource is a channel; a member is ``"user:client"``.

Presence frames (WebSocket ``presence``, SSE ``event: presence``)::

    {"type": "presence", "channel": C, "event": "snapshot", "members": {M: state, ...}}
    {"type": "presence", "channel": C, "event": "join" | "update", "client": M, "state": {...}}
    {"type": "presence", "channel": C, "event": "leave", "client": M, "reason": "left" | "expired"}
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from rtsim.core.presence import Event, Join, Leave, LeaveReason, PresenceTracker, Update

from ..tasks import cancel_and_wait
from .metrics import Metrics

__all__ = ["PresenceService", "event_frame", "snapshot_frame"]


def event_frame(event: Event) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "presence", "channel": event.resource}
    if isinstance(event, Leave):
        frame.update(event="leave", client=event.client, reason=event.reason.value)
    elif isinstance(event, Join):
        frame.update(event="join", client=event.client, state=dict(event.state))
    elif isinstance(event, Update):
        frame.update(event="update", client=event.client, state=dict(event.state))
    return frame


def snapshot_frame(channel: str, members: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "type": "presence",
        "channel": channel,
        "event": "snapshot",
        "members": {m: dict(s) for m, s in members.items()},
    }


class PresenceService:
    """Drives one :class:`PresenceTracker` from the event loop.

    Args:
        timeout_s: a member is gone after this long without a message from it.
        send: ``send(channel, frame)`` broadcasts a frame to the channel's subscribers.
        metrics: the server's metrics (members gauge, expiries).
        clock: the time source (defaults to the running loop's ``time()``).
    """

    def __init__(
        self,
        timeout_s: float,
        send: Callable[[str, dict[str, Any]], None],
        metrics: Metrics,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.tracker = PresenceTracker(timeout_s)
        self._send = send
        self._metrics = metrics
        self._clock = clock
        self._rearm = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._timer())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    # --- inputs ------------------------------------------------------------------------
    def set(self, channel: str, member: str, state: Mapping[str, Any]) -> None:
        """``member`` joins ``channel`` with ``state``, or changes its state."""
        self._emit(self.tracker.join(channel, member, state, now=self._now()))

    def heartbeat(self, channel: str, member: str, state: Mapping[str, Any] | None) -> None:
        self._emit(self.tracker.heartbeat(channel, member, now=self._now(), state=state))

    def leave(self, channel: str, member: str) -> None:
        self._emit(self.tracker.leave(channel, member, now=self._now()))

    def snapshot(self, channel: str) -> dict[str, Any]:
        return snapshot_frame(channel, self.tracker.snapshot(channel).members)

    # --- internals ---------------------------------------------------------------------
    def _emit(self, events: list[Event]) -> None:
        for ev in events:
            self._send(ev.resource, event_frame(ev))
            if isinstance(ev, Leave) and ev.reason is LeaveReason.EXPIRED:
                self._metrics.presence_expired.inc()
        self._metrics.presence_members.set(len(self.tracker))
        self._rearm.set()

    async def _timer(self) -> None:
        """Sleep until the tracker's next deadline (or until re-armed), then expire."""
        while True:
            deadline = self.tracker.next_deadline()
            self._rearm.clear()
            if deadline is None:
                await self._rearm.wait()
                continue
            delay = deadline - self._now()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._rearm.wait(), delay)
                continue
            self._emit(self.tracker.expire(self._now()))
