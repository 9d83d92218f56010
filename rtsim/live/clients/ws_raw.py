"""The load generator's leanest WebSocket subscriber, on a bare asyncio Protocol
(``--ws-client raw``).

It speaks what the picows and aiohttp subscribers speak — the frames are read by the same
:class:`~.loadframes.LoadFrames` — but the event loop's read callback hands its bytes to
:class:`~.wsframes.WsReader`, which handles a read that is one broadcast's whole frame
with one memoized lookup: the server sends every subscriber of a channel the same bytes.
The upgrade is written and checked by hand (``Sec-WebSocket-Accept``); a refusal is
raised as :class:`~.wire.Refused` with its ``Retry-After``, ``X-Rtsim-Degraded`` and body,
as picows does. Pings are answered, a close is answered and ends the connection.

``session`` is accepted for the :class:`~.wire.LoadSubscriber` signature and not used.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from .httphead import Head
from .loadframes import LoadFrames
from .rawclient import OneRequest, run_request
from .wire import Dropped, LoadTarget, subscribe_frame, ws_url
from .wsframes import WsReader, client_frame, upgrade_request, ws_accept

__all__ = ["load_subscriber"]


class _Socket(OneRequest):
    """Checks the upgrade, subscribes, then feeds the server's frames to ``reader``,
    writing back what it answers (see :class:`~.rawclient.OneRequest` for the rest)."""

    accept = 101
    degraded_header = True  # a refused handshake names the rung a degraded server allows

    def __init__(
        self,
        request: bytes,
        key: str,
        subscribe: bytes,
        reader: WsReader,
        ready: Callable[[], None],
    ) -> None:
        super().__init__(request, ready)
        self.key, self.subscribe, self.reader = key, subscribe, reader

    def cursor(self) -> str | None:
        return self.reader.frames.last

    def opened(self, head: Head) -> None:
        if head.headers.get("sec-websocket-accept") != ws_accept(self.key):
            raise ValueError("the server's Sec-WebSocket-Accept does not match the key")
        self.reader.frames.port = self.port
        assert self.transport is not None
        self.transport.write(self.subscribe)

    def data_received(self, data: bytes) -> None:
        try:
            if self.open:
                answer = self.reader.feed(data, time.monotonic())
                if answer:
                    self._answer(answer)
            else:
                self.before_open(data)
        except Exception as exc:  # Degraded, a bad frame or head: the subscriber raises it
            self.end(exc)

    def _answer(self, answer: bytes) -> None:
        assert self.transport is not None
        self.transport.write(answer)
        code = self.reader.closed
        if code is not None:
            self.end(Dropped(self.reader.frames.last, f"close {code}"))


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
    """The load generator's WebSocket subscriber on a bare Protocol (see
    :class:`~.wire.LoadSubscriber`: same frames, same exceptions as
    :func:`.ws_picows.load_subscriber`)."""
    url = ws_url(target.url, target.ws_path, target.token)
    u = urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode()
    request = upgrade_request(u.netloc, u.path + (f"?{u.query}" if u.query else ""), key)
    reader = WsReader(LoadFrames(got, gap, since))
    subscribe = client_frame(subscribe_frame(channel, since).encode())
    await run_request(
        url,
        lambda: _Socket(request, key, subscribe, reader, ready),
        since,
        tls=u.scheme == "wss",
    )
