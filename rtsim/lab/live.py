"""Notebook helpers for the live server (notebook 06): short, blocking calls.

A notebook kernel already runs an event loop, so every helper here runs its asyncio code
on a fresh loop in a worker thread (:func:`run_sync`) and returns plain values.

Nothing here waits forever: each helper first checks that a server answers at ``url``
(a few seconds at most) and raises :class:`~rtsim.live.errors.ServerUnreachableError`
("… the server is stopped; run the cell that starts it") if none does; every client call
has a timeout, and :func:`run_sync` bounds the whole call (:data:`CALL_TIMEOUT_S`).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import pandas as pd

from rtsim.core.backoff import Backoff
from rtsim.core.transport import Transport
from rtsim.live.background import BackgroundServer, serve_in_background
from rtsim.live.clients.client import GapNotice, LiveClient, Message
from rtsim.live.errors import ServerUnreachableError, require_server

__all__ = [
    "CALL_TIMEOUT_S",
    "ServerUnreachableError",
    "drop_and_resume",
    "drop_and_resume_explorer",
    "fallback_demo",
    "metrics_table",
    "publish_many",
    "redis_running",
    "resume_from",
    "run_sync",
    "two_instances",
]

T = TypeVar("T")
_FAST = Backoff(base_s=0.01, cap_s=0.05)

#: Upper bound of one helper call, seconds (each network wait inside has its own, shorter one).
CALL_TIMEOUT_S = 120.0
_STOPPED = "the server is stopped; run the cell that starts it"


def _require(url: str) -> None:
    """Fail fast, with a message for the notebook reader, if no server answers at ``url``."""
    require_server(url, hint=_STOPPED)


def run_sync(coro: Coroutine[Any, Any, T], timeout_s: float = CALL_TIMEOUT_S) -> T:
    """Run ``coro`` to completion on a new event loop in a worker thread.

    Raises ``TimeoutError`` after ``timeout_s`` seconds (default :data:`CALL_TIMEOUT_S`).
    """
    box: dict[str, Any] = {}

    async def bounded() -> T:
        try:
            return await asyncio.wait_for(coro, timeout_s)
        except TimeoutError:
            raise TimeoutError(f"gave up after {timeout_s:g} s") from None

    def target() -> None:
        try:
            box["value"] = asyncio.run(bounded())
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


async def _drop_and_resume(
    url: str, transport: str, channel: str, before: int, during: int
) -> dict[str, Any]:
    async with LiveClient(
        url, [channel], transports=[transport], backoff=_FAST, poll_timeout_s=5
    ) as c:
        await c.ready()
        ids = [await c.publish(channel, i) for i in range(before)]
        got = [await c.next(10) for _ in range(before)]
        c.drop()  # the network fails; the client will reconnect and resume
        ids += [await c.publish(channel, i) for i in range(before, before + during)]
        got += [await c.next(10) for _ in range(during)]
        received = [m.id for m in got if isinstance(m, Message)]
        return {
            "transport": transport,
            "published": len(ids),
            "received": len(received),
            "in_order_no_duplicates": received == ids,
            "reconnects": c.stats.reconnects,
        }


def drop_and_resume(
    url: str,
    transports: Sequence[str] = (Transport.WEBSOCKET, Transport.SSE, Transport.LONG_POLLING),
    during: int = 5,
) -> pd.DataFrame:
    """Per transport: publish 3, kill the connection, publish ``during`` more; what arrived.

    Raises :class:`~rtsim.live.errors.ServerUnreachableError` if no server runs at ``url``.
    """
    _require(url)
    rows = [run_sync(_drop_and_resume(url, t, f"demo-{t}", 3, during)) for t in transports]
    return pd.DataFrame(rows)


def drop_and_resume_explorer(srv: BackgroundServer, transport: str = Transport.WEBSOCKET) -> Any:
    """A slider (messages published while the connection is down) over :func:`drop_and_resume`.

    Returns an ``ipywidgets.interactive``. When the server has been stopped, moving the
    slider prints one line (":data:`_STOPPED`") within a few seconds instead of a traceback
    or a hang.
    """
    import ipywidgets as w

    def show(during: int) -> pd.DataFrame | None:
        try:
            return drop_and_resume(srv.url, transports=(transport,), during=during)
        except ServerUnreachableError as exc:
            print(exc)
            return None

    return w.interactive(show, during=w.IntSlider(value=5, min=0, max=40, step=5))


async def _resume_from(url: str, channel: str, since: str, transport: str) -> list[Any]:
    async with LiveClient(url, [channel], transports=[transport], since={channel: since}) as c:
        await c.ready()
        out: list[Any] = []
        while True:
            try:
                out.append(await c.next(0.5))
            except TimeoutError:
                return out


def resume_from(url: str, channel: str, since: str, transport: str = "websocket") -> dict[str, Any]:
    """Connect with ``since`` and count what the server replays (messages and gaps)."""
    _require(url)
    items = run_sync(_resume_from(url, channel, since, transport))
    gaps = [g for g in items if isinstance(g, GapNotice)]
    return {
        "messages": sum(isinstance(m, Message) for m in items),
        "gap": bool(gaps),
        "missed": sum(g.missed for g in gaps),
        "first_id": next((m.id for m in items if isinstance(m, Message)), None),
    }


async def _publish_many(url: str, channel: str, n: int) -> str:
    async with LiveClient(url, [channel], transports=[Transport.LONG_POLLING]) as c:
        last = ""
        for i in range(n):
            last = await c.publish(channel, i)
        return last


def publish_many(url: str, channel: str, n: int) -> str:
    """Publish ``n`` messages to ``channel`` over HTTP; returns the last id."""
    _require(url)
    return run_sync(_publish_many(url, channel, n))


async def _fallback(url: str) -> dict[str, Any]:
    async with LiveClient(url, ["fb"], backoff=_FAST, failures_before_fallback=1) as c:
        await c.ready()
        reached = c.transport.value if c.transport is not None else None
        return {"transport": reached, "fallbacks": [(a.value, b.value) for a, b in c.fallbacks]}


def fallback_demo(url: str) -> dict[str, Any]:
    """Connect with the default cascade; report the transport reached and the steps taken."""
    _require(url)
    return run_sync(_fallback(url))


_LIVE = (Transport.WEBSOCKET, Transport.SSE, Transport.LONG_POLLING)
_PERSISTENT = (Transport.WEBSOCKET, Transport.SSE)
_METRICS: tuple[tuple[str, str, dict[str, str] | None], ...] = (
    ("published", "rtsim_published_total", None),
    *(
        (f"{kind} {t}", name, {"transport": t.value})
        for kind, name, ts in (
            ("deliveries", "rtsim_deliveries_total", _LIVE),
            ("reconnections", "rtsim_reconnections_total", _PERSISTENT),
        )
        for t in ts
    ),
    ("replayed", "rtsim_replayed_total", None),
    ("replay gaps", "rtsim_replay_gaps_total", None),
)


def metrics_table(srv: BackgroundServer) -> pd.DataFrame:
    """The server's counters (not its timings) as a small table."""
    rows = [{"metric": k, "value": int(srv.metric(name, labels))} for k, name, labels in _METRICS]
    return pd.DataFrame(rows)


def redis_running(host: str = "127.0.0.1", port: int = 6379) -> bool:
    """Whether something accepts connections on Redis's port (no Redis call is made)."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


async def _two_instances(url_a: str, url_b: str, before: int, during: int) -> dict[str, Any]:
    ch = "multi"
    async with LiveClient(url_b, [ch], transports=["websocket"]) as on_b:
        await on_b.ready()
        async with LiveClient(url_a, [ch], transports=["websocket"]) as on_a:
            await on_a.ready()
            ids = [await on_a.publish(ch, i) for i in range(before)]
            live_b = [await on_b.next(10) for _ in range(before)]
            seen_a = [await on_a.next(10) for _ in range(before)]
        # The client on A goes away; more is published (on A) while it is gone ...
        async with LiveClient(url_a, [ch], transports=[Transport.LONG_POLLING]) as pub:
            ids += [await pub.publish(ch, i) for i in range(before, before + during)]
        # ... and it comes back on instance B, resuming from the last id it saw on A.
        last = seen_a[-1].id if isinstance(seen_a[-1], Message) else "0"
        async with LiveClient(url_b, [ch], transports=["sse"], since={ch: last}) as back:
            await back.ready()
            resumed = [await back.next(10) for _ in range(during)]
    got = [m.id for m in seen_a + resumed if isinstance(m, Message)]
    return {
        "published on A": len(ids),
        "live on B": sum(isinstance(m, Message) for m in live_b),
        "resumed on B": len(resumed),
        "lost": len(set(ids) - set(got)),
        "duplicates": len(got) - len(set(got)),
        "in order": got == ids,
    }


def two_instances(before: int = 3, during: int = 5) -> dict[str, Any] | None:
    """Two servers joined by Redis Streams: fan-out from A to B, then resume A → B.

    Returns the counts, or ``None`` (after printing why) when no Redis runs on
    127.0.0.1:6379. The streams are written under a fresh prefix and deleted afterwards.
    """
    if not redis_running():
        print("skipped: no Redis on 127.0.0.1:6379 (start one with `redis-server`, then re-run)")
        return None
    prefix = "nb" + uuid.uuid4().hex[:10]
    backplane = f"redis-streams://127.0.0.1:6379?prefix={prefix}"
    try:
        with _serve(backplane) as a, _serve(backplane) as b:
            return run_sync(_two_instances(a.url, b.url, before, during))
    finally:
        import redis

        r = redis.Redis(port=6379)
        keys = list(r.scan_iter(match=f"{{{prefix}}}:*"))
        if keys:
            r.delete(*keys)
        r.close()


def _serve(backplane: str) -> BackgroundServer:
    from rtsim.live.server import ServerConfig

    return serve_in_background(ServerConfig(port=0, backplane=backplane))
