"""Helpers for multi-instance tests: `rtsim serve` processes, private brokers, reachability."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

RTSIM = str(Path(sys.executable).parent / "rtsim")


def reachable(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique_prefix() -> str:
    return "t" + uuid.uuid4().hex[:12]


class Instance:
    """One `rtsim serve` process on a free port."""

    def __init__(self, backplane: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [RTSIM, "serve", "--port", "0", "--backplane", backplane, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.url = ""

    def wait_ready(self) -> Instance:
        assert self.proc.stdout is not None
        lines = []
        for line in self.proc.stdout:
            lines.append(line)
            if "listening on " in line:
                self.url = line.split("listening on ")[1].split()[0]
                return self
        raise RuntimeError("rtsim serve exited before listening:\n" + "".join(lines))

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http") :] + "/ws"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_instances(backplane: str, n: int, *extra: str) -> list[Instance]:
    """Start ``n`` servers at once (they import in parallel), then wait for each."""
    instances = [Instance(backplane, *extra) for _ in range(n)]
    return [i.wait_ready() for i in instances]


class BrokerProcess:
    """A private redis-server or nats-server that a test may kill and restart."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        if self.kind == "redis":
            return [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no",
            ]  # fmt: skip
        return ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.tmp)]

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.tmp
        )

    async def wait_up(self) -> None:
        for _ in range(500):
            if reachable(self.port):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{self.kind} on port {self.port} did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    async def wait_down(self) -> None:
        for _ in range(500):
            if not reachable(self.port):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{self.kind} on port {self.port} did not stop")


def require(kind: str) -> None:
    """Skip (clearly) unless the shared broker of ``kind`` runs on its default port."""
    port = {"redis": 6379, "nats": 4222}[kind]
    if not reachable(port):
        pytest.skip(
            f"{kind} is not running on 127.0.0.1:{port}; start it (CI's .ci/run does) to run"
            " the multi-instance tests"
        )


def require_binary(name: str) -> None:
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed; it is needed to kill and restart a broker")


@contextlib.contextmanager
def instances_of(backplane: str, n: int, *extra: str) -> Iterator[list[Instance]]:
    started = start_instances(backplane, n, *extra)
    try:
        yield started
    finally:
        for i in started:
            i.stop()


async def healthz(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url + "/healthz") as r:
        body: dict[str, Any] = await r.json()
        return body


async def metric(http: aiohttp.ClientSession, url: str, name: str) -> float:
    """A sample from ``/metrics`` (the first line starting with ``name``)."""
    async with http.get(url + "/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def wait_for_status(
    http: aiohttp.ClientSession, url: str, status: str, timeout: float = 20.0
) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while (await healthz(http, url))["status"] != status:
        if loop.time() > end:
            raise AssertionError(f"{url} did not become {status!r}")
        await asyncio.sleep(0.05)
