"""Fuzz a real ``rtsim serve`` socket with hypothesis: no 5xx, no crash, bystanders unaffected.

Targets (inputs drawn by hypothesis, ``--batch`` inputs per example, the targets in turn):

* ``ws``:      WebSocket ``/ws`` frames: random text, binary, and JSON frames shaped like the
               protocol's (subscribe/publish/presence/... with hostile fields);
* ``sse``:     ``GET /sse`` with fuzzed ``Last-Event-ID`` headers and ``last_event_id`` params;
* ``poll``:    ``GET /poll`` with fuzzed ``channel``/``after``/``timeout`` parameters;
* ``publish``: ``POST /publish`` bodies (random bytes, random JSON, protocol-shaped JSON);
* ``yjs``:     binary frames on ``/yjs/{room}``: random bytes and y-websocket-shaped messages.

A failure is an HTTP status >= 500, a WebSocket closed with 1011 (internal error) or refused
with 5xx at the handshake, a publish not answered within 30 s (before: 5 s counted as
held), or the server process gone / ``/healthz`` not answering. Meanwhile
one bystander ``LiveClient`` per transport (WebSocket, SSE, long polling) listens on a channel
the fuzzer never names while a publisher sends it a message every 20 ms; each must end with
every one of them exactly once and in order.

    .venv/bin/python benchmarks/bench_fuzz.py                 # full size (100,000 inputs)
    .venv/bin/python benchmarks/bench_fuzz.py --inputs 10000   # a shorter run

Throughput: ``--procs`` processes (default 2) each draw an equal share of the inputs with
their own hypothesis seed and send them from an event loop in a second thread, keeping up to
``--concurrency`` (default 200, split between the processes) in flight; a new input starts as
soon as one ends. (Before: one process drew a batch, sent it, and waited for its slowest
input (a held poll: 0.3 s) before drawing the next, about 50 inputs/s on a loaded machine;
and drawing the target by ``flatmap`` built a new strategy per input.) An input with no
answer counts as held after ``HELD_S`` (1 s; was 0.3 s), so a slow 5xx is not missed.

Results: ``benchmarks/results/fuzz.md`` and ``fuzz.json``. Exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import hypothesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import machine  # noqa: E402

from rtsim.live.clients.client import LiveClient, Message  # noqa: E402
from rtsim.live.process import free_port  # noqa: E402

RESULTS_MD = HERE / "results" / "fuzz.md"
RESULTS_JSON = HERE / "results" / "fuzz.json"
TARGETS = ("ws", "sse", "poll", "publish", "yjs")
REPLY_WAIT_S = 1.0  # how long a fuzzed WebSocket frame may go unanswered (then: no reply)
HELD_S = 1.0  # an SSE or poll request with no answer by then counts as held (a valid wait)
PUBLISH_WAIT_S = 30.0  # a publish not answered by then is a failure

# --- strategies ----------------------------------------------------------------------------
json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)  # fmt: skip
json_value = st.recursive(
    json_scalar,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)
channel = st.one_of(
    st.sampled_from(["c", "chat", "yjs:r", "a" * 300, "", "*", "c\x00"]), st.text(max_size=12)
)
cursor = st.one_of(
    st.text(max_size=20),
    st.integers(-(2**70), 2**70).map(str),
    st.lists(st.tuples(channel, st.integers(-5, 2**64)), max_size=3).map(
        lambda kv: ",".join(f"{k}={v}" for k, v in kv)
    ),
    st.sampled_from(["0", "-1", "1e9", "nan", "0" * 500, "c=", "=", ",,", "c=1,c=2"]),
)
protocol_frame = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(
        ["subscribe", "unsubscribe", "publish", "heartbeat", "presence"]), st.text(max_size=8))},
    optional={"channel": st.one_of(channel, json_value), "since": st.one_of(cursor, json_value),
              "data": json_value, "ref": json_value, "state": json_value},
)  # fmt: skip


def _lone_surrogate_json(v: Any) -> str:
    return json.dumps(v).replace('"', '"\\ud800', 1) if '"' in json.dumps(v) else json.dumps(v)


ws_input = st.one_of(
    protocol_frame.map(json.dumps),
    protocol_frame.map(_lone_surrogate_json),
    st.text(max_size=200),
    st.binary(max_size=200),
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
sse_input = st.tuples(
    channel,
    st.one_of(cursor.filter(lambda s: s.isprintable() and s.isascii()), header_text),
    st.booleans(),
)
poll_input = st.dictionaries(
    st.sampled_from(["channel", "after", "timeout", "x"]),
    st.one_of(channel, cursor, st.sampled_from(["0", "-1", "nan", "inf", "1e308", "0.001", "61"])),
    max_size=4,
)
publish_input = st.one_of(
    st.binary(max_size=300),
    json_value.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"channel": st.one_of(channel, json_value), "data": json_value}).map(
        lambda v: json.dumps(v).encode()
    ),
    st.fixed_dictionaries({"channel": channel, "data": json_value}).map(
        lambda v: _lone_surrogate_json(v).encode()
    ),
)


def _varuint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


yjs_input = st.one_of(
    st.binary(max_size=300),
    st.tuples(st.integers(0, 4), st.integers(0, 3), st.binary(max_size=200)).map(
        lambda t: _varuint(t[0]) + _varuint(t[1]) + _varuint(len(t[2])) + t[2]
    ),
    st.tuples(st.integers(0, 4), st.integers(0, 2**40), st.binary(max_size=50)).map(
        lambda t: _varuint(t[0]) + _varuint(t[1]) + t[2]
    ),
)
_BY_TARGET = {"ws": ws_input, "sse": sse_input, "poll": poll_input, "publish": publish_input,
              "yjs": yjs_input}  # fmt: skip


def _tagged(target: str) -> st.SearchStrategy[tuple[str, Any]]:
    return _BY_TARGET[target].map(lambda v: (target, v))


def fuzz_batch(size: int) -> st.SearchStrategy[tuple[tuple[str, Any], ...]]:
    """``size`` inputs, the targets in turn: each target equally often (a flat one_of would
    weigh them by their number of branches; a flatmap over the target costs a new strategy
    per draw)."""
    return st.tuples(*(_tagged(TARGETS[k % len(TARGETS)]) for k in range(size)))


# --- sending one input ---------------------------------------------------------------------
class Fuzzer:
    def __init__(self, url: str, http: aiohttp.ClientSession | None) -> None:
        self.url, self.http = url, http
        self.counts: Counter[str] = Counter()
        self.outcomes: dict[str, Counter[str]] = {t: Counter() for t in TARGETS}
        self.failures: list[dict[str, Any]] = []
        self.publish_max_s = 0.0  # the slowest answer to a publish

    def _fail(self, target: str, value: Any, what: str) -> None:
        if len(self.failures) < 20:
            self.failures.append({"target": target, "input": repr(value)[:300], "what": what})

    async def send(self, target: str, value: Any) -> None:
        assert self.http is not None, "a Fuzzer made with http=None only merges counts"
        self.counts[target] += 1
        out = self.outcomes[target]
        try:
            if target in ("ws", "yjs"):
                path = "/ws" if target == "ws" else f"/yjs/fz{uuid.uuid4().hex[:4]}"
                try:
                    async with self.http.ws_connect(self.url + path) as ws:
                        if isinstance(value, bytes):
                            await ws.send_bytes(value)
                        else:
                            await ws.send_str(value)
                        try:
                            msg = await asyncio.wait_for(ws.receive(), REPLY_WAIT_S)
                            out[f"reply:{msg.type.name.lower()}"] += 1
                        except TimeoutError:
                            out[f"no reply in {REPLY_WAIT_S:g} s"] += 1
                    code = ws.close_code
                    out[f"close {code}"] += 1
                    if code == 1011:
                        self._fail(target, value, "closed with 1011")
                except aiohttp.WSServerHandshakeError as exc:
                    out[f"handshake {exc.status}"] += 1
                    if exc.status >= 500:
                        self._fail(target, value, f"handshake {exc.status}")
                return
            if target == "sse":
                ch, cur, as_header = value
                headers = {"Last-Event-ID": cur} if as_header else {}
                params = {"channel": ch} if as_header else {"channel": ch, "last_event_id": cur}
                req = self.http.get(self.url + "/sse", params=params, headers=headers)
            elif target == "poll":
                req = self.http.get(self.url + "/poll", params=value)
            else:
                req = self.http.post(
                    self.url + "/publish", data=value, headers={"Content-Type": "application/json"}
                )
            t0 = time.monotonic()
            try:
                async with asyncio.timeout(PUBLISH_WAIT_S if target == "publish" else HELD_S):
                    async with req as r:
                        out[str(r.status)] += 1
                        if target == "publish":
                            self.publish_max_s = max(self.publish_max_s, time.monotonic() - t0)
                        if r.status >= 500:
                            self._fail(
                                target, value, f"status {r.status}: {(await r.text())[:200]}"
                            )
                        elif target == "sse" and r.status == 200:
                            await r.content.readline()
            except TimeoutError:
                if target == "publish":  # a publish must be answered
                    out[f"no answer in {PUBLISH_WAIT_S:g} s"] += 1
                    self._fail(target, value, f"no answer in {PUBLISH_WAIT_S:g} s")
                else:
                    out["held (no answer in time)"] += 1  # a valid poll or stream waiting
        except (aiohttp.ClientError, OSError) as exc:
            out[f"client error {type(exc).__name__}"] += 1


# --- the run -------------------------------------------------------------------------------
def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [sys.executable, "-m", "rtsim.cli", "serve", "--port", str(port)]
    argv += ["--max-connections-per-ip", "100000", "--publish-rate-per-ip", "1000000"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    end = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return proc, url
        except OSError:
            if time.monotonic() > end:
                proc.kill()
                raise RuntimeError("rtsim serve did not start") from None
            time.sleep(0.1)


async def _bystanders(url: str, stop: threading.Event) -> dict[str, Any]:
    ch = f"bystander-{uuid.uuid4().hex}"
    clients = {
        t: LiveClient(url, [ch], transports=[t], seed=k, poll_timeout_s=5)
        for k, t in enumerate(("websocket", "sse", "long-polling"))
    }
    for c in clients.values():
        await c.start()
    await asyncio.gather(*(c.ready(30) for c in clients.values()))
    sent = 0
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            async with http.post(url + "/publish", json={"channel": ch, "data": sent}) as r:
                if r.status == 200:
                    sent += 1
            await asyncio.sleep(0.02)
    end = asyncio.get_running_loop().time() + 30
    while any(c.stats.received < sent for c in clients.values()):
        if asyncio.get_running_loop().time() > end:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    report: dict[str, Any] = {"published": sent}
    for t, c in clients.items():
        got = []
        while c.pending():
            m = await c.next()
            got.append(m.data if isinstance(m, Message) else "gap")
        report[t] = {"received": len(got), "exact": got == list(range(sent))}
        await c.close()
    return report


def _fuzz_part(url: str, inputs: int, batch: int, seed: int, concurrency: int) -> dict[str, Any]:
    """Send ``inputs`` inputs drawn with hypothesis seed ``seed``: counts, outcomes, failures.

    Hypothesis draws ``batch`` inputs per example (one per target in turn, so each target
    gets the same share) in this thread while an event loop in a second thread sends them,
    up to ``concurrency`` at once: a new input starts as soon as one ends, so one slow input
    (a held long poll) does not hold up the others.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    try:
        http = run(_session(concurrency))
        fuzzer = Fuzzer(url, http)
        slots = threading.Semaphore(concurrency)
        sent: list[concurrent.futures.Future[None]] = []

        async def send(target: str, value: Any) -> None:
            try:
                await fuzzer.send(target, value)
            finally:
                slots.release()

        @hypothesis.seed(seed)
        @settings(
            max_examples=max(1, inputs // batch), database=None, deadline=None,
            phases=[Phase.generate], suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        @given(fuzz_batch(batch))
        def one_batch(values: tuple[tuple[str, Any], ...]) -> None:
            for t, v in values:
                slots.acquire()
                sent.append(asyncio.run_coroutine_threadsafe(send(t, v), loop))

        t0 = time.monotonic()
        one_batch()
        for f in sent:
            f.result()  # re-raises anything unexpected from a send
        elapsed = time.monotonic() - t0
        run(http.close())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    return {
        "counts": dict(fuzzer.counts),
        "outcomes": {t: dict(o) for t, o in fuzzer.outcomes.items()},
        "failures": fuzzer.failures,
        "publish_max_s": fuzzer.publish_max_s,
        "seconds": elapsed,
    }


def _fuzz_worker(conn: Connection, *args: Any) -> None:
    conn.send(_fuzz_part(*args))


def run_fuzz(
    inputs: int, batch: int = 50, seed: int = 0, concurrency: int = 200, procs: int = 2
) -> dict[str, Any]:
    """Fuzz a fresh server with ``inputs`` inputs; counts, failures and the bystanders' report.

    The inputs are drawn and sent by ``procs`` processes (hypothesis seeds ``seed * 1000 +
    k``), each an equal share with ``concurrency // procs`` in flight (see
    :func:`_fuzz_part`); ``procs=1`` sends from this process.
    """
    proc, url = start_server()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    try:
        stop = threading.Event()
        by_future = asyncio.run_coroutine_threadsafe(_bystanders(url, stop), loop)
        time.sleep(1.0)  # bystanders connected
        shares = [inputs // procs + (k < inputs % procs) for k in range(procs)]
        each = max(1, concurrency // procs)
        t0 = time.monotonic()
        if procs == 1:
            parts = [_fuzz_part(url, inputs, batch, seed * 1000, each)]
        else:
            ctx = mp.get_context("spawn")
            workers = []
            for k, n in enumerate(shares):
                parent, child = ctx.Pipe()
                args = (child, url, n, batch, seed * 1000 + k, each)
                w = ctx.Process(target=_fuzz_worker, args=args)
                w.start()
                workers.append((w, parent))
            parts = []
            for w, parent in workers:
                try:
                    parts.append(parent.recv())
                except EOFError:
                    raise RuntimeError("a fuzz worker process died") from None
                w.join(30)
        elapsed = time.monotonic() - t0
        stop.set()
        bystanders = by_future.result()
        alive = proc.poll() is None
        healthy = False
        if alive:

            async def health() -> bool:
                async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as r:
                    return r.status == 200

            healthy = run(health())
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    fuzzer = Fuzzer(url, None)  # only to merge the parts' counts
    for part in parts:
        fuzzer.counts.update(part["counts"])
        for t, o in part["outcomes"].items():
            fuzzer.outcomes[t].update(o)
        fuzzer.failures += part["failures"][: 20 - len(fuzzer.failures)]
        fuzzer.publish_max_s = max(fuzzer.publish_max_s, part["publish_max_s"])
    tracebacks = err.decode(errors="replace").count("Traceback")
    total = sum(fuzzer.counts.values())
    fivexx = sum(
        n
        for o in fuzzer.outcomes.values()
        for k, n in o.items()
        if k[:1] == "5" or k in ("close 1011",) or k.startswith("handshake 5")
    )
    return {
        "inputs": total,
        "per_target": dict(fuzzer.counts),
        "inputs_per_s": round(total / elapsed, 1),
        "seconds": round(elapsed, 1),
        "outcomes": {t: dict(o.most_common()) for t, o in fuzzer.outcomes.items()},
        "server_errors": fivexx,
        "failures": fuzzer.failures,
        "publish_max_s": round(fuzzer.publish_max_s, 2),
        "server_alive": alive,
        "healthz_ok": healthy,
        "server_tracebacks_on_stderr": tracebacks,
        "bystanders": bystanders,
        "ok": fivexx == 0 and not fuzzer.failures and alive and healthy
        and all(bystanders[t]["exact"] for t in ("websocket", "sse", "long-polling")),
    }  # fmt: skip


async def _session(concurrency: int = 100) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 10))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=50, help="inputs sent at once per example")
    ap.add_argument("--concurrency", type=int, default=200, help="inputs in flight at once")
    ap.add_argument("--procs", type=int, default=2, help="processes drawing and sending")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    try:
        r = run_fuzz(args.inputs, args.batch, concurrency=args.concurrency, procs=args.procs)
    except RuntimeError as exc:
        print(f"bench_fuzz: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(r))
    cmd = "python benchmarks/bench_fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load = os.getloadavg()
    if not args.no_write:
        RESULTS_JSON.write_text(json.dumps({"command": cmd, "loadavg": load, **r}, indent=1) + "\n")
        by = r["bystanders"]
        lines = [
            "# Fuzz: hostile input against a real server socket\n",
            f"Command: `{cmd.strip()}`\n",
            machine()
            + f"- load average after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n",
            f"{r['inputs']} inputs in {r['seconds']} s ({r['inputs_per_s']} inputs/s), drawn by"
            f" hypothesis (seeded) in {args.procs} processes, up to {args.concurrency} in"
            " flight; each target an equal share.\n",
            "Outcomes: *held* = an SSE stream or long poll with no answer after"
            f" {HELD_S:g} s (a valid wait, no error); *no reply in {REPLY_WAIT_S:g} s* then"
            " *close 1006* = the fuzzer closed its socket before any answer (the server sent"
            " nothing wrong); 400 / close 1007 = refusals of bad input. A failure is a 5xx, a"
            f" close 1011, a publish not answered within {PUBLISH_WAIT_S:g} s, the server gone"
            " or /healthz not answering, or a bystander missing a message.\n",
            "| target | inputs | outcomes |",
            "|---|---|---|",
            *(
                f"| {t} | {r['per_target'].get(t, 0)} | "
                + ", ".join(f"{k}: {n}" for k, n in r["outcomes"][t].items())
                + " |"
                for t in TARGETS
            ),
            "",
            f"- 5xx / close 1011: **{r['server_errors']}**; failures: {len(r['failures'])};"
            f" slowest answer to a publish: {r['publish_max_s']} s",
            f"- server alive: {r['server_alive']}, /healthz 200: {r['healthz_ok']},"
            f" tracebacks on its stderr: {r['server_tracebacks_on_stderr']}",
            f"- bystanders ({by['published']} messages published during the run): "
            + ", ".join(
                f"{t} received {by[t]['received']}, exactly once in order: {by[t]['exact']}"
                for t in ("websocket", "sse", "long-polling")
            ),
            f"- ok: **{r['ok']}**",
        ]
        RESULTS_MD.write_text("\n".join(lines) + "\n")
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
