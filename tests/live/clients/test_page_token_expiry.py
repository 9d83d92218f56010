"""The demo page (``rtsim/live/static``) when its link's token expires: a banner asking for
a new link, and no retry loop — over each transport. Headless Chromium, as in
``tests/live/test_browser.py`` (whose fixtures and skip rules this module shares)."""

from __future__ import annotations

from typing import Any

import pytest

from rtsim.live.server.auth import make_token

from ..conftest import Serve
from ..test_browser import SECRET, browser, page  # noqa: F401 (fixtures)


@pytest.mark.parametrize("transport", ["websocket", "sse", "long-polling"])
def test_an_expired_link_shows_a_banner_and_stops(serve: Serve, page: Any, transport: str) -> None:  # noqa: F811
    srv = serve(secret=SECRET, transports=(transport,))
    token = make_token(SECRET, "ann", subscribe="chat:*,cursor:*", publish="chat:*", ttl_s=3)
    attempts: list[str] = []  # WebSocket, SSE and poll requests the page made
    page.on("websocket", lambda ws: attempts.append(ws.url))
    page.on(
        "request",
        lambda r: attempts.append(r.url) if "/sse?" in r.url or "/poll?" in r.url else None,
    )
    page.goto(f"{srv.url}/?room=x&token={token}")
    page.wait_for_function("() => rt.state === 'open' || window.transport?.state === 'open'")
    page.wait_for_selector("#expired:not([hidden])", timeout=20000)
    assert page.evaluate("() => rt.refused.code") == "token_expired"
    assert page.is_hidden("#refused")  # the expiry banner, not the generic refusal
    seen = len(attempts)
    page.wait_for_timeout(2000)
    assert len(attempts) == seen, attempts[seen:]  # it stopped: no retry loop
    if transport != "long-polling":  # a poll may also be refused between two holds
        assert srv.metric("rtsim_token_expired_total", {"transport": transport}) == 1
