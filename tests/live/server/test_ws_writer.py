"""An idle WebSocket has no writer task: one is started when something is queued for it
(its socket is busy, or a control frame is due) and ends once the queue is drained."""

from __future__ import annotations

from typing import Any

from rtsim.core.envelope import Envelope
from rtsim.core.transport import Transport
from rtsim.live.server.hub import NO_QUEUE, Control, Subscriber

from ..conftest import publish, subscribe, wait_until, ws_collect


def _writers(srv: Any, channel: str) -> list[bool]:
    """Per subscriber of ``channel`` (in subscription order): has it a writer task now?"""
    subs: list[Subscriber] = list(srv.server.hub.subs.get(channel, {}))
    return [s.on_wake.__self__.writer is not None for s in subs]


async def test_writer_task_only_while_queued(srv, http) -> None:
    wss = [await http.ws_connect(srv.ws_url) for _ in range(3)]
    try:
        for ws in wss:
            await subscribe(ws, "room")  # "subscribed" went through a writer task
        await wait_until(lambda: _writers(srv, "room") == [False, False, False])
        assert not hasattr(next(iter(srv.server.hub.subs["room"])), "__dict__")

        # Idle sockets: broadcasts are written directly, no writer task is started.
        for i in range(5):
            await publish(http, srv.url, "room", i)
        for ws in wss:
            assert [m["data"] for m in await ws_collect(ws, 5)] == [0, 1, 2, 3, 4]
        assert _writers(srv, "room") == [False, False, False]

        # A busy socket (here: one whose direct-write limit is 0, without the fast lane)
        # gets its message queued and a writer task for it; the others still take direct
        # writes.
        async def busy_broadcast() -> list[bool]:
            hub = srv.server.hub
            first = next(iter(hub.subs["room"]))
            first.direct_limit = 0
            first.sock = None
            hub.on_message(Envelope(channel="room", id="100", data="queued", ts=0.0))
            return _writers(srv, "room")

        assert srv.call(busy_broadcast) == [True, False, False]
        for ws in wss:
            assert [m["data"] for m in await ws_collect(ws, 1)] == ["queued"]
        await wait_until(lambda: _writers(srv, "room") == [False, False, False])
        assert all(s.queue is NO_QUEUE for s in srv.server.hub.subs["room"])
    finally:
        for ws in wss:
            await ws.close()


def test_subscriber_owns_a_queue_only_while_something_is_queued() -> None:
    sub = Subscriber(Transport.WEBSOCKET, 10)
    woken: list[int] = []
    sub.on_wake = lambda: woken.append(len(sub.queue))
    assert sub.queue is NO_QUEUE and not sub.queue
    sub.send(Control({"type": "a"}))
    sub.send(Control({"type": "b"}))
    assert sub.queue is not NO_QUEUE and woken == [1, 2]
    assert [sub.pop().obj["type"] for _ in range(2)] == ["a", "b"]  # type: ignore[union-attr]
    assert sub.queue is NO_QUEUE and len(NO_QUEUE) == 0  # the shared one stays empty
    sub.close("client closed")
    sub.send(Control({"type": "c"}))  # dropped: closed
    assert sub.queue is NO_QUEUE and woken == [1, 2, 0]
