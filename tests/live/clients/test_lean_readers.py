"""The lean load subscribers (picows; bare Protocols: WebSocket ``ws_raw``, SSE ``sse_raw``)
against a real server — every message once, a resume after a drop from the last position, a degrade
raised with that position, a refusal with its Retry-After — and their fast paths (one
memoized lookup per broadcast) against the general readers, on frames the server's own
``Broadcast`` encodes, whole and cut at every byte."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsim.core.envelope import Envelope
from rtsim.core.transport import SseDecoder, format_sse_event, ws_frame
from rtsim.live.background import BackgroundServer
from rtsim.live.clients import sse_raw, ws_picows, ws_raw
from rtsim.live.clients.loadevents import LoadEvents, sse_chunk
from rtsim.live.clients.loadframes import LoadFrames
from rtsim.live.clients.traced import pack_traced, unpack_traced
from rtsim.live.clients.wire import Degraded, Dropped, LoadSubscriber, LoadTarget, Refused
from rtsim.live.clients.wsframes import PING, WsReader, ws_accept, ws_message
from rtsim.live.server.hub import Broadcast

from ..conftest import Serve, publish, wait_until

CHANNEL = "lean"
SUBSCRIBERS = [ws_picows.load_subscriber, ws_raw.load_subscriber, sse_raw.load_subscriber]


class _Run:
    """One subscriber task and what it received."""

    def __init__(
        self, sub: LoadSubscriber, srv: BackgroundServer, since: str | None = None
    ) -> None:
        self.data: list[Any] = []
        self.gaps: list[Any] = []
        self.ports: set[int] = set()
        self.subscribed = asyncio.Event()
        self.task = asyncio.ensure_future(
            sub(
                None,  # type: ignore[arg-type]  # each opens its own connection
                LoadTarget(srv.url),
                CHANNEL,
                self._got,
                self.subscribed.set,
                gap=self.gaps.append,
                since=since,
            )
        )

    def _got(self, data: Any, read_at: float, port: int) -> None:
        assert read_at > 0
        self.data.append(data)
        self.ports.add(port)

    async def ended(self) -> BaseException | None:
        await asyncio.wait_for(asyncio.wait([self.task]), 10)
        return asyncio.CancelledError() if self.task.cancelled() else self.task.exception()


async def _subscribed(srv: BackgroundServer, n: int = 1) -> None:
    await wait_until(lambda: len(srv.server.hub.subs.get(CHANNEL, ())) >= n)


def _drop(srv: BackgroundServer) -> None:
    async def drop() -> None:
        for sub in list(srv.server.hub.subs.get(CHANNEL, ())):
            sub.close("slow consumer")  # as the hub does when its queue is full
            if sub.on_overflow is not None:
                sub.on_overflow(sub)  # WebSocket: close 1013

    srv.call(drop)


@pytest.mark.parametrize("sub", SUBSCRIBERS)
async def test_every_message_once_then_resume_after_a_drop(
    sub: LoadSubscriber, srv: BackgroundServer, http: aiohttp.ClientSession
) -> None:
    run = _Run(sub, srv)
    await _subscribed(srv)
    ids = [await publish(http, srv.url, CHANNEL, {"seq": i, "t": 1.5}) for i in range(5)]
    await wait_until(lambda: len(run.data) == 5)
    assert run.data == [{"seq": i, "t": 1.5} for i in range(5)]
    assert len(run.ports) == 1 and min(run.ports) > 0
    _drop(srv)
    exc = await run.ended()
    assert isinstance(exc, Dropped) and exc.cursor is not None
    assert exc.cursor.endswith(ids[-1])  # WebSocket: the id; SSE: "lean=EPOCH:ID"
    await publish(http, srv.url, CHANNEL, {"seq": 5})  # while it was away
    again = _Run(sub, srv, since=exc.cursor)
    await _subscribed(srv)
    await publish(http, srv.url, CHANNEL, {"seq": 6})
    await wait_until(lambda: len(again.data) == 2)
    await asyncio.sleep(0.1)  # a duplicate would arrive now
    assert again.data == [{"seq": 5}, {"seq": 6}]
    again.task.cancel()
    assert isinstance(await again.ended(), asyncio.CancelledError)
    await wait_until(lambda: not srv.server.hub.subs.get(CHANNEL))  # closed on cancel


@pytest.mark.parametrize("sub", SUBSCRIBERS)
async def test_a_degrade_is_raised_with_the_last_position(
    sub: LoadSubscriber, serve: Serve, http: aiohttp.ClientSession
) -> None:
    srv = serve(degrade_poll_s=0.5, overload_hold_s=0, overload_lag_ms=0)
    run = _Run(sub, srv)
    await _subscribed(srv)
    last = await publish(http, srv.url, CHANNEL, {"seq": 0})
    await wait_until(lambda: len(run.data) == 1)

    async def overload() -> None:
        srv.server.overload.force(True)

    srv.call(overload)
    exc = await run.ended()
    assert isinstance(exc, Degraded)
    assert exc.cursor is not None and exc.cursor.endswith(last)
    assert exc.poll_s == 0.5


@pytest.mark.parametrize("sub", SUBSCRIBERS)
async def test_a_refusal_carries_retry_after(sub: LoadSubscriber, serve: Serve) -> None:
    srv = serve(max_connections_per_ip=1)
    first = _Run(sub, srv)
    await _subscribed(srv)
    second = _Run(sub, srv)
    exc = await second.ended()
    assert isinstance(exc, Refused) and exc.status in (429, 503)
    assert exc.retry_after_s is not None and exc.retry_after_s > 0
    first.task.cancel()


# --- the fast paths against the general readers, on the server's own encodings -------------
def _nested(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    _nested,
    max_leaves=8,
)
_load_data = st.fixed_dictionaries(
    {
        "seq": st.integers(0, 2**53),
        "t": st.floats(0, 1e9, allow_nan=False),
        "pad": st.text(max_size=300),
    },
    optional={"trace": st.text(max_size=20), "sent": st.floats(0, 1e9, allow_nan=False)},
)
_broadcasts = st.builds(
    lambda data, seq, ch, epoch: Broadcast(
        Envelope(channel=ch, id=str(seq), data=data, ts=1.25), (seq,), epoch
    ),
    _load_data | _json,
    st.integers(0, 10**9),
    st.from_regex(r"[A-Za-z0-9_\-:.@]{1,20}", fullmatch=True),
    st.sampled_from(["", "ab12"]),
)


def _calls() -> tuple[list[tuple[Any, float, int]], Any]:
    calls: list[tuple[Any, float, int]] = []
    return calls, lambda d, r, p: calls.append((d, r, p))


def test_integers_beyond_64_bits_are_read_as_orjson_reads_them() -> None:
    """The load readers parse with orjson, which reads an integer outside [-2**63, 2**64)
    as a float (json.loads keeps it exact): the example hypothesis found, as documented in
    ``rtsim.live.clients.loadframes.decoded``."""
    big = -9223372036854775809
    b = Broadcast(Envelope(channel="c", id="1", data=big, ts=1.25), (1,), "")
    assert json.loads(b.ws)["data"] == big
    assert ws_message(b.ws_wire) == ("1", float(big))


@settings(max_examples=150, deadline=None)
@given(_broadcasts)
def test_the_websocket_fast_path_reads_what_orjson_reads(b: Broadcast) -> None:
    expected = orjson.loads(b.ws)
    assert ws_message(b.ws_wire) == (expected["id"], expected["data"])
    slow_calls, slow_got = _calls()
    slow = LoadFrames(slow_got, None, None, port=3)
    slow.text(b.ws, 1.0)  # the payload, as picows and aiohttp hand it over
    fast_calls, fast_got = _calls()
    fast = WsReader(LoadFrames(fast_got, None, None, port=3))
    assert fast.feed(b.ws_wire, 1.0) == b""
    assert fast_calls == slow_calls == [(expected["data"], 1.0, 3)]
    assert fast.frames.last == slow.last == str(b.env.id)


@settings(max_examples=150, deadline=None)
@given(_broadcasts)
def test_the_sse_fast_path_reads_what_the_decoder_reads(b: Broadcast) -> None:
    (event,) = SseDecoder().feed(b.sse_single)
    assert sse_chunk(b.sse_wire) == (event.last_event_id, orjson.loads(event.data))
    calls, got = _calls()
    events = LoadEvents(got, None, "since", port=4)
    events._idle = True  # as after the stream's first event
    events.chunked(b.sse_wire, 2.0)
    assert calls == [(orjson.loads(event.data)["data"], 2.0, 4)]
    assert events.last == event.last_event_id == f"{b.channel}={b.position}"


def _cuts(data: Any, stream: bytes, frames: list[bytes]) -> list[int]:
    """Where to cut ``stream``: anywhere, and at some boundaries of ``frames`` (so whole
    frames arrive as one read, the fast path's case, between reads cut anywhere)."""
    bounds = sorted(
        {i + len(f) for f in frames if (i := stream.find(f)) >= 0 and i + len(f) < len(stream)}
        | {i for f in frames if (i := stream.find(f)) > 0}
    )
    anywhere = data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=4))
    at_bounds = data.draw(st.sets(st.sampled_from(bounds), max_size=8)) if bounds else set()
    return sorted(anywhere | at_bounds)


def _sse_stream(bs: list[Broadcast]) -> bytes:
    extra = [
        b"e\r\n: keep-alive\n\n\r\n",  # a comment: no event
        b"%x\r\n" % len(g := format_sse_event('{"type":"gap","position":"p"}', event="gap"))
        + g
        + b"\r\n",
    ]
    return b"".join([bs[0].sse_wire, *extra, *(b.sse_wire for b in bs[1:])])


@settings(max_examples=100, deadline=None)
@given(st.lists(_broadcasts, min_size=1, max_size=4), st.data())
def test_sse_reads_cut_anywhere_give_the_same_calls(bs: list[Broadcast], data: Any) -> None:
    stream = _sse_stream(bs)
    cuts = _cuts(data, stream, [b.sse_wire for b in bs])
    whole_calls, whole_got = _calls()
    gaps: list[Any] = []
    whole = LoadEvents(whole_got, gaps.append)
    whole.chunked(stream, 1.0)
    cut_calls, cut_got = _calls()
    cut = LoadEvents(cut_got, gaps.append)
    for a, z in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        cut.chunked(stream[a:z], 1.0)
    assert cut_calls == whole_calls
    assert [c[0] for c in whole_calls] == [orjson.loads(b.json)["data"] for b in bs]
    assert cut.last == whole.last == f"{bs[-1].channel}={bs[-1].position}"
    assert gaps == [{"type": "gap", "position": "p"}] * 2


@settings(max_examples=100, deadline=None)
@given(st.lists(_broadcasts, min_size=1, max_size=4), st.data())
def test_websocket_reads_cut_anywhere_give_the_same_calls(bs: list[Broadcast], data: Any) -> None:
    ping = _control(b"hi", PING)
    stream = b"".join([bs[0].ws_wire, ping, *(b.ws_wire for b in bs[1:])])
    cuts = _cuts(data, stream, [b.ws_wire for b in bs])
    calls, got = _calls()
    reader = WsReader(LoadFrames(got))
    answers = b"".join(
        reader.feed(stream[a:z], 1.0) for a, z in zip([0, *cuts], [*cuts, len(stream)], strict=True)
    )
    assert [c[0] for c in calls] == [orjson.loads(b.ws)["data"] for b in bs]
    assert reader.frames.last == str(bs[-1].env.id)
    assert answers[0] == 0x8A and answers[1] == 0x82  # one masked pong with 2 bytes


def _control(payload: bytes, opcode: int) -> bytes:
    """A short unmasked control frame from the server."""
    return bytes((0x80 | opcode, len(payload))) + payload


def test_websocket_close_degrade_and_accept() -> None:
    calls, got = _calls()
    reader = WsReader(LoadFrames(got, None, "7"))
    with pytest.raises(Degraded) as info:
        reader.feed(ws_frame(b'{"type":"degrade","poll_s":2}'), 1.0)
    assert info.value.cursor == "7" and info.value.poll_s == 2.0
    answer = reader.feed(_control((1013).to_bytes(2, "big") + b"slow", 0x8), 1.0)
    assert reader.closed == 1013 and answer[0] == 0x88 and calls == []
    with pytest.raises(ValueError, match="masked"):
        WsReader(LoadFrames(got)).feed(b"\x81\x82abcdxy", 1.0)
    # RFC 6455 §1.3's example key and answer.
    assert ws_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["r:0", "r:1", "r:2"]),
            st.integers(-1, 65535),
            st.floats(allow_nan=False),
            st.floats(),  # "sent" is NaN when the publisher gave none
            st.floats(allow_nan=False),
            st.floats(allow_nan=False),
        ),
        max_size=20,
    )
)
def test_traced_deliveries_pack_and_unpack_exactly(traced: list[Any]) -> None:
    back = unpack_traced(pack_traced(traced))
    assert len(back) == len(traced)
    for got, want in zip(back, traced, strict=True):
        assert got[:2] == want[:2]
        assert [math.isnan(x) or x for x in got[2:]] == [math.isnan(x) or x for x in want[2:]]
        assert [type(x) for x in got] == [str, int, float, float, float, float]
