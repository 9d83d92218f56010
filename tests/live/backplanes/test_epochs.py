"""Issue 14.2 with brokers: a reset id space is a new epoch, answered with a gap.

Redis Streams: deleting the prefix's keys (FLUSHALL-like) gives a new epoch; deleting just
a channel's stream is recognised too. JetStream: a deleted and re-created stream is a new
epoch, while a server restart over the same stream is not. Redis Pub/Sub: another
instance's cursor is another epoch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from rtsim.live.server import ServerConfig

from ..broker_fixtures import reachable, require, unique_prefix
from ..conftest import Serve, publish
from .test_backplanes import _drop_stream, url_for


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key/stream prefix of this test only, removed afterwards."""
    p = unique_prefix()
    yield p
    if reachable(6379):
        _redis_delete(p)
    if reachable(4222):
        asyncio.run(_drop_stream(p))


def _server(serve: Serve, backplane: str) -> Any:
    return serve(config=ServerConfig(port=0, backplane=backplane))


async def _poll(http: aiohttp.ClientSession, url: str, after: str | None) -> dict[str, Any]:
    params = {"channel": "c", "timeout": "0", **({"after": after} if after else {})}
    async with http.get(url + "/poll", params=params) as r:
        body: dict[str, Any] = await r.json()
        assert r.status == 200, body
        return body


def _redis_delete(prefix: str, *names: str) -> None:
    import redis

    r = redis.Redis(port=6379)
    keys = [f"{{{prefix}}}:{n}" for n in names] or list(r.scan_iter(match=f"{{{prefix}}}:*"))
    if keys:
        r.delete(*keys)
    r.close()


@pytest.mark.redis
@pytest.mark.parametrize("deleted", ["every key of the prefix", "the channel's stream"])
async def test_redis_streams_deleted_while_a_client_is_away_is_a_gap(
    serve: Serve, prefix: str, http: aiohttp.ClientSession, deleted: str
) -> None:
    require("redis")
    srv = _server(serve, url_for("redis-streams", prefix))
    for i in range(3):
        await publish(http, srv.url, "c", f"old{i}")
    cursor = (await _poll(http, srv.url, "c=0"))["cursor"]  # the client has all 3, goes away
    old_epoch = srv.server.backplane.epoch
    assert cursor.startswith(f"c={old_epoch}:")
    if deleted == "every key of the prefix":
        _redis_delete(prefix)
    else:
        _redis_delete(prefix, "ch:c")
    new_ids = [await publish(http, srv.url, "c", f"new{i}") for i in range(2)]
    body = await _poll(http, srv.url, cursor)
    epoch = srv.server.backplane.epoch
    assert (epoch != old_epoch) == (deleted == "every key of the prefix")
    (gap,) = body["gaps"]
    assert (gap["reason"], gap["epoch"], gap["position"]) == ("epoch", epoch, f"{epoch}:0")
    assert gap["first_available_id"] == new_ids[0]
    assert [m["data"] for m in body["messages"]] == ["new0", "new1"]
    assert body["cursor"] == f"c={epoch}:{new_ids[1]}"
    # From the new position on: no gap, nothing again.
    assert (await _poll(http, srv.url, body["cursor"])) == {
        "messages": [],
        "cursor": body["cursor"],
        "degraded": False,
    }


@pytest.mark.nats
async def test_jetstream_epoch_is_the_stream_not_the_server_run(
    serve: Serve, prefix: str, http: aiohttp.ClientSession
) -> None:
    require("nats")
    url = url_for("nats", prefix)
    first = _server(serve, url)
    for i in range(3):
        await publish(http, first.url, "c", i)
    cursor = (await _poll(http, first.url, "c=0"))["cursor"]
    epoch = first.server.backplane.epoch
    first.stop()
    again = _server(serve, url)  # a restarted server over the same stream: the same epoch
    assert again.server.backplane.epoch == epoch
    await publish(http, again.url, "c", 3)
    body = await _poll(http, again.url, cursor)
    assert "gaps" not in body and [m["data"] for m in body["messages"]] == [3]
    again.stop()
    await _drop_stream(prefix)
    await asyncio.sleep(0.01)  # creation times are distinct by construction, not by this
    fresh = _server(serve, url)  # the stream is created anew: a new epoch, ids from 1
    new_epoch = fresh.server.backplane.epoch
    assert new_epoch != epoch
    await publish(http, fresh.url, "c", "new")
    body = await _poll(http, fresh.url, cursor)
    (gap,) = body["gaps"]
    assert (gap["reason"], gap["epoch"], gap["position"]) == ("epoch", new_epoch, f"{new_epoch}:0")
    assert [(m["id"], m["data"]) for m in body["messages"]] == [("1-1", "new")]


@pytest.mark.redis
async def test_redis_pubsub_cursor_of_another_instance_is_an_epoch_gap(
    serve: Serve, prefix: str, http: aiohttp.ClientSession
) -> None:
    require("redis")
    url = url_for("redis-pubsub", prefix)
    a, b = _server(serve, url), _server(serve, url)
    await publish(http, a.url, "c", 1)
    cursor = (await _poll(http, a.url, "c=0"))["cursor"]
    body = await _poll(http, b.url, cursor)
    (gap,) = body["gaps"]
    assert (gap["reason"], gap["epoch"]) == ("epoch", b.server.backplane.epoch)
    assert b.server.backplane.epoch != a.server.backplane.epoch
