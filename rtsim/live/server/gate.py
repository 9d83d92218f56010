"""The one way in: tokens, admission, connection limits, publishing and error answers.

Every transport handler — WebSocket, SSE, long polling and the Yjs rooms — asks the
:class:`Gate` before it serves a request, so limits and refusals are counted the same way
for all of them:

* :meth:`Gate.admit` → the caller's :class:`~rtsim.live.server.auth.Grant` after checking
  that the transport is enabled (else ``transport_disabled``, 404), that the server is
  below ``max_connections`` (else ``too_many_connections``, 503), that the client's
  address (:meth:`Gate.peer`) is below ``max_connections_per_ip`` (else
  ``too_many_connections_per_ip``, 429) — both refusals counted in
  ``rtsim_rejected_total{reason}`` — and the token (401/403);
* :meth:`Gate.opened` / :meth:`Gate.closed` count a connection (``rtsim_connections``,
  ``rtsim_connections_opened_total``, :attr:`Gate.active` and :attr:`Gate.per_ip`, the
  figures the limits use);
* :meth:`Gate.on_expiry` schedules the one timer per connection that ends it when its
  token's ``exp`` passes (counted in ``rtsim_token_expired_total{transport}``); each
  handler decides how its transport says so (WebSocket close 4001 ``token_expired``, SSE
  ``error`` event, long poll 401);
* :meth:`Gate.publish` is the single publish path (HTTP ``POST /publish`` and WebSocket
  ``publish`` frames): permission, the per-address rate (``publish_rate_per_ip``, else
  ``too_many_publishes_per_ip``, 429, counted in ``rtsim_rejected_total``), JSON check,
  backplane, ``rtsim_published_total``;
* :meth:`Gate.http_error` turns any refusal into ``{"error": {"code", "message"}}`` with
  its HTTP status, counted in ``rtsim_protocol_errors_total`` by code. Every 429 and 503
  also carries how long to wait before trying again: the ``Retry-After`` header (whole
  seconds, rounded up) and ``"retry_after_s"`` in the error object (seconds, exact);
  :func:`retry_after_of` gives the same figure for a WebSocket ``error`` frame.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Collection
from typing import Any

from aiohttp import web

from rtsim.core.envelope import Envelope, EnvelopeError, validate_channel
from rtsim.core.limits import KeyedRateLimiter, seconds_until
from rtsim.core.replaylog import ReplayLogError
from rtsim.core.transport import Transport

from ..backplanes.base import Backplane
from ..protocol import (
    DEFAULT_RETRY_AFTER_S,
    ProtocolError,
    check_json,
    parse_json,
    retry_after_header,
)
from .auth import Authenticator, AuthError, Grant
from .metrics import Metrics
from .stages import StageRecorder, monotonic, trace_of

__all__ = [
    "CLOSE_TOKEN_EXPIRED",
    "ERROR_STATUS",
    "TOKEN_EXPIRED",
    "Gate",
    "check_channel",
    "json_response",
    "loads",
    "retry_after_of",
]

#: Why a connection whose token ran out is ended: the WebSocket close reason, the ``code``
#: of the SSE ``error`` event and of a held long poll's 401 answer.
TOKEN_EXPIRED = "token_expired"
#: WebSocket close code for it (``/ws`` and ``/yjs``). A private-use code (4000-4999,
#: RFC 6455 §7.4.2) rather than 1008, so a client can tell "get a new token and reconnect"
#: from "a policy violation, do not retry" — as a 401 does for the HTTP transports.
CLOSE_TOKEN_EXPIRED = 4001

#: HTTP status of each refusal code that is not a plain 400.
ERROR_STATUS: dict[str, int] = {
    "transport_disabled": 404,
    "too_many_connections": 503,
    "too_many_connections_per_ip": 429,
    "too_many_publishes_per_ip": 429,
    "backplane_unavailable": 503,
    "too_big": 413,
}


def retry_after_of(exc: BaseException) -> float | None:
    """Seconds a client should wait before retrying after ``exc``: its own figure, or
    :data:`~rtsim.live.protocol.DEFAULT_RETRY_AFTER_S` for a refusal answered 429/503;
    None for any other refusal (retrying the same request would not help)."""
    if not isinstance(exc, ProtocolError) or ERROR_STATUS.get(exc.code) not in (429, 503):
        return None
    return DEFAULT_RETRY_AFTER_S if exc.retry_after_s is None else exc.retry_after_s


def json_response(obj: Any, status: int = 200) -> web.Response:
    """A compact ``application/json`` answer."""
    return web.Response(
        body=json.dumps(obj, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def loads(raw: str | bytes) -> Any:
    """Client JSON, checked so it can be sent on: :func:`rtsim.live.protocol.parse_json`
    (raises ``ProtocolError("bad_json")``)."""
    return parse_json(raw, "body")


def check_channel(value: object) -> str:
    """``value`` as a channel name; raises ``ProtocolError("bad_channel")`` otherwise."""
    try:
        return validate_channel(value)
    except EnvelopeError as exc:
        raise ProtocolError("bad_channel", str(exc)) from None


class Gate:
    """Admission and accounting shared by every transport of one server.

    Args:
        auth: checks tokens (open mode without a secret).
        backplane: where :meth:`publish` sends messages.
        metrics: the server's metrics (refusals, connections, publishes).
        enabled: the transports this server accepts.
        max_connections: open connections (WebSocket, SSE, Yjs) plus waiting long polls.
        max_frame_bytes: the largest HTTP body :meth:`json_body` reads, bytes.
        max_connections_per_ip: the same count per client address (default and its
            reason: :class:`~rtsim.live.server.config.ServerConfig`).
        publish_rate_per_ip: publishes per second per client address, in bursts of up
            to one second's worth (default and reason: ``ServerConfig``).
    """

    def __init__(
        self,
        auth: Authenticator,
        backplane: Backplane,
        metrics: Metrics,
        enabled: Collection[Transport],
        max_connections: int,
        max_frame_bytes: int,
        max_connections_per_ip: int = 1000,
        publish_rate_per_ip: float = 1000.0,
    ) -> None:
        self.auth = auth
        self.backplane = backplane
        self.metrics = metrics
        self.enabled = tuple(enabled)
        self.max_connections = max_connections
        self.max_frame_bytes = max_frame_bytes
        self.max_connections_per_ip = max_connections_per_ip
        self.active = 0  # streaming connections + waiting long polls
        self.per_ip: dict[str, int] = {}  # the same, per client address (no zero entries)
        self.publishes = KeyedRateLimiter(publish_rate_per_ip, burst=publish_rate_per_ip)
        self.stages: StageRecorder | None = None  # traced messages' receive times (.stages)

    # --- who may come in ----------------------------------------------------------------
    def grant(self, request: web.Request) -> Grant:
        """The request's grant (token from ``Authorization: Bearer`` or ``?token=``);
        raises :class:`~rtsim.live.server.auth.AuthError`."""
        token = self.auth.token_from(
            request.headers.get("Authorization"), request.query.get("token")
        )
        return self.auth.grant(token)

    @staticmethod
    def peer(request: web.Request) -> str:
        """The client's address as the limits see it: the TCP peer (``request.remote``;
        ``X-Forwarded-For`` is not trusted), ``"unknown"`` if the socket has none."""
        return request.remote or "unknown"

    def check_capacity(self, transport: Transport, peer: str | None = None) -> None:
        """Raise ``ProtocolError`` if ``transport`` is disabled, the server is full or
        ``peer`` (a client address; None: not checked) holds its maximum."""
        if transport not in self.enabled:
            raise ProtocolError(
                "transport_disabled", f"{transport.value} is disabled on this server"
            )
        if self.active >= self.max_connections:
            self.metrics.rejected.labels("too_many_connections").inc()
            raise ProtocolError(
                "too_many_connections",
                f"the server holds its maximum of {self.max_connections} connections",
            )
        if peer is not None and self.per_ip.get(peer, 0) >= self.max_connections_per_ip:
            self.metrics.rejected.labels("too_many_connections_per_ip").inc()
            raise ProtocolError(
                "too_many_connections_per_ip",
                f"{peer} holds the maximum of {self.max_connections_per_ip} connections"
                " per address (--max-connections-per-ip)",
            )

    def admit(self, request: web.Request, transport: Transport) -> Grant:
        """:meth:`check_capacity` (with the request's :meth:`peer`), then :meth:`grant`:
        the grant of an admitted request."""
        self.check_capacity(transport, self.peer(request))
        return self.grant(request)

    def opened(self, transport: Transport, peer: str | None = None) -> None:
        """Count a connection of ``transport`` from ``peer`` as open (call :meth:`closed`
        once after, with the same arguments)."""
        self.active += 1
        if peer is not None:
            self.per_ip[peer] = self.per_ip.get(peer, 0) + 1
        self.metrics.connections_by[transport].inc()
        self.metrics.connections_opened.labels(transport.value).inc()

    def closed(self, transport: Transport, peer: str | None = None) -> None:
        self.active -= 1
        if peer is not None:
            left = self.per_ip.get(peer, 0) - 1
            if left > 0:
                self.per_ip[peer] = left
            else:
                self.per_ip.pop(peer, None)
        self.metrics.connections_by[transport].dec()

    def on_expiry(
        self, grant: Grant, transport: Transport, end: Callable[[], None]
    ) -> asyncio.TimerHandle | None:
        """Call ``end()`` on the running loop when ``grant``'s token expires (at once if it
        already has), counting it in ``rtsim_token_expired_total{transport}``.

        The one timer of a connection: the caller cancels the handle when the connection
        ends first. None for a grant without expiry (open mode).
        """
        delay = seconds_until(grant.expires_at, time.time())
        if delay is None:
            return None
        counter = self.metrics.token_expired.labels(transport.value)

        def fire() -> None:
            counter.inc()
            end()

        return asyncio.get_running_loop().call_later(delay, fire)

    def slow_consumer(self, transport: Transport) -> None:
        """Count a connection closed because its send queue overflowed."""
        self.metrics.slow_drops.labels(transport.value).inc()

    # --- what comes in ------------------------------------------------------------------
    async def json_body(self, request: web.Request) -> dict[str, Any]:
        """The request's body as a JSON object (at most ``max_frame_bytes``); raises
        ``ProtocolError`` (``too_big``, ``bad_json``)."""
        limit = self.max_frame_bytes
        if request.content_length is not None and request.content_length > limit:
            raise ProtocolError("too_big", f"body is larger than {limit} B")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ProtocolError("too_big", f"body is larger than {limit} B") from None
        obj = parse_json(raw, "body")  # not storable = not sendable: refused here (bad_json)
        if not isinstance(obj, dict):
            raise ProtocolError("bad_json", "body must be a JSON object")
        return obj

    async def publish(
        self, grant: Grant, channel: str, data: Any, *, peer: str | None = None
    ) -> Envelope:
        """Publish ``data`` on ``channel`` for ``grant`` from client address ``peer``
        (None: no per-address limit): the stored envelope (its id).

        Raises :class:`~rtsim.live.server.auth.AuthError` (may not publish),
        ``ProtocolError("too_many_publishes_per_ip")`` (429) past ``publish_rate_per_ip``,
        ``ProtocolError("bad_json")`` for data that cannot be sent as UTF-8 JSON, and the
        backplane's :class:`~rtsim.live.backplanes.base.BackplaneUnavailable` (503) when its
        broker is down.
        """
        trace = trace_of(data)
        if trace is not None and self.stages is not None:
            self.stages.received(trace, monotonic())
        grant.check_publish(channel)
        if peer is not None:
            now = time.monotonic()
            if not self.publishes.take(peer, now):
                self.metrics.rejected.labels("too_many_publishes_per_ip").inc()
                wait = self.publishes.retry_after(peer, now)
                raise ProtocolError(
                    "too_many_publishes_per_ip",
                    f"{peer} publishes more than {self.publishes.rate:g} messages/s"
                    f" (--publish-rate-per-ip); retry in {wait:.3f} s",
                    retry_after_s=round(max(wait, 0.001), 3),
                )
        check_json(data)  # before storing: what is stored must be sendable to everyone
        env = await self.backplane.publish(channel, data)
        self.metrics.published.inc()
        return env

    # --- answers ------------------------------------------------------------------------
    def error(
        self, code: str, message: str, status: int, retry_after_s: float | None = None
    ) -> web.Response:
        """An error answer, counted by ``code``. A 429 or 503 carries ``Retry-After`` and
        ``"retry_after_s"`` (``retry_after_s``, default ``DEFAULT_RETRY_AFTER_S``)."""
        self.metrics.errors.labels(code).inc()
        err: dict[str, Any] = {"code": code, "message": message}
        if status not in (429, 503):
            return json_response({"error": err}, status)
        wait = DEFAULT_RETRY_AFTER_S if retry_after_s is None else retry_after_s
        err["retry_after_s"] = wait
        resp = json_response({"error": err}, status)
        resp.headers["Retry-After"] = retry_after_header(wait)
        return resp

    def http_error(self, exc: Exception) -> web.Response:
        """The answer to a refusal (auth, protocol or cursor error); re-raises others."""
        if isinstance(exc, AuthError):
            return self.error(exc.code, exc.message, exc.status)
        if isinstance(exc, ProtocolError):
            status = ERROR_STATUS.get(exc.code, 400)
            return self.error(exc.code, exc.message, status, retry_after_of(exc))
        if isinstance(exc, ReplayLogError):
            return self.error("bad_cursor", str(exc), 400)
        raise exc
