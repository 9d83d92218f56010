"""The lab's minimal SSE example (claim C6) runs against a real socket."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from rtsim.lab.claims import code_lines, minimal_sse_counts
from rtsim.live.minimal_sse import QUEUES, make_app


async def test_minimal_sse_streams_published_messages() -> None:
    app = make_app()
    # handler_cancellation: end the endless handler when the client goes (as run_app does)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s, s.get(f"{url}/events") as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            for _ in range(50):  # wait until the handler has registered its queue
                if app[QUEUES]:
                    break
                await asyncio.sleep(0.01)
            for text in ("hello", "world"):
                async with s.post(f"{url}/publish", data=text) as r:
                    assert r.status == 204
            got = [await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 5) for _ in range(2)]
        assert got == [b"data: hello\n\n", b"data: world\n\n"]
    finally:
        await runner.cleanup()


def test_code_lines_skips_blanks_comments_and_docstrings() -> None:
    src = '''"""Module doc."""

# a comment
def f(x):
    """Doc
    string."""
    y = (x +
         1)  # trailing comment
    return y
'''
    assert code_lines(src) == 4  # def, y = (two physical lines), return


def test_minimal_sse_counts() -> None:
    c = minimal_sse_counts()
    assert 0 < c["endpoint"] < c["file"]
