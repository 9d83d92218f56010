"""Graceful degradation (claim C20, the server's side): under overload, or when a
facilitator steps the room down the cascade.

The server watches its own load: a periodic timer every ``overload_sample_s`` measures
how late it fires (the event loop's lag) and the fill of the fullest send queue, and feeds
both to the core :class:`~rtsim.core.overload.OverloadDetector` (hysteresis and a hold
time, so the server does not flap). While it is overloaded, rather than dropping anyone:

* new WebSocket and SSE connections get **503** with ``Retry-After`` (the interval in
  whole seconds, rounded up) and ``{"code": "degraded", "poll_s": …}`` (plus the usual
  ``error`` object);
* open ones get a ``degrade`` frame (WebSocket) / ``degrade`` event (SSE)
  ``{"type": "degrade", "poll_s": …}``, and held long polls are answered at once;
* every ``/poll`` answer carries ``"degraded": true`` and ``"poll_s"`` (``false`` once the
  server has recovered), so a client polls from its cursor with ``timeout=0`` every
  ``poll_s`` seconds — the replay log makes this lossless — and goes back to pushing when
  an answer says ``"degraded": false``.

The same mechanism takes a *ceiling*, the best rung the room may use: a facilitator
(:mod:`rtsim.live.server.facilitator`) steps the room WebSocket → SSE → long polling →
polling and back (:meth:`OverloadMonitor.set_ceiling`), so a workshop watches the cascade.
The server's :attr:`~OverloadMonitor.level` — the best transport clients may use — is
polling while overloaded, else the ceiling. When it moves down, open connections on a
better transport get ``{"type": "degrade", "poll_s", "transport": LEVEL}`` and new ones
the 503 (with ``"transport"``); when it moves up, open connections on a lesser transport
get ``{"type": "recover", "transport": LEVEL}``; held long polls are answered at once
either way, and ``/poll`` answers name the level (``"transport"``) whenever it is not
WebSocket. A client that was sent down steps up to the level named; one that fell back
by itself (e.g. a proxy blocks WebSockets) may ignore ``recover``.

Metrics: ``rtsim_overloaded`` (gauge, 0/1), ``rtsim_transport_level`` (gauge: the level's
rung, 0 WebSocket … 3 polling), ``rtsim_degraded_total`` (clients told to step down:
``degrade`` frames/events sent, long polls (``timeout`` > 0) answered degraded, connections
refused with 503), ``rtsim_loop_lag_seconds`` (the last lag sample). Yjs rooms are not
degraded (a y-websocket client cannot poll).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from rtsim.core.overload import Change, OverloadDetector
from rtsim.core.reconnect import rank
from rtsim.core.transport import Transport

from ..protocol import retry_after_header
from ..tasks import cancel_and_wait
from .hub import Control, Hub, Subscriber

if TYPE_CHECKING:
    from .config import ServerConfig
    from .metrics import Metrics

__all__ = ["DEGRADE", "DEGRADED", "RECOVER", "OverloadMonitor"]

#: The ``code`` of a 503 refusal while overloaded.
DEGRADED = "degraded"
#: The ``type`` of the frame (WebSocket) / name of the event (SSE) to open connections.
DEGRADE = "degrade"
#: The ``type`` of the frame / name of the event telling them they may step up again.
RECOVER = "recover"
_STREAMING = (Transport.WEBSOCKET, Transport.SSE)


class OverloadMonitor:
    """Watch the loop of one server and degrade its clients while it is overloaded.

    ``config``, ``metrics``, ``hub``: the server's (config: ``overload_lag_ms`` — 0 turns the
    monitor off —, ``overload_sample_s``, ``overload_hold_s``, ``degrade_poll_s``).
    :meth:`force` is the test hook: it overrides the detector until ``force(None)``.
    :meth:`set_ceiling` is the facilitator's step-down (default: none, WebSocket).
    """

    def __init__(self, config: ServerConfig, metrics: Metrics, hub: Hub) -> None:
        cfg = config
        self.metrics = metrics
        self.hub = hub
        self.poll_s = cfg.degrade_poll_s
        self.enabled = cfg.overload_lag_ms > 0
        self.detector = OverloadDetector(
            enter_lag_ms=cfg.overload_lag_ms if self.enabled else 1.0,
            hold_s=cfg.overload_hold_s,
        )
        self.sample_s = cfg.overload_sample_s
        self.overloaded = False
        self.ceiling = Transport.WEBSOCKET  # the facilitator's room level (none by default)
        self.lag_s = 0.0
        self._forced: bool | None = None
        self._task: asyncio.Task[None] | None = None

    # --- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.sample_s
            await asyncio.sleep(self.sample_s)
            now = loop.time()
            self.lag_s = max(0.0, now - due)
            self.metrics.loop_lag.set(self.lag_s)
            change = self.detector.sample(now, self.lag_s * 1000, self.queue_fill())
            if change is not None and self._forced is None:
                self._apply(change.overloaded)

    def queue_fill(self) -> float:
        """The fullest streaming send queue as a fraction of its bound (0..1).

        Subscribers with nothing queued (most of them, with the fan-out's direct writes) are
        skipped at once; one subscribed to several channels is simply looked at again.
        """
        fill = 0.0
        for subs in self.hub.subs.values():
            for s in subs:
                if s.queue and s.transport in _STREAMING and not s.closed:
                    fill = max(fill, (len(s.queue) - s.credit) / s.max_queue)
        return min(fill, 1.0)

    def _streaming(self) -> Iterable[Subscriber]:
        seen: dict[Subscriber, None] = {}
        for subs in self.hub.subs.values():
            for s in subs:
                if s.transport in _STREAMING and not s.closed:
                    seen[s] = None
        return seen

    # --- state changes -------------------------------------------------------------------
    @property
    def level(self) -> Transport:
        """The best transport clients may use now: polling while overloaded, else
        :attr:`ceiling`."""
        return Transport.POLLING if self.overloaded else self.ceiling

    def refuses(self, transport: Transport) -> bool:
        """Whether a new connection of ``transport`` gets the 503 (:meth:`refusal`): it is
        better than :attr:`level`."""
        return rank(transport) < rank(self.level)

    def set_ceiling(self, transport: Transport) -> Transport:
        """Step the room to ``transport`` (WebSocket: no ceiling) and tell the open
        connections; returns :attr:`level`. Call on the server's loop."""
        old = self.level
        self.ceiling = Transport(transport)
        self._moved(old)
        return self.level

    def force(self, overloaded: bool | None) -> Change | None:
        """Test hook: hold the server overloaded (True) or not (False); None hands control
        back to the detector. Call on the server's loop. Returns the change, if any."""
        self._forced = overloaded
        target = self.detector.overloaded if overloaded is None else overloaded
        if target != self.overloaded:
            self._apply(target)
            return Change(target, asyncio.get_running_loop().time())
        return None

    def _apply(self, overloaded: bool) -> None:
        old = self.level
        self.overloaded = overloaded
        self.metrics.overloaded.set(1 if overloaded else 0)
        self._moved(old)

    def _moved(self, old: Transport) -> None:
        """Tell the open connections that :attr:`level` moved from ``old``."""
        new = self.level
        self.metrics.transport_level.set(rank(new))
        if new is old:
            return
        if rank(new) > rank(old):  # down: the better transports step down to it
            item = Control({"type": DEGRADE, "poll_s": self.poll_s, "transport": new.value})
            n = 0
            for sub in self._streaming():
                if sub.transport is not None and rank(sub.transport) < rank(new):
                    sub.send(item)
                    n += 1
            self.metrics.degraded.inc(n)  # long polls count when answered (poll_fields)
        else:  # up: the ones below it may come back (polling clients hear it when they poll)
            item = Control({"type": RECOVER, "transport": new.value})
            for sub in self._streaming():
                if sub.transport is not None and rank(sub.transport) > rank(new):
                    sub.send(item)
        for waiting in list(self.hub.waiters.values()):
            for fut in list(waiting):
                if not fut.done():
                    fut.set_result(None)  # a held long poll answers now, with the level

    # --- answers -------------------------------------------------------------------------
    def refusal(self) -> web.Response:
        """The 503 a new connection on a transport better than :attr:`level` gets
        (counted): ``{"code": "degraded", "poll_s", "transport": LEVEL, "error"}``."""
        m = self.metrics
        m.degraded.inc()
        m.rejected.labels(DEGRADED).inc()
        m.errors.labels(DEGRADED).inc()
        level = self.level
        why = "the server is overloaded" if self.overloaded else "the room is stepped down"
        if level is Transport.POLLING:
            message = f"{why}; poll /poll every {self.poll_s:g} s"
        else:
            message = f"{why}; connect with {level.value}"
        body: dict[str, Any] = {
            "code": DEGRADED,
            "poll_s": self.poll_s,
            "transport": level.value,
            "error": {"code": DEGRADED, "message": message, "retry_after_s": self.poll_s},
        }
        return web.Response(
            body=json.dumps(body, separators=(",", ":")).encode(),
            status=503,
            content_type="application/json",
            # The rung in a header too: a WebSocket client sees the headers, not the body.
            headers={
                "Retry-After": retry_after_header(self.poll_s),
                "X-Rtsim-Degraded": level.value,
            },
        )

    def poll_fields(self, long_poll: bool = False) -> bytes:
        """What every ``/poll`` answer ends with: ``,"degraded":…[,"poll_s":…]`` and,
        unless every transport is allowed, ``,"transport":LEVEL``.

        ``long_poll``: the request asked to be held (``timeout`` > 0), so a degraded
        answer tells a long-polling client to poll instead (counted in
        ``rtsim_degraded_total``; interval polls with ``timeout=0`` are not)."""
        level = self.level
        if level is Transport.POLLING:
            if long_poll:
                self.metrics.degraded.inc()
            poll_s = json.dumps(self.poll_s).encode()
            return b',"degraded":true,"poll_s":' + poll_s + b',"transport":"polling"'
        if level is Transport.WEBSOCKET:
            return b',"degraded":false'
        return b',"degraded":false,"transport":"' + level.value.encode() + b'"'
