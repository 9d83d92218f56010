"""Run a live server in the background of a notebook or a test: ``serve_in_background``.

    srv = serve_in_background(port=0)       # any free port on 127.0.0.1
    srv.url                                 # 'http://127.0.0.1:43121'
    srv.metric("rtsim_published_total")     # read a metric back
    srv.stop()                              # clean shutdown (also on `with` exit)

The server runs on its own event loop in a daemon thread, so it keeps serving while a
notebook cell (or a test's own event loop) waits on it, and :meth:`BackgroundServer.stop`
closes every connection and joins the thread. Both share one Python process (and its
GIL): for measurements that must not compete with the client, run ``rtsim serve`` as a
separate process instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import replace
from types import TracebackType
from typing import Any

from aiohttp import web

from .backplanes.base import Backplane
from .server.app import SERVER_KEY, LiveServer, ServerConfig, start_site
from .tasks import cancel_and_wait

__all__ = ["BackgroundServer", "serve_in_background"]


class BackgroundServer:
    """A server running in a background thread. Use :func:`serve_in_background`."""

    def __init__(self, config: ServerConfig, backplane: Backplane | None = None) -> None:
        self.config = config
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._backplane = backplane
        self._thread = threading.Thread(target=self._run, name="rtsim-serve", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._runner, self.url = self._loop.run_until_complete(
                start_site(self.config, self._backplane)
            )
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            self._loop.close()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._end_leftover_tasks())
        self._loop.close()

    async def _end_leftover_tasks(self) -> None:
        """End what a shutdown cut short left on the loop (as ``asyncio.run`` does, but
        cancelling again a task that absorbed a cancellation): no task is destroyed
        pending later, in another test or cell."""
        me = asyncio.current_task()
        left = [t for t in asyncio.all_tasks() if t is not me]
        await asyncio.gather(*(cancel_and_wait(t) for t in left))
        await self._loop.shutdown_asyncgens()

    @property
    def server(self) -> LiveServer:
        """The server's state (metrics, hub, presence). Read it; do not mutate it."""
        assert self._runner is not None
        return self._runner.app[SERVER_KEY]

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http") :] + "/ws"

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample of the server's metrics, e.g. ``metric("rtsim_published_total")``."""
        return self.server.metrics.sample(name, labels)

    def call(self, fn: Any, *args: Any, timeout_s: float = 30.0) -> Any:
        """Run coroutine function ``fn(*args)`` on the server's loop and return its result.

        Raises ``RuntimeError`` if the server is stopped, ``TimeoutError`` after
        ``timeout_s`` seconds (default 30).
        """
        if not self.running or self._loop.is_closed():
            raise RuntimeError("the server is stopped; start a new one")
        coro = fn(*args)
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:  # the loop closed meanwhile
            coro.close()
            raise RuntimeError("the server is stopped; start a new one") from None
        try:
            return future.result(timeout=timeout_s)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(f"the server did not answer within {timeout_s:g} s") from None

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Close every connection, stop the loop and join the thread (idempotent)."""
        if not self._thread.is_alive():
            return
        runner = self._runner

        async def shutdown() -> None:
            if runner is not None:
                await runner.cleanup()  # closes every connection, then the backplane
            # Let transports that are closing run their close callbacks before the loop stops.
            for _ in range(5):
                await asyncio.sleep(0)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_in_background(
    config: ServerConfig | None = None, backplane: Backplane | None = None, **options: Any
) -> BackgroundServer:
    """Start a server in a background thread; ``options`` override :class:`ServerConfig`.

    ``port=0`` (the default here) picks a free port; the URL is ``.url``.
    """
    base = config or ServerConfig(port=0)
    return BackgroundServer(replace(base, **options) if options else base, backplane)
