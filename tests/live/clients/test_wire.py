"""What the client and the load generator share: URLs, parameters, frames, the transport table."""

from __future__ import annotations

import json

import pytest

from rtsim.core.transport import Transport
from rtsim.live.clients.client import DEFAULT_TRANSPORTS, LiveClient
from rtsim.live.clients.transports import CLIENT_TRANSPORTS, client_transport
from rtsim.live.clients.wire import (
    auth_headers,
    channel_params,
    cursor_of,
    publish_frame,
    subscribe_frame,
    ws_url,
)


@pytest.mark.parametrize(
    ("base", "path", "token", "want"),
    [
        ("http://127.0.0.1:8765", "/ws", None, "ws://127.0.0.1:8765/ws"),
        ("https://example.org", "/ws", None, "wss://example.org/ws"),
        ("http://h:1/prefix/", "/ws", "a b", "ws://h:1/prefix/ws?token=a+b"),
        ("http://h:1", "/socket", "t", "ws://h:1/socket?token=t"),
    ],
)
def test_ws_url(base: str, path: str, token: str | None, want: str) -> None:
    assert ws_url(base, path, token) == want


def test_params_headers_and_cursor() -> None:
    assert channel_params(["a", "b"], token="t", after=None, timeout=25.0) == [
        ("channel", "a"),
        ("channel", "b"),
        ("timeout", "25.0"),
        ("token", "t"),
    ]
    assert auth_headers(None) == {} and auth_headers("x") == {"Authorization": "Bearer x"}
    assert cursor_of({"a": "3", "z": "9"}, ["a", "b"]) == "a=3"
    assert cursor_of({}, ["a"]) is None


def test_frames_are_the_protocol_json() -> None:
    assert json.loads(subscribe_frame("c")) == {"type": "subscribe", "channel": "c"}
    assert json.loads(subscribe_frame("c", "7"))["since"] == "7"
    assert json.loads(publish_frame("c", {"x": 1}, ref=2)) == {
        "type": "publish",
        "channel": "c",
        "data": {"x": 1},
        "ref": 2,
    }


def test_the_transport_table_drives_the_client() -> None:
    assert tuple(CLIENT_TRANSPORTS) == DEFAULT_TRANSPORTS
    for transport, side in CLIENT_TRANSPORTS.items():
        assert side.transport is transport and callable(side.connect) and callable(side.load)
    with pytest.raises(ValueError, match="not supported by this client"):
        client_transport(Transport.POLLING)
    c = LiveClient("http://h:1", ["a"], transports=["sse", Transport.LONG_POLLING])
    assert c.policy.cascade == (Transport.SSE, Transport.LONG_POLLING)
    with pytest.raises(ValueError, match="unknown transport"):
        LiveClient("http://h:1", ["a"], transports=["carrier-pigeon"])
