"""The long-polling transport's client side: ``GET /poll`` in a loop, presence over HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from rtsim.core.transport import LONG_POLL_HOLD_S, Transport

from .wire import (
    ClientTransport,
    Connection,
    Degraded,
    LoadTarget,
    Refused,
    auth_headers,
    channel_params,
    cursor_of,
    poll_verdict,
    response_port,
)

__all__ = ["CLIENT", "RETRY_S", "connect", "load_subscriber", "take_answer"]

#: Seconds between the load subscriber's attempts while the server is unreachable.
RETRY_S = 0.2

TRANSPORT = Transport.LONG_POLLING


async def connect(c: Connection, on_open: Callable[[], None]) -> None:
    """Poll for ``c`` until a request fails: the first answers at once with the start
    position, the next ones wait up to ``c.poll_timeout_s`` seconds for news."""
    first = True
    beat: asyncio.Task[None] | None = None
    try:
        while True:
            after = cursor_of(c.cursor, c.channels)
            # Learn the start position at once; afterwards wait for news.
            complete = after is not None and all(ch in c.cursor for ch in c.channels)
            hold = c.poll_timeout_s if complete else 0
            params = channel_params(c.channels, after=after, timeout=hold)
            async with c.session.get(
                c.url + "/poll",
                params=params,
                headers=auth_headers(c.token),
                timeout=aiohttp.ClientTimeout(total=float(hold) + c.request_timeout_s),
            ) as r:
                body = await r.text()
                if r.status != 200:
                    raise Refused(r.status, body, r.headers.get("Retry-After"))
            obj = json.loads(body)
            if first:
                first = False
                on_open()
                for ch, state in c.presence_state.items():
                    await c.send_presence(ch, state)
                beat = asyncio.get_running_loop().create_task(c.http_heartbeat())
            for g in obj.get("gaps", []):
                c.gap(g)
            for m in obj["messages"]:
                c.deliver(m, TRANSPORT)
            c.merge_cursor(obj["cursor"])
            c.mark_ready()
            # Degraded: poll at its interval instead; or, sent down here by the server,
            # it now allows a better transport: step up.
            verdict = poll_verdict(obj, c.ceiling)
            if verdict is not None:
                raise verdict
    finally:
        if beat is not None:
            beat.cancel()


def take_answer(
    body: Mapping[str, Any],
    cursor: str,
    got: Callable[[Any, float, int], None],
    gap: Callable[[Mapping[str, Any]], None] | None,
    read_at: float,
    port: int,
) -> str:
    """A load subscriber's ``/poll`` answer handed on: its gaps to ``gap``, each message's
    data to ``got`` (read at ``read_at`` on local ``port``); returns the new cursor
    (``cursor`` if the answer has none). Raises :class:`~.wire.Degraded` (resuming after
    the new cursor) when the answer says the server is degraded."""
    if gap is not None:
        for g in body.get("gaps", []):
            gap(g)
    for m in body.get("messages", []):
        got(m.get("data"), read_at, port)
    cursor = str(body.get("cursor", cursor))
    if body.get("degraded") is True:
        raise Degraded(body.get("poll_s"), cursor)
    return cursor


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
    """The load generator's long-polling subscriber (see :class:`~.wire.LoadSubscriber`).

    A poll that fails to connect (e.g. the server is restarting) is retried after
    ``RETRY_S`` with the same cursor, so a restart shows as an epoch ``gap``, not an end;
    one refused with 429/503 (a limit, the broker down) is retried after the server's
    ``Retry-After`` (at least ``RETRY_S``), with the same cursor.
    """
    cursor = since or "0"
    first = True
    while True:
        hold = 0 if first else LONG_POLL_HOLD_S
        try:
            async with session.get(
                f"{target.url}/poll",
                params=channel_params([channel], after=cursor, timeout=hold),
                headers=auth_headers(target.token),
            ) as r:
                port = response_port(r)
                if r.status != 200:
                    refused = Refused(r.status, await r.text(), r.headers.get("Retry-After"))
                    if r.status not in (429, 503) or refused.degraded() is not None:
                        raise refused
                    await asyncio.sleep(max(RETRY_S, refused.retry_after_s or 0.0))
                    continue
                raw = await r.read()
                read_at = time.monotonic()
                body = json.loads(raw)
        except (aiohttp.ClientConnectionError, TimeoutError):
            if first:
                raise
            await asyncio.sleep(RETRY_S)
            continue
        if first:
            first = False
            ready()
        cursor = take_answer(body, cursor, got, gap, read_at, port)


CLIENT = ClientTransport(TRANSPORT, connect, load_subscriber)
