"""Fan-out: who is subscribed to what, and one bounded send queue per connection.

The hot path is :meth:`Hub.on_message`: the backplane hands it an envelope, it wraps it in
one :class:`Broadcast` (which encodes each wire form once, lazily, and shares the bytes
between every connection) and appends that object to the queue of every subscriber of the
channel. Nothing is awaited and no connection can slow the others: a connection whose
queue is full is marked *slow* and closed by its own handler, and the message goes on to
the rest.

A subscription with a resume id (``since``) replays from the backplane first. While that
read is in flight, live messages for the channel are held aside and appended after the
replayed ones, skipping any the replay already covered, so the client gets every message
once and in order (ids compare by the backplane's :meth:`~Backplane.order_key`).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from rtsim.core.envelope import Envelope, encode
from rtsim.core.positions import MalformedPositionError, split_epoch, with_epoch
from rtsim.core.replaylog import Gap, MalformedIdError, ReadResult, encode_cursor
from rtsim.core.transport import Transport, format_sse_event, ws_frame

from ..backplanes.base import Backplane
from ..protocol import gap_object, message_frame
from .fastlane import hand_on, raw_socket
from .metrics import Metrics
from .stages import StageRecorder, monotonic, peer_port, trace_of

#: The close reason of :meth:`Hub.resync` (the feed skipped messages: resume).
RESYNC = "resync"

__all__ = [
    "QUEUED",
    "SENT",
    "SSE_WRITTEN",
    "WRITTEN",
    "Broadcast",
    "Control",
    "Hub",
    "Replay",
    "Subscriber",
]

_EMPTY_KEY: tuple[int, ...] = ()


class Broadcast:
    """One published message and its wire forms, each encoded at most once."""

    __slots__ = (
        "_json",
        "_sse_data",
        "_sse_single",
        "_sse_wire",
        "_ws",
        "_ws_wire",
        "channel",
        "env",
        "epoch",
        "key",
        "trace",
    )

    def __init__(self, env: Envelope, key: tuple[int, ...], epoch: str = "") -> None:
        self.env = env
        self.epoch = epoch  # the id space of env.id (for SSE cursors: "EPOCH:ID")
        self.channel = env.channel
        self.key = key
        self.trace: str | None = None  # set by the hub for a traced message (see .stages)
        self._json: bytes | None = None
        self._ws: bytes | None = None
        self._ws_wire: bytes | None = None
        self._sse_wire: bytes | None = None
        self._sse_data: bytes | None = None
        self._sse_single: bytes | None = None

    @property
    def json(self) -> bytes:
        """``{"channel","id","data","ts"}`` (the core envelope encoding)."""
        if self._json is None:
            self._json = encode(self.env)
        return self._json

    @property
    def position(self) -> str:
        """``"EPOCH:ID"``: the cursor right after this message."""
        return with_epoch(self.epoch, self.env.id)

    @property
    def ws(self) -> bytes:
        """The WebSocket ``message`` frame payload."""
        if self._ws is None:
            self._ws = message_frame(self.json)
        return self._ws

    @property
    def ws_wire(self) -> bytes:
        """The whole WebSocket frame on the wire (header + payload), for direct writes."""
        if self._ws_wire is None:
            self._ws_wire = ws_frame(self.ws)
        return self._ws_wire

    @property
    def sse_data(self) -> bytes:
        """The ``data:`` lines and blank line of an SSE event (no ``id:``)."""
        if self._sse_data is None:
            self._sse_data = format_sse_event(self.json.decode("utf-8"))
        return self._sse_data

    @property
    def sse_single(self) -> bytes:
        """The whole SSE event for a stream of this one channel (cursor ``channel=id``)."""
        if self._sse_single is None:
            cursor = encode_cursor({self.channel: self.position})
            self._sse_single = format_sse_event(self.json.decode("utf-8"), id=cursor)
        return self._sse_single

    @property
    def sse_wire(self) -> bytes:
        """:attr:`sse_single` as one HTTP/1.1 chunk, for direct writes to a chunked stream."""
        if self._sse_wire is None:
            ev = self.sse_single
            self._sse_wire = b"%x\r\n" % len(ev) + ev + b"\r\n"
        return self._sse_wire


class Replay:
    """A message sent from the replay log (not counted in the delivery-latency histogram)."""

    __slots__ = ("b",)

    def __init__(self, b: Broadcast) -> None:
        self.b = b


class Control:
    """A non-message frame: gap, presence, ack, error, subscribed.

    ``obj`` is the frame as a dict (``type`` first); ``advance`` moves an SSE stream's
    cursor (``(channel, id)``) when the frame is written, e.g. past a gap.
    """

    __slots__ = ("_text", "advance", "obj")

    def __init__(self, obj: dict[str, Any], advance: tuple[str, str] | None = None) -> None:
        self.obj = obj
        self.advance = advance
        self._text: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            import json

            self._text = json.dumps(self.obj, separators=(",", ":"), ensure_ascii=False)
        return self._text


Item = Broadcast | Replay | Control

#: The queue of every subscriber with nothing queued: shared, and always empty (maxlen 0:
#: an append to it is dropped, so appenders go through :meth:`Subscriber.own_queue`).
NO_QUEUE: deque[Item] = deque(maxlen=0)

#: What :meth:`Subscriber.offer` did with a message: queued it (or it was not for this
#: connection), handed it to a WebSocket's transport, sent it on a WebSocket's socket (the
#: fast lane), or handed it to an SSE stream's transport.
QUEUED, WRITTEN, SENT, SSE_WRITTEN = 0, 1, 2, 3


class Subscriber:
    """One streaming connection's subscriptions and its bounded send queue.

    Its transport handler drains :attr:`queue` — either a writer loop (``while not closed:
    await wait(); drain queue``) or, with :attr:`on_wake` set, a writer started only when
    something is queued (a WebSocket: an idle one has no writer task). :attr:`closed` with
    :attr:`close_reason` ``"slow consumer"`` means the queue overflowed; the handler then
    closes the connection.

    Slotted, and its wake-up event is made only when a writer first waits on it: an idle
    connection's subscriber is a few small objects.
    """

    __slots__ = (
        "_event",
        "close_reason",
        "closed",
        "credit",
        "direct",
        "direct_limit",
        "direct_sse",
        "last",
        "max_queue",
        "on_fail",
        "on_overflow",
        "on_wake",
        "pending",
        "port",
        "queue",
        "sock",
        "transport",
    )

    def __init__(self, transport: Transport | None, max_queue: int) -> None:
        self.transport = transport  # None: an in-process reader (a Yjs room's follower)
        self.max_queue = max_queue
        self.queue: deque[Item] = NO_QUEUE  # its own deque while something is queued
        self._event: asyncio.Event | None = None  # made by the first wait()
        self.last: dict[str, tuple[int, ...]] = {}  # highest key queued, per channel
        self.pending: dict[str, list[Broadcast]] = {}  # live messages held during replay
        self.credit = 0  # replayed items still queued (not counted against max_queue)
        self.closed = False
        self.close_reason = ""
        self.on_overflow: Callable[[Subscriber], None] | None = None
        # Called once when a send to this connection raised (see :meth:`fail`): the
        # handler closes the connection; other subscribers never see the error.
        self.on_fail: Callable[[Subscriber], None] | None = None
        # Called (with no argument) whenever something was queued or the subscriber
        # closed: a handler that starts its writer on demand sets it.
        self.on_wake: Callable[[], None] | None = None
        # The fast path: a WebSocket's raw transport. While nothing is queued and the
        # socket's write buffer is below ``direct_limit``, a broadcast's pre-framed bytes
        # are written straight to it — no queue, no task switch, no per-connection framing.
        self.direct: Any = None  # asyncio.WriteTransport or uvloop's equivalent
        self.direct_sse = False  # a single-channel, chunked SSE stream (else a WebSocket)
        self.direct_limit = 64 * 1024
        # The fast lane (:mod:`.fastlane`): the socket under ``direct`` while the hub may
        # send() to it itself — a WebSocket on asyncio's plain-TCP transport only.
        self.sock: Any = None
        self.port = -2  # the client's TCP port, looked up at the first traced message

    def use_direct(self, transport: Any, sse: bool = False) -> None:
        """Let the hub write broadcasts' wire bytes straight to ``transport`` while idle.

        ``transport`` needs ``write``, ``get_write_buffer_size`` and ``is_closing`` (duck-typed:
        uvloop's transports do not subclass ``asyncio.WriteTransport``); ``sse``: a
        single-channel chunked SSE stream (written :attr:`Broadcast.sse_wire`), else a
        WebSocket (:attr:`Broadcast.ws_wire`). A WebSocket on asyncio's plain-TCP transport
        also gets the fast lane (:func:`.fastlane.raw_socket`).
        """
        self.direct = transport
        self.direct_sse = sse
        self.sock = None if sse else raw_socket(transport)

    def raw_socket(self) -> Any:
        """The socket the fast lane sends on, or None (no fast lane for this connection)."""
        return self.sock

    def own_queue(self) -> deque[Item]:
        """The queue to append to (its own deque, made now if it had none)."""
        q = self.queue
        if q is NO_QUEUE:
            q = self.queue = deque()
        return q

    def notify(self) -> None:
        """Wake the writer: something was queued, or the subscriber closed."""
        if self._event is not None:
            self._event.set()
        if self.on_wake is not None:
            self.on_wake()

    def offer(self, b: Broadcast) -> int:
        """Send or queue a live message (the hot path).

        Returns :data:`QUEUED` (queued, or not for this connection), :data:`WRITTEN`
        (handed to its transport), :data:`SENT` (sent on its socket by the fast lane) or
        :data:`SSE_WRITTEN` (handed to an SSE stream's transport).
        """
        if self.closed:
            return QUEUED
        ch = b.channel
        if self.pending:
            held = self.pending.get(ch)
            if held is not None:
                held.append(b)
                return QUEUED
        last = self.last
        if b.key <= last.get(ch, _EMPTY_KEY):
            return QUEUED  # already queued (replay overlap)
        q = self.queue
        t = self.direct
        if t is not None and not q:
            sock = self.sock
            if sock is not None and not t._buffer and not t._closing:
                last[ch] = b.key  # the fast lane: see .fastlane (nothing queued or buffered)
                data = b._ws_wire or b.ws_wire
                try:
                    sent = sock.send(data)
                except Exception:  # EAGAIN, or an error the transport meets again
                    sent = 0
                if sent == len(data):
                    return SENT
                hand_on(t, data, sent)
                return WRITTEN
            if t.get_write_buffer_size() < self.direct_limit:
                if t.is_closing():
                    self.direct = self.sock = None
                else:
                    last[ch] = b.key
                    if self.direct_sse:
                        t.write(b.sse_wire)
                        return SSE_WRITTEN
                    t.write(b.ws_wire)
                    return WRITTEN
        if len(q) - self.credit >= self.max_queue:
            self.close("slow consumer")
            if self.on_overflow is not None:
                self.on_overflow(self)
            return QUEUED
        last[ch] = b.key
        self.own_queue().append(b)
        self.notify()
        return QUEUED

    def send(self, item: Control) -> None:
        """Queue a control frame (never dropped; these are few and small)."""
        if not self.closed:
            self.own_queue().append(item)
            self.notify()

    def pop(self) -> Item:
        """The next queued item (``IndexError`` if none); the last one frees the deque."""
        q = self.queue
        item = q.popleft()
        if not q:
            self.queue = NO_QUEUE
        if self.credit and isinstance(item, Replay):
            self.credit -= 1
        return item

    def close(self, reason: str) -> None:
        self.direct = self.sock = None
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            self.notify()

    def fail(self, reason: str = "send failed") -> None:
        """A send to this connection raised: close it and tell its handler (``on_fail``)."""
        if self.closed:
            return
        self.close(reason)
        if self.on_fail is not None:
            self.on_fail(self)

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until there is something to send or the subscriber closed (False: timeout)."""
        if self.queue or self.closed:
            return True
        event = self._event
        if event is None:
            event = self._event = asyncio.Event()
        event.clear()
        if timeout is None:
            await event.wait()
            return True
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True


class Hub:
    """Subscriptions per channel, the fan-out, and long-poll waiters."""

    def __init__(self, backplane: Backplane, metrics: Metrics, recent: int = 4096) -> None:
        self.backplane = backplane
        self.metrics = metrics
        self.subs: dict[str, dict[Subscriber, None]] = {}
        self.waiters: dict[str, dict[asyncio.Future[None], None]] = {}
        self._recent: OrderedDict[tuple[str, str], Broadcast] = OrderedDict()
        self._recent_max = recent
        self._order_key = backplane.order_key
        self.stages = StageRecorder()
        self._clock: Callable[[], float] = lambda: asyncio.get_running_loop().time()
        ws, sse = Transport.WEBSOCKET, Transport.SSE
        self._direct_ws = (metrics.deliveries_by.get(ws), metrics.latency_by.get(ws))
        self._direct_sse = (metrics.deliveries_by.get(sse), metrics.latency_by.get(sse))
        #: Deliveries sent by the fast lane (:mod:`.fastlane`) since the hub was made.
        self.fast_sends = 0

    # --- the hot path ------------------------------------------------------------------
    def on_message(self, env: Envelope) -> None:
        b = Broadcast(env, self._order_key(env.id), self.backplane.epoch)
        recent = self._recent
        recent[(env.channel, env.id)] = b
        if len(recent) > self._recent_max:
            recent.popitem(last=False)
        subs = self.subs.get(env.channel)
        n = 0
        trace = trace_of(env.data)
        if trace is not None:
            b.trace = trace
            n = self._fan_out_traced(b, trace, subs or {})
        elif subs:
            n = len(subs)
            done = [0, 0, 0, 0]  # by what offer() did: QUEUED, WRITTEN, SENT, SSE_WRITTEN
            for s in subs:  # a failing one only drops itself (on_fail spawns its close)
                try:
                    done[s.offer(b)] += 1
                except Exception:  # one connection's failure must not stop the fan-out
                    self.send_failed(s)
            self._count_direct(done, env.ts)
        self.metrics.fanout.observe(n)
        waiters = self.waiters.pop(env.channel, None)
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def _count_direct(self, done: list[int], ts: float) -> None:
        """Count one fan-out's direct writes (``done``: offer() results tallied), once per
        broadcast: the latency observed is that of its last direct write (publish → written)."""
        self.fast_sends += done[SENT]
        for (deliveries, latency), count in (
            (self._direct_ws, done[WRITTEN] + done[SENT]),
            (self._direct_sse, done[SSE_WRITTEN]),
        ):
            if count and deliveries is not None and latency is not None:
                deliveries.inc(count)
                latency.observe(self._clock() - ts)

    def send_failed(self, sub: Subscriber) -> None:
        """Drop ``sub`` after a send to it raised, counted in ``rtsim_send_failures_total``."""
        label = sub.transport.value if sub.transport is not None else "internal"
        self.metrics.send_failures.labels(label).inc()
        sub.fail()

    def _fan_out_traced(self, b: Broadcast, trace: str, subs: dict[Subscriber, None]) -> int:
        """The fan-out of a traced message: as :meth:`on_message`, plus stage timestamps
        (start, end, and each direct write's time by the client's port; a queued delivery's
        time is recorded by its connection's writer)."""
        start = monotonic()
        rec = self.stages.fanout(trace, b.env, start, start, len(subs))
        writes, clock = rec.writes, monotonic
        done = [0, 0, 0, 0]
        for s in subs:
            if s.port == -2:
                s.port = peer_port(s.direct) if s.direct is not None else -1
            t = clock()
            try:
                how = s.offer(b)
            except Exception:  # as in on_message: a failing one only drops itself
                self.send_failed(s)
                continue
            done[how] += 1
            if how:
                writes[s.port] = t  # handed to the socket (a direct write)
            elif s.queue and s.queue[-1] is b:
                rec.queued += 1
        rec.fanout_end = monotonic()
        self._count_direct(done, b.env.ts)
        return len(subs)

    def written(self, sub: Subscriber, b: Broadcast) -> None:
        """A queued traced broadcast ``b`` was written to ``sub``'s socket now."""
        if b.trace is not None:
            self.stages.written(b.trace, sub.port, monotonic())

    def broadcast_for(self, env: Envelope) -> Broadcast:
        """The shared :class:`Broadcast` of a stored envelope (cached for recent ones)."""
        b = self._recent.get((env.channel, env.id))
        return b if b is not None else Broadcast(env, self._order_key(env.id), self.backplane.epoch)

    def send_control(self, channel: str, obj: dict[str, Any]) -> None:
        """Send one control frame (e.g. a presence event) to every subscriber of ``channel``."""
        subs = self.subs.get(channel)
        if subs:
            item = Control(obj)
            for s in subs:
                s.send(item)

    # --- subscriptions -----------------------------------------------------------------
    async def subscribe(self, sub: Subscriber, channel: str, since: str | None) -> str:
        """Subscribe ``sub`` to ``channel``; with ``since``, queue the replay first.

        Returns the position (``"EPOCH:ID"``) the subscription starts after: ``since`` in
        the current epoch, the channel's latest id, or — after a ``gap`` — the gap's
        position. ``since`` from another epoch is answered with a ``gap`` of reason
        ``"epoch"`` and everything held, never an error. Raises ``ValueError`` (the replay
        log's errors) for an id that cannot be placed; the subscription is then not made.
        """
        try:
            _, bare = split_epoch(since) if since is not None else (None, "")
        except MalformedPositionError as exc:
            raise MalformedIdError(str(exc)) from None
        self.subs.setdefault(channel, {})[sub] = None
        if since is None:
            sub.last[channel] = _EMPTY_KEY
            try:
                return with_epoch(self.backplane.epoch, await self.backplane.latest_id(channel))
            except BaseException:
                self.unsubscribe(sub, channel)
                raise
        sub.pending[channel] = []
        try:
            result = await self.backplane.read_after(channel, since)
        except BaseException:
            sub.pending.pop(channel, None)
            self.unsubscribe(sub, channel)
            raise
        if sub.transport is not None:
            self.metrics.reconnections.labels(sub.transport.value).inc()
        epoch = result.epoch or self.backplane.epoch
        start = with_epoch(epoch, bare)
        last = self._order_key(bare)
        if isinstance(result, Gap):
            self.metrics.gaps.inc()
            obj = self.gap_of(result, since)
            start = str(obj["position"])
            last = self._order_key(split_epoch(start)[1])
            # The gap moves an SSE cursor to its position (the messages that follow move
            # it on): a stream that ends right after the gap resumes in the new epoch.
            sub.send(Control(obj, advance=(channel, start)))
        q = sub.own_queue() if result.messages else sub.queue
        for env in result.messages:
            b = self.broadcast_for(env)
            q.append(Replay(b))
            last = b.key
        sub.credit += len(result.messages)
        self.metrics.replayed.inc(len(result.messages))
        sub.last[channel] = last
        held = sub.pending.pop(channel, [])
        for b in held:
            sub.offer(b)
        sub.notify()
        return start

    def gap_of(self, result: Gap, since: str) -> dict[str, Any]:
        """The ``gap`` frame object for ``result`` (see :func:`~rtsim.live.protocol.gap_object`)."""
        epoch = result.epoch or self.backplane.epoch
        resume = result.resume_id if result.resume_id is not None else result.last_id
        return gap_object(
            result.channel,
            since,
            result.missed,
            result.first_available_id,
            result.reason,
            epoch,
            with_epoch(epoch, resume),
        )

    def position_after(self, result: ReadResult) -> str:
        """``"EPOCH:ID"`` of ``result.last_id`` (where a reader stands after ``result``)."""
        return with_epoch(result.epoch or self.backplane.epoch, result.last_id)

    def unsubscribe(self, sub: Subscriber, channel: str) -> None:
        subs = self.subs.get(channel)
        if subs is not None:
            subs.pop(sub, None)
            if not subs:
                del self.subs[channel]
        sub.last.pop(channel, None)
        sub.pending.pop(channel, None)

    def resync(self) -> int:
        """Close every WebSocket and SSE subscriber so that it resumes from its own cursor.

        Called when the backplane's feed skipped messages (they were trimmed before this
        server read them): live subscribers would otherwise miss them without a word. On
        resuming, each gets what is still held and an exact ``gap`` for the rest. Closes
        with reason :data:`RESYNC` (WebSocket 1013, "try again later"); long polls read
        with their cursors and need nothing. Returns how many were closed."""
        closed = 0
        for sub in {s for subs in self.subs.values() for s in subs}:
            if sub.transport is not None and not sub.closed:
                sub.fail(RESYNC)
                closed += 1
        return closed

    def unsubscribe_all(self, sub: Subscriber) -> None:
        for channel in list(sub.last) + list(sub.pending):
            self.unsubscribe(sub, channel)

    def subscriber_count(self, channel: str) -> int:
        return len(self.subs.get(channel, ()))

    # --- long polling --------------------------------------------------------------------
    def add_waiter(self, channels: list[str]) -> asyncio.Future[None]:
        """A future resolved at the next message on any of ``channels``."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for ch in channels:
            self.waiters.setdefault(ch, {})[fut] = None
        return fut

    def remove_waiter(self, channels: list[str], fut: asyncio.Future[None]) -> None:
        for ch in channels:
            waiting = self.waiters.get(ch)
            if waiting is not None:
                waiting.pop(fut, None)
                if not waiting:
                    del self.waiters[ch]
