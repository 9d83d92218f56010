"""The load generator's WebSocket subscriber on picows (``--ws-client picows``).

It speaks what the aiohttp subscriber (:func:`.websocket.load_subscriber`) speaks — the
frames are read by the same :class:`~.loadframes.LoadFrames` — but picows parses frames in
Cython and calls :meth:`_Listener.on_ws_frame` straight from the socket's read callback:
no ``WSMessage`` object, no future and no task switch per message, which is most of what a
delivery costs the aiohttp client. Pings are answered by picows (``enable_auto_pong``).

``session`` is accepted for the :class:`~.wire.LoadSubscriber` signature and not used:
picows opens its own connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from picows import (
    WSCloseCode,
    WSError,
    WSFrame,
    WSInvalidStatusError,
    WSListener,
    WSMsgType,
    WSTransport,
    ws_connect,
)

from .loadframes import LoadFrames
from .wire import (
    DEGRADED_HEADER,
    Dropped,
    LoadTarget,
    Refused,
    load_refusal,
    local_port,
    subscribe_frame,
    ws_url,
)

__all__ = ["load_subscriber", "status_refused"]

#: Seconds to wait for the server's handshake answer (aiohttp's client waits as long).
HANDSHAKE_TIMEOUT_S = 30.0


class _Listener(WSListener):
    """Feeds a connection's text frames to ``frames``; remembers why the connection ended.

    A fragmented text message (which rtsim's server never sends) is put together before it
    is handled. An exception from ``frames`` (a ``degrade`` frame: :class:`Degraded`, a
    payload that is not JSON) ends the connection and is kept in :attr:`error` for the
    subscriber's coroutine to raise."""

    def __init__(self, frames: LoadFrames) -> None:
        super().__init__()
        self.frames = frames
        self.error: Exception | None = None
        self.close_code: int | None = None
        self._parts: list[bytes] | None = None

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        try:
            if kind == WSMsgType.TEXT and frame.fin:
                self.frames.text(frame.get_payload_as_bytes(), time.monotonic())
            elif kind == WSMsgType.TEXT or kind == WSMsgType.CONTINUATION:
                self._fragment(frame)
            elif kind == WSMsgType.CLOSE:
                self.close_code = frame.get_close_code().value
                transport.send_close(frame.get_close_code())
                transport.disconnect()
        except Exception as exc:  # raised by the subscriber's coroutine
            self.error = exc
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()

    def _fragment(self, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self._parts = []
        if self._parts is None:
            raise ValueError("a continuation frame without a message before it")
        self._parts.append(frame.get_payload_as_bytes())
        if frame.fin:
            payload, self._parts = b"".join(self._parts), None
            self.frames.text(payload, time.monotonic())


def status_refused(exc: WSInvalidStatusError) -> Refused:
    """A handshake picows saw refused (status ≥ 300) as :class:`~.wire.Refused`, with its
    ``Retry-After`` and ``X-Rtsim-Degraded`` headers and its body (as the aiohttp path's
    :func:`~.wire.handshake_refused`, which cannot see the body)."""
    response = exc.response
    if response is None:
        return Refused(0, str(exc))
    body = (exc.raw_body or response.body or b"").decode("utf-8", "replace")
    headers = response.headers
    return Refused(
        int(response.status), body, headers.get("Retry-After"), headers.get(DEGRADED_HEADER)
    )


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
    """The load generator's WebSocket subscriber on picows (see
    :class:`~.wire.LoadSubscriber`: same frames, same exceptions as
    :func:`.websocket.load_subscriber`)."""
    frames = LoadFrames(got, gap, since)
    listener = _Listener(frames)
    url = ws_url(target.url, target.ws_path, target.token)
    try:
        transport, _ = await ws_connect(
            lambda: listener,
            url,
            websocket_handshake_timeout=HANDSHAKE_TIMEOUT_S,
            enable_auto_pong=True,
            max_frame_size=2**31 - 1,
        )
    except WSInvalidStatusError as exc:
        raise load_refusal(status_refused(exc), since) from None
    try:
        frames.port = local_port(transport.underlying_transport.get_extra_info("sockname"))
        transport.send(WSMsgType.TEXT, subscribe_frame(channel, since).encode())
        ready()
        await transport.wait_disconnected()
    except (WSError, ConnectionError, OSError) as exc:
        raise Dropped(frames.last, f"{type(exc).__name__}: {exc}") from None
    finally:
        transport.disconnect()  # at once if cancelled; a no-op once disconnected
    if listener.error is not None:
        raise listener.error  # Degraded, with the last position; or a bad frame
    code = listener.close_code
    raise Dropped(frames.last, f"close {code}" if code is not None else "connection lost")
