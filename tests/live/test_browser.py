"""The demo page and the browser's own EventSource, in headless Debian Chromium via Playwright.

Never downloads a browser: Playwright drives /usr/bin/chromium (``executable_path``); the
tests skip with a message if it is missing. A screenshot goes to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtsim.live.background import BackgroundServer
from rtsim.live.server.auth import make_token

from .conftest import Serve

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SECRET = "b" * 32

if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium;"
        " CI's .ci/run does) to run the browser tests",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev extra)")
# One worker runs the module under pytest-xdist (--dist loadgroup): one browser, started once.
pytestmark = pytest.mark.xdist_group("demo-page-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1100, "height": 760})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, errors


def publish(srv: BackgroundServer, channel: str, data: Any, token: str | None = None) -> str:
    req = urllib.request.Request(
        srv.url + "/publish",
        data=json.dumps({"channel": channel, "data": data}).encode(),
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return str(json.load(r)["id"])


def wait(page: Any, expr: str, arg: Any = None) -> None:
    page.wait_for_function(expr, arg=arg, timeout=15000)


def chat(text: str) -> dict[str, Any]:
    return {"kind": "chat", "from": "py", "mid": text, "name": "python", "text": text}


def open_room(page: Any, srv: BackgroundServer, query: str, transport: str) -> None:
    page.goto(f"{srv.url}/?{query}")
    wait(page, "t => rt.state === 'open' && rt.transport === t", transport)


@pytest.mark.parametrize(
    ("enabled", "expected"),
    [
        (("websocket", "sse", "long-polling"), "websocket"),
        (("sse", "long-polling"), "sse"),
        (("long-polling",), "long-polling"),
    ],
    ids=["websocket", "falls-back-to-sse", "falls-back-to-long-polling"],
)
def test_page_connects_receives_and_sends(
    serve: Serve, page: Any, enabled: tuple[str, ...], expected: str
) -> None:
    srv = serve(transports=enabled)
    open_room(page, srv, "room=r1&name=Ada", expected)
    publish(srv, "chat:r1", chat("hello from python"))
    wait(page, "() => rt.chat.some(c => c.text === 'hello from python')")
    # The page's own send: optimistic "sending…", then "sent" on the ack / POST answer.
    page.fill("#text", "hi from the page")
    page.press("#text", "Enter")
    page.wait_for_selector(".send-state.sent", timeout=15000)
    assert page.text_content("#transport") == expected
    if expected != "websocket":  # the fallback is in the status log
        assert "falling back" in page.text_content("#log")
    # The server stored it once.
    stored = srv.call(srv.server.backplane.read_after, "chat:r1", "0")
    assert [m.data["text"] for m in stored.messages] == ["hello from python", "hi from the page"]


def test_failed_send_offers_retry(serve: Serve, page: Any) -> None:
    srv = serve()
    open_room(page, srv, "room=r2", "websocket")
    # Too big for the server's 64 KiB limit: the publish fails and the line offers a retry.
    page.evaluate("() => rtSend('x'.repeat(70000))")
    page.wait_for_selector(".send-state.failed button.retry", timeout=15000)


def test_eventsource_resumes_with_last_event_id_after_the_server_drops_it(
    serve: Serve, page: Any
) -> None:
    srv = serve(retry_ms=1000)
    page.goto(srv.url + "/?room=elsewhere")
    page.evaluate(
        """() => {
        window.got = []; window.opens = 0;
        const es = new EventSource('/sse?channel=raw');
        es.onopen = () => { window.opens++; };
        es.onmessage = (e) => window.got.push([e.lastEventId, JSON.parse(e.data).data]);
        }"""
    )
    wait(page, "() => window.opens === 1")
    for i in range(3):
        publish(srv, "raw", i)
    wait(page, "() => window.got.length === 3")

    async def drop() -> None:
        for sub in list(srv.server.hub.subs.get("raw", {})):
            sub.close("dropped by the test")

    srv.call(drop)
    # Published while the browser is away (its EventSource waits `retry: 1000` ms).
    for i in range(3, 6):
        publish(srv, "raw", i)
    wait(page, "() => window.got.length === 6 && window.opens === 2")
    got = page.evaluate("() => window.got")
    assert [d for _, d in got] == [0, 1, 2, 3, 4, 5]  # none lost, none twice
    epoch = srv.server.backplane.epoch
    assert [i for i, _ in got] == [f"raw={epoch}:{n}" for n in range(1, 7)]
    assert srv.metric("rtsim_reconnections_total", {"transport": "sse"}) == 1


@pytest.mark.parametrize("transports", ["websocket", "sse", "long-polling"])
def test_page_reconnects_and_resumes_from_its_last_id(
    serve: Serve, page: Any, transports: str
) -> None:
    srv = serve(poll_timeout_s=1.0)
    open_room(page, srv, f"room=r3&transports={transports}", transports)
    publish(srv, "chat:r3", chat("m0"))
    wait(page, "() => rt.chat.length === 1")

    async def drop() -> None:
        for sub in list(srv.server.hub.subs.get("chat:r3", {})):
            sub.close("dropped by the test")

    if transports == "long-polling":  # no stream to drop: refuse the next polls for a while
        page.route("**/poll?*", lambda route: route.abort())
        wait(page, "() => rt.state === 'reconnecting'")
    else:
        srv.call(drop)
    for i in range(1, 4):
        publish(srv, "chat:r3", chat(f"m{i}"))
    if transports == "long-polling":
        page.unroute("**/poll?*")
    wait(page, "() => rt.chat.length >= 4 && rt.state === 'open'")
    assert page.evaluate("() => rt.chat.map(c => c.text)") == ["m0", "m1", "m2", "m3"]
    assert page.evaluate("() => rt.reconnects") >= 1


@pytest.mark.parametrize("transports", ["websocket", "sse", "long-polling"])
def test_page_comes_back_after_a_server_restart(serve: Serve, page: Any, transports: str) -> None:
    """Issue 14.2: a chat line, then the server restarts on the same port (memory
    backplane: a new epoch). The page was stuck "connecting" with nobody present; now its
    old cursor gets an epoch gap, it is open again, present, and receives the next line."""
    old = serve(poll_timeout_s=1.0)
    port = int(old.url.rsplit(":", 1)[1])
    open_room(page, old, f"room=r9&name=Ada&transports={transports}", transports)
    page.fill("#text", "before the restart")
    page.press("#text", "Enter")
    wait(page, "() => rt.chat.some(c => c.text === 'before the restart')")
    old_epoch = old.server.backplane.epoch
    wait(page, "e => window.transport.ids['chat:r9'] === e + ':1'", old_epoch)
    old.stop()
    new = serve(port=port, poll_timeout_s=1.0)
    epoch = new.server.backplane.epoch
    wait(page, "e => window.transport.ids['chat:r9'] === e + ':0' && rt.state === 'open'", epoch)
    wait(page, "() => Object.values(rt.members).some(m => m.name === 'Ada')")
    assert any(e.get("reason") == "epoch" for e in page.evaluate("() => rt.errors"))
    publish(new, "chat:r9", chat("after the restart"))
    wait(page, "() => rt.chat.some(c => c.text === 'after the restart')")
    assert page.evaluate("() => window.transport.ids['chat:r9']") == f"{epoch}:1"


def test_two_pages_see_each_other_and_cursors(
    serve: Serve, browser: Any, page: Any, request: Any
) -> None:
    srv = serve()
    other = browser.new_context(viewport={"width": 1100, "height": 760}).new_page()
    try:
        open_room(page, srv, "room=team&name=Ada", "websocket")
        open_room(other, srv, "room=team&name=Bob&transports=sse,long-polling", "sse")
        both = "() => Object.values(rt.members).map(m => m.name).sort().join() === 'Ada,Bob'"
        wait(page, both)
        wait(other, both)
        page.fill("#text", "hello Bob")
        page.press("#text", "Enter")
        wait(other, "() => rt.chat.some(c => c.text === 'hello Bob')")
        box = page.locator("#board").bounding_box()
        page.mouse.move(box["x"] + 10, box["y"] + 10)
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5, steps=8)
        wait(other, "() => rt.cursors && Object.keys(rt.cursors).length === 1")
        wait(other, "() => Object.values(rt.cursors)[0].startsWith('60')")
        wait(other, "() => rt.latency.length > 0")
        ARTIFACTS.mkdir(exist_ok=True)
        other.screenshot(path=str(ARTIFACTS / "demo-page.png"), full_page=True)
        # Ada leaves: Bob's list shrinks to himself.
        page.close()
        wait(other, "() => Object.values(rt.members).map(m => m.name).join() === 'Bob'")
    finally:
        other.context.close()


def test_secret_mode_needs_a_token_in_the_url(serve: Serve, page: Any) -> None:
    srv = serve(secret=SECRET)
    page.goto(srv.url + "/?room=s")
    page.wait_for_selector("#needtoken:not([hidden])", timeout=15000)
    token = make_token(SECRET, "ada", subscribe="chat:*,cursor:*", publish="chat:*,cursor:*")
    open_room(page, srv, f"room=s&token={token}", "websocket")
    publish(srv, "chat:s", chat("secret hello"), token)
    wait(page, "() => rt.chat.some(c => c.text === 'secret hello')")


@pytest.mark.parametrize(
    ("transports", "subscribe"),
    [
        (("websocket", "sse", "long-polling"), None),  # a token signed with another secret
        (("long-polling",), None),
        (("websocket", "sse", "long-polling"), "other:*"),  # valid, but not for this room
    ],
    ids=["bad-token", "bad-token-polling", "forbidden-room"],
)
def test_a_rejected_token_shows_a_banner_and_stops_retrying(
    serve: Serve, page: Any, transports: tuple[str, ...], subscribe: str | None
) -> None:
    srv = serve(secret=SECRET, transports=transports)
    if subscribe is None:
        token = make_token("z" * 32, "mallory", subscribe="chat:*,cursor:*")
    else:
        token = make_token(SECRET, "eve", subscribe=subscribe)
    attempts: list[str] = []  # WebSocket, SSE and poll requests the page made
    page.on("websocket", lambda ws: attempts.append(ws.url))
    page.on(
        "request",
        lambda r: attempts.append(r.url) if "/sse?" in r.url or "/poll?" in r.url else None,
    )
    page.goto(f"{srv.url}/?room=s&token={token}")
    page.wait_for_selector("#refused:not([hidden])", timeout=15000)
    assert page.evaluate("() => rt.state") == "refused"
    status = page.evaluate("() => rt.refused.status")
    assert status == (401 if subscribe is None else 403)
    assert str(status) in page.text_content("#refused")
    # It stopped: no further connection attempts after the banner.
    seen = len(attempts)
    assert seen >= 1
    page.wait_for_timeout(2000)
    assert len(attempts) == seen, attempts[seen:]
    assert page.evaluate("() => rt.state") == "refused"


def test_the_page_has_a_favicon(serve: Serve, page: Any) -> None:
    srv = serve()
    page.goto(srv.url + "/?room=f")
    href = page.evaluate("() => document.querySelector('link[rel=icon]').href")
    resp = page.request.get(href)
    assert resp.status == 200 and resp.headers["content-type"].startswith("image/")
