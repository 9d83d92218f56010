"""Redis backplanes: Streams (durable replay from the broker) and Pub/Sub (fire-and-forget).

``redis-streams://HOST:PORT[?maxlen=1000&approx=0&prefix=rtsim&feed_maxlen=100000]``

Each channel is one Redis stream, ``{PREFIX}:ch:CHANNEL``, trimmed to ``maxlen`` entries
(``XADD … MAXLEN [~] N``; ``approx=1`` lets Redis trim lazily, cheaper but keeping a few
more). Message ids are the stream's own ids, ``"<ms>-<n>"``, written explicitly: ``ms``
the broker's clock (never below the previous entry's) and ``n`` the entry's ordinal in
its channel, so any instance can replay from any id (a client may resume on another
server) and count exactly what was trimmed after it. A Lua script appends the message to
its channel's stream *and* to one shared feed stream, ``{PREFIX}:feed``, atomically; every
server reads the feed with ``XREAD BLOCK`` and fans the messages out to its connections,
so it needs no list of channels. After a broker outage the feed read resumes after the
last entry this server delivered. A resume older than the stream holds is a ``gap``
(Redis ≥ 7 records the largest trimmed id, ``max-deleted-entry-id``, which makes the test
exact). Redis does not count what it trimmed after a given id; the ordinals do: the gap's
``missed`` is the first held entry's ``n`` minus the cursor's, minus one (a lower bound,
1, only for ids of streams written before ordinals were ids).

The epoch is the value of ``{PREFIX}:epoch``, a random token created once with ``SET NX``
(on connect, and by every publish, atomically with it): a ``FLUSHALL`` or a deleted prefix
starts a new epoch, and a cursor of the old one gets a ``gap`` with reason ``"epoch"``.
A channel stream deleted under the same epoch is recognised too (its first entry names
no predecessor): that is answered the same way, never as if the old id still counted.

``redis-pubsub://HOST:PORT[?prefix=rtsim]``

``PUBLISH`` on one Redis channel, ``{PREFIX}:pubsub``. Redis keeps nothing, so each server
keeps its own replay buffer (the core :class:`~rtsim.core.replaylog.ReplayLog`) of what it
saw, with ids ``"<instance>-<n>"`` that only this server can place. A client resuming on
the same server within the buffer loses nothing; on another server (or after this one
restarted) it gets ``gap`` and continues from now: what was published meanwhile is lost,
as Pub/Sub predicts. :attr:`durable_replay` is ``False`` and ``/healthz`` says so. The
epoch is the instance number, so ``EPOCH:ID`` cursors of another server get a ``gap``
with reason ``"epoch"``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rtsim.core.envelope import Envelope, validate_channel
from rtsim.core.positions import MalformedPositionError, new_epoch, parse_position
from rtsim.core.replaylog import (
    Gap,
    MalformedIdError,
    Messages,
    ReadResult,
    ReplayLog,
    UnknownIdError,
)

from .base import BrokerBackplane, BrokerUrl, wall_to_loop

__all__ = [
    "PUBLISH_TOKEN_TTL_S",
    "RedisPubSubBackplane",
    "RedisStreamsBackplane",
    "no_retry_client",
]

#: How long Redis remembers a publish's token (s): longer than any retry of it.
PUBLISH_TOKEN_TTL_S = 300

# KEYS: channel stream, feed, epoch, this publish's token. ARGV: maxlen, approx (1/0), feed
# maxlen, channel, data, ts, a new epoch (kept only if the epoch key is missing), the token's
# lifetime (s). A token already set means this very publish ran before (a retry after an
# answer that never came): its id is returned and nothing is written again.
# Each entry records the id of the channel's previous entry (p) and its ordinal (n), read
# from the newest entry (never trimmed) in the same atomic script: that is what makes the
# gap test exact, since Redis (7.0) does not record what MAXLEN trimmed.
_PUBLISH_LUA = """
local done = redis.call('GET', KEYS[4])
if done then return {done, redis.call('GET', KEYS[3])} end
local function last_of(key)
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if not last[1] then return '0', 0 end
  local f, n = last[1][2], 0
  for i = 1, #f, 2 do if f[i] == 'n' then n = tonumber(f[i + 1]) end end
  return last[1][1], n
end
local prev, n = last_of(KEYS[1])
-- The id is "<ms>-<ordinal>": ms from the broker's clock, never below the previous id's.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local dash = string.find(prev, '-', 1, true)
if dash then
  local pms, pseq = tonumber(string.sub(prev, 1, dash - 1)), tonumber(string.sub(prev, dash + 1))
  if ms < pms then ms = pms end
  if ms == pms and n + 1 <= pseq then ms = pms + 1 end
end
local want = string.format('%d-%d', ms, n + 1)
local id
if ARGV[2] == '1' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], want,
                  'p', prev, 'n', n + 1, 'd', ARGV[5], 't', ARGV[6])
else
  id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], want,
                  'p', prev, 'n', n + 1, 'd', ARGV[5], 't', ARGV[6])
end
local fprev = last_of(KEYS[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*',
           'p', fprev, 'c', ARGV[4], 'i', id, 'd', ARGV[5], 't', ARGV[6])
redis.call('SET', KEYS[3], ARGV[7], 'NX')
redis.call('SET', KEYS[4], id, 'EX', ARGV[8])
return {id, redis.call('GET', KEYS[3])}
"""


def _client(url: BrokerUrl, socket_timeout: float | None) -> aioredis.Redis:
    # No client-side retries: the supervisor owns reconnecting (with the core backoff),
    # and a publish must fail fast with 503 rather than hang in a retry loop.
    # A blocking pool: past POOL_SIZE commands at once (e.g. hundreds of clients resuming
    # together after a restart) a command waits up to POOL_WAIT_S for a connection instead
    # of failing with "Too many connections" (redis-py's default pool), which the server
    # would answer 503 although the broker is fine.
    pool = aioredis.BlockingConnectionPool(
        host=url.host,
        port=url.port,
        decode_responses=True,
        socket_connect_timeout=1.0,
        socket_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT_S,
    )
    return aioredis.Redis.from_pool(pool)


def no_retry_client(
    host: str = "127.0.0.1", port: int = 6379, *, use_asyncio: bool = False, **kwargs: Any
) -> Any:
    """A redis-py client (``redis.Redis``, or ``redis.asyncio.Redis`` with ``use_asyncio``)
    that never sends a command twice. redis-py 8's default retries a command after a socket
    timeout (5 s) up to 10 times, so a write whose answer was late is run again: an entry
    added twice, a ``DEBUG SLEEP`` slept ten times. ``kwargs`` go to the client (e.g.
    ``socket_timeout=None`` to wait for every answer). Connecting is lazy: the first command
    raises redis' ``ConnectionError`` when nothing listens."""
    if use_asyncio:
        return aioredis.Redis(host=host, port=port, retry=Retry(NoBackoff(), 0), **kwargs)
    import redis
    from redis.retry import Retry as SyncRetry

    return redis.Redis(host=host, port=port, retry=SyncRetry(NoBackoff(), 0), **kwargs)


POOL_SIZE = 100  # connections per backplane client (redis-py's default pool size)
POOL_WAIT_S = 5.0  # how long a command waits for a free connection before it fails (503)


def _redis_key(position: str) -> tuple[int, int]:
    """A position as a Redis id key ``(ms, seq)``; ``"0"`` is ``(0, 0)``."""
    k = parse_position(position)
    return (k[0], k[1] if len(k) > 1 else 0)


class _RedisBase(BrokerBackplane):
    def __init__(self, url: BrokerUrl, **kw: Any) -> None:
        super().__init__(url, **kw)
        self._cmd: aioredis.Redis | None = None

    def _client_or_raise(self) -> aioredis.Redis:
        if not self._up or self._cmd is None:
            raise self._unavailable()
        return self._cmd

    async def _disconnect(self) -> None:
        cmd, self._cmd = self._cmd, None
        if cmd is not None:
            await cmd.aclose()


class RedisStreamsBackplane(_RedisBase):
    """One Redis stream per channel plus a shared feed; ids are Redis stream ids."""

    name = "redis-streams"
    scheme = "redis-streams"
    default_port = 6379
    durable_replay = True

    def __init__(self, url: BrokerUrl, max_len: int = 1000, max_age_s: float | None = None) -> None:
        # max_age_s: unused, Redis trims the streams by length (maxlen).
        self.maxlen = url.take_int("maxlen", max_len)
        self.approx = url.take_choice("approx", "0", ("0", "1")) == "1"
        self.feed_maxlen = url.take_int("feed_maxlen", 100_000)
        self.prefix = url.take_prefix()
        backoff = url.take_backoff()
        url.done()
        super().__init__(url, backoff=backoff)
        self._feed_key = f"{{{self.prefix}}}:feed"  # {hash tag}: one slot in a cluster
        self._epoch_key = f"{{{self.prefix}}}:epoch"
        self._feed_last: str | None = None
        self._reader: aioredis.Redis | None = None
        self._script: Any = None

    def _key(self, channel: str) -> str:
        return f"{{{self.prefix}}}:ch:{channel}"

    # --- connection ----------------------------------------------------------------------
    async def _connect(self) -> None:
        cmd = _client(self.url, socket_timeout=5.0)
        reader = _client(self.url, socket_timeout=None)
        try:
            await cmd.ping()
            await reader.ping()
            if self._feed_last is None:  # first connection: from now on
                last: Any = await cmd.xrevrange(self._feed_key, "+", "-", count=1)
                self._feed_last = str(last[0][0]) if last else "0"
            self.epoch = await self._current_epoch(cmd)
        except BaseException:
            await cmd.aclose()
            await reader.aclose()
            raise
        self._script = cmd.register_script(_PUBLISH_LUA)
        self._cmd, self._reader = cmd, reader

    async def _current_epoch(self, cmd: aioredis.Redis) -> str:
        """The prefix's epoch, created (``SET NX``) if it is missing; Redis errors propagate."""
        await cmd.set(self._epoch_key, new_epoch(), nx=True)
        epoch: Any = await cmd.get(self._epoch_key)
        return str(epoch)

    async def _disconnect(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.aclose()
        await super()._disconnect()

    async def _run(self) -> None:
        reader = self._reader
        assert reader is not None and self._feed_last is not None
        while True:
            resp: Any = await reader.xread({self._feed_key: self._feed_last}, count=500, block=1000)
            for _stream, entries in resp or ():
                for entry_id, f in entries:
                    if _redis_key(f["p"]) > _redis_key(self._feed_last):
                        self._feed_gap()  # the feed was trimmed before we read it
                    self._feed_last = entry_id
                    env = Envelope(
                        channel=f["c"],
                        id=f["i"],
                        data=json.loads(f["d"]),
                        ts=wall_to_loop(float(f["t"])),
                    )
                    self._deliver(env)

    # --- the Backplane interface -----------------------------------------------------------
    async def publish(self, channel: str, data: Any) -> Envelope:
        """Append ``data`` to ``channel`` (see the module docstring). A publish whose answer
        does not come (a timeout: Redis may have run it) is sent again with the same token
        until Redis answers or :data:`~rtsim.live.backplanes.base.PUBLISH_RETRY_S` pass, so
        it is stored once; raises :class:`BackplaneUnavailable` when Redis cannot be reached
        (or, saying the outcome is unknown, when it never answers)."""
        validate_channel(channel)
        self._client_or_raise()
        wall = time.time()
        token = f"{{{self.prefix}}}:u:{secrets.token_hex(16)}"
        keys = [self._key(channel), self._feed_key, self._epoch_key, token]
        args = [
            self.maxlen,
            "1" if self.approx else "0",
            self.feed_maxlen,
            channel,
            json.dumps(data, separators=(",", ":"), allow_nan=False),
            repr(wall),
            new_epoch(),
            PUBLISH_TOKEN_TTL_S,
        ]
        try:  # sent again on a timeout with the same token: stored once
            msg_id, epoch = await self._resend_on_timeout(
                lambda: self._script(keys=keys, args=args), (RedisTimeoutError, TimeoutError), 0.1
            )
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None
        msg_id, self.epoch = str(msg_id), str(epoch)
        # Delivery to this server's connections comes through the feed, in id order.
        return Envelope(channel=channel, id=str(msg_id), data=data, ts=wall_to_loop(wall))

    async def read_after(self, channel: str, after_id: str, limit: int | None = None) -> ReadResult:
        validate_channel(channel)
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        epoch, bare = self._split(after_id)
        try:
            after = _redis_key(bare)
        except MalformedPositionError as exc:
            raise MalformedIdError(str(exc)) from None
        cmd = self._client_or_raise()
        if epoch is not None and epoch != self.epoch:  # or the cached epoch is stale
            try:
                self.epoch = await self._current_epoch(cmd)
            except (RedisError, OSError) as exc:
                raise self._unavailable(exc) from None
            if epoch != self.epoch:
                return self._epoch_gap(await self.read_after(channel, "0", limit), after_id)
        key = self._key(channel)
        start = "-" if after == (0, 0) else f"({after[0]}-{after[1]}"
        try:
            async with cmd.pipeline(transaction=True) as pipe:  # one consistent snapshot
                pipe.xrange(key, start, "+", count=limit)
                pipe.xrevrange(key, "+", "-", count=1)
                pipe.time()
                res: Any = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None
        entries, newest, now = res
        if not newest:  # the channel holds nothing (never written, or lost in a restart)
            if after == (0, 0):
                return Messages(channel=channel, messages=(), last_id="0")
            if after[0] > int(now[0]) * 1000 + int(now[1]) // 1000 + 1000:
                raise UnknownIdError(f"id {after_id!r} is in the future for channel {channel!r}")
            return Gap(channel, after_id, 0, None, (), bare, epoch=self.epoch, resume_id=bare)
        latest = str(newest[0][0])
        if after > _redis_key(latest):
            raise UnknownIdError(
                f"id {after_id!r} is unknown: the latest id of channel {channel!r} is {latest}"
            )
        msgs = tuple(
            Envelope(channel, i, json.loads(f["d"]), wall_to_loop(float(f["t"])))
            for i, f in entries
        )
        more = bool(msgs) and msgs[-1].id != latest
        last_id = msgs[-1].id if msgs else bare
        first_prev = entries[0][1]["p"] if entries else "0"
        if after != (0, 0) and entries and first_prev == "0":
            # The first entry after the id is its stream's very first: the stream was
            # deleted and created anew after the cursor, whose id belongs to the old one.
            return self._epoch_gap(await self.read_after(channel, "0", limit), after_id)
        if not entries or _redis_key(first_prev) <= after:
            return Messages(channel, msgs, last_id, more, epoch=self.epoch)
        # The first entry after the id names a predecessor that is no longer held.
        n_first = int(entries[0][1]["n"])
        if after == (0, 0):
            missed = n_first - 1
        elif _redis_key(msgs[0].id)[1] == n_first and after[1] < n_first:
            missed = n_first - after[1] - 1  # ids carry their ordinal: exact
        else:
            missed = 1  # an id of an older writer: at least one trimmed entry followed it
        return Gap(
            channel=channel,
            after_id=after_id,
            missed=missed,
            first_available_id=msgs[0].id,
            messages=msgs,
            last_id=last_id,
            more=more,
            epoch=self.epoch,
            resume_id=first_prev,
        )

    async def latest_id(self, channel: str) -> str:
        validate_channel(channel)
        cmd = self._client_or_raise()
        try:
            last = await cmd.xrevrange(self._key(channel), "+", "-", count=1)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None
        return str(last[0][0]) if last else "0"

    def order_key(self, message_id: str) -> tuple[int, ...]:
        return _redis_key(message_id)


class RedisPubSubBackplane(_RedisBase):
    """Redis Pub/Sub between servers, with a local replay buffer per server."""

    name = "redis-pubsub"
    scheme = "redis-pubsub"
    default_port = 6379
    durable_replay = False

    def __init__(self, url: BrokerUrl, max_len: int = 1000, max_age_s: float | None = None) -> None:
        self.prefix = url.take_prefix()
        backoff = url.take_backoff()
        url.done()
        super().__init__(url, backoff=backoff)
        self.log = ReplayLog(max_len=max_len, max_age_s=max_age_s)
        # Ids are "<instance>-<n>": n from this server's log, instance unique per process,
        # so a cursor from another server (or an earlier run) is recognised as foreign.
        self.instance = int(time.time() * 1000) * 1000 + secrets.randbelow(1000)
        self.epoch = str(self.instance)  # the buffer's id space is this instance's
        self._topic = f"{{{self.prefix}}}:pubsub"
        self._pubsub: Any = None

    def _wrap(self, env: Envelope) -> Envelope:
        return Envelope(env.channel, f"{self.instance}-{env.id}", env.data, env.ts)

    def _local(self, message_id: str) -> str | None:
        """This server's log id for ``message_id``, or ``None`` if another server issued it."""
        try:
            k = parse_position(message_id)
        except MalformedPositionError as exc:
            raise MalformedIdError(str(exc)) from None
        if k == (0,):
            return "0"
        if len(k) == 2 and k[0] == self.instance:
            return str(k[1])
        return None

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _connect(self) -> None:
        cmd = _client(self.url, socket_timeout=5.0)
        try:
            await cmd.ping()
            pubsub = cmd.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(self._topic)
        except BaseException:
            await cmd.aclose()
            raise
        self._cmd, self._pubsub = cmd, pubsub

    async def _disconnect(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await pubsub.aclose()
        await super()._disconnect()

    async def _run(self) -> None:
        pubsub, cmd = self._pubsub, self._cmd
        assert pubsub is not None and cmd is not None
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + 1.0
        while True:
            msg = await pubsub.get_message(timeout=1.0)
            if msg is not None and msg.get("type") == "message":
                obj = json.loads(msg["data"])
                if obj["o"] != self.instance:  # our own were delivered when published
                    env = self.log.append(obj["c"], obj["d"], now=self._now())
                    env = Envelope(env.channel, env.id, env.data, wall_to_loop(obj["t"]))
                    self._deliver(self._wrap(env))
            if loop.time() >= next_ping:  # notice a silent broker even when idle
                await cmd.ping()
                next_ping = loop.time() + 1.0

    async def publish(self, channel: str, data: Any) -> Envelope:
        validate_channel(channel)
        cmd = self._client_or_raise()
        wall = time.time()
        payload = json.dumps(
            {"o": self.instance, "c": channel, "d": data, "t": wall},
            separators=(",", ":"),
            allow_nan=False,
        )
        try:
            await cmd.publish(self._topic, payload)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None
        env = self._wrap(self.log.append(channel, data, now=self._now()))
        self._deliver(env)
        return env

    async def read_after(self, channel: str, after_id: str, limit: int | None = None) -> ReadResult:
        epoch, bare = self._split(after_id)
        local = self._local(bare) if epoch in (None, self.epoch) else None
        if local is None:
            # Not from this server: it cannot know what the client missed (Pub/Sub kept
            # nothing), so it says so and continues from now.
            latest = self.log.latest_id(channel)
            first = self.log.first_id(channel)
            resume = "0" if latest == "0" else f"{self.instance}-{latest}"
            return Gap(
                channel=channel,
                after_id=after_id,
                missed=0,
                first_available_id=None if first is None else f"{self.instance}-{first}",
                messages=(),
                last_id=resume,
                reason="epoch",
                epoch=self.epoch,
                resume_id=resume,
            )
        r = self.log.read_after(channel, local, limit, now=self._now())
        msgs = tuple(self._wrap(e) for e in r.messages)
        last_id = bare if r.last_id == local else f"{self.instance}-{r.last_id}"
        if isinstance(r, Messages):
            return Messages(channel, msgs, last_id, r.more, epoch=self.epoch)
        first = r.first_available_id
        resume = r.resume_id if r.resume_id is not None else "0"
        return Gap(
            channel,
            after_id,
            r.missed,
            None if first is None else f"{self.instance}-{first}",
            msgs,
            last_id,
            r.more,
            epoch=self.epoch,
            resume_id="0" if resume == "0" else f"{self.instance}-{resume}",
        )

    async def latest_id(self, channel: str) -> str:
        latest = self.log.latest_id(channel)
        return "0" if latest == "0" else f"{self.instance}-{latest}"

    def order_key(self, message_id: str) -> tuple[int, ...]:
        local = self._local(message_id)
        return (0,) if local is None else (int(local),)
