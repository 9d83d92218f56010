"""NATS JetStream backplane: durable replay from the broker, ids are stream sequence numbers.

``nats://HOST:PORT[?prefix=rtsim&max_msgs_per_subject=1000&storage=file]``

One JetStream stream named ``PREFIX`` holds every channel, each on its own subject
``PREFIX.CHANNEL`` (a channel with a ``.`` is hex-encoded into one subject token), trimmed
per subject to ``max_msgs_per_subject`` messages. A message's id is ``"SEQ-N"``: its stream
sequence number (unique across channels, increasing within one, the same on every server,
so a client can resume on another instance) and its ordinal ``N`` within its channel
(header ``Rtsim-N``), which makes a gap's count exact. A bare ``"SEQ"`` (a message written
without ``Rtsim-N``) is accepted too. Every server reads the whole stream with one
ordered push consumer (the *feed*) and fans out; after a broker outage the feed resumes
after the last sequence it delivered. The epoch is the stream's creation time: a stream
deleted and re-created numbers from 1 again, and a cursor of the old one gets a ``gap``
with reason ``"epoch"``.

Sequence numbers are shared by all channels, so "is there a trimmed message of *this*
channel after id N?" needs one more fact per message: the sequence of the channel's
previous message, in the header ``Rtsim-Prev``. It is written with JetStream's
optimistic-concurrency header ``Nats-Expected-Last-Subject-Sequence``, so it is exact even
with several servers publishing to one channel (a publish that lost the race re-reads the
last sequence and retries). A resume after ``SEQ`` is a ``gap`` exactly when the first
held message after it has ``Rtsim-Prev > SEQ``; JetStream does not count what it trimmed,
so the gap's ``missed`` is the difference of the ordinals (``N`` of the first held message
minus ``N`` of the cursor, minus one): exact for a ``"SEQ-N"`` cursor or ``"0"``, a lower
bound (1) for a bare ``"SEQ"``. A read fetches one message per request, so the log
may be trimmed between two of them: each message's ``Rtsim-Prev`` must be the one before
it, else the read ends there and the next one reports the gap.

Reads are answered from memory where they can be: the feed keeps each channel's last
``max_msgs_per_subject`` messages as an unbroken run (:mod:`.tails`; ``?recent=N`` messages
over all channels, default 100000, 0 for none), so a resume or poll whose cursor lies in
that run costs no request, and one from before it (a trimmed cursor: a gap) costs two (the
first message held, then memory). A read from the broker stops at the feed's position,
so no reader gets ahead of memory (what lies beyond comes through the feed). Without it
a resume of 1,000 messages was 1,000 requests: under 20 reconnects/s a server did
nothing else (the soak in ``benchmarks/results/soak.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import secrets
import time
from collections import OrderedDict
from typing import Any

import nats
from nats.errors import Error as NatsError
from nats.js.api import ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NotFoundError

from rtsim.core.envelope import Envelope, validate_channel
from rtsim.core.positions import MalformedPositionError, parse_position
from rtsim.core.replaylog import Gap, MalformedIdError, Messages, ReadResult, UnknownIdError

from .base import BrokerBackplane, BrokerUrl, wall_to_loop
from .tails import ChannelTails

__all__ = ["JetStreamBackplane", "channel_token", "token_channel"]

_PREV = "Rtsim-Prev"
_ORD = "Rtsim-N"
_EXPECTED = "Nats-Expected-Last-Subject-Sequence"
_WRONG_LAST_SEQUENCE = (10071, 10164)
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-:@")
_LOCKS = 64  # publish lock stripes (publishes to one channel go one at a time)
_FEED_BATCH = 64  # feed messages handled per event-loop round when they queue up


def channel_token(channel: str) -> str:
    """``channel`` as one NATS subject token (``.`` separates tokens, so escape it)."""
    if all(c in _SAFE for c in channel):
        return channel
    return "~" + channel.encode().hex()  # "~" is never part of a channel name


def token_channel(token: str) -> str:
    """The inverse of :func:`channel_token`."""
    return bytes.fromhex(token[1:]).decode() if token.startswith("~") else token


def _epoch_of(info: Any) -> str:
    """The stream's epoch: its creation time, digits only (a re-created stream differs)."""
    return re.sub(r"[^A-Za-z0-9]", "", str(info.created or ""))[:32] or "js"


def _seq(message_id: str) -> int:
    return _seq_ord(message_id)[0]


def _seq_ord(message_id: str) -> tuple[int, int | None]:
    """``"SEQ-N"`` → ``(SEQ, N)``; a bare ``"SEQ"`` → ``(SEQ, None)`` (``"0"`` → ``(0, 0)``)."""
    try:
        k = parse_position(message_id)
    except MalformedPositionError as exc:
        raise MalformedIdError(str(exc)) from None
    if len(k) == 2:
        return k[0], k[1]
    return k[0], (0 if k[0] == 0 else None)


def _ordinal(headers: Any) -> int | None:
    """The channel ordinal a message's headers carry (None for a message without one)."""
    raw = (headers or {}).get(_ORD)
    return int(raw) if raw is not None and str(raw).isdigit() else None


def _msg_id(seq: int, n: int | None) -> str:
    return str(seq) if n is None else f"{seq}-{n}"


class JetStreamBackplane(BrokerBackplane):
    """A JetStream stream shared by all servers; ids are stream sequence numbers."""

    name = "nats-jetstream"
    scheme = "nats"
    default_port = 4222
    durable_replay = True

    def __init__(self, url: BrokerUrl, max_len: int = 1000, max_age_s: float | None = None) -> None:
        # max_age_s: unused, the stream keeps max_msgs_per_subject per channel.
        self.prefix = url.take_prefix()
        self.max_per_subject = url.take_int("max_msgs_per_subject", max_len)
        self.storage = url.take_choice("storage", "file", ("file", "memory"))
        # recent: messages held in memory for resumes over all channels (the feed's tails).
        self.recent = url.take_int("recent", 100_000, minimum=0)
        backoff = url.take_backoff()
        url.done()
        super().__init__(url, backoff=backoff)
        self.stream = self.prefix
        self._nc: Any = None
        self._js: Any = None
        self._feed: Any = None
        self._feed_last: int | None = None
        # (last seq, its ordinal) per subject: the cache for CAS
        self._last_by_subject: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._locks = [asyncio.Lock() for _ in range(_LOCKS)]
        self._lost = asyncio.Event()
        self._tails: ChannelTails[Envelope] = ChannelTails(self.max_per_subject, self.recent)

    def _subject(self, channel: str) -> str:
        return f"{self.prefix}.{channel_token(channel)}"

    def _remember(self, subject: str, seq: int, n: int | None) -> None:
        cache = self._last_by_subject
        if n is None:  # a message without an ordinal: the cache cannot number after it
            cache.pop(subject, None)
        elif seq > cache.get(subject, (0, 0))[0]:
            cache[subject] = (seq, n)
            cache.move_to_end(subject)
            if len(cache) > 100_000:
                cache.popitem(last=False)

    # --- connection ------------------------------------------------------------------------
    async def _connect(self) -> None:
        lost = asyncio.Event()

        async def on_closed() -> None:
            lost.set()

        async def on_error(exc: Exception) -> None:
            self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]

        nc = await nats.connect(
            servers=[f"nats://{self.url.host}:{self.url.port}"],
            allow_reconnect=False,  # the supervisor reconnects, with the core backoff
            max_reconnect_attempts=1,  # (0 would make nats-py retry the first connect forever)
            reconnect_time_wait=0.05,
            connect_timeout=1,
            closed_cb=on_closed,
            disconnected_cb=on_closed,
            error_cb=on_error,
        )
        try:
            js = nc.jetstream(timeout=2.0)
            config = StreamConfig(
                name=self.stream,
                subjects=[f"{self.prefix}.>"],
                max_msgs_per_subject=self.max_per_subject,
                storage=StorageType(self.storage),
            )
            try:
                info = await js.add_stream(config)
            except APIError:  # exists with another limit: take ours
                info = await js.update_stream(config)
            self.epoch = _epoch_of(info)
            last = int(info.state.last_seq)
            if self._feed_last is None:
                self._feed_last = last  # first connection: from now on
            elif last < self._feed_last:  # the stream was lost and re-created
                self._feed_last = 0
                self._last_by_subject.clear()
                self._tails.clear()
                self._feed_gap()
            # (trimmed before we read it: the feed's first message tells, in _on_feed)
            batch = [0]

            async def on_feed(msg: Any) -> None:
                self._on_feed(msg)
                batch[0] += 1
                if batch[0] >= _FEED_BATCH:  # let the rest of the server run
                    batch[0] = 0
                    await asyncio.sleep(0)

            # A callback, not next_msg(): nats-py runs it for every queued message without
            # returning to the event loop in between (next_msg makes a task and a timer per
            # message, one loop round each); under load the feed fell 40,000 behind.
            self._feed = await js.subscribe(
                f"{self.prefix}.>",
                stream=self.stream,
                cb=on_feed,
                ordered_consumer=True,
                config=ConsumerConfig(
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=self._feed_last + 1,
                ),
            )
        except BaseException:
            await nc.close()
            raise
        self._nc, self._js, self._lost = nc, js, lost

    async def _disconnect(self) -> None:
        nc, feed = self._nc, self._feed
        self._nc, self._js, self._feed = None, None, None
        if feed is not None:
            with contextlib.suppress(Exception):
                await feed.unsubscribe()
            # nats-py cancels the ordered consumer's helper tasks only after a successful
            # unsubscribe; on a dead connection that fails, so cancel them here.
            sub = getattr(feed, "_sub", None)
            jsi = getattr(sub, "_jsi", None)
            for owner, name in ((jsi, "_hbtask"), (jsi, "_fctask"), (sub, "_wait_for_msgs_task")):
                task = getattr(owner, name, None)
                if task is not None:
                    task.cancel()
        if nc is not None and not nc.is_closed:
            await nc.close()

    async def _run(self) -> None:
        lost, nc = self._lost, self._nc
        while not (lost.is_set() or nc.is_closed):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), 1.0)
        raise ConnectionError("connection to NATS lost")

    def _on_feed(self, msg: Any) -> None:
        """One message of the feed: remembered, held for resumes and fanned out."""
        seq = msg.metadata.sequence.stream
        if self._feed_last is not None:
            if seq <= self._feed_last:
                return
            if seq > self._feed_last + 1:  # the stream's sequence has no holes of its own
                self._feed_gap()
        self._feed_last = seq
        n = _ordinal(msg.headers)
        self._remember(msg.subject, seq, n)
        obj = json.loads(msg.data)
        channel = token_channel(msg.subject[len(self.prefix) + 1 :])
        env = Envelope(channel, _msg_id(seq, n), obj["d"], wall_to_loop(obj["t"]))
        prev = (msg.headers or {}).get(_PREV)
        self._tails.append(channel, seq, int(prev) if prev is not None else None, env)
        self._deliver(env)

    def _js_or_raise(self) -> Any:
        if not self._up or self._js is None:
            raise self._unavailable()
        return self._js

    async def _last_seq(self, js: Any, subject: str) -> tuple[int, int | None]:
        """The sequence and channel ordinal of the last message on ``subject`` (``(0, 0)``
        if it holds none; the ordinal is None for a message written without one)."""
        try:
            raw = await js.get_msg(self.stream, subject=subject)
        except NotFoundError:
            return 0, 0
        return int(raw.seq), _ordinal(raw.headers)

    # --- the Backplane interface -----------------------------------------------------------
    async def publish(self, channel: str, data: Any) -> Envelope:
        validate_channel(channel)
        js = self._js_or_raise()
        subject = self._subject(channel)
        wall = time.time()
        payload = json.dumps({"t": wall, "d": data}, separators=(",", ":"), allow_nan=False)
        try:
            async with self._locks[hash(subject) % _LOCKS]:
                expected: tuple[int, int | None] | None = self._last_by_subject.get(subject)
                if expected is None:
                    expected = await self._last_seq(js, subject)
                for _ in range(20):
                    prev, known = expected
                    n = prev if known is None else known  # numbering goes on increasing
                    # Nats-Msg-Id: JetStream keeps one copy of a publish sent again after an
                    # answer that never came (its duplicate window), and acks the first.
                    headers = {
                        _EXPECTED: str(prev),
                        _PREV: str(prev),
                        _ORD: str(n + 1),
                        "Nats-Msg-Id": secrets.token_hex(16),
                    }
                    try:  # sent again on a timeout (it may have been stored): kept once
                        ack = await self._resend_on_timeout(
                            functools.partial(
                                js.publish, subject, payload.encode(), headers=headers
                            ),
                            (TimeoutError,),
                        )
                        break
                    except APIError as exc:
                        if exc.err_code not in _WRONG_LAST_SEQUENCE:
                            raise
                        expected = await self._last_seq(js, subject)  # another server won
                else:
                    raise ConnectionError(f"could not publish on {subject}: too much contention")
                self._remember(subject, int(ack.seq), n + 1)
        except (NatsError, OSError, TimeoutError) as exc:
            raise self._unavailable(exc) from None
        return Envelope(
            channel=channel, id=_msg_id(int(ack.seq), n + 1), data=data, ts=wall_to_loop(wall)
        )

    async def read_after(self, channel: str, after_id: str, limit: int | None = None) -> ReadResult:
        validate_channel(channel)
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        epoch, bare = self._split(after_id)
        after, after_n = _seq_ord(bare)
        js = self._js_or_raise()
        subject = self._subject(channel)
        if epoch is not None and epoch != self.epoch:
            try:  # the stream may have been re-created since we connected
                self.epoch = _epoch_of(await js.stream_info(self.stream))
            except (NatsError, OSError, TimeoutError) as exc:
                raise self._unavailable(exc) from None
            if epoch != self.epoch:
                return self._epoch_gap(await self.read_after(channel, "0", limit), after_id)
        tail = self._tails.get(channel)
        if tail is not None and tail.covers(after, self._feed_last or 0):  # no request
            held, more_held = tail.after(after, limit)
            self.stats.reads_from_memory += 1
            last_id = held[-1].id if held else bare
            return Messages(channel, tuple(held), last_id, more_held, epoch=self.epoch)
        try:
            self.stats.broker_reads += 1
            last, _ = await self._last_seq(js, subject)
            if after > last:
                info = await js.stream_info(self.stream)
                if after > int(info.state.last_seq):
                    raise UnknownIdError(
                        f"id {after_id!r} is unknown: the stream's latest sequence is"
                        f" {info.state.last_seq}"
                    )
                return Messages(channel=channel, messages=(), last_id=bare, epoch=self.epoch)
            if self.recent and self._feed_last is not None:
                # Read no further than the feed: what lies beyond reaches the reader through
                # it (the hub holds live messages while it reads; a long poll waits for
                # them), and a reader never gets ahead of memory, which would send its
                # every later read to the broker (the soak's long polls, one request per
                # message, while the feed fell further behind).
                last = min(last, self._feed_last)
            msgs: list[Envelope] = []
            more_held = False
            prev_of_first: int | None = None
            n_first: int | None = None
            last_seq = after
            seq = after + 1
            while seq <= last and (limit is None or len(msgs) < limit):
                tail = self._tails.get(channel)
                if msgs and tail is not None and tail.covers(last_seq, self._feed_last or 0):
                    # The rest is held in memory (a trimmed cursor's gap costs two requests).
                    held, more_held = tail.after(
                        last_seq, None if limit is None else limit - len(msgs)
                    )
                    msgs.extend(held)
                    break
                self.stats.broker_reads += 1
                try:
                    raw = await js.get_msg(self.stream, seq=seq, subject=subject, next=True)
                except NotFoundError:
                    break
                n = _ordinal(raw.headers)
                prev = (raw.headers or {}).get(_PREV)
                if prev_of_first is None:
                    prev_of_first = int(prev or "0")
                    n_first = n
                elif prev is not None and int(prev) != last_seq:
                    # Trimmed while this loop reads (one request per message): what came
                    # between is gone. Stop here; the next read after msgs[-1] is the gap.
                    break
                last_seq = int(raw.seq)
                obj = json.loads(raw.data)
                msgs.append(
                    Envelope(channel, _msg_id(raw.seq, n), obj["d"], wall_to_loop(obj["t"]))
                )
                seq = int(raw.seq) + 1
        except (NatsError, OSError, TimeoutError) as exc:
            raise self._unavailable(exc) from None
        more = more_held or (bool(msgs) and _seq(msgs[-1].id) < last)
        last_id = msgs[-1].id if msgs else bare
        if prev_of_first is None or prev_of_first <= after:
            return Messages(channel, tuple(msgs), last_id, more, epoch=self.epoch)
        return Gap(
            channel=channel,
            after_id=after_id,
            # The ordinals count what JetStream trimmed; without them, at least the message
            # Rtsim-Prev names.
            missed=n_first - after_n - 1 if n_first is not None and after_n is not None else 1,
            first_available_id=msgs[0].id,
            messages=tuple(msgs),
            last_id=last_id,
            more=more,
            epoch=self.epoch,
            resume_id=_msg_id(prev_of_first, None if n_first is None else n_first - 1),
        )

    async def latest_id(self, channel: str) -> str:
        validate_channel(channel)
        js = self._js_or_raise()
        try:
            seq, n = await self._last_seq(js, self._subject(channel))
        except (NatsError, OSError, TimeoutError) as exc:
            raise self._unavailable(exc) from None
        return "0" if seq == 0 else _msg_id(seq, n)

    def order_key(self, message_id: str) -> tuple[int, ...]:
        return (_seq(message_id),)
