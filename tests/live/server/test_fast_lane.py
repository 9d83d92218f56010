"""The fan-out's fast lane (:mod:`rtsim.live.server.fastlane`): an idle WebSocket gets a
broadcast's bytes from one ``socket.send()``; a busy one falls back to its transport, in
order; a slow consumer is still closed with 1013; other transports never take it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rtsim.core.envelope import Envelope
from rtsim.core.transport import Transport
from rtsim.live.server.fastlane import SELECTOR_TRANSPORT, raw_socket, send_idle
from rtsim.live.server.hub import QUEUED, SENT, WRITTEN, Broadcast, Subscriber
from rtsim.live.server.websocket import CLOSE_SLOW, WebSocketHandler

from ..conftest import Serve, publish, subscribe, ws_collect
from .test_hostile import _flood_and_check, _slow_websocket


def _broadcast(i: int) -> Broadcast:
    return Broadcast(Envelope(channel="c", id=str(i), data=i, ts=0.0), (i,))


class _Recorder:
    """A transport stand-in that records what it was handed."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))


class _Sock:
    """A socket stand-in whose send() takes ``take`` bytes, or raises ``exc``."""

    def __init__(self, take: int = 0, exc: BaseException | None = None) -> None:
        self.take, self.exc = take, exc

    def send(self, data: bytes) -> int:
        if self.exc is not None:
            raise self.exc
        return min(self.take, len(data))


@pytest.mark.parametrize(
    ("sock", "sent_now", "handed_on"),
    [
        (_Sock(take=100), True, []),
        (_Sock(take=3), False, [b"3456789"]),  # partial: the rest, once
        (_Sock(exc=BlockingIOError()), False, [b"0123456789"]),  # EAGAIN: all of it
        (_Sock(exc=InterruptedError()), False, [b"0123456789"]),
        (_Sock(exc=ConnectionResetError()), False, [b"0123456789"]),  # the transport fails it
    ],
)
def test_send_idle_hands_the_transport_exactly_what_the_kernel_did_not_take(
    sock: _Sock, sent_now: bool, handed_on: list[bytes]
) -> None:
    t = _Recorder()
    assert send_idle(sock, t, b"0123456789") is sent_now  # type: ignore[arg-type]
    assert t.written == handed_on


@pytest.fixture
async def pair() -> AsyncIterator[tuple[asyncio.Transport, socket.socket]]:
    """An asyncio plain-TCP transport (the server end) and the peer's blocking socket."""
    lst = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(lst.getsockname())
    server_end, _ = lst.accept()
    lst.close()
    server_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(
        asyncio.Protocol, server_end
    )
    yield transport, peer  # type: ignore[misc]
    transport.abort()
    peer.close()


def _read_all(peer: socket.socket, n: int) -> bytes:
    got = bytearray()
    peer.settimeout(10)
    while len(got) < n:
        chunk = peer.recv(65536)
        assert chunk, f"the stream ended after {len(got)} of {n} bytes"
        got += chunk
    return bytes(got)


def _fill(transport: asyncio.Transport) -> bytes:
    """Send on the transport's socket until the kernel takes no more; what it took."""
    sock = raw_socket(transport)
    assert sock is not None
    sent = 0
    while True:
        try:
            sent += sock.send(b"f" * 4096)
        except BlockingIOError:
            return b"f" * sent


async def test_idle_selector_transport_takes_the_fast_lane(pair: Any) -> None:
    transport, peer = pair
    assert type(transport) is SELECTOR_TRANSPORT
    sub = Subscriber(Transport.WEBSOCKET, 8)
    sub.use_direct(transport)
    assert sub.raw_socket() is raw_socket(transport) is not None
    bs = [_broadcast(i) for i in range(1, 4)]
    assert [sub.offer(b) for b in bs] == [SENT, SENT, SENT]
    assert transport.get_write_buffer_size() == 0
    want = b"".join(b.ws_wire for b in bs)
    assert _read_all(peer, len(want)) == want


async def test_a_busy_transport_falls_back_and_keeps_the_order(pair: Any) -> None:
    transport, peer = pair
    sub = Subscriber(Transport.WEBSOCKET, 8)
    sub.use_direct(transport)
    # Fill the kernel's buffers, then leave some bytes in the transport's own buffer.
    filler = _fill(transport)
    transport.write(b"t" * 1000)
    assert transport.get_write_buffer_size() == 1000
    bs = [_broadcast(i) for i in range(1, 6)]
    assert [sub.offer(b) for b in bs] == [WRITTEN] * 5  # below direct_limit: to the transport
    sub.direct_limit = transport.get_write_buffer_size()  # now "busy": queued instead
    extra = _broadcast(6)
    assert sub.offer(extra) == QUEUED and list(sub.queue) == [extra]
    want = filler + b"t" * 1000 + b"".join(b.ws_wire for b in bs)
    got = await asyncio.to_thread(_read_all, peer, len(want))
    assert got == want  # nothing lost, nothing twice, in order
    await asyncio.sleep(0.05)  # the transport's writer has drained its buffer
    assert transport.get_write_buffer_size() == 0
    sub.pop()
    assert sub.offer(_broadcast(7)) == SENT  # idle again: the fast lane again


async def test_eagain_goes_to_the_transport_then_the_lane_waits(pair: Any) -> None:
    transport, peer = pair
    sub = Subscriber(Transport.WEBSOCKET, 8)
    sub.use_direct(transport)
    filler = _fill(transport)
    a, b = _broadcast(1), _broadcast(2)
    assert sub.offer(a) == WRITTEN  # the kernel took none: the transport buffers it all
    assert transport.get_write_buffer_size() == len(a.ws_wire)
    assert sub.offer(b) == WRITTEN  # not the fast lane: the transport's buffer is not empty
    want = filler + a.ws_wire + b.ws_wire
    assert await asyncio.to_thread(_read_all, peer, len(want)) == want


def test_other_transports_never_take_the_fast_lane() -> None:
    class LookAlike:  # the same private fields, another class (e.g. uvloop's, or TLS's)
        def __init__(self) -> None:
            self._sock = socket.socket()
            self._buffer = b""
            self._closing = False

        def write(self, data: bytes) -> None: ...
        def get_write_buffer_size(self) -> int:
            return 0

        def is_closing(self) -> bool:
            return False

    fake = LookAlike()
    try:
        assert raw_socket(fake) is None
        sub = Subscriber(Transport.WEBSOCKET, 8)
        sub.use_direct(fake)
        assert sub.raw_socket() is None and sub.direct is fake
        assert sub.offer(_broadcast(1)) == WRITTEN  # the ordinary direct write
    finally:
        fake._sock.close()
    from asyncio.sslproto import _SSLProtocolTransport

    tls: Any = object.__new__(_SSLProtocolTransport)  # asyncio's TLS transport
    tls._closed = True  # (nothing to close at collection: it was never opened)
    assert raw_socket(tls) is None
    assert SELECTOR_TRANSPORT is not None
    derived: Any = object.__new__(type("Derived", (SELECTOR_TRANSPORT,), {}))
    derived._sock = None
    assert raw_socket(derived) is None  # exact type only


def test_uvloop_transport_never_takes_the_fast_lane() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> tuple[Any, Any]:
        lst = socket.create_server(("127.0.0.1", 0))
        peer = socket.create_connection(lst.getsockname())
        end, _ = lst.accept()
        lst.close()
        t, _ = await asyncio.get_running_loop().connect_accepted_socket(asyncio.Protocol, end)
        try:
            sub = Subscriber(Transport.WEBSOCKET, 8)
            sub.use_direct(t)
            return raw_socket(t), sub.raw_socket()
        finally:
            t.abort()
            peer.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(main()) == (None, None)


def test_sse_streams_never_take_the_fast_lane() -> None:
    sub = Subscriber(Transport.SSE, 8)
    sub.use_direct(_Recorder(), sse=True)
    assert sub.raw_socket() is None


async def test_server_sends_idle_websockets_through_the_fast_lane(srv, http) -> None:
    hub = srv.server.hub
    wss = [await http.ws_connect(srv.ws_url) for _ in range(2)]
    try:
        for ws in wss:
            await subscribe(ws, "room")
        subs = list(hub.subs["room"])
        assert all(s.raw_socket() is not None for s in subs)
        before = hub.fast_sends
        for i in range(5):
            await publish(http, srv.url, "room", i)
        for ws in wss:
            assert [m["data"] for m in await ws_collect(ws, 5)] == [0, 1, 2, 3, 4]
        assert hub.fast_sends - before == 10  # every delivery, one send() each
        labels = {"transport": "websocket"}
        assert srv.metric("rtsim_deliveries_total", labels) >= 10  # still counted
    finally:
        for ws in wss:
            await ws.close()


async def test_slow_websocket_consumer_is_still_closed_1013(
    serve: Serve, http, monkeypatch: pytest.MonkeyPatch
) -> None:
    kills: list[tuple[int, str]] = []
    kill = WebSocketHandler._kill

    async def recording_kill(self: Any, conn: Any, code: int, reason: str) -> None:
        kills.append((code, reason))
        await kill(self, conn, code, reason)

    monkeypatch.setattr(WebSocketHandler, "_kill", recording_kill)
    srv = serve(send_queue=8, close_grace_s=0.2)
    slow = await _slow_websocket(srv)
    slow_sub = next(iter(srv.server.hub.subs["s"]))
    assert slow_sub.raw_socket() is not None  # it starts on the fast lane
    await _flood_and_check(srv, http, slow, "websocket")
    assert slow_sub.closed and slow_sub.close_reason == "slow consumer"
    assert (CLOSE_SLOW, "slow consumer") in kills
    assert srv.server.hub.fast_sends > 0  # the good client's deliveries took the lane
