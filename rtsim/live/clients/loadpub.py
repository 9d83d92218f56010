"""The load generator's publisher: one WebSocket, messages on schedule, refusals obeyed.

:func:`publish_load` sends ``p.messages`` publish frames (each with ``ref`` = its index) at
``p.rate`` per second to ``p.publisher_url``. The server may refuse:

* the connection (429 ``too_many_connections_per_ip``, 503 ``too_many_connections``…):
  the publisher waits the ``Retry-After`` it was given (at least a short backoff) and dials
  again, until ``p.connect_timeout_s`` has passed (then :class:`RuntimeError`, one line);
* a publish (an ``error`` frame for its ``ref``, e.g. ``too_many_publishes_per_ip`` or
  ``backplane_unavailable``, with ``retry_after_s``): the publisher stops sending, waits
  for the answers to everything in flight, waits ``retry_after_s`` and sends the refused
  ones again in order, each waiting for its ack, and goes on one publish at a time (acked
  before the next): the server's limit paces it from then on, every message is sent once
  accepted, and a channel's messages stay in order unless one in flight was accepted
  after an earlier one of its channel was refused (then the subscribers count it honestly
  as lost and duplicated).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import aiohttp
import numpy as np

from rtsim.core.backoff import Backoff

from .load_params import LoadParams
from .wire import handshake_refused, publish_frame, ws_url

__all__ = ["PublishOutcome", "publish_load"]

_BACKOFF = Backoff(base_s=0.05, cap_s=2.0)
_NO_ACKS_AFTER = 1000  # publishes without any answer before the publisher stops keeping them
_RETRYABLE = frozenset({"too_many_publishes_per_ip", "backplane_unavailable"})


class PublishOutcome:
    """What the publisher did: ``sent`` messages accepted, the worst lateness (seconds),
    ``refused_connects`` dials refused with 429/503 and ``refused_publishes`` publishes
    refused and sent again."""

    def __init__(self) -> None:
        self.sent = 0
        self.late_s = 0.0
        self.refused_connects = 0
        self.refused_publishes = 0


async def _dial(
    session: aiohttp.ClientSession, url: str, p: LoadParams, out: PublishOutcome
) -> aiohttp.ClientWebSocketResponse:
    deadline = time.monotonic() + p.connect_timeout_s
    rng = np.random.default_rng(0)
    attempt = 0
    while True:
        try:
            return await session.ws_connect(url)
        except aiohttp.WSServerHandshakeError as exc:
            refused = handshake_refused(exc)
        if refused.status not in (429, 503):
            raise RuntimeError(f"the publisher's connection was refused: {refused}")
        out.refused_connects += 1
        wait = max(_BACKOFF.delay(attempt, rng), refused.retry_after_s or 0.0)
        if time.monotonic() + wait > deadline:
            raise RuntimeError(
                f"the publisher's connection was refused for {p.connect_timeout_s:g} s: {refused}"
            )
        attempt += 1
        await asyncio.sleep(wait)


def _final(answer: Any) -> bool:
    """An ack, or a refusal that sending again would not change (e.g. ``bad_json``)."""
    return answer is True or (isinstance(answer, dict) and answer.get("code") not in _RETRYABLE)


class _Acks:
    """The answers to the publisher's frames, by ``ref``: True (ack) or the error frame."""

    def __init__(self) -> None:
        self.answers: dict[int, Any] = {}
        self.seen = False  # any answer at all (a server that never acks is not waited for)
        self.refused: list[tuple[int, float | None]] = []  # (ref, retry_after_s)
        self.changed = asyncio.Event()

    def take(self, obj: dict[str, Any]) -> None:
        ref = obj.get("ref")
        if not isinstance(ref, int):
            return
        self.seen = True
        if obj.get("type") == "ack":
            self.answers[ref] = True
        elif obj.get("type") == "error":
            self.answers[ref] = obj
            if obj.get("code") in _RETRYABLE:
                wait = obj.get("retry_after_s")
                self.refused.append((ref, float(wait) if isinstance(wait, int | float) else None))
        self.changed.set()

    async def answer(self, ref: int, timeout: float = 30.0) -> Any:
        async def wait() -> Any:
            while ref not in self.answers:
                self.changed.clear()
                await self.changed.wait()
            return self.answers.pop(ref)

        return await asyncio.wait_for(wait(), timeout)


async def publish_load(p: LoadParams, progress: bool) -> PublishOutcome:
    """Publish ``p.messages`` on schedule (see the module docstring); the outcome."""
    from tqdm.auto import tqdm

    out = PublishOutcome()
    url = ws_url(p.publisher_url, p.ws_path, p.token)
    pad = "x" * p.payload_bytes
    acks = _Acks()
    async with aiohttp.ClientSession() as session:
        ws = await _dial(session, url, p, out)

        async def read() -> None:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    acks.take(json.loads(msg.data))

        reader = asyncio.create_task(read())
        frames: dict[int, str] = {}  # sent and not yet acked (ref → frame)
        paced = False  # after a refusal: one publish at a time, each acked before the next

        async def resend_refused() -> None:
            for ref in sorted(frames):  # every answer in: what is left was refused
                answer = acks.answers.pop(ref, None)
                while not _final(answer):
                    wait = answer.get("retry_after_s") if isinstance(answer, dict) else None
                    await asyncio.sleep(float(wait) if isinstance(wait, int | float) else 1.0)
                    out.refused_publishes += 1
                    await ws.send_str(frames[ref])
                    answer = await acks.answer(ref)
                del frames[ref]

        try:
            t0 = time.monotonic() + 0.2
            n = p.messages
            every = p.trace_every
            with tqdm(total=n, desc="publishing", disable=not progress, delay=1.0) as bar:
                for i in range(n):
                    due = t0 + i / p.rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    else:
                        out.late_s = max(out.late_s, -delay)
                    data: dict[str, Any] = {"seq": i // p.channels, "t": due, "pad": pad}
                    if every and i % every == 0:
                        data["trace"] = f"{p.run_id}:{i}"
                        data["sent"] = time.monotonic()
                    frames[i] = publish_frame(p.channel_name(i), data, ref=i)
                    await ws.send_str(frames[i])
                    if not acks.seen and i >= _NO_ACKS_AFTER:
                        frames.clear()  # the server does not answer publishes: fire and forget
                    if acks.refused or paced:
                        paced = True
                        for ref in list(frames):  # every answer in flight
                            acks.answers.setdefault(ref, await acks.answer(ref))
                        acks.refused.clear()
                        await resend_refused()
                    else:
                        for ref in [r for r, a in acks.answers.items() if _final(a)]:
                            frames.pop(ref, None)
                            del acks.answers[ref]
                    if i % 64 == 0:
                        bar.update(min(64, n - bar.n))
                bar.update(n - bar.n)
            if acks.seen:  # the last answers (a refusal among them is sent again)
                for ref in list(frames):
                    acks.answers.setdefault(ref, await acks.answer(ref))
                await resend_refused()
            out.sent = n
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await ws.close()
    return out
