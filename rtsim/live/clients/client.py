"""A Python client for the live server: one interface over WebSocket, SSE and long polling.

    async with LiveClient(url, ["chat", "news"], token=t) as c:
        await c.ready()                      # subscribed; from now on nothing is missed
        await c.publish("chat", {"text": "hi"})
        item = await c.next()                # Message(channel, id, data, ts) or GapNotice

The client keeps the last id of every channel and resumes from it after any disconnect,
so a message published while it was away arrives once it is back (or a
:class:`GapNotice` says how many were trimmed before it could). Reconnects and the
fallback WebSocket → SSE → long polling are decided by the core
:class:`~rtsim.core.reconnect.ReconnectPolicy` with its :class:`~rtsim.core.backoff.Backoff`;
this module only carries out its actions. Messages are de-duplicated by id, so the
application sees each message of its channels once and in order (``duplicates`` counts
any the network delivered twice).

Tokens that expire: give ``token`` as a function (``lambda: issue_token()``, sync or
async). It is called before every connection attempt, so when the server ends a
connection at its token's ``exp`` (WebSocket close 4001, SSE ``error`` event, long poll
401 ``token_expired``) the client reconnects with a fresh token and resumes from its last
ids: nothing is lost or repeated.

Cursors carry the server's epoch (``"EPOCH:ID"``, docs/protocol.md): after a server
restart (memory backplane) or a reset broker, the server answers the old cursor with a
gap of reason ``"epoch"``; the client hands on a :class:`GapNotice`, moves its cursor to
the gap's position and goes on receiving, from the new epoch's first held message. A
cursor the server refuses (``bad_cursor``, e.g. a bare id ahead of a new epoch) is
dropped likewise (a ``GapNotice`` with reason ``"bad_cursor"``) and the channel
subscribed from now on: the client never stays connected but unsubscribed.

A 429/503 refusal's ``Retry-After`` (or ``retry_after_s``) is a floor under the backoff.

Degradation (claim C20): when the server sends the client down (a ``degrade`` frame or
event, 503, a long-poll answer with ``"degraded": true``; overload, or a facilitator's
room step-down), the core policy moves to the rung named (:attr:`LiveClient.ceiling`),
resuming from its cursor: on the polling rung it polls ``/poll?timeout=0`` every
``poll_s`` seconds. A ``recover`` event or a poll answer allowing more lifts the ceiling
(:attr:`LiveClient.degraded` is False again). Nothing is lost or repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any

import aiohttp
import numpy as np

from rtsim.core.backoff import Backoff
from rtsim.core.positions import split_epoch, with_epoch
from rtsim.core.presence import Join, Leave, LeaveReason, PresenceView, Update
from rtsim.core.reconnect import (
    Connect,
    Degrade,
    Event,
    Failed,
    FellBack,
    Lost,
    Opened,
    ReconnectPolicy,
    Recover,
    SetTimer,
    Start,
    Stop,
    TimerFired,
)
from rtsim.core.transport import LONG_POLL_HOLD_S, Transport, parse_transport

from ..errors import ServerUnreachableError
from . import polling
from .events import ClientStats, GapNotice, LiveClientError, Message
from .events import id_key as _id_key
from .tokens import TokenSource, TokenUnavailable, call_token_source
from .transports import CLIENT_TRANSPORTS, client_transport
from .wire import (
    Degraded,
    Recovered,
    Refused,
    auth_headers,
    http_publish,
    presence_frame,
    publish_frame,
)

__all__ = ["GapNotice", "LiveClient", "LiveClientError", "Message", "ServerUnreachableError"]

#: Every transport this client speaks, best first (the client's transport table's order).
DEFAULT_TRANSPORTS: tuple[Transport, ...] = tuple(CLIENT_TRANSPORTS)


class LiveClient:
    """Subscribe to ``channels`` of the server at ``url`` over the best transport that works.

    Args:
        url: the server's base URL, e.g. ``"http://127.0.0.1:8765"``.
        channels: the channels to receive.
        token: a token from ``rtsim token`` (None in open mode), or a function returning
            one (sync or async), called before every connection attempt and again when an
            HTTP publish is refused with 401. With a function, a connection ended because
            its token expired reconnects with a new token; a function that raises counts
            as a failed attempt (retried with backoff); two 401 refusals in a row without
            an open connection between them are final (:class:`LiveClientError`). A plain
            string that expires is final at once.
        transports: the fallback cascade, best first (default WebSocket, SSE, long polling).
        since: ``{channel: last id}`` to start after (default: from now on).
        backoff: the reconnect delays (default 0.05 s doubling to 2 s, full jitter).
        failures_before_fallback: failed attempts on one transport before the next one.
        stable_after_s: a connection must stay open this long before the backoff restarts
            (default 5 s, the core policy's); one that closes sooner waits longer each time.
        seed: seeds the jitter (reproducible reconnect timing).
        poll_timeout_s: how long one long poll may wait at the server.
        client_id: this client's presence name over SSE/long polling (WebSocket uses the
            server's per-connection name); default ``py-`` + 12 random hex digits, so every
            client is its own member.
        heartbeat_s: presence heartbeat interval, seconds.
        connect_timeout_s: how long :meth:`ready` waits by default, seconds (10).
        request_timeout_s: limit of one HTTP request (publish, presence) and of opening a
            connection, seconds (10); a long poll may take ``poll_timeout_s`` more.

    Nothing waits forever by default: :meth:`ready` raises
    :class:`~rtsim.live.errors.ServerUnreachableError` when no connection could be opened
    in time (e.g. the server is stopped), :meth:`next` raises it (or ``TimeoutError`` while
    connected) after its timeout, :meth:`publish` after ``request_timeout_s``.
    """

    def __init__(
        self,
        url: str,
        channels: Iterable[str],
        *,
        token: TokenSource | None = None,
        transports: Iterable[str | Transport] = DEFAULT_TRANSPORTS,
        since: Mapping[str, str] | None = None,
        backoff: Backoff | None = None,
        failures_before_fallback: int = 2,
        stable_after_s: float = 5.0,
        seed: int = 0,
        poll_timeout_s: float = LONG_POLL_HOLD_S,
        client_id: str | None = None,
        heartbeat_s: float = 15.0,
        connect_timeout_s: float = 10.0,
        request_timeout_s: float = 10.0,
    ) -> None:
        for name, v in (
            ("connect_timeout_s", connect_timeout_s),
            ("request_timeout_s", request_timeout_s),
        ):
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be > 0 and finite, got {v}")
        self.url = url.rstrip("/")
        self.channels = list(dict.fromkeys(channels))
        if not self.channels:
            raise ValueError("give at least one channel")
        self._token_source = token
        #: The token in use now (a function's latest answer; None before the first one).
        self.token: str | None = token if isinstance(token, str) or token is None else None
        self.token_refreshes = 0  # times the token function was called
        self._auth_refusals = 0  # 401s in a row without an open connection between them
        self.policy = ReconnectPolicy(
            rng=np.random.default_rng(seed),
            cascade=tuple(parse_transport(t) for t in transports),
            failures_before_fallback=failures_before_fallback,
            backoff=backoff or Backoff(base_s=0.05, cap_s=2.0),
            stable_after_s=stable_after_s,
        )
        self.cursor: dict[str, str] = dict(since or {})
        self.poll_timeout_s = poll_timeout_s
        self.client_id = client_id or f"py-{uuid.uuid4().hex[:12]}"
        self.heartbeat_s = heartbeat_s
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        self.connected = False  # a connection is open now
        self.last_error = ""  # why the last connection attempt failed or ended
        self.presence: dict[str, PresenceView] = {}
        self.errors: list[dict[str, Any]] = []
        self.gaps: list[GapNotice] = []
        self.fallbacks: list[tuple[Transport, Transport]] = []
        self.stats = ClientStats()
        self.transport: Transport | None = None  # the one connected now (or last)
        self.degraded = False  # the server has sent this client down the cascade
        self._items: asyncio.Queue[Message | GapNotice] = asyncio.Queue()
        self._ready = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._presence_state: dict[str, dict[str, Any]] = {}
        self._acks: dict[int, asyncio.Future[str]] = {}
        self._ref = 0
        self._fatal: BaseException | None = None
        self._stopping = False

    # --- public API ------------------------------------------------------------------------
    async def start(self) -> LiveClient:
        if self._task is None:
            # No total limit (streams stay open); opening a connection is bounded.
            timeout = aiohttp.ClientTimeout(
                total=None, connect=self.request_timeout_s, sock_connect=self.request_timeout_s
            )
            self._session = aiohttp.ClientSession(timeout=timeout)
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def close(self) -> None:
        self._stopping = True
        if self._ws is None and self.connected:  # say goodbye (a WebSocket's close does)
            for ch in list(self._presence_state):
                with contextlib.suppress(Exception):
                    await self.send_presence(ch, None, leave=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> LiveClient:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def ready(self, timeout: float | None = None) -> None:
        """Wait until every channel is subscribed (its start position known).

        Waits at most ``timeout`` seconds (default ``connect_timeout_s``); then raises
        :class:`~rtsim.live.errors.ServerUnreachableError` if no connection is open (the
        message says why the last attempt failed), else ``TimeoutError``. Raises
        :class:`LiveClientError` if the server refused the client (401/403).
        """
        limit = self.connect_timeout_s if timeout is None else timeout
        waiter = asyncio.ensure_future(self._ready.wait())
        try:
            done = asyncio.ensure_future(self._task) if self._task else None
            wait_for = {waiter} | ({done} if done else set())
            finished, _ = await asyncio.wait(
                wait_for, timeout=limit, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        self._raise_fatal()
        if not finished:
            raise self._stalled(f"not subscribed within {limit:g} s")

    def _stalled(self, what: str) -> Exception:
        if not self.connected:
            return ServerUnreachableError(
                self.url,
                self.last_error or "no connection yet",
                f"{what}; is the server running?",
            )
        return TimeoutError(f"{what} (connected over {self.transport})")

    async def next(self, timeout: float | None = 30.0) -> Message | GapNotice:
        """The next message (or gap notice) in arrival order.

        Waits at most ``timeout`` seconds (30 by default; ``None``: no limit), then raises
        ``TimeoutError``, or :class:`~rtsim.live.errors.ServerUnreachableError` (a
        ``ConnectionError``) if the client is not connected at that moment.
        """
        self._raise_fatal()
        if timeout is None:
            return await self._items.get()
        try:
            return await asyncio.wait_for(self._items.get(), timeout)
        except TimeoutError:
            self._raise_fatal()
            raise self._stalled(f"nothing received within {timeout:g} s") from None

    def pending(self) -> int:
        """Items received and not yet taken with :meth:`next`."""
        return self._items.qsize()

    async def __aiter__(self) -> AsyncIterator[Message | GapNotice]:
        while True:
            yield await self.next(None)  # a subscription has no end

    async def publish(self, channel: str, data: Any) -> str:
        """Publish over HTTP (``POST /publish``); returns the message's id.

        A 429 or 503 (a publish rate limit, the broker down) is sent again after the
        server's ``Retry-After`` while that stays within ``request_timeout_s`` of the first
        try. Raises :class:`LiveClientError` for an HTTP error status (its
        ``retry_after_s`` set for a 429/503) and
        :class:`~rtsim.live.errors.ServerUnreachableError` if the server cannot be reached
        or does not answer within ``request_timeout_s``.
        """
        assert self._session is not None, "start the client first"
        refreshable = callable(self._token_source)
        if refreshable and self.token is None:
            await self._refresh_token()
        clock, attempt = asyncio.get_running_loop().time, 0  # attempt: 401s refreshed
        give_up_at = clock() + self.request_timeout_s
        while True:
            status, body, wait = await http_publish(
                self._session, self.url, channel, data, self._auth(), self.request_timeout_s
            )
            if status == 401 and refreshable and attempt == 0:
                attempt += 1
                await self._refresh_token()  # e.g. token_expired: once more with a new one
            elif wait is not None and clock() + wait < give_up_at:
                await asyncio.sleep(wait)  # a 429/503: as long as the server asked, again
            elif status != 200:
                raise LiveClientError(status, body, wait)
            else:
                return str(json.loads(body)["id"])

    async def set_presence(self, channel: str, state: Mapping[str, Any]) -> None:
        """Join ``channel``'s presence with ``state`` (or change it); kept alive by heartbeats."""
        self._presence_state[channel] = dict(state)
        await self.send_presence(channel, dict(state))

    def drop(self) -> None:
        """Kill the current connection as a network failure would (the client reconnects)."""
        if self._conn is not None:
            self._conn.cancel()

    # --- the reconnect loop (drives the core policy) -----------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        actions = self.policy.handle(Start(), loop.time())
        try:
            while True:
                transport = next(a.transport for a in actions if isinstance(a, Connect))
                opened = False

                def on_open(name: Transport = transport) -> None:
                    nonlocal opened
                    opened = True
                    self.connected = True
                    self._auth_refusals = 0
                    self.policy.handle(Opened(), loop.time())
                    self.transport = name
                    counts = self.stats.connects
                    counts[name] = counts.get(name, 0) + 1
                    if sum(counts.values()) > 1:
                        self.stats.reconnects += 1

                self._conn = loop.create_task(self._connect(transport, on_open))
                reason = "closed"
                retry_after: float | None = None  # a 429/503's Retry-After, seconds
                degrade: Degraded | None = None
                recovered: Recovered | None = None
                try:
                    await self._conn
                except asyncio.CancelledError:
                    if self._stopping or not self._conn.cancelled():
                        raise
                    reason = "dropped"
                except Degraded as exc:
                    degrade = exc
                    reason = str(exc)
                except Recovered as exc:
                    recovered = exc
                    reason = str(exc)
                except Refused as exc:
                    degrade = exc.degraded()
                    if exc.status in (429, 503):
                        retry_after = exc.retry_after_s  # the next dial waits at least this
                    if exc.status in (401, 403):
                        self._auth_refusals += 1
                        # A function may give a fresh token (e.g. the old one expired):
                        # one more try; a second 401 in a row is final.
                        if not (
                            exc.status == 401
                            and callable(self._token_source)
                            and self._auth_refusals < 2
                        ):
                            self._fatal = LiveClientError(exc.status, exc.body)
                            self._ready.set()
                            return
                    if exc.status == 400 and "bad_cursor" in exc.body:
                        self.cursor_refused(list(self.cursor))  # retry from now on
                    reason = str(exc)
                except TokenUnavailable as exc:
                    reason = str(exc)
                except (aiohttp.ClientError, OSError, ValueError, TimeoutError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                finally:
                    self._ready.clear()
                    self._ws = None
                    self.connected = False
                self.last_error = reason
                event: Event = Lost(reason, retry_after) if opened else Failed(reason, retry_after)
                if degrade is not None:
                    event = Degrade(degrade.poll_s, degrade.transport)
                    self.stats.degrades += 1
                elif recovered is not None:
                    event = Recover(recovered.transport)
                    self.stats.recoveries += 1
                actions = self.policy.handle(event, loop.time())
                self.degraded = self.policy.degraded
                for a in actions:
                    if isinstance(a, FellBack):
                        self.fallbacks.append((a.from_transport, a.to_transport))
                delay = next(a.delay for a in actions if isinstance(a, SetTimer))
                await asyncio.sleep(delay)
                actions = self.policy.handle(TimerFired(), loop.time())
        finally:
            with contextlib.suppress(Exception):
                self.policy.handle(Stop(), loop.time())

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    def _auth(self) -> dict[str, str]:
        return auth_headers(self.token)

    async def _refresh_token(self) -> None:
        """Ask the token function for a new token (a plain token stays as it is).

        Raises :class:`~.tokens.TokenUnavailable` if the function raises or gives no string.
        """
        source = self._token_source
        if callable(source):
            self.token_refreshes += 1
            self.token = await call_token_source(source)

    async def _connect(self, transport: Transport, on_open: Any) -> None:
        await self._refresh_token()  # a function's token is fresh for every attempt
        if transport is Transport.POLLING:  # the server's degraded mode only
            await polling.connect(self, on_open)
            return
        await client_transport(transport).connect(self, on_open)

    # --- receiving ---------------------------------------------------------------------
    # What a transport's client side calls (the :class:`~.wire.Connection` interface).
    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "start the client first"
        return self._session

    @property
    def poll_interval_s(self) -> float:
        """Seconds between polls while degraded (the server's ``poll_s``; the policy's)."""
        return self.policy.poll_interval_s

    @poll_interval_s.setter
    def poll_interval_s(self, value: float) -> None:
        self.policy.poll_interval_s = value

    @property
    def ceiling(self) -> Transport | None:
        """The best transport the server allows this client now (None: any; set by a
        ``degrade`` frame or 503, lifted by ``recover`` or a poll answer; the policy's)."""
        return self.policy.ceiling

    @property
    def presence_state(self) -> Mapping[str, Mapping[str, Any]]:
        """The presence state this client set per channel (re-sent on every connection)."""
        return self._presence_state

    def mark_ready(self) -> None:
        """Every channel's start position is known (:meth:`ready` returns)."""
        self._ready.set()

    def attach_ws(self, ws: aiohttp.ClientWebSocketResponse | None) -> None:
        """The open WebSocket, for :meth:`ws_publish` and presence frames (None: none)."""
        self._ws = ws

    def on_ack(self, obj: Mapping[str, Any]) -> None:
        fut = self._acks.pop(obj.get("ref"), None)  # type: ignore[arg-type]
        if fut is not None and not fut.done():
            fut.set_result(obj["id"])

    def on_error(self, obj: Mapping[str, Any]) -> None:
        self.errors.append(dict(obj))

    def deliver(self, obj: Mapping[str, Any], transport: Transport) -> None:
        channel, mid = obj["channel"], obj["id"]
        last = self.cursor.get(channel)
        if last is not None and _id_key(mid) <= _id_key(last):
            self.stats.duplicates += 1
            return
        # A message's id is of the epoch the cursor is in (a gap moves it to a new one).
        self.cursor[channel] = with_epoch(split_epoch(last)[0] if last else None, mid)
        self.stats.received += 1
        self._items.put_nowait(Message(channel, mid, obj["data"], obj["ts"], transport))

    def merge_cursor(self, text: str) -> None:
        """Move the cursor forward to a server cursor ``"a=E:3,b=E:7"`` (never back within
        one epoch; a cursor of another epoch than the client's is the server's word)."""
        for part in text.split(","):
            ch, _, mid = part.partition("=")
            if ch in self.channels:
                self.merge_position(ch, mid)

    def merge_position(self, channel: str, position: str) -> None:
        """Move ``channel``'s cursor to the server's ``position`` (see :meth:`merge_cursor`)."""
        last = self.cursor.get(channel)
        if last is None:
            self.cursor[channel] = position
            return
        (old_epoch, old_id), (epoch, mid) = split_epoch(last), split_epoch(position)
        if old_epoch is None:  # an id without its epoch yet: the server's is this one
            self.cursor[channel] = with_epoch(epoch, max(old_id, mid, key=_id_key))
        elif old_epoch != epoch or _id_key(mid) > _id_key(old_id):
            self.cursor[channel] = position

    def gap(self, obj: Mapping[str, Any]) -> None:
        position = obj.get("position")
        g = GapNotice(
            obj["channel"],
            obj["since"],
            obj["missed"],
            obj.get("first_available_id"),
            obj.get("reason", "trimmed"),
            obj.get("epoch", ""),
            position,
        )
        if isinstance(position, str) and g.channel in self.channels:
            # Resubscribe from there: the messages that follow the gap are after it.
            self.cursor[g.channel] = position
        self.gaps.append(g)
        self._items.put_nowait(g)

    def cursor_refused(self, channels: Iterable[str]) -> None:
        """The server refused the cursor of ``channels`` (``bad_cursor``): drop it, so they
        are subscribed from now on, and hand on a :class:`GapNotice` for each."""
        for ch in channels:
            since = self.cursor.pop(ch, None)
            if since is not None:
                g = GapNotice(ch, since, 0, None, "bad_cursor")
                self.gaps.append(g)
                self._items.put_nowait(g)

    def on_presence(self, obj: Mapping[str, Any]) -> None:
        ch = obj["channel"]
        kind = obj.get("event")
        if kind == "snapshot":
            self.presence[ch] = PresenceView(ch, obj.get("members", {}))
            return
        view = self.presence.setdefault(ch, PresenceView(ch))
        client = obj.get("client", "")
        if kind == "leave":
            view.apply(Leave(ch, client, LeaveReason(obj.get("reason", "left")), 0.0))
        elif kind == "join":
            view.apply(Join(ch, client, obj.get("state", {}), 0.0))
        elif kind == "update":
            view.apply(Update(ch, client, obj.get("state", {}), 0.0))

    async def ws_publish(self, channel: str, data: Any, timeout: float = 10.0) -> str:
        """Publish over the open WebSocket and wait for its ``ack``; returns the id."""
        if self._ws is None:
            raise RuntimeError("no open WebSocket (use publish() for HTTP)")
        self._ref += 1
        ref = self._ref
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._acks[ref] = fut
        await self._ws.send_str(publish_frame(channel, data, ref))
        return await asyncio.wait_for(fut, timeout)

    async def send_presence(
        self,
        channel: str,
        state: Mapping[str, Any] | None,
        *,
        beat: bool = False,
        leave: bool = False,
    ) -> None:
        """Send this client's presence on ``channel``: over the open WebSocket, else
        ``POST /presence`` (``beat``: a heartbeat that keeps the state; ``leave``: leave)."""
        if self._ws is not None:
            await self._ws.send_str(presence_frame(channel, state))
            return
        assert self._session is not None
        body: dict[str, Any] = {"channel": channel, "client": self.client_id}
        if state is not None:
            body["state"] = dict(state)
        if beat or leave:  # a heartbeat's state only restores us after a false offline
            body["heartbeat" if beat else "leave"] = True
        async with self._session.post(
            self.url + "/presence",
            json=body,
            headers=self._auth(),
            timeout=aiohttp.ClientTimeout(total=self.request_timeout_s),
        ) as r:
            if r.status == 200:
                self.on_presence(await r.json())

    async def http_heartbeat(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(self.heartbeat_s)
                for ch, state in list(self._presence_state.items()):
                    await self.send_presence(ch, state, beat=True)
