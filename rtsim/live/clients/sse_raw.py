"""The load generator's lean SSE subscriber, on a bare asyncio Protocol (the default;
``--sse-client``).

It speaks what the aiohttp subscriber (:func:`.sse.load_subscriber`) speaks — ``GET /sse``
with ``Last-Event-ID`` to resume, a 429/503 raised as :class:`~.wire.Refused` with its
``Retry-After`` and body, ``degrade`` events raised as :class:`~.wire.Degraded` — but the
stream's bytes go from the event loop's read callback straight to
:class:`~.loadevents.LoadEvents`: no ``StreamReader``, no future and no task switch per
chunk, which is most of what a delivery costs the aiohttp client.

It writes one HTTP/1.1 request by hand and reads the answer's status line and headers
itself: enough for the server's ``text/event-stream`` answer (chunked or read until close)
and its error answers (``Content-Length``), not a general HTTP client. ``session`` is
accepted for the :class:`~.wire.LoadSubscriber` signature and not used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from .httphead import Head
from .loadevents import LoadEvents
from .rawclient import OneRequest, run_request
from .wire import Dropped, LoadTarget, auth_headers, channel_params

__all__ = ["load_subscriber", "sse_request"]


def sse_request(target: LoadTarget, channel: str, since: str | None = None) -> bytes:
    """The ``GET /sse`` request of a load subscriber to ``channel`` (``Last-Event-ID:
    since`` if given; ``Authorization`` if ``target`` has a token)."""
    u = urlsplit(target.url)
    path = f"{u.path.rstrip('/')}/sse?{urlencode(channel_params([channel]))}"
    headers = {"Host": u.netloc, "Accept": "text/event-stream", **auth_headers(target.token)}
    if since is not None:
        headers["Last-Event-ID"] = since
    lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


class _Stream(OneRequest):
    """Feeds an accepted stream's body to ``events``; ends as :class:`Dropped` when a
    chunked body's last chunk arrives (see :class:`~.rawclient.OneRequest` for the rest)."""

    def __init__(self, request: bytes, events: LoadEvents, ready: Callable[[], None]) -> None:
        super().__init__(request, ready)
        self.events = events
        self._feed: Callable[[bytes, float], None] = events.plain

    def cursor(self) -> str | None:
        return self.events.last

    def opened(self, head: Head) -> None:
        self.events.port = self.port
        if "chunked" in head.headers.get("transfer-encoding", "").lower():
            self._feed = self.events.chunked

    def data_received(self, data: bytes) -> None:
        try:
            if self.open:
                self._feed(data, time.monotonic())
                if self.events.ended:
                    self.end(Dropped(self.events.last, "stream ended"))
            else:
                self.before_open(data)
        except Exception as exc:  # Degraded, a bad chunk or head: the subscriber raises it
            self.end(exc)


async def load_subscriber(
    session: aiohttp.ClientSession,
    target: LoadTarget,
    channel: str,
    got: Callable[[Any, float, int], None],
    ready: Callable[[], None],
    /,
    gap: Callable[[Mapping[str, Any]], None] | None = None,
    since: str | None = None,
) -> None:
    """The load generator's SSE subscriber on a bare Protocol (see
    :class:`~.wire.LoadSubscriber`: same events, same exceptions as
    :func:`.sse.load_subscriber`)."""
    events = LoadEvents(got, gap, since)
    request = sse_request(target, channel, since)
    tls = target.url.startswith("https:")
    await run_request(target.url, lambda: _Stream(request, events, ready), since, tls=tls)
