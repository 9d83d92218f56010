"""The article's "basic SSE endpoint", as small as it honestly gets (claim C6).

Run it with ``python -m rtsim.live.minimal_sse`` and try::

    curl -N http://127.0.0.1:8080/events          # in one terminal
    curl -d hello http://127.0.0.1:8080/publish   # in another

It is counted by the claims ledger (non-blank, non-comment code lines; this docstring is
not counted) and run against a real socket by ``tests/live/test_minimal_sse.py``. What it
leaves out is the point of notebook 06: no event ids (so no resume after a reconnect), no
``retry:`` hint, no keep-alive comments, no authentication, no limit on a slow client's
queue, and a message with a newline in it would need one ``data:`` line per line. A client
that goes away is only noticed with ``handler_cancellation=True`` (set below) or at the next
write.
"""

import asyncio

from aiohttp import web

QUEUES = web.AppKey("queues", set[asyncio.Queue[str]])


async def events(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    queue: asyncio.Queue[str] = asyncio.Queue()
    request.app[QUEUES].add(queue)
    try:
        while True:
            await resp.write(f"data: {await queue.get()}\n\n".encode())
    finally:
        request.app[QUEUES].discard(queue)


async def publish(request: web.Request) -> web.Response:
    text = await request.text()
    for queue in request.app[QUEUES]:
        queue.put_nowait(text)
    return web.Response(status=204)


def make_app() -> web.Application:
    app = web.Application()
    app[QUEUES] = set()
    app.router.add_get("/events", events)
    app.router.add_post("/publish", publish)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=8080, handler_cancellation=True)
