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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp
import numpy as np

from rtsim.core.backoff import Backoff
from rtsim.core.presence import Join, Leave, LeaveReason, PresenceView, Update
from rtsim.core.reconnect import (
    Connect,
    Failed,
    FellBack,
    Lost,
    Opened,
    ReconnectPolicy,
    SetTimer,
    Start,
    Stop,
    TimerFired,
)
from rtsim.core.replaylog import encode_cursor
from rtsim.core.transport import LONG_POLL_HOLD_S, SseDecoder, Transport

from ..errors import ServerUnreachableError

__all__ = ["GapNotice", "LiveClient", "LiveClientError", "Message", "ServerUnreachableError"]

DEFAULT_TRANSPORTS = (Transport.WEBSOCKET, Transport.SSE, Transport.LONG_POLLING)


@dataclass(frozen=True, slots=True)
class Message:
    channel: str
    id: str
    data: Any
    ts: float
    transport: str = ""


@dataclass(frozen=True, slots=True)
class GapNotice:
    """The server could not replay ``missed`` messages of ``channel`` after ``since``."""

    channel: str
    since: str
    missed: int
    first_available_id: str | None


class LiveClientError(RuntimeError):
    """A failure reconnecting cannot fix (e.g. 401/403: a missing, expired or wrong token)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"server refused the client with {status}: {body}")
        self.status = status
        self.body = body


class _Refused(Exception):
    """The server answered the connection attempt with an HTTP error."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


def _id_key(message_id: str) -> tuple[int, ...]:
    """Ids compare as integers, part by part ("7" < "12"; Redis-style "5-0" < "5-1")."""
    return tuple(int(p) for p in message_id.split("-"))


@dataclass
class _Stats:
    received: int = 0
    duplicates: int = 0
    reconnects: int = 0
    connects: dict[str, int] = field(default_factory=dict)


class LiveClient:
    """Subscribe to ``channels`` of the server at ``url`` over the best transport that works.

    Args:
        url: the server's base URL, e.g. ``"http://127.0.0.1:8765"``.
        channels: the channels to receive.
        token: a token from ``rtsim token`` (None in open mode).
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
        token: str | None = None,
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
        self.token = token
        self.policy = ReconnectPolicy(
            rng=np.random.default_rng(seed),
            cascade=tuple(Transport(t) for t in transports),
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
        self.fallbacks: list[tuple[str, str]] = []
        self.stats = _Stats()
        self.transport: str | None = None
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
                    await self._send_presence(ch, None, leave=True)
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

        Raises :class:`LiveClientError` for an HTTP error status and
        :class:`~rtsim.live.errors.ServerUnreachableError` if the server cannot be reached
        or does not answer within ``request_timeout_s``.
        """
        assert self._session is not None, "start the client first"
        try:
            async with self._session.post(
                self.url + "/publish",
                json={"channel": channel, "data": data},
                headers=self._auth(),
                timeout=aiohttp.ClientTimeout(total=self.request_timeout_s),
            ) as r:
                body = await r.text()
        except (aiohttp.ClientConnectionError, TimeoutError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                reason = f"no answer within {self.request_timeout_s:g} s"
            raise ServerUnreachableError(self.url, reason) from None
        if r.status != 200:
            raise LiveClientError(r.status, body)
        return str(json.loads(body)["id"])

    async def set_presence(self, channel: str, state: Mapping[str, Any]) -> None:
        """Join ``channel``'s presence with ``state`` (or change it); kept alive by heartbeats."""
        self._presence_state[channel] = dict(state)
        await self._send_presence(channel, dict(state))

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

                def on_open(name: str = transport.value) -> None:
                    nonlocal opened
                    opened = True
                    self.connected = True
                    self.policy.handle(Opened(), loop.time())
                    self.transport = name
                    counts = self.stats.connects
                    counts[name] = counts.get(name, 0) + 1
                    if sum(counts.values()) > 1:
                        self.stats.reconnects += 1

                self._conn = loop.create_task(self._connect(transport, on_open))
                reason = "closed"
                try:
                    await self._conn
                except asyncio.CancelledError:
                    if self._stopping or not self._conn.cancelled():
                        raise
                    reason = "dropped"
                except _Refused as exc:
                    if exc.status in (401, 403):
                        self._fatal = LiveClientError(exc.status, exc.body)
                        self._ready.set()
                        return
                    reason = str(exc)
                except (aiohttp.ClientError, OSError, ValueError, TimeoutError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                finally:
                    self._ready.clear()
                    self._ws = None
                    self.connected = False
                self.last_error = reason
                event = Lost(reason) if opened else Failed(reason)
                actions = self.policy.handle(event, loop.time())
                for a in actions:
                    if isinstance(a, FellBack):
                        self.fallbacks.append((a.from_transport.value, a.to_transport.value))
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
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def _connect(self, transport: Transport, on_open: Any) -> None:
        if transport is Transport.WEBSOCKET:
            await self._run_ws(on_open)
        elif transport is Transport.SSE:
            await self._run_sse(on_open)
        elif transport is Transport.LONG_POLLING:
            await self._run_poll(on_open)
        else:
            raise ValueError(f"transport {transport.value} is not supported by this client")

    # --- receiving ---------------------------------------------------------------------
    def _deliver(self, obj: Mapping[str, Any], transport: str) -> None:
        channel, mid = obj["channel"], obj["id"]
        last = self.cursor.get(channel)
        if last is not None and _id_key(mid) <= _id_key(last):
            self.stats.duplicates += 1
            return
        self.cursor[channel] = mid
        self.stats.received += 1
        self._items.put_nowait(Message(channel, mid, obj["data"], obj["ts"], transport))

    def _merge_cursor(self, text: str) -> None:
        """Move the cursor forward to a server cursor ``"a=3,b=7"`` (never back)."""
        for part in text.split(","):
            ch, _, mid = part.partition("=")
            last = self.cursor.get(ch)
            if ch in self.channels and (last is None or _id_key(mid) > _id_key(last)):
                self.cursor[ch] = mid

    def _gap(self, obj: Mapping[str, Any]) -> None:
        g = GapNotice(obj["channel"], obj["since"], obj["missed"], obj.get("first_available_id"))
        self.gaps.append(g)
        self._items.put_nowait(g)

    def _presence(self, obj: Mapping[str, Any]) -> None:
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

    # --- WebSocket ---------------------------------------------------------------------
    async def _run_ws(self, on_open: Any) -> None:
        assert self._session is not None
        ws_url = "ws" + self.url[len("http") :] + "/ws"
        params = {"token": self.token} if self.token else None
        try:
            ws = await self._session.ws_connect(ws_url, params=params, heartbeat=None)
        except aiohttp.WSServerHandshakeError as exc:
            raise _Refused(exc.status, exc.message) from None
        async with ws:
            self._ws = ws
            on_open()
            waiting = set(self.channels)
            for ch in self.channels:
                frame: dict[str, Any] = {"type": "subscribe", "channel": ch}
                if ch in self.cursor:
                    frame["since"] = self.cursor[ch]
                await ws.send_str(json.dumps(frame))
            for ch, state in self._presence_state.items():
                await ws.send_str(json.dumps({"type": "presence", "channel": ch, "state": state}))
            beat = asyncio.get_running_loop().create_task(self._ws_heartbeat(ws))
            try:
                async for msg in ws:
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        break
                    obj = json.loads(msg.data)
                    kind = obj.get("type")
                    if kind == "message":
                        self._deliver(obj, "websocket")
                    elif kind == "subscribed":
                        self.cursor.setdefault(obj["channel"], obj["since"])
                        waiting.discard(obj["channel"])
                        if not waiting:
                            self._ready.set()
                    elif kind == "gap":
                        self._gap(obj)
                    elif kind == "presence":
                        self._presence(obj)
                    elif kind == "ack":
                        fut = self._acks.pop(obj.get("ref"), None)
                        if fut is not None and not fut.done():
                            fut.set_result(obj["id"])
                    elif kind == "error":
                        self.errors.append(obj)
            finally:
                beat.cancel()
            if ws.close_code is not None and ws.close_code != 1000:
                raise ConnectionResetError(f"closed with {ws.close_code}")

    async def _ws_heartbeat(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(self.heartbeat_s)
                await ws.send_str('{"type":"heartbeat"}')

    async def ws_publish(self, channel: str, data: Any, timeout: float = 10.0) -> str:
        """Publish over the open WebSocket and wait for its ``ack``; returns the id."""
        if self._ws is None:
            raise RuntimeError("no open WebSocket (use publish() for HTTP)")
        self._ref += 1
        ref = self._ref
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._acks[ref] = fut
        await self._ws.send_str(
            json.dumps({"type": "publish", "channel": channel, "data": data, "ref": ref})
        )
        return await asyncio.wait_for(fut, timeout)

    async def _send_presence(
        self, channel: str, state: dict[str, Any] | None, *, beat: bool = False, leave: bool = False
    ) -> None:
        if self._ws is not None:
            await self._ws.send_str(
                json.dumps({"type": "presence", "channel": channel, "state": state})
            )
            return
        assert self._session is not None
        body: dict[str, Any] = {"channel": channel, "client": self.client_id}
        if state is not None:
            body["state"] = state
        if beat or leave:  # a heartbeat's state only restores us after a false offline
            body["heartbeat" if beat else "leave"] = True
        async with self._session.post(
            self.url + "/presence",
            json=body,
            headers=self._auth(),
            timeout=aiohttp.ClientTimeout(total=self.request_timeout_s),
        ) as r:
            if r.status == 200:
                self._presence(await r.json())

    async def _http_heartbeat(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(self.heartbeat_s)
                for ch, state in list(self._presence_state.items()):
                    await self._send_presence(ch, state, beat=True)

    # --- SSE -----------------------------------------------------------------------------
    async def _run_sse(self, on_open: Any) -> None:
        assert self._session is not None
        params: list[tuple[str, str]] = [("channel", ch) for ch in self.channels]
        if self.token:
            params.append(("token", self.token))
        headers = {"Accept": "text/event-stream"}
        if self.cursor:
            headers["Last-Event-ID"] = encode_cursor(
                {ch: i for ch, i in self.cursor.items() if ch in self.channels}
            )
        async with self._session.get(self.url + "/sse", params=params, headers=headers) as r:
            if r.status != 200:
                raise _Refused(r.status, await r.text())
            on_open()
            for ch, state in self._presence_state.items():
                await self._send_presence(ch, state)
            beat = asyncio.get_running_loop().create_task(self._http_heartbeat())
            decoder = SseDecoder()
            try:
                async for chunk in r.content.iter_any():
                    for ev in decoder.feed(chunk):
                        obj = json.loads(ev.data)
                        if ev.event == "message":
                            self._deliver(obj, "sse")
                        elif ev.event == "gap":
                            self._gap(obj)
                        elif ev.event == "presence":
                            self._presence(obj)
                    if decoder.last_event_id:
                        self._merge_cursor(decoder.last_event_id)
                        self._ready.set()
            finally:
                beat.cancel()
        raise ConnectionResetError("the event stream ended")

    # --- long polling --------------------------------------------------------------------
    async def _run_poll(self, on_open: Any) -> None:
        assert self._session is not None
        first = True
        beat: asyncio.Task[None] | None = None
        try:
            while True:
                params: list[tuple[str, str]] = [("channel", ch) for ch in self.channels]
                known = {ch: i for ch, i in self.cursor.items() if ch in self.channels}
                if known:
                    params.append(("after", encode_cursor(known)))
                # Learn the start position at once; afterwards wait for news.
                complete = len(known) == len(self.channels)
                params.append(("timeout", str(self.poll_timeout_s if complete else 0)))
                wait = self.poll_timeout_s if complete else 0.0
                async with self._session.get(
                    self.url + "/poll",
                    params=params,
                    headers=self._auth(),
                    timeout=aiohttp.ClientTimeout(total=wait + self.request_timeout_s),
                ) as r:
                    body = await r.text()
                    if r.status != 200:
                        raise _Refused(r.status, body)
                obj = json.loads(body)
                if first:
                    first = False
                    on_open()
                    for ch, state in self._presence_state.items():
                        await self._send_presence(ch, state)
                    beat = asyncio.get_running_loop().create_task(self._http_heartbeat())
                for g in obj.get("gaps", []):
                    self._gap(g)
                for m in obj["messages"]:
                    self._deliver(m, "long-polling")
                self._merge_cursor(obj["cursor"])
                if not self._ready.is_set():
                    self._ready.set()
        finally:
            if beat is not None:
                beat.cancel()
