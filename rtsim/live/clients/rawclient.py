"""What the load generator's bare-Protocol subscribers (:mod:`.ws_raw`, :mod:`.sse_raw`,
:mod:`.longpoll_raw`) share: a request written by hand, the answer's head read
(:mod:`.httphead`), a refusal read to its end and raised as :class:`~.wire.Refused`, the
outcome handed to the subscriber's coroutine (:func:`run_request`,
:func:`request_outcome`).

A subclass of :class:`OneRequest` reads what follows an accepted head in its own
``data_received`` (the hot path: no call in between) and hands everything before to
:meth:`OneRequest.before_open`.
"""

from __future__ import annotations

import abc
import asyncio
import ssl
from collections.abc import Callable
from typing import TypeVar, cast
from urllib.parse import urlsplit

from .httphead import Head, read_head
from .wire import DEGRADED_HEADER, Dropped, Refused, load_refusal, local_port

__all__ = ["OneRequest", "request_outcome", "run_request"]


class OneRequest(asyncio.Protocol, abc.ABC):
    """Writes ``request`` once connected, reads the answer's head and then: an answer of
    status :attr:`accept` is passed to :meth:`opened` (:attr:`open` turns true), any other
    is read to its end (``Content-Length`` or the connection's close) and ends the
    connection as :class:`Refused` (its ``Retry-After`` and, if :attr:`degraded_header`,
    its ``X-Rtsim-Degraded``). :attr:`done` is set to the exception the subscriber raises;
    :class:`Dropped` (resuming after :meth:`cursor`) when the connection is lost."""

    accept = 200
    degraded_header = False

    def __init__(self, request: bytes, ready: Callable[[], None]) -> None:
        self.request = request
        self.ready = ready
        self.done: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.port = -1  # the connection's local TCP port
        self.open = False
        self._buf = b""  # the answer's head until it is complete
        self._head: Head | None = None
        self._body: bytes | None = None  # a refusal's body so far

    @abc.abstractmethod
    def cursor(self) -> str | None:
        """The position to resume after if the connection ends now."""

    @abc.abstractmethod
    def opened(self, head: Head) -> None:
        """The answer was accepted (its bytes after the head come next, through
        ``data_received``)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.port = local_port(transport.get_extra_info("sockname"))
        self.transport.write(self.request)

    def before_open(self, data: bytes) -> None:
        """Read ``data`` that came before the answer was accepted (head, refusal body).
        Raises ``ValueError`` for an answer that is not HTTP."""
        if self._body is not None:
            self._refusal_body(data)
            return
        self._buf += data
        head = self._head = read_head(self._buf)
        if head is None:
            return
        self._buf = b""
        if head.status != self.accept:
            self._body = b""
            self._refusal_body(head.rest)
            return
        self.opened(head)
        self.open = True
        self.ready()
        if head.rest:
            self.data_received(head.rest)

    def _refusal_body(self, data: bytes) -> None:
        assert self._head is not None
        self._body = (self._body or b"") + data
        body = self._head.body_complete(self._body)
        if body is not None:
            self._refused(body)

    def _refused(self, body: bytes) -> None:
        assert self._head is not None
        h = self._head.headers
        degraded = h.get(DEGRADED_HEADER.lower()) if self.degraded_header else None
        text = body.decode("utf-8", "replace")
        self.end(Refused(self._head.status, text, h.get("retry-after"), degraded))

    def end(self, exc: Exception) -> None:
        """End the connection with ``exc`` as the outcome (the first outcome stays)."""
        if not self.done.done():
            self.done.set_result(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._body is not None:  # a refusal read until close
            self._refused(self._body)
        why = f"{type(exc).__name__}: {exc}" if exc is not None else "connection lost"
        self.end(Dropped(self.cursor(), why))


P = TypeVar("P", bound=OneRequest)


async def request_outcome(url: str, make: Callable[[], P], *, tls: bool) -> tuple[Exception, P]:
    """Connect to the host of ``url`` (``tls``: over TLS) with the protocol ``make()``
    gives; return the exception it ended with and the protocol. Connection errors
    (``OSError``) propagate; cancelling closes the connection."""
    u = urlsplit(url)
    if u.hostname is None:
        raise ValueError(f"a server URL needs a host, got {url!r}")
    context = ssl.create_default_context() if tls else None
    port = u.port or (443 if tls else 80)
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(make, u.hostname, port, ssl=context)
    try:
        outcome = await proto.done
    finally:
        transport.close()  # at once if cancelled; a no-op once closed
    return outcome, proto


async def run_request(
    url: str, make: Callable[[], OneRequest], since: str | None, *, tls: bool
) -> None:
    """Connect to the host of ``url`` (``tls``: over TLS) with the protocol ``make()``
    gives and raise its outcome: :func:`~.wire.load_refusal` of a refusal (resuming after
    ``since``), else the exception it ended with. Cancelling closes the connection."""
    outcome, _proto = await request_outcome(url, make, tls=tls)
    if isinstance(outcome, Refused):
        raise load_refusal(outcome, since) from None
    raise outcome
