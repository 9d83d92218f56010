"""What the Python client and the load generator both put on and read off the wire.

Request building (URLs, auth headers, query parameters), client frames (subscribe,
publish, presence), SSE decoding into JSON events, and :class:`ClientTransport`, the
shape of one transport's client side (a module in this package: :mod:`.websocket`,
:mod:`.sse`, :mod:`.longpoll`; the table is
:data:`rtsim.live.clients.transports.CLIENT_TRANSPORTS`).
The protocol itself is documented in ``docs/protocol.md``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import aiohttp

from rtsim.core.reconnect import rank
from rtsim.core.replaylog import encode_cursor
from rtsim.core.transport import SseDecoder, Transport

from ..errors import ServerUnreachableError

__all__ = [
    "DEGRADED_HEADER",
    "HEARTBEAT_FRAME",
    "ClientTransport",
    "Connection",
    "Degraded",
    "Dropped",
    "LoadSubscriber",
    "LoadTarget",
    "Recovered",
    "Refused",
    "auth_headers",
    "channel_params",
    "cursor_of",
    "degraded_of",
    "handshake_refused",
    "http_publish",
    "level_of",
    "load_refusal",
    "local_port",
    "poll_verdict",
    "presence_frame",
    "publish_frame",
    "response_port",
    "retry_after_s_of",
    "sse_events",
    "subscribe_frame",
    "ws_url",
]


#: The header of a degraded server's 503 that names the rung allowed (a WebSocket
#: handshake's refusal shows the client its headers only, never its body).
DEGRADED_HEADER = "X-Rtsim-Degraded"


class Refused(Exception):
    """The server answered a connection attempt with an HTTP error ``status``.

    ``retry_after``: its ``Retry-After`` header, seconds (None without one);
    ``degraded_to``: its ``X-Rtsim-Degraded`` header (the rung a degraded server allows)."""

    def __init__(
        self,
        status: int,
        body: str,
        retry_after: str | None = None,
        degraded_to: str | None = None,
    ) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body
        self.retry_after = retry_after
        self.degraded_to = degraded_to

    @property
    def retry_after_s(self) -> float | None:
        """How long the server asked to wait, seconds: the body's ``retry_after_s`` (exact)
        or else the ``Retry-After`` header (whole seconds); None if it named neither."""
        return retry_after_s_of(self.body, self.retry_after)

    def degraded(self) -> Degraded | None:
        """The degraded server's 503 (``{"code": "degraded", "poll_s", "transport"}``, or
        ``X-Rtsim-Degraded`` with ``Retry-After``) as :class:`Degraded`, else None. A
        WebSocket handshake shows only the headers: the client is sent to the rung named
        (polling if it names none), and its first poll answer names the rung it may use
        (``"transport"``, see :func:`poll_verdict`). Any other 503 (a connection limit, the
        broker down) is a refusal to retry after ``Retry-After``, not a degradation."""
        if self.status != 503:
            return None
        try:
            obj = json.loads(self.body)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and obj.get("code") == "degraded":
            return Degraded(_seconds(obj.get("poll_s")), None, level_of(obj))
        if self.degraded_to is not None:
            level = level_of({"transport": self.degraded_to})
            return Degraded(_seconds(self.retry_after), None, level)
        return None


def retry_after_s_of(body: str | None, header: str | None) -> float | None:
    """The wait a 429/503 asks for, seconds: ``"retry_after_s"`` of the JSON error body
    (``{"error": {"retry_after_s"}}``) if there is one, else the ``Retry-After`` header
    given in seconds (an HTTP date is not used by this server: None)."""
    if body:
        try:
            obj = json.loads(body)
        except ValueError:
            obj = None
        err = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(err, dict):
            s = _seconds(err.get("retry_after_s"))
            if s is not None:
                return s
    return _seconds(header)


def _seconds(value: Any) -> float | None:
    try:
        s = float(value)
    except (TypeError, ValueError):
        return None
    return s if s > 0 and s != float("inf") else None


class Degraded(Exception):
    """The server allows nothing better than ``transport`` (None or polling: poll every
    ``poll_s`` seconds — None: the client's own interval) until it says it allows more
    (``docs/protocol.md``, degradation). ``cursor``: the last id the raiser had (a load
    subscriber's one channel; None: none)."""

    def __init__(
        self, poll_s: float | None, cursor: str | None = None, transport: Transport | None = None
    ) -> None:
        self.transport = transport or Transport.POLLING
        if self.transport is Transport.POLLING:
            super().__init__(f"the server is degraded; poll every {poll_s} s")
        else:
            super().__init__(f"the server allows {self.transport.value} at best")
        self.poll_s = poll_s
        self.cursor = cursor


class Dropped(ConnectionError):
    """A load subscriber's connection ended (the server closed it, e.g. 1013 slow consumer,
    or it was reset): resume after ``cursor`` (None: from now on)."""

    def __init__(self, cursor: str | None, reason: str = "") -> None:
        super().__init__(f"the connection ended ({reason or 'closed'}); resume after {cursor}")
        self.cursor = cursor
        self.reason = reason


class Recovered(Exception):
    """The server allows more again: up to ``transport`` (None: everything). Raised for a
    poll answer with ``"degraded": false`` while polling, a better ``"transport"`` in a
    poll answer, or a ``recover`` event."""

    def __init__(self, transport: Transport | None = None) -> None:
        super().__init__(f"the server allows {transport.value if transport else 'every transport'}")
        self.transport = transport


def level_of(obj: Any) -> Transport | None:
    """The best transport a server message allows: its ``"transport"`` (a ``degrade`` or
    ``recover`` frame, a 503 body, a poll answer); None if it names none (or one this
    client does not know)."""
    name = obj.get("transport") if isinstance(obj, Mapping) else None
    try:
        return Transport(name) if isinstance(name, str) else None
    except ValueError:
        return None


def degraded_of(obj: Mapping[str, Any], cursor: str | None = None) -> Degraded:
    """A ``degrade`` frame or event (``{"type": "degrade", "poll_s", "transport"?}``) as
    :class:`Degraded` (no ``transport``: polling, what an overloaded server asks)."""
    return Degraded(_seconds(obj.get("poll_s")), cursor, level_of(obj))


def poll_verdict(
    obj: Mapping[str, Any], ceiling: Transport | None, cursor: str | None = None
) -> Degraded | Recovered | None:
    """What a ``/poll`` answer tells a client whose server-set ceiling is ``ceiling``
    (None: none): :class:`Degraded` when it says ``"degraded": true`` (poll instead),
    :class:`Recovered` when it allows a better transport than ``ceiling`` (its
    ``"transport"``; none named: every one), else None (go on)."""
    if obj.get("degraded") is True:
        return Degraded(_seconds(obj.get("poll_s")), cursor, Transport.POLLING)
    if ceiling is None:
        return None
    allowed = level_of(obj) or Transport.WEBSOCKET
    return Recovered(allowed) if rank(allowed) < rank(ceiling) else None


# --- requests -------------------------------------------------------------------------------
def auth_headers(token: str | None) -> dict[str, str]:
    """``Authorization: Bearer TOKEN`` (nothing in open mode)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


async def http_publish(
    session: aiohttp.ClientSession,
    url: str,
    channel: str,
    data: Any,
    headers: Mapping[str, str],
    timeout_s: float,
) -> tuple[int, str, float | None]:
    """``POST /publish`` once: ``(status, body, retry_after_s)`` — the last set only for a
    429/503 (:func:`retry_after_s_of`). Raises
    :class:`~rtsim.live.errors.ServerUnreachableError` if the server cannot be reached or
    does not answer within ``timeout_s`` seconds."""
    try:
        async with session.post(
            url + "/publish",
            json={"channel": channel, "data": data},
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as r:
            body = await r.text()
    except (aiohttp.ClientConnectionError, TimeoutError, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {timeout_s:g} s"
        raise ServerUnreachableError(url, reason) from None
    wait = retry_after_s_of(body, r.headers.get("Retry-After"))
    return r.status, body, (wait if r.status in (429, 503) else None)


def ws_url(base_url: str, path: str = "/ws", token: str | None = None) -> str:
    """The WebSocket URL of ``path`` on the server at ``base_url`` (``http[s]://host:port``):
    ``ws[s]://host:port/path[?token=T]``."""
    u = urlsplit(base_url)
    url = f"{'wss' if u.scheme == 'https' else 'ws'}://{u.netloc}{u.path.rstrip('/')}{path}"
    return url + "?" + urlencode({"token": token}) if token else url


def channel_params(
    channels: Iterable[str], *, token: str | None = None, **extra: str | float | None
) -> list[tuple[str, str]]:
    """Query parameters ``channel=C…`` then ``extra`` (None values left out) and ``token``.
    Floats are written as Python writes them (``timeout=25.0``)."""
    params = [("channel", ch) for ch in channels]
    params += [(k, str(v)) for k, v in extra.items() if v is not None]
    if token:
        params.append(("token", token))
    return params


def cursor_of(cursor: Mapping[str, str], channels: Iterable[str]) -> str | None:
    """The cursor text ``"a=3,b=7"`` of ``channels`` that have an id (None: none has)."""
    known = {ch: cursor[ch] for ch in channels if ch in cursor}
    return encode_cursor(known) if known else None


# --- frames ---------------------------------------------------------------------------------
def subscribe_frame(channel: str, since: str | None = None) -> str:
    frame: dict[str, Any] = {"type": "subscribe", "channel": channel}
    if since is not None:
        frame["since"] = since
    return json.dumps(frame)


def publish_frame(channel: str, data: Any, ref: int | None = None) -> str:
    frame: dict[str, Any] = {"type": "publish", "channel": channel, "data": data}
    if ref is not None:
        frame["ref"] = ref
    return json.dumps(frame, separators=(",", ":"))


def presence_frame(channel: str, state: Mapping[str, Any] | None) -> str:
    return json.dumps({"type": "presence", "channel": channel, "state": state})


HEARTBEAT_FRAME = '{"type":"heartbeat"}'


async def sse_events(
    response: aiohttp.ClientResponse,
) -> AsyncIterator[tuple[list[tuple[str, Any]], str]]:
    """Per chunk read from an SSE response: its ``(event, JSON data)`` pairs and the last
    event id seen so far (``""`` before any; id-only events move it without a pair)."""
    decoder = SseDecoder()
    async for chunk in response.content.iter_any():
        events = [(ev.event, json.loads(ev.data)) for ev in decoder.feed(chunk)]
        yield events, decoder.last_event_id


# --- one transport's client side ------------------------------------------------------------
class Connection(Protocol):
    """What a transport's client side needs of :class:`~rtsim.live.clients.client.LiveClient`."""

    url: str
    token: str | None
    channels: list[str]
    cursor: dict[str, str]
    poll_timeout_s: float
    poll_interval_s: float  # interval polling (while the server is degraded), seconds
    request_timeout_s: float
    heartbeat_s: float

    @property
    def session(self) -> aiohttp.ClientSession: ...

    @property
    def ceiling(self) -> Transport | None:
        """The best transport the server allows now (None: any)."""

    @property
    def presence_state(self) -> Mapping[str, Mapping[str, Any]]: ...

    def deliver(self, obj: Mapping[str, Any], transport: Transport) -> None: ...

    def gap(self, obj: Mapping[str, Any]) -> None: ...

    def on_presence(self, obj: Mapping[str, Any]) -> None: ...

    def on_ack(self, obj: Mapping[str, Any]) -> None: ...

    def on_error(self, obj: Mapping[str, Any]) -> None: ...

    def merge_cursor(self, text: str) -> None: ...

    def merge_position(self, channel: str, position: str) -> None: ...

    def cursor_refused(self, channels: Iterable[str]) -> None: ...

    def mark_ready(self) -> None: ...

    def attach_ws(self, ws: aiohttp.ClientWebSocketResponse | None) -> None: ...

    async def send_presence(self, channel: str, state: Mapping[str, Any] | None) -> None: ...

    async def http_heartbeat(self) -> None: ...


@dataclass(frozen=True)
class LoadTarget:
    """The server a load generator drives: base ``url``, ``token``, WebSocket ``ws_path``."""

    url: str
    token: str | None = None
    ws_path: str = "/ws"


class LoadSubscriber(Protocol):
    """A load-generator subscriber: ``(session, target, channel, got, ready, gap=None,
    since=None)`` runs until cancelled or the connection ends, calling
    ``got(data, read_at, port)`` per message (the published ``data``; ``read_at``:
    ``time.monotonic()`` when its bytes were read off the socket, before JSON decoding;
    ``port``: the connection's local TCP port, -1 if unknown, which the server's stage
    records name it by), ``ready()`` once subscribed and ``gap(obj)`` per ``gap`` the server
    sends (e.g. reason ``"epoch"`` after a server restart). ``since``: resume after this id
    (the load generator passes it when it comes back from polling or resumes after a
    drop). Raises :class:`Refused` on a refusal, :class:`Degraded` (with its last position
    as ``cursor``) when an overloaded server sends it to polling, and :class:`Dropped`
    (with its last position) when its connection ends or is reset."""

    def __call__(
        self,
        session: aiohttp.ClientSession,
        target: LoadTarget,
        channel: str,
        got: Callable[[Any, float, int], None],
        ready: Callable[[], None],
        /,
        gap: Callable[[Mapping[str, Any]], None] | None = None,
        since: str | None = None,
    ) -> Awaitable[None]: ...


def load_refusal(refused: Refused, since: str | None) -> Refused | Degraded:
    """What a load subscriber raises for a refused connection attempt: :class:`Degraded`
    resuming after ``since`` when the server is degraded (:meth:`Refused.degraded`), else
    ``refused`` itself (the load generator retries a 429/503 after its ``Retry-After``)."""
    degraded = refused.degraded()
    if degraded is None:
        return refused
    return Degraded(degraded.poll_s, since, degraded.transport)


def handshake_refused(exc: aiohttp.WSServerHandshakeError) -> Refused:
    """A refused WebSocket handshake as :class:`Refused` (its headers: ``Retry-After``,
    ``X-Rtsim-Degraded``; the body is not shown to a WebSocket client)."""
    headers: Mapping[str, str] = exc.headers or {}
    return Refused(
        exc.status, exc.message, headers.get("Retry-After"), headers.get(DEGRADED_HEADER)
    )


def local_port(sockname: Any) -> int:
    """The port of a socket name ``(host, port, …)`` (-1 for anything else)."""
    try:
        return int(sockname[1])
    except (TypeError, IndexError, ValueError):
        return -1


def response_port(r: aiohttp.ClientResponse) -> int:
    """The local TCP port of the connection ``r`` came on (-1 if unknown). Read from the
    response's protocol, which outlives ``r.connection`` (released once a short body is
    read, e.g. a long-poll answer)."""
    protocol = getattr(r, "_protocol", None)  # aiohttp ≥ 3.9: set when the response starts
    transport = getattr(protocol, "transport", None)
    if transport is None and r.connection is not None:
        transport = r.connection.transport
    return local_port(transport.get_extra_info("sockname") if transport else None)


@dataclass(frozen=True)
class ClientTransport:
    """One transport's client side.

    ``connect(conn, on_open)`` runs one connection of a :class:`Connection` until it ends
    (raises :class:`Refused` for an HTTP refusal, ``ConnectionError`` when it drops) and
    calls ``on_open()`` once it is up; ``load`` is the load generator's minimal subscriber.
    """

    transport: Transport
    connect: Callable[[Connection, Callable[[], None]], Awaitable[None]]
    load: LoadSubscriber
