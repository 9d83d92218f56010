"""The one way in: tokens, admission, connection limits, publishing and error answers.

Every transport handler — WebSocket, SSE, long polling and the Yjs rooms — asks the
:class:`Gate` before it serves a request, so limits and refusals are counted the same way
for all of them:

* :meth:`Gate.admit` → the caller's :class:`~rtsim.live.server.auth.Grant` after checking
  that the transport is enabled (else ``transport_disabled``, 404), that the server is
  below ``max_connections`` (else ``too_many_connections``, 503, counted in
  ``rtsim_rejected_total``) and the token (401/403);
* :meth:`Gate.opened` / :meth:`Gate.closed` count a connection (``rtsim_connections``,
  ``rtsim_connections_opened_total`` and :attr:`Gate.active`, the figure the limit uses);
* :meth:`Gate.publish` is the single publish path (HTTP ``POST /publish`` and WebSocket
  ``publish`` frames): permission, JSON check, backplane, ``rtsim_published_total``;
* :meth:`Gate.http_error` turns any refusal into ``{"error": {"code", "message"}}`` with
  its HTTP status, counted in ``rtsim_protocol_errors_total`` by code.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from aiohttp import web

from rtsim.core.envelope import Envelope, EnvelopeError, validate_channel
from rtsim.core.replaylog import ReplayLogError
from rtsim.core.transport import Transport

from ..backplanes.base import Backplane
from ..protocol import ProtocolError
from .auth import Authenticator, AuthError, Grant
from .metrics import Metrics
from .stages import StageRecorder, monotonic, trace_of

__all__ = ["ERROR_STATUS", "Gate", "check_channel", "json_response", "loads"]

#: HTTP status of each refusal code that is not a plain 400.
ERROR_STATUS: dict[str, int] = {
    "transport_disabled": 404,
    "too_many_connections": 503,
    "backplane_unavailable": 503,
    "too_big": 413,
}


def json_response(obj: Any, status: int = 200) -> web.Response:
    """A compact ``application/json`` answer."""
    return web.Response(
        body=json.dumps(obj, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def loads(raw: str | bytes) -> Any:
    """``json.loads`` that rejects NaN/Infinity (they cannot be sent on as JSON)."""

    def bad_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    return json.loads(raw, parse_constant=bad_constant)


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
    """

    def __init__(
        self,
        auth: Authenticator,
        backplane: Backplane,
        metrics: Metrics,
        enabled: Collection[Transport],
        max_connections: int,
        max_frame_bytes: int,
    ) -> None:
        self.auth = auth
        self.backplane = backplane
        self.metrics = metrics
        self.enabled = tuple(enabled)
        self.max_connections = max_connections
        self.max_frame_bytes = max_frame_bytes
        self.active = 0  # streaming connections + waiting long polls
        self.stages: StageRecorder | None = None  # traced messages' receive times (.stages)

    # --- who may come in ----------------------------------------------------------------
    def grant(self, request: web.Request) -> Grant:
        """The request's grant (token from ``Authorization: Bearer`` or ``?token=``);
        raises :class:`~rtsim.live.server.auth.AuthError`."""
        token = self.auth.token_from(
            request.headers.get("Authorization"), request.query.get("token")
        )
        return self.auth.grant(token)

    def check_capacity(self, transport: Transport) -> None:
        """Raise ``ProtocolError`` if ``transport`` is disabled or the server is full."""
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

    def admit(self, request: web.Request, transport: Transport) -> Grant:
        """:meth:`check_capacity`, then :meth:`grant`: the grant of an admitted request."""
        self.check_capacity(transport)
        return self.grant(request)

    def opened(self, transport: Transport) -> None:
        """Count a connection of ``transport`` as open (call :meth:`closed` once after)."""
        self.active += 1
        self.metrics.connections_by[transport].inc()
        self.metrics.connections_opened.labels(transport.value).inc()

    def closed(self, transport: Transport) -> None:
        self.active -= 1
        self.metrics.connections_by[transport].dec()

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
        try:
            obj = loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ProtocolError("bad_json", f"body is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ProtocolError("bad_json", "body must be a JSON object")
        return obj

    async def publish(self, grant: Grant, channel: str, data: Any) -> Envelope:
        """Publish ``data`` on ``channel`` for ``grant``: the stored envelope (its id).

        Raises :class:`~rtsim.live.server.auth.AuthError` (may not publish),
        ``ProtocolError("bad_json")`` for data that is not JSON, and the backplane's
        :class:`~rtsim.live.backplanes.base.BackplaneUnavailable` (503) when its broker is
        down.
        """
        trace = trace_of(data)
        if trace is not None and self.stages is not None:
            self.stages.received(trace, monotonic())
        grant.check_publish(channel)
        try:
            json.dumps(data, allow_nan=False)
        except (ValueError, TypeError, RecursionError) as exc:
            raise ProtocolError("bad_json", f"data cannot be sent as JSON: {exc}") from None
        env = await self.backplane.publish(channel, data)
        self.metrics.published.inc()
        return env

    # --- answers ------------------------------------------------------------------------
    def error(self, code: str, message: str, status: int) -> web.Response:
        """An error answer, counted by ``code``."""
        self.metrics.errors.labels(code).inc()
        return json_response({"error": {"code": code, "message": message}}, status)

    def http_error(self, exc: Exception) -> web.Response:
        """The answer to a refusal (auth, protocol or cursor error); re-raises others."""
        if isinstance(exc, AuthError):
            return self.error(exc.code, exc.message, exc.status)
        if isinstance(exc, ProtocolError):
            return self.error(exc.code, exc.message, ERROR_STATUS.get(exc.code, 400))
        if isinstance(exc, ReplayLogError):
            return self.error("bad_cursor", str(exc), 400)
        raise exc
