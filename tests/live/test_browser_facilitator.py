"""The demo page as the room's shared screen (issue 15.6), in headless Debian Chromium: the
facilitator's page steps the room WebSocket → SSE → long polling → polling and back, and
every learner's page follows, shows it, and keeps receiving. Fixtures and skip rules are
``tests/live/test_browser.py``'s."""

from __future__ import annotations

from typing import Any

from rtsim.live.background import BackgroundServer
from rtsim.live.server.auth import make_token

from .conftest import Serve
from .test_browser import ARTIFACTS, SECRET, browser, chat, page, publish, wait  # noqa: F401

LEARNER = {"subscribe": "chat:*,cursor:*", "publish": "chat:*,cursor:*"}
PUBLISHER = make_token(SECRET, "python", publish="chat:*")
POLL_S = 1.0
SHOWN = {  # what a learner's status panel says the server allows
    "websocket": "all transports allowed",
    "sse": "stepped down: sse at best",
    "long-polling": "stepped down: long-polling at best",
    "polling": f"degraded: polling every {POLL_S:g} s",
}


def learner(browser: Any, srv: BackgroundServer, name: str) -> Any:  # noqa: F811
    pg = browser.new_context(viewport={"width": 1100, "height": 760}).new_page()
    token = make_token(SECRET, name.lower(), **LEARNER)
    pg.goto(f"{srv.url}/?room=class&name={name}&token={token}")
    return pg


def facilitator(browser: Any, srv: BackgroundServer, token: str | None) -> Any:  # noqa: F811
    pg = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    query = f"?token={token}" if token else ""
    pg.goto(f"{srv.url}/facilitator{query}", wait_until="domcontentloaded")
    wait(pg, "() => window.fac && fac.stats !== null")
    assert not errors, errors
    return pg


def test_learners_follow_the_facilitator_down_to_polling_and_back(
    serve: Serve,
    browser: Any,  # noqa: F811
) -> None:
    srv = serve(secret=SECRET, degrade_poll_s=POLL_S)
    learners = [learner(browser, srv, "Ada"), learner(browser, srv, "Bob")]
    try:
        for pg in learners:
            wait(pg, "() => rt.state === 'open' && rt.transport === 'websocket'")
        fac = facilitator(browser, srv, make_token(SECRET, "host", admin=True))
        assert "token=" not in fac.url  # taken out of the address bar (the projector)
        wait(fac, "() => fac.stats.connections.websocket === 2")
        sent: list[str] = []
        ladder = [("#down", "sse"), ("#down", "long-polling"), ("#down", "polling"),
                  ("#up", "long-polling"), ("#up", "sse"), ("#up", "websocket")]  # fmt: skip
        for n, (button, level) in enumerate(ladder):
            fac.click(button)
            wait(fac, "l => fac.room.transport === l && fac.control.includes('at best')", level)
            for pg in learners:
                wait(pg, "l => rt.transport === l && rt.state === 'open'", level)
                assert pg.text_content("#transport") == level
                assert pg.text_content("#degraded") == SHOWN[level]
            # Still receiving: a line from outside, and one a learner sends on this rung.
            sent.append(f"{level} {n}")
            publish(srv, "chat:class", chat(sent[-1]), PUBLISHER)
            sent.append(f"Ada on {level} {n}")
            learners[0].fill("#text", sent[-1])
            learners[0].press("#text", "Enter")
            for pg in learners:
                wait(pg, "t => rt.chat.some(c => c.text === t)", sent[-1])
                wait(pg, "t => rt.chat.some(c => c.text === t)", sent[-2])
            # The screen shows the room on its new rung.
            if level == "polling":
                wait(fac, "() => fac.stats.polling_clients >= 1")
                assert fac.text_content("#rungs li.current").strip().startswith("polling")
            else:
                wait(fac, "l => fac.stats.connections[l] === 2", level)
            if n == 2:
                ARTIFACTS.mkdir(exist_ok=True)
                fac.screenshot(path=str(ARTIFACTS / "facilitator-polling.png"), full_page=True)
        # Every line once, in the order of its id, on every rung. (Ada lists her own lines
        # when their publish is answered, so hers are sorted by id first.)
        by_id = "() => [...rt.chat].sort((a, b) => Number(a.id) - Number(b.id)).map(c => c.text)"
        assert learners[0].evaluate(by_id) == sent
        assert learners[1].evaluate("() => rt.chat.map(c => c.text)") == sent
        for pg in learners:
            assert pg.evaluate("() => rt.moves") >= 6
            assert pg.is_hidden("#refused") and pg.is_hidden("#expired")
        assert srv.metric("rtsim_transport_level") == 0
        fac.context.close()
    finally:
        for pg in learners:
            pg.context.close()


def test_a_page_opened_in_a_stepped_down_room_starts_there_and_goes_back_up(
    serve: Serve,
    browser: Any,  # noqa: F811
    page: Any,  # noqa: F811
) -> None:
    srv = serve(secret=SECRET, degrade_poll_s=POLL_S)
    watcher = facilitator(browser, srv, None)  # no credential: watching only
    try:
        wait(watcher, "() => fac.control && fac.control.startsWith('watching only')")
        assert watcher.is_disabled("#down") and watcher.is_disabled("#rungs li button")
        watcher.evaluate("() => facStep({step: 'down'})")  # refused by the server anyway
        wait(watcher, "() => fac.control.startsWith('not stepped: 401')")
        admin = make_token(SECRET, "host", admin=True)
        fac = facilitator(browser, srv, admin)
        fac.click("#rungs li[data-level=sse] button")
        wait(fac, "() => fac.room.transport === 'sse'")
        # A learner arriving now starts on SSE: its WebSocket is refused (503, which the
        # browser hides), and /poll says why.
        token = make_token(SECRET, "cy", **LEARNER)
        page.goto(f"{srv.url}/?room=late&name=Cy&token={token}")
        wait(page, "() => rt.state === 'open' && rt.transport === 'sse'")
        assert page.text_content("#degraded") == SHOWN["sse"]
        wait(watcher, "() => fac.stats.connections.sse === 1")  # the watcher sees it too
        fac.click("#up")
        wait(page, "() => rt.state === 'open' && rt.transport === 'websocket'")
        publish(srv, "chat:late", chat("back on top"), PUBLISHER)
        wait(page, "() => rt.chat.some(c => c.text === 'back on top')")
        assert page.text_content("#degraded") == SHOWN["websocket"]
        fac.context.close()
    finally:
        watcher.context.close()
