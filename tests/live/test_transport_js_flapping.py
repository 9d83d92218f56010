"""The demo page's transport.js backs off from a server that closes at once (1013).

transport.js is loaded into a Node ``vm`` context with a fake ``WebSocket`` that
subscribes (so the page counts the connection as open) and is then closed by the "server"
with 1013, as the live server's slow-consumer close does. ``Math.random`` is fixed at 0.5,
so every full-jitter wait is exactly half its ceiling and the bound below is exact.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import rtsim.live

TRANSPORT_JS = Path(rtsim.live.__file__).parent / "static" / "transport.js"

RUNNER = r"""
const fs = require("fs"), vm = require("vm");
const [file, stableAfterMs, windowMs] = [process.argv[1], +process.argv[2], +process.argv[3]];
const dials = [];
class FakeWebSocket {
  constructor(url) {
    dials.push(Date.now());
    setTimeout(() => {
      this.onopen && this.onopen();
      this.onmessage && this.onmessage({ data: JSON.stringify(
        { type: "subscribed", channel: "c", since: "0" }) });
      setTimeout(() => this.onclose && this.onclose({ code: 1013 }), 0);  // closed at once
    }, 0);
  }
  send() {}
  close() {}
}
const math = Object.create(Math);
math.random = () => 0.5;
const ctx = { window: {}, location: { protocol: "http:", host: "x" }, WebSocket: FakeWebSocket,
  setTimeout, setInterval, clearInterval, URLSearchParams, Date, Math: math, JSON, Set, Map,
  Object, Promise, console, addEventListener: () => {},
  fetch: () => Promise.reject(new Error("no network")) };
vm.createContext(ctx);
vm.runInContext(fs.readFileSync(file, "utf8"), ctx);
const t = new ctx.window.RtTransport({ base: "http://x", channels: ["c"], order: ["websocket"],
  backoffBaseMs: 20, backoffCapMs: 400, stableAfterMs });
t.start();
setTimeout(() => { t.stop(); console.log(JSON.stringify(dials.map((d) => d - dials[0]))); },
  windowMs);
"""

BASE_MS, CAP_MS, WINDOW_MS = 20, 400, 1500


def dials(stable_after_ms: int) -> list[int]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    out = subprocess.run(
        [node, "-e", RUNNER, str(TRANSPORT_JS), str(stable_after_ms), str(WINDOW_MS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return list(json.loads(out.stdout))


def most_dials() -> int:
    """The first dial, then one per wait that still fits: wait k is half of
    min(cap, base·2^k) (Math.random fixed at 0.5)."""
    n, t, k = 1, 0.0, 0
    while True:
        t += min(CAP_MS, BASE_MS * 2**k) / 2
        if t > WINDOW_MS:
            return n
        n, k = n + 1, k + 1


def test_the_page_backs_off_from_a_server_that_closes_at_once() -> None:
    bound = most_dials()
    got = dials(5000)
    assert 2 <= len(got) <= bound, (got, bound)


def test_with_stable_after_zero_the_page_would_dial_fast() -> None:
    # The control: restarting the backoff on every open (the old rule) dials every 10 ms.
    assert len(dials(0)) > 2 * most_dials()
