"""Stage timestamps of traced messages: where a message's latency goes inside the server.

A published message whose ``data`` is a JSON object with a ``"trace"`` string (the load
generator marks every k-th message so) is *traced*: the server records, on
``time.monotonic()`` (CLOCK_MONOTONIC, shared by every process of the machine),

* ``received``: the publish reached :meth:`~rtsim.live.server.gate.Gate.publish` (the frame
  or HTTP body is read and parsed),
* ``fanout_start`` / ``fanout_end``: the hub's encode-once fan-out loop began / ended,
  ``n`` subscribers,
* per subscriber, the time its bytes were handed to the socket (``writes``: the client's
  port → seconds) and whether they were queued (written later by the connection's writer)
  rather than written directly.

Untraced messages cost one ``type(data) is dict`` check; traced ones one clock read per
subscriber. At most ``keep`` records are held (oldest dropped). ``GET /debug/stages
?prefix=P`` returns the records whose trace starts with ``P`` as JSON::

    {"clock": "CLOCK_MONOTONIC", "records": {TRACE: {"channel", "id", "received",
     "fanout_start", "fanout_end", "n", "queued", "writes": {PORT: seconds}}}}
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiohttp import web

from rtsim.core.envelope import Envelope

__all__ = ["StageRecord", "StageRecorder", "peer_port", "trace_of"]

monotonic = time.monotonic


def trace_of(data: Any) -> str | None:
    """The trace key of a message's ``data`` (None: not traced)."""
    if type(data) is dict:
        t = data.get("trace")
        if type(t) is str:
            return t
    return None


def peer_port(transport: Any) -> int:
    """The remote TCP port of a socket transport (-1 if it cannot be told)."""
    try:
        peer = transport.get_extra_info("peername")
        return int(peer[1])
    except (AttributeError, TypeError, IndexError, ValueError):
        return -1


class StageRecord:
    """The server-side stages of one traced message (seconds on CLOCK_MONOTONIC)."""

    __slots__ = ("channel", "fanout_end", "fanout_start", "id", "n", "queued", "received", "writes")

    def __init__(self) -> None:
        self.channel = ""
        self.id = ""
        self.received = float("nan")
        self.fanout_start = float("nan")
        self.fanout_end = float("nan")
        self.n = 0
        self.queued = 0
        self.writes: dict[int, float] = {}

    def as_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {
            "channel": self.channel,
            "id": self.id,
            "received": num(self.received),
            "fanout_start": num(self.fanout_start),
            "fanout_end": num(self.fanout_end),
            "n": self.n,
            "queued": self.queued,
            "writes": {str(k): v for k, v in self.writes.items()},
        }


class StageRecorder:
    """Bounded store of :class:`StageRecord` by trace key; also the ``/debug/stages`` route."""

    def __init__(self, keep: int = 20_000) -> None:
        self.keep = keep
        self.records: OrderedDict[str, StageRecord] = OrderedDict()
        #: Set by the app to the gate's ``grant``: the endpoint answers only a request with a
        #: valid token (any request in open mode), and only with the channels its grant may
        #: subscribe to. ``refuse`` turns the gate's refusal into its HTTP answer.
        self.grant_of: Callable[[web.Request], Any] | None = None
        self.refuse: Callable[[Exception], web.Response] | None = None

    def _get(self, trace: str) -> StageRecord:
        rec = self.records.get(trace)
        if rec is None:
            rec = self.records[trace] = StageRecord()
            if len(self.records) > self.keep:
                self.records.popitem(last=False)
        return rec

    def received(self, trace: str, t: float) -> None:
        self._get(trace).received = t

    def fanout(self, trace: str, env: Envelope, start: float, end: float, n: int) -> StageRecord:
        rec = self._get(trace)
        rec.channel, rec.id = env.channel, env.id
        rec.fanout_start, rec.fanout_end, rec.n = start, end, n
        return rec

    def written(self, trace: str, port: int, t: float) -> None:
        """A subscriber's bytes of ``trace`` were handed to its socket at ``t``."""
        rec = self.records.get(trace)
        if rec is not None:
            rec.writes[port] = t

    # --- the debug endpoint ----------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [web.get("/debug/stages", self.endpoint)]

    async def close(self) -> None:
        self.records.clear()

    async def endpoint(self, request: web.Request) -> web.Response:
        grant: Any = None
        if self.grant_of is not None:
            try:
                grant = self.grant_of(request)
            except Exception as exc:  # AuthError: 401/403 with the gate's error body
                if self.refuse is None:
                    raise
                return self.refuse(exc)
        prefix = request.query.get("prefix", "")
        out = {
            k: r.as_dict()
            for k, r in self.records.items()
            if k.startswith(prefix)
            and (grant is None or not r.channel or grant.may_subscribe(r.channel))
        }
        body = json.dumps({"clock": "CLOCK_MONOTONIC", "records": out}, allow_nan=False)
        return web.Response(body=body.encode(), content_type="application/json")
