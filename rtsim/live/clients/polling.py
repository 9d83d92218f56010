"""Interval polling, the cascade's last rung: ``GET /poll?timeout=0`` every ``poll_s`` seconds.

:class:`~rtsim.live.clients.client.LiveClient` polls this way only while the server has
sent it away from pushing (overload, or a facilitator's room level; a ``degrade`` frame or
event, a 503, or a long-poll answer with ``"degraded": true``) — or while the level allows
none of its own transports: it polls from its cursor, so the replay log makes the switch
lossless, at the server's ``poll_s`` (the article's 5–10 s), and stops with
:class:`~.wire.Recovered` when an answer says ``"degraded": false`` and allows a better
rung than the one it was sent to (the client then reconnects at the top of what is
allowed). Not in the client's transport table (:data:`~.transports.CLIENT_TRANSPORTS`): a
client never picks it by itself, and the load generator follows its own degraded
subscribers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp

from rtsim.core.transport import Transport

from .wire import (
    Connection,
    Recovered,
    Refused,
    auth_headers,
    channel_params,
    cursor_of,
    poll_verdict,
)

__all__ = ["TRANSPORT", "connect"]

TRANSPORT = Transport.POLLING


async def connect(c: Connection, on_open: Callable[[], None]) -> None:
    """Poll for ``c`` with ``timeout=0`` every ``c.poll_interval_s`` seconds (the server's
    ``poll_s`` when its answer gives one) until a request fails (``Refused``,
    ``aiohttp.ClientError``) or the server has recovered (raises :class:`~.wire.Recovered`).
    """
    beat: asyncio.Task[None] | None = None
    first = True
    try:
        while True:
            after = cursor_of(c.cursor, c.channels)
            async with c.session.get(
                c.url + "/poll",
                params=channel_params(c.channels, after=after, timeout=0),
                headers=auth_headers(c.token),
                timeout=aiohttp.ClientTimeout(total=c.request_timeout_s),
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
            if obj.get("degraded") is False:  # up to the rung it names (none: the top) ...
                verdict = poll_verdict(obj, c.ceiling)
                if isinstance(verdict, Recovered):  # ... if better than the one we were sent to
                    raise verdict
            poll_s = obj.get("poll_s")
            if isinstance(poll_s, int | float) and 0 < poll_s < float("inf"):
                c.poll_interval_s = float(poll_s)
            await asyncio.sleep(c.poll_interval_s)
    finally:
        if beat is not None:
            beat.cancel()
