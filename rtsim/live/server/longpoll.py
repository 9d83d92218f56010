"""Long polling at ``GET /poll?channel=C&after=CURSOR&timeout=S`` → ``{"messages", "cursor"}``.

Without ``after`` the answer comes at once with the channels' latest ids as the cursor;
with it, the request is held until a message arrives on one of the channels or
``timeout`` seconds pass (default ``ServerConfig.poll_timeout_s``, the shared
:data:`~rtsim.core.transport.LONG_POLL_HOLD_S`, at most ``poll_timeout_max_s``). A
resume older than the replay log holds, or from another epoch, adds ``"gaps"``. A waiting
poll counts as a connection (``max_connections``, ``max_connections_per_ip``,
``rtsim_connections{transport="long-polling"}``). A poll held when its token expires is
answered at once with 401 ``token_expired`` (the client polls again with a fresh token
from the same ``after``).

Every answer carries ``"degraded"``: ``true`` (with ``"poll_s"``) while the server is
overloaded — polls are then answered at once and the client polls with ``timeout=0``
every ``poll_s`` seconds — ``false`` otherwise (a degraded client goes back to pushing;
:mod:`rtsim.live.server.overload`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, ClassVar

from aiohttp import web

from rtsim.core.positions import with_epoch
from rtsim.core.replaylog import Gap, ReplayLogError, encode_cursor
from rtsim.core.transport import Transport

from ..protocol import ProtocolError, parse_channels, parse_resume, parse_timeout
from .auth import AuthError
from .gate import TOKEN_EXPIRED
from .stages import monotonic, peer_port
from .state import ServerState

__all__ = ["TRANSPORT", "LongPollHandler"]

TRANSPORT = Transport.LONG_POLLING


class LongPollHandler:
    """The ``/poll`` endpoint of one server (``state``: the server's shared state)."""

    transport: ClassVar[Transport] = TRANSPORT

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/poll", self.poll)]

    async def close(self) -> None:
        """Nothing of its own: waiting polls are answered when the server shuts down."""

    async def poll(self, request: web.Request) -> web.Response:
        st = self.state
        cfg, gate, hub = st.config, st.gate, st.hub
        peer = gate.peer(request)
        try:
            grant = gate.admit(request, TRANSPORT)
            channels = parse_channels(request.query.getall("channel", []), cfg.max_subscriptions)
            for ch in channels:
                grant.check_subscribe(ch)
            resume = parse_resume(request.query.get("after"), channels) or {}
            timeout = parse_timeout(
                request.query.get("timeout"), cfg.poll_timeout_s, cfg.poll_timeout_max_s
            )
            long_poll = timeout > 0
            if st.overload.level is Transport.POLLING:
                timeout = 0  # degraded: answer at once; the client polls every poll_s
            if not long_poll:
                st.metrics.interval_polls.inc()
            cursor = {
                ch: resume[ch]
                if ch in resume
                else with_epoch(st.backplane.epoch, await st.backplane.latest_id(ch))
                for ch in channels
            }
            port = peer_port(request.transport)  # names this client in traced stages
            fut = hub.add_waiter(channels)
            try:
                body = await self._collect(cursor, port)
                if body is None and timeout > 0:
                    expired = False

                    def expire() -> None:
                        nonlocal expired
                        expired = True
                        if not fut.done():
                            fut.set_result(None)

                    gate.opened(TRANSPORT, peer)
                    expiry = gate.on_expiry(grant, TRANSPORT, expire)
                    try:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(fut, timeout)
                    finally:
                        if expiry is not None:
                            expiry.cancel()
                        gate.closed(TRANSPORT, peer)
                    if expired:
                        raise AuthError(TOKEN_EXPIRED, "the token has expired; get a new one")
                    body = await self._collect(cursor, port)
            finally:
                hub.remove_waiter(channels, fut)
        except (AuthError, ProtocolError, ReplayLogError) as exc:
            return gate.http_error(exc)
        if body is None:
            body = b'{"messages":[],"cursor":' + json.dumps(encode_cursor(cursor)).encode() + b"}"
        body = body[:-1] + st.overload.poll_fields(long_poll) + b"}"
        return web.Response(body=body, content_type="application/json")

    async def _collect(self, cursor: dict[str, str], port: int = -1) -> bytes | None:
        """Read every channel after its cursor; the answer's bytes, or None if nothing new.

        A traced message's write time (client ``port``) is recorded as now: the answer
        is written right after."""
        st = self.state
        loop = asyncio.get_running_loop()
        latency = st.metrics.latency_by[TRANSPORT]
        parts: list[bytes] = []
        gaps: list[dict[str, Any]] = []
        for ch, after in cursor.items():
            result = await st.backplane.read_after(ch, after, st.config.poll_batch)
            if isinstance(result, Gap):
                st.metrics.gaps.inc()
                gap = st.hub.gap_of(result, after)
                del gap["type"]
                gaps.append(gap)
            now = loop.time()
            for env in result.messages:
                b = st.hub.broadcast_for(env)
                parts.append(b.json)
                latency.observe(now - env.ts)
                if b.trace is not None:
                    st.hub.stages.written(b.trace, port, monotonic())
            cursor[ch] = st.hub.position_after(result)
        if not parts and not gaps:
            return None
        st.metrics.deliveries_by[TRANSPORT].inc(len(parts))
        out = b'{"messages":[' + b",".join(parts) + b'],"cursor":'
        out += json.dumps(encode_cursor(cursor)).encode()
        if gaps:
            out += b',"gaps":' + json.dumps(gaps).encode()
        return out + b"}"
