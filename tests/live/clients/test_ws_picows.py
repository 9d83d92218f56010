"""The load subscribers' table and the frame reading the WebSocket ones share (the picows
subscriber against a real server is tested with the bare-Protocol ones, in
``test_lean_readers.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from rtsim.live.clients.loadframes import LoadFrames
from rtsim.live.clients.transports import load_subscriber
from rtsim.live.clients.wire import Degraded
from rtsim.live.clients.ws_picows import load_subscriber as picows_subscriber


def test_the_ws_client_table() -> None:
    from rtsim.core.transport import Transport
    from rtsim.live.clients import sse, sse_raw, websocket, ws_raw

    assert load_subscriber(Transport.WEBSOCKET) is ws_raw.load_subscriber
    assert load_subscriber(Transport.WEBSOCKET, "picows") is picows_subscriber
    assert load_subscriber(Transport.WEBSOCKET, "aiohttp") is websocket.load_subscriber
    assert load_subscriber(Transport.SSE, "picows") is sse_raw.load_subscriber
    assert load_subscriber(Transport.SSE, "picows", "aiohttp") is sse.load_subscriber
    with pytest.raises(ValueError, match="ws_client must be raw or picows or aiohttp, got 'x'"):
        load_subscriber(Transport.WEBSOCKET, "x")
    with pytest.raises(ValueError, match="sse_client must be raw or aiohttp, got 'x'"):
        load_subscriber(Transport.SSE, sse_client="x")


def test_load_frames_track_the_resume_position() -> None:
    got: list[tuple[Any, float, int]] = []
    gaps: list[Any] = []
    frames = LoadFrames(lambda d, r, p: got.append((d, r, p)), gaps.append, None, port=7)
    frames.text(b'{"type":"subscribed","channel":"c","since":"3"}', 1.0)
    assert frames.last == "3"
    frames.text('{"type":"message","id":"4","data":{"seq":1}}', 2.0)
    frames.text(b'{"type":"ack","ref":1}', 2.5)
    assert got == [({"seq": 1}, 2.0, 7)] and frames.last == "4"
    frames.text(b'{"type":"gap","position":"9","reason":"epoch"}', 3.0)
    assert frames.last == "9" and gaps == [{"type": "gap", "position": "9", "reason": "epoch"}]
    with pytest.raises(Degraded) as info:
        frames.text(b'{"type":"degrade","poll_s":2}', 4.0)
    assert info.value.cursor == "9" and info.value.poll_s == 2.0
    with pytest.raises(ValueError):
        frames.text(b"not json", 5.0)
