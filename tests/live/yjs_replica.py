"""A Python replica for the Yjs room tests: a pycrdt Doc synced over aiohttp's WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
from pycrdt import Doc, Text

from rtsim.core.yroom import SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE, Decoder, sync_frame


class Replica:
    """Connects to ``ws_url`` (``ws://HOST:PORT/yjs/ROOM``), answers sync, sends its edits."""

    def __init__(self, http: aiohttp.ClientSession, ws_url: str) -> None:
        self.http = http
        self.ws_url = ws_url
        self.doc: Doc[Any] = Doc()
        self.doc["text"] = self.text = Text()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.synced = asyncio.Event()
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._remote = False
        self.doc.observe(self._on_update)

    def _on_update(self, event: Any) -> None:
        self.changed.set()
        if not self._remote and self.ws is not None and not self.ws.closed:
            task = asyncio.get_running_loop().create_task(
                self.ws.send_bytes(sync_frame(SYNC_UPDATE, event.update))
            )
            task.add_done_callback(lambda t: t.exception())

    async def __aenter__(self) -> Replica:
        self.ws = await self.http.ws_connect(self.ws_url)
        await self.ws.send_bytes(sync_frame(SYNC_STEP1, self.doc.get_state()))
        self._task = asyncio.get_running_loop().create_task(self._read())
        await asyncio.wait_for(self.synced.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.ws is not None
        await self.ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.BINARY:
                break
            dec = Decoder(msg.data)
            if dec.read_var_uint() != 0:
                continue  # awareness
            step = dec.read_var_uint()
            payload = dec.read_var_bytes()
            if step == SYNC_STEP1:
                await self.ws.send_bytes(sync_frame(SYNC_STEP2, self.doc.get_update(payload)))
            else:
                self._remote = True
                try:
                    self.doc.apply_update(payload)
                finally:
                    self._remote = False
                if step == SYNC_STEP2:
                    self.synced.set()

    def insert(self, s: str) -> None:
        self.text.insert(len(self.text), s)

    async def wait_for(self, *parts: str, timeout: float = 10.0) -> str:
        async def until() -> None:
            while not all(p in str(self.text) for p in parts):
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)
        return str(self.text)
