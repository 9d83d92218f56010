"""Operational failures and shutdown, as a user meets them: ``rtsim serve`` / ``rtsim load``
in their own processes (one stderr line, no traceback, exit 1), signals with clients of
every transport connected, and helpers called against a stopped server.

Time limits here are generous hang guards (subprocess/wait timeouts), not measurements.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rtsim.lab import live as L
from rtsim.live.background import serve_in_background
from rtsim.live.clients.client import LiveClient
from rtsim.live.errors import ServerUnreachableError, require_server
from rtsim.live.process import free_port

RTSIM = [sys.executable, "-m", "rtsim.cli"]


def closed_port() -> int:
    """A loopback port nothing listens on (free a moment ago)."""
    return free_port()


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, out: Path, err: Path) -> None:
        self.proc, self.url, self.out, self.err = proc, url, out, err

    def stderr(self) -> str:
        return self.err.read_text()

    def stdout(self) -> str:
        return self.out.read_text()


@pytest.fixture
def start_serve(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> Served:
        port = free_port()
        out, err = tmp_path / f"out{len(procs)}", tmp_path / f"err{len(procs)}"
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen(
                [*RTSIM, "serve", "--port", str(port), *extra], stdout=o, stderr=e
            )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, err.read_text()
                assert time.monotonic() < deadline, "rtsim serve did not start"
                time.sleep(0.05)
        return Served(proc, url, out, err)

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def post_json(url: str, obj: Any) -> tuple[int, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(obj).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def connect_failures(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("rtsim_backplane_connect_failures_total{"):
                return float(line.split()[-1])
    raise AssertionError("no rtsim_backplane_connect_failures_total in /metrics")


# --- one line, no traceback ----------------------------------------------------------------
def test_serve_on_a_busy_port_says_so_in_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(
            [*RTSIM, "serve", "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(port) in lines[0] and "--port" in lines[0] and "in use" in lines[0]
    assert "Traceback" not in r.stderr and "listening" not in r.stdout


def test_load_against_a_closed_port_fails_fast_in_one_line() -> None:
    port = closed_port()
    r = subprocess.run(
        [*RTSIM, "load", "--url", f"http://127.0.0.1:{port}", "--transport", "sse"],
        capture_output=True,
        text=True,
        timeout=30,  # hang guard: the probe gives up within seconds
    )
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "refused" in lines[0]
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("scheme", ["redis-streams", "redis-pubsub", "nats"])
def test_serve_with_an_unreachable_broker_listens_degraded_and_says_so_once(
    start_serve: Any, scheme: str
) -> None:
    port = closed_port()
    # Fast retries, so that several fail while we watch: none may add a line.
    srv = start_serve(
        "--backplane", f"{scheme}://127.0.0.1:{port}?backoff_base=0.05&backoff_cap=0.2"
    )
    status, health = get_json(srv.url + "/healthz")
    assert status == 200 and health["status"] == "degraded"
    assert health["broker"]["connected"] is False
    status, body = post_json(srv.url + "/publish", {"channel": "c", "data": 1})
    assert status == 503 and body["error"]["code"] == "backplane_unavailable"
    deadline = time.monotonic() + 30
    while connect_failures(srv.url) < 4:  # several retries failed while we watched
        assert time.monotonic() < deadline, "the server does not retry"
        time.sleep(0.1)
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(timeout=10) == 0
    err = srv.stderr()
    assert "Traceback" not in err
    assert "listening on" in srv.stdout()
    down = [line for line in err.splitlines() if "unreachable" in line]
    assert len(down) == 1, err
    assert "retrying" in down[0] and str(port) in down[0]
    assert len(err.strip().splitlines()) == 1, err


# --- signals with every transport connected ------------------------------------------------
async def _connect_all_and_signal(srv: Served, sig: int) -> dict[str, Any]:
    ws_base = "ws" + srv.url[len("http") :]
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        ws = await s.ws_connect(ws_base + "/ws")
        await ws.send_json({"type": "subscribe", "channel": "a"})
        while json.loads((await ws.receive(timeout=10)).data)["type"] != "subscribed":
            pass
        sse = await s.get(srv.url + "/sse?channel=a")
        assert sse.status == 200
        await asyncio.wait_for(sse.content.readany(), 10)
        _, cursor = get_json(srv.url + "/poll?channel=a&timeout=0")
        poll = asyncio.ensure_future(
            s.get(srv.url + f"/poll?channel=a&after={cursor['cursor']}&timeout=60")
        )
        yjs = await s.ws_connect(ws_base + "/yjs/room1")
        await asyncio.wait_for(yjs.receive(), 10)  # the room's sync step 1
        # Every transport is held open at the server (the Yjs room counts as a WebSocket).
        deadline = time.monotonic() + 10
        while True:
            conns = get_json(srv.url + "/healthz")[1]["connections"]
            if conns["long-polling"] == 1 and conns["sse"] == 1 and conns["websocket"] == 2:
                break
            assert time.monotonic() < deadline, conns
            await asyncio.sleep(0.05)
        out["signalled_at"] = time.monotonic()
        srv.proc.send_signal(sig)

        async def closed(w: aiohttp.ClientWebSocketResponse) -> tuple[int | None, str]:
            while True:
                m = await w.receive()
                if m.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    return w.close_code, str(m.extra or "")

        async def answered() -> tuple[int, Any]:
            r = await poll
            return r.status, await r.json()

        # Like real clients, all four read at the same time.
        out["ws"], out["yjs"], out["sse_tail"], out["poll"] = await asyncio.wait_for(
            asyncio.gather(closed(ws), closed(yjs), sse.content.read(), answered()), 10
        )
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_ends_every_connection_and_exits_on_a_signal(start_serve: Any, sig: int) -> None:
    srv = start_serve()
    out = asyncio.run(_connect_all_and_signal(srv, sig))
    # The bound: the process is gone within 2 s of the signal (it takes ~0.3 s).
    left = 2.0 - (time.monotonic() - out["signalled_at"])
    assert srv.proc.wait(timeout=max(left, 0.01)) == 0
    assert out["ws"][0] == 1001 and out["yjs"][0] == 1001  # "going away"
    assert out["poll"][0] == 200 and out["poll"][1]["messages"] == []
    assert "Traceback" not in srv.stderr()


# --- nothing waits forever on a stopped server ---------------------------------------------
def test_lab_helpers_and_the_client_fail_fast_on_a_stopped_server() -> None:
    srv = serve_in_background()
    url = srv.url
    assert L.publish_many(url, "x", 2)  # it works while the server runs
    srv.stop()
    for call in (
        lambda: L.drop_and_resume(url, transports=("websocket",), during=1),
        lambda: L.resume_from(url, "x", "0"),
        lambda: L.publish_many(url, "x", 1),
        lambda: L.fallback_demo(url),
    ):
        with pytest.raises(ServerUnreachableError, match="the server is stopped; run the cell"):
            call()
    with pytest.raises(RuntimeError, match="stopped"):
        srv.call(asyncio.sleep, 0)

    async def client() -> list[BaseException]:
        errors: list[BaseException] = []
        async with LiveClient(url, ["x"], connect_timeout_s=1.0, request_timeout_s=1.0) as c:
            for coro in (c.ready(), c.publish("x", 1), c.next(0.5)):
                try:
                    await asyncio.wait_for(coro, 20)  # hang guard
                except ServerUnreachableError as exc:
                    errors.append(exc)
        return errors

    errors = asyncio.run(client())
    assert len(errors) == 3 and all(url in str(e) for e in errors)


def test_require_server_accepts_any_http_answer_and_refuses_a_closed_port() -> None:
    with serve_in_background() as srv:
        require_server(srv.url)
        require_server(srv.url + "/no-such-prefix")  # a 404 is still an answer
    with pytest.raises(ServerUnreachableError, match="refused"):
        require_server(f"http://127.0.0.1:{closed_port()}")


def test_favicon_is_an_image() -> None:
    with serve_in_background() as srv:
        for path in ("/favicon.ico", "/favicon.svg"):
            with urllib.request.urlopen(srv.url + path, timeout=5) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("image/")
                assert b"<svg" in r.read()
