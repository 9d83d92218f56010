"""Yjs rooms at ``GET /yjs/{room}``: the y-websocket protocol over the core :class:`YRoom`.

A stock Yjs client connects with ``new WebsocketProvider("ws://HOST:PORT/yjs", room, doc)``
(the provider appends ``/{room}``; in secret mode pass ``{params: {token}}``). Binary
WebSocket frames go to the sans-I/O :class:`~rtsim.core.yroom.YRoom`; this module only
carries its answers: replies to the sender, broadcasts to the room's other connections.

* **State survives clients leaving**: a room and its document live as long as the server.
* **Across instances**: every document update is also published on the backplane channel
  ``yjs:{room}`` as ``{"o": INSTANCE, "u": BASE64_UPDATE}``, plus a full-state snapshot
  (``"s": 1``) every :data:`SNAPSHOT_EVERY` local updates, or every half of the channel's
  replay length if that is shorter, so the trimmed log still holds a complete state. Each
  instance subscribes to the channels of its open rooms, applies updates from other
  instances, and loads a new room from the channel's history. Yjs updates are idempotent
  and commute, so overlaps and order do not matter. With the memory backplane this is one
  process; with Redis Streams or JetStream, rooms on several servers converge (Redis
  Pub/Sub carries live updates but no history). Awareness (cursors, names) stays per
  instance.
* **Auth**: the channel rules of tokens, with channel ``yjs:{room}``: subscribe to connect
  and read, publish to send document updates (a read-only client that sends one is closed).
* **Admission**: through the server's :class:`~rtsim.live.server.gate.Gate`, like every
  transport: a room connection is a WebSocket (refused when WebSocket is disabled or the
  server is full, counted in ``rtsim_connections{transport="websocket"}``).
* **Token expiry**: a room connection whose token expires is closed with 4001
  ``token_expired`` (:data:`~rtsim.live.server.gate.CLOSE_TOKEN_EXPIRED`), like ``/ws``.
* **Malformed frames** close that connection with 1003 (a text frame) or 1007 (a binary
  frame that is not y-websocket) and a reason; the room and the server carry on.
* **Frame limit**: a frame over :data:`~rtsim.core.yroom.MAX_FRAME_BYTES` (4 MiB) closes
  the connection with 1009 and a reason naming the limit. The refusal is final for that
  content: a reconnect whose sync step 1 shows it still holds the refused update (a stock
  client resends it) is closed with 1009 at once, before the room asks for its updates —
  so a client cannot loop uploading it. Awareness states and every other room keep going.
* **Awareness**: a client id belongs to the connection that last set it with a higher
  clock (stock clients re-send others' states at the same clock); when a connection drops,
  its own ids are removed at once (null state, clock + 1) for everyone else.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import secrets
from collections import deque
from typing import Any

from aiohttp import WSMsgType, web

from rtsim.core.replaylog import ReplayLogError
from rtsim.core.transport import Transport
from rtsim.core.yroom import (
    MAX_FRAME_BYTES,
    MSG_SYNC,
    SYNC_STEP2,
    SYNC_UPDATE,
    Decoder,
    FrameTooBig,
    YProtocolError,
    YRoom,
)

from ..protocol import ProtocolError
from ..tasks import cancel_and_wait
from .auth import AuthError
from .gate import CLOSE_TOKEN_EXPIRED, TOKEN_EXPIRED, check_channel
from .hub import Broadcast, Replay, Subscriber
from .state import ServerState

__all__ = ["SNAPSHOT_EVERY", "YjsService"]

#: Yjs rooms are WebSockets: enabled, limited and counted as such.
TRANSPORT = Transport.WEBSOCKET

CLOSE_UNSUPPORTED = 1003  # a text frame
CLOSE_INVALID = 1007  # a binary frame that is not y-websocket protocol
CLOSE_POLICY = 1008  # forbidden
CLOSE_TOO_BIG = 1009  # an update over MAX_FRAME_BYTES (4 MiB), or one refused before
CLOSE_SLOW = 1013

#: aiohttp reads frames up to this size, so the room can refuse those over
#: :data:`~rtsim.core.yroom.MAX_FRAME_BYTES` with a reason; larger ones aiohttp closes
#: with a bare 1009 (and the room still refuses their resend with the reason).
READ_LIMIT_BYTES = 4 * MAX_FRAME_BYTES
#: A newcomer gets the room's sync step 1 after its own first frame (a stock client sends
#: its step 1 at once), so one that holds a refused update is closed before it is asked for
#: it; a client that waits for the server is greeted after this many seconds.
GREETING_WAIT_S = 0.5

#: Publish the whole document after this many local updates (a trimmed log stays complete).
SNAPSHOT_EVERY = 100
#: Frames queued for one connection before it counts as slow and is closed.
SEND_QUEUE = 4096


def _is_doc_update(frame: bytes) -> bool:
    """Whether ``frame`` is a sync step 2 / update with a non-empty update (a write)."""
    try:
        dec = Decoder(frame)
        if dec.read_var_uint() != MSG_SYNC or dec.read_var_uint() not in (SYNC_STEP2, SYNC_UPDATE):
            return False
        return dec.read_var_bytes() != b"\x00\x00"
    except YProtocolError:
        return False  # the room will reject it with a reason


class _Conn:
    """One WebSocket in a room: a bounded queue of binary frames and its writer task."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.queue: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.slow = False

    def send(self, frame: bytes) -> None:
        if self.slow:
            return
        if len(self.queue) >= SEND_QUEUE:
            self.slow = True
        else:
            self.queue.append(frame)
        self.wake.set()

    async def writer(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                await self.wake.wait()
                self.wake.clear()
                if self.slow:
                    await self.ws.close(code=CLOSE_SLOW, message=b"slow consumer")
                    return
                while self.queue:
                    await self.ws.send_bytes(self.queue.popleft())


class _Room:
    def __init__(self, name: str, channel: str) -> None:
        self.name = name
        self.channel = channel
        self.room = YRoom(name)
        self.conns: dict[int, _Conn] = {}
        self.sub: Subscriber | None = None
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.local_updates = 0
        self.need_snapshot = False

    def broadcast(self, frames: list[bytes], but: int | None = None) -> None:
        for cid, conn in self.conns.items():
            if cid != but:
                for f in frames:
                    conn.send(f)


class YjsService:
    """The server's Yjs rooms (one per name), fed by WebSockets and the backplane.

    ``state``: the server's shared state (hub, backplane, gate, config, open sockets).
    """

    def __init__(self, server: ServerState) -> None:
        self.server = server
        self.instance = secrets.token_hex(6)
        self.rooms: dict[str, _Room] = {}
        self._seq = 0
        self._closing = False
        self.backplane_errors = 0
        kept = getattr(server.backplane, "maxlen", None) or server.config.replay_len
        self.snapshot_every = max(1, min(SNAPSHOT_EVERY, int(kept) // 2))

    # --- rooms and the backplane ---------------------------------------------------------
    async def _room(self, name: str, channel: str) -> _Room:
        r = self.rooms.get(name)
        if r is None:
            r = self.rooms[name] = _Room(name, channel)
            r.task = asyncio.get_running_loop().create_task(self._follow(r))
        await r.ready.wait()
        return r

    async def _follow(self, r: _Room) -> None:
        """Subscribe to the room's channel, load its history, then apply others' updates."""
        hub, backplane = self.server.hub, self.server.backplane
        while True:
            sub = r.sub = Subscriber(None, 1_000_000)
            try:
                await hub.subscribe(sub, r.channel, None)  # live from now, then the history
                try:
                    result = await backplane.read_after(r.channel, "0")
                except ReplayLogError:
                    pass  # a backplane that cannot replay from the start: live updates only
                else:
                    for env in result.messages:
                        self._apply_remote(r, env.data)
            except Exception:  # broker down: the room works locally, retry later
                self.backplane_errors += 1
                hub.unsubscribe(sub, r.channel)
                r.ready.set()
                await asyncio.sleep(1.0)
                continue
            r.ready.set()
            try:
                while not sub.closed:
                    await sub.wait()
                    while sub.queue:
                        item = sub.pop()
                        if isinstance(item, Replay):
                            item = item.b
                        if isinstance(item, Broadcast):
                            self._apply_remote(r, item.env.data)
            finally:
                hub.unsubscribe(sub, r.channel)
            if self._closing or self.server.shutting_down:
                return  # closed by the shutdown; otherwise (a slow consumer) subscribe again

    def _apply_remote(self, r: _Room, data: Any) -> None:
        if not isinstance(data, dict) or data.get("o") == self.instance:
            return
        try:
            update = base64.b64decode(str(data.get("u", "")), validate=True)
            frames = r.room.apply_update(update)
        except (binascii.Error, YProtocolError):
            self.backplane_errors += 1  # not ours to crash on: someone published junk
            return
        r.broadcast(frames)

    async def _publish(self, r: _Room, update: bytes) -> None:
        r.local_updates += 1
        snapshot = r.need_snapshot or r.local_updates % self.snapshot_every == 0
        payload = r.room.state() if snapshot else update
        data: dict[str, Any] = {"o": self.instance, "u": base64.b64encode(payload).decode()}
        if snapshot:
            data["s"] = 1
        try:
            await self.server.backplane.publish(r.channel, data)
            r.need_snapshot = False
        except Exception:  # the broker is out: publish the whole state once it is back
            self.backplane_errors += 1
            r.need_snapshot = True

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/yjs/{room}", self.handle)]

    async def close(self) -> None:
        self._closing = True
        for r in self.rooms.values():
            await cancel_and_wait(r.task)

    # --- the WebSocket handler -----------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        server = self.server
        gate = server.gate
        name = request.match_info["room"]
        peer = gate.peer(request)
        try:
            channel = check_channel(f"yjs:{name}")
            gate.check_capacity(TRANSPORT, peer)
            grant = gate.grant(request)
            grant.check_subscribe(channel)
        except (AuthError, ProtocolError) as exc:
            return gate.http_error(exc)
        may_write = grant.may_publish(channel)
        ws = web.WebSocketResponse(
            max_msg_size=READ_LIMIT_BYTES, heartbeat=server.config.ws_ping_s, compress=False
        )
        try:
            await ws.prepare(request)
        except ConnectionError:
            return ws
        server.sockets.add(ws)  # closed with 1001 when the server shuts down
        try:
            r = await self._room(name, channel)
        except BaseException:
            server.sockets.discard(ws)
            raise
        self._seq += 1
        cid = self._seq
        conn = _Conn(ws)
        r.conns[cid] = conn
        gate.opened(TRANSPORT, peer)
        loop = asyncio.get_running_loop()
        writer = loop.create_task(conn.writer())
        r.room.connect(cid)
        greeted = False

        def greet() -> None:
            nonlocal greeted
            if not greeted and cid in r.conns:
                greeted = True
                for f in r.room.greeting():
                    conn.send(f)

        greeting_timer = loop.call_later(GREETING_WAIT_S, greet)

        async def close_expired() -> None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(
                    ws.close(code=CLOSE_TOKEN_EXPIRED, message=TOKEN_EXPIRED.encode()),
                    server.config.close_grace_s,
                )

        expiry = gate.on_expiry(grant, TRANSPORT, lambda: server.spawn(close_expired()))
        close: tuple[int, str] | None = None
        try:
            async for msg in ws:
                if msg.type is WSMsgType.BINARY:
                    data: bytes = msg.data
                    if not may_write and _is_doc_update(data):
                        close = (CLOSE_POLICY, f"forbidden: read-only access to {channel}")
                        break
                    try:
                        out = r.room.receive(cid, data)
                    except FrameTooBig as exc:
                        close = (CLOSE_TOO_BIG, str(exc))
                        break
                    except YProtocolError as exc:
                        close = (CLOSE_INVALID, f"malformed y-websocket frame: {exc}")
                        break
                    greet()
                    for f in out.reply:
                        conn.send(f)
                    r.broadcast(out.broadcast, but=cid)
                    if out.update is not None:
                        await self._publish(r, out.update)
                elif msg.type is WSMsgType.TEXT:
                    close = (CLOSE_UNSUPPORTED, "y-websocket speaks binary frames")
                    break
                else:
                    if ws.close_code == CLOSE_TOO_BIG:  # over READ_LIMIT_BYTES: aiohttp closed
                        r.room.refuse(cid)  # its resend is refused, with the reason
                        server.metrics.errors.labels("yjs_too_big").inc()
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            greeting_timer.cancel()
            if expiry is not None:
                expiry.cancel()
            del r.conns[cid]
            gate.closed(TRANSPORT, peer)
            server.sockets.discard(ws)
            r.broadcast(r.room.disconnect(cid))
            if close is not None:
                label = "yjs_too_big" if close[0] == CLOSE_TOO_BIG else "yjs_bad_frame"
                server.metrics.errors.labels(label).inc()
                writer.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(
                        ws.close(code=close[0], message=close[1].encode()[:120]),
                        server.config.close_grace_s,
                    )
            else:
                conn.wake.set()
                writer.cancel()
                with contextlib.suppress(BaseException):
                    await writer
                if not ws.closed:
                    with contextlib.suppress(BaseException):
                        await asyncio.wait_for(ws.close(), server.config.close_grace_s)
        return ws
