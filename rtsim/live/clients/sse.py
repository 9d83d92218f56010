"""The SSE transport's client side: ``GET /sse`` (``text/event-stream``), resumable."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from rtsim.core.transport import Transport

from .wire import (
    ClientTransport,
    Connection,
    Degraded,
    Dropped,
    LoadTarget,
    Recovered,
    Refused,
    auth_headers,
    channel_params,
    cursor_of,
    degraded_of,
    load_refusal,
    poll_verdict,
    response_port,
    sse_events,
)

__all__ = ["CLIENT", "connect", "load_subscriber"]

TRANSPORT = Transport.SSE


async def connect(c: Connection, on_open: Callable[[], None]) -> None:
    """One event stream of ``c`` (``Last-Event-ID`` from ``c.cursor``); presence goes over
    HTTP. Raises ``ConnectionResetError`` when the stream ends."""
    headers = {"Accept": "text/event-stream"}
    resume = cursor_of(c.cursor, c.channels)
    if resume is not None:
        headers["Last-Event-ID"] = resume
    params = channel_params(c.channels, token=c.token)
    async with c.session.get(c.url + "/sse", params=params, headers=headers) as r:
        if r.status != 200:
            raise Refused(r.status, await r.text(), r.headers.get("Retry-After"))
        on_open()
        for ch, state in c.presence_state.items():
            await c.send_presence(ch, state)
        beat = asyncio.get_running_loop().create_task(c.http_heartbeat())
        try:
            async for events, last_id in sse_events(r):
                change: Degraded | Recovered | None = None
                for event, obj in events:
                    if event == "degrade":  # step down (or poll), from the cursor
                        change = degraded_of(obj)
                    elif event == "recover":  # the server allows more: step up if sent down
                        change = poll_verdict(obj, c.ceiling) or change
                    elif event == "message":
                        c.deliver(obj, TRANSPORT)
                    elif event == "gap":
                        c.gap(obj)
                    elif event == "presence":
                        c.on_presence(obj)
                    elif event == "error":  # e.g. token_expired: the stream ends next
                        c.on_error(obj)
                if last_id:
                    c.merge_cursor(last_id)
                    c.mark_ready()
                if change is not None:
                    raise change
        finally:
            beat.cancel()
    raise ConnectionResetError("the event stream ended")


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
    """The load generator's SSE subscriber (see :class:`~.wire.LoadSubscriber`)."""
    headers = auth_headers(target.token)
    if since is not None:
        headers["Last-Event-ID"] = since
    async with session.get(
        f"{target.url}/sse",
        params=channel_params([channel]),
        headers=headers,
        timeout=aiohttp.ClientTimeout(),
    ) as r:
        if r.status != 200:
            refused = Refused(r.status, await r.text(), r.headers.get("Retry-After"))
            raise load_refusal(refused, since)
        port = response_port(r)
        ready()
        last = since
        try:
            async for events, last_id in sse_events(r):
                read_at = time.monotonic()
                for event, obj in events:
                    if event == "degrade":
                        raise degraded_of(obj, last)
                    if event == "message":
                        got(obj.get("data"), read_at, port)
                    elif event == "gap" and gap is not None:
                        gap(obj)
                last = last_id or last
        except (aiohttp.ClientError, ConnectionError, OSError) as exc:
            raise Dropped(last, f"{type(exc).__name__}: {exc}") from None
    raise Dropped(last, "stream ended")  # resume from the last event id


CLIENT = ClientTransport(TRANSPORT, connect, load_subscriber)
