"""The load generator's lean long-polling subscriber, on a bare asyncio Protocol (the
default; ``--lp-client``).

It speaks what the aiohttp subscriber (:func:`.longpoll.load_subscriber`) speaks — ``GET
/poll?channel=C&after=CURSOR&timeout=S`` in a loop, the first with ``timeout=0`` (the start
position at once), a poll refused with 429/503 retried after its ``Retry-After`` with the
same cursor, a lost connection retried after :data:`~.longpoll.RETRY_S`, ``"degraded":
true`` raised as :class:`~.wire.Degraded` — but all polls go over one keep-alive
connection, and each answer's bytes go from the event loop's read callback to the
subscriber, which writes the next poll in the same callback: no ``StreamReader``, no
future, no task switch and no connection pool per answer, which is most of what an answer
costs the aiohttp client.

It writes its HTTP/1.1 requests by hand and reads only what the server's ``/poll`` answers
are: a head (:mod:`.httphead`) and a ``Content-Length`` body. An answer without one, or
with ``Connection: close``, ends the connection (the next poll opens a new one).
``session`` is accepted for the :class:`~.wire.LoadSubscriber` signature and not used.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from rtsim.core.transport import LONG_POLL_HOLD_S

from .httphead import Head, read_head
from .longpoll import RETRY_S, take_answer
from .rawclient import OneRequest, request_outcome
from .wire import Dropped, LoadTarget, Refused, auth_headers, channel_params

__all__ = ["load_subscriber", "poll_request"]


def poll_request(target: LoadTarget, channel: str, after: str, hold: float) -> bytes:
    """The ``GET /poll`` request of a load subscriber to ``channel`` after ``after``,
    held up to ``hold`` seconds (``Authorization`` if ``target`` has a token)."""
    u = urlsplit(target.url)
    query = urlencode(channel_params([channel], after=after, timeout=hold))
    headers = {"Host": u.netloc, **auth_headers(target.token)}
    lines = [f"GET {u.path.rstrip('/')}/poll?{query} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()] + ["", ""]
    return "\r\n".join(lines).encode()


class _Polls(OneRequest):
    """Polls ``channel`` on one connection: an answer's body is read to its
    ``Content-Length``, handed on (:meth:`_answer`) and the next poll written at once.
    :attr:`answered`: answers so far; :meth:`cursor`: the position after the last."""

    def __init__(
        self,
        target: LoadTarget,
        channel: str,
        after: str,
        hold: float,
        got: Callable[[Any, float, int], None],
        gap: Callable[[Mapping[str, Any]], None] | None,
        ready: Callable[[], None],
    ) -> None:
        super().__init__(poll_request(target, channel, after, hold), lambda: None)
        self.target, self.channel, self.last = target, channel, after
        self.got, self.gap, self.on_answer = got, gap, ready
        self.answered = 0
        self._in = b""
        self._want = -1  # the body length of the answer being read; -1: reading a head
        self._close = False

    def cursor(self) -> str | None:
        return self.last

    def opened(self, head: Head) -> None:
        self._start(head)

    def _start(self, head: Head) -> None:
        length = head.headers.get("content-length", "")
        if not length.isdigit():
            raise ValueError("a /poll answer without Content-Length")
        self._want = int(length)
        self._close = head.headers.get("connection", "").lower() == "close"

    def data_received(self, data: bytes) -> None:
        try:
            if not self.open:
                self.before_open(data)  # the first answer's head (or a refusal)
                return
            self._in += data
            while not self.done.done():
                if self._want < 0:
                    head = read_head(self._in)
                    if head is None:
                        return
                    self._in = b""
                    if head.status != self.accept:  # a later poll refused: read it out
                        self.open = False
                        self._head, self._body = head, b""
                        self._refusal_body(head.rest)
                        return
                    self._start(head)
                    self._in = head.rest
                if len(self._in) < self._want:
                    return
                body, self._in = self._in[: self._want], self._in[self._want :]
                self._want = -1
                self._answer(body, time.monotonic())
        except Exception as exc:  # Degraded, a bad head or body: the subscriber raises it
            self.end(exc)

    def _answer(self, raw: bytes, read_at: float) -> None:
        self.answered += 1
        self.on_answer()
        self.last = take_answer(json.loads(raw), self.last, self.got, self.gap, read_at, self.port)
        if self._close:
            raise Dropped(self.last, "the server closes the connection")
        assert self.transport is not None
        self.transport.write(poll_request(self.target, self.channel, self.last, LONG_POLL_HOLD_S))


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
    """The load generator's long-polling subscriber on a bare Protocol (see
    :class:`~.wire.LoadSubscriber`; same events, same exceptions as
    :func:`.longpoll.load_subscriber`)."""
    cursor = since or "0"
    first = True
    tls = target.url.startswith("https:")
    while True:
        hold = 0.0 if first else LONG_POLL_HOLD_S

        def make(after: str = cursor, hold: float = hold) -> _Polls:
            return _Polls(target, channel, after, hold, got, gap, ready)

        try:
            outcome, proto = await request_outcome(target.url, make, tls=tls)
        except OSError:
            if first:
                raise
            await asyncio.sleep(RETRY_S)
            continue
        cursor = proto.cursor() or cursor
        first = first and proto.answered == 0
        if isinstance(outcome, Refused):
            if outcome.status not in (429, 503) or outcome.degraded() is not None:
                raise outcome
            await asyncio.sleep(max(RETRY_S, outcome.retry_after_s or 0.0))
            continue
        if isinstance(outcome, Dropped) and not first:
            if proto.answered == 0:  # lost before any answer: the server may be restarting
                await asyncio.sleep(RETRY_S)
            continue
        raise outcome
