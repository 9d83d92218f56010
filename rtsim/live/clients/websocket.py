"""The WebSocket transport's client side: ``GET /ws`` with JSON text frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from rtsim.core.transport import Transport

from .loadframes import LoadFrames
from .wire import (
    HEARTBEAT_FRAME,
    ClientTransport,
    Connection,
    Dropped,
    LoadTarget,
    degraded_of,
    handshake_refused,
    load_refusal,
    local_port,
    presence_frame,
    subscribe_frame,
    ws_url,
)

__all__ = ["CLIENT", "connect", "load_subscriber"]

TRANSPORT = Transport.WEBSOCKET
#: The server's close code for a connection whose token expired (docs/protocol.md).
CLOSE_TOKEN_EXPIRED = 4001


async def connect(c: Connection, on_open: Callable[[], None]) -> None:
    """One WebSocket connection of ``c``: subscribe (resuming from ``c.cursor``), send its
    presence, then receive until the socket closes (``ConnectionResetError`` unless 1000)."""
    params = {"token": c.token} if c.token else None
    try:
        ws = await c.session.ws_connect(ws_url(c.url), params=params, heartbeat=None)
    except aiohttp.WSServerHandshakeError as exc:
        raise handshake_refused(exc) from None
    async with ws:
        c.attach_ws(ws)
        on_open()
        waiting = set(c.channels)
        for ch in c.channels:
            await ws.send_str(subscribe_frame(ch, c.cursor.get(ch)))
        for ch, state in c.presence_state.items():
            await ws.send_str(presence_frame(ch, state))
        beat = asyncio.get_running_loop().create_task(_heartbeat(ws, c.heartbeat_s))
        try:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                obj = json.loads(msg.data)
                kind = obj.get("type")
                if kind == "message":
                    c.deliver(obj, TRANSPORT)
                elif kind == "subscribed":
                    c.merge_position(obj["channel"], obj["since"])
                    waiting.discard(obj["channel"])
                    if not waiting:
                        c.mark_ready()
                elif kind == "gap":
                    c.gap(obj)
                elif kind == "presence":
                    c.on_presence(obj)
                elif kind == "ack":
                    c.on_ack(obj)
                elif kind == "error":
                    c.on_error(obj)
                    if obj.get("code") == "bad_cursor" and waiting:
                        # A refused resume: subscribe from now on, never stay unsubscribed.
                        refused = [ch for ch in waiting if ch in c.cursor]
                        c.cursor_refused(refused)
                        for ch in refused:
                            await ws.send_str(subscribe_frame(ch, None))
                elif kind == "degrade":  # step down (or poll), from the cursor
                    raise degraded_of(obj)
        finally:
            beat.cancel()
        if ws.close_code is not None and ws.close_code != 1000:
            why = " (token_expired)" if ws.close_code == CLOSE_TOKEN_EXPIRED else ""
            raise ConnectionResetError(f"closed with {ws.close_code}{why}")


async def _heartbeat(ws: aiohttp.ClientWebSocketResponse, every_s: float) -> None:
    with contextlib.suppress(Exception):
        while True:
            await asyncio.sleep(every_s)
            await ws.send_str(HEARTBEAT_FRAME)


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
    """The load generator's WebSocket subscriber on aiohttp (see
    :class:`~.wire.LoadSubscriber`; :mod:`.ws_picows` is the leaner one)."""
    url = ws_url(target.url, target.ws_path, target.token)
    try:
        ws = await session.ws_connect(url, max_msg_size=0, autoping=True)
    except aiohttp.WSServerHandshakeError as exc:
        raise load_refusal(handshake_refused(exc), since) from None
    frames = LoadFrames(got, gap, since)
    reason = ""
    try:
        async with ws:
            frames.port = local_port(ws.get_extra_info("sockname"))
            await ws.send_str(subscribe_frame(channel, since))
            ready()
            async for msg in ws:
                read_at = time.monotonic()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                frames.text(msg.data, read_at)
            reason = f"close {ws.close_code}"
    except (aiohttp.ClientError, ConnectionError, OSError) as exc:
        raise Dropped(frames.last, f"{type(exc).__name__}: {exc}") from None
    raise Dropped(frames.last, reason)  # the server closed it (e.g. 1013): resume from here


CLIENT = ClientTransport(TRANSPORT, connect, load_subscriber)
