"""Broker backplanes without a broker: URLs, subject tokens, ids, and running degraded."""

from __future__ import annotations

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtsim.core.envelope import CHANNEL_PATTERN
from rtsim.core.replaylog import Gap, MalformedIdError, Messages
from rtsim.live.backplanes import make_backplane
from rtsim.live.backplanes.base import parse_broker_url
from rtsim.live.backplanes.nats import JetStreamBackplane, channel_token, token_channel
from rtsim.live.backplanes.redis import RedisPubSubBackplane, RedisStreamsBackplane
from rtsim.live.server import ServerConfig

from ..broker_fixtures import free_port
from ..conftest import Serve, subscribe, ws_until


def test_make_backplane_parses_urls_and_options() -> None:
    bp = make_backplane("redis-streams://127.0.0.1:7000?maxlen=50&approx=1&prefix=x-1")
    assert isinstance(bp, RedisStreamsBackplane)
    assert (bp.maxlen, bp.approx, bp.prefix, bp.url.port) == (50, True, "x-1", 7000)
    assert make_backplane("redis-streams://localhost", max_len=7).maxlen == 7  # type: ignore[attr-defined]
    nats = make_backplane("nats://127.0.0.1?max_msgs_per_subject=9&storage=memory")
    assert isinstance(nats, JetStreamBackplane) and nats.url.port == 4222
    assert (nats.max_per_subject, nats.storage) == (9, "memory")
    pubsub = make_backplane("redis-pubsub://127.0.0.1:6379")
    assert isinstance(pubsub, RedisPubSubBackplane) and pubsub.durable_replay is False


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("kafka://h:1", "unknown backplane"),
        ("redis-streams://h:1?maxlen=0", "maxlen must be >= 1"),
        ("redis-streams://h:1?maxlen=x", "must be an integer"),
        ("redis-streams://h:1?colour=red", "unknown redis-streams backplane option"),
        ("redis-streams://h:1?prefix=a.b", "prefix must be"),
        ("nats://h:1?storage=tape", "storage must be one of"),
        ("nats://h:1/path", "must be scheme://HOST:PORT"),
        ("nats://h:99999", "invalid port"),
        ("redis-pubsub://h:1?prefix=a&prefix=b", "given twice"),
        ("redis-pubsub://h:1?backoff_cap=-1", "must be > 0"),
    ],
)
def test_bad_urls_are_refused_clearly(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_backplane(url)


def test_parse_broker_url_defaults() -> None:
    u = parse_broker_url("nats://", 4222)
    assert (u.host, u.port, u.options) == ("127.0.0.1", 4222, {})


@given(st.from_regex(CHANNEL_PATTERN, fullmatch=True).filter(lambda c: len(c) <= 200))
def test_subject_tokens_round_trip(channel: str) -> None:
    token = channel_token(channel)
    assert "." not in token and "*" not in token and ">" not in token and " " not in token
    assert token_channel(token) == channel


def test_ids_and_order_keys() -> None:
    streams = RedisStreamsBackplane(parse_broker_url("redis-streams://h:1", 6379))
    assert streams.order_key("0") == (0, 0) < streams.order_key("9-1") < streams.order_key("10-0")
    nats = JetStreamBackplane(parse_broker_url("nats://h:1", 4222))
    # "SEQ-N" (N: the channel ordinal) orders by the stream sequence; a bare SEQ too.
    assert nats.order_key("9") < nats.order_key("10") == nats.order_key("10-4")
    with pytest.raises(MalformedIdError):
        nats.order_key("1-0-0")


async def test_pubsub_replays_only_its_own_buffer() -> None:
    bp = RedisPubSubBackplane(parse_broker_url("redis-pubsub://h:1", 6379), max_len=3)
    for i in range(5):
        bp.log.append("c", i, now=0.0)
    me = bp.instance
    own = await bp.read_after("c", f"{me}-3")
    assert isinstance(own, Messages) and [m.id for m in own.messages] == [f"{me}-4", f"{me}-5"]
    trimmed = await bp.read_after("c", f"{me}-1")
    assert isinstance(trimmed, Gap) and trimmed.missed == 1
    foreign = await bp.read_after("c", f"{me + 1}-4")  # another server's position
    assert isinstance(foreign, Gap) and foreign.messages == () and foreign.last_id == f"{me}-5"
    assert bp.order_key(f"{me + 1}-4") == (0,)  # below everything live: nothing is skipped
    assert await bp.latest_id("c") == f"{me}-5" and await bp.latest_id("new") == "0"


@pytest.mark.parametrize("scheme", ["redis-streams", "redis-pubsub", "nats"])
async def test_unreachable_broker_degrades_and_refuses_publishes(scheme: str, serve: Serve) -> None:
    """The server starts without its broker: degraded health, 503 publishes, no crash."""
    url = f"{scheme}://127.0.0.1:{free_port()}?backoff_base=0.05&backoff_cap=0.2"
    # (serve_in_background's own `backplane=` takes a Backplane object, so pass a config)
    srv = serve(config=ServerConfig(port=0, backplane=url))
    async with aiohttp.ClientSession() as http:
        async with http.get(srv.url + "/healthz") as r:
            health = await r.json()
        assert health["status"] == "degraded" and health["broker"]["connected"] is False
        assert health["replay"] == ("local buffer only" if scheme == "redis-pubsub" else "broker")
        async with http.post(srv.url + "/publish", json={"channel": "a", "data": 1}) as r:
            assert r.status == 503
            assert (await r.json())["error"]["code"] == "backplane_unavailable"
        assert srv.metric("rtsim_backplane_up", {"name": srv.server.backplane.name}) == 0
        assert (
            srv.metric(
                "rtsim_backplane_connect_failures_total", {"name": srv.server.backplane.name}
            )
            >= 1
        )
        async with http.ws_connect(srv.ws_url) as ws:
            if scheme == "redis-pubsub":  # its local buffer needs no broker
                await subscribe(ws, "a")
            else:
                await ws.send_json({"type": "subscribe", "channel": "a"})
                assert (await ws_until(ws, "error"))["code"] == "backplane_unavailable"
