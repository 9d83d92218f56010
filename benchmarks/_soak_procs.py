"""Helpers of ``bench_soak.py``: private brokers, the ``rtsim serve`` process, and waits
that count awake time (a machine frozen by SIGSTOP does not time them out on resuming)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from rtsim.live.process import free_port


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(pred: Any, timeout: float, what: str) -> None:
    """Wait until ``pred()``, for at most ``timeout`` seconds of *awake* time: each 0.05 s
    sleep counts as at most 0.25 s, so a machine frozen for a while (SIGSTOP) does not time
    the wait out the moment it resumes."""
    awake, last = 0.0, time.monotonic()
    while not pred():
        now = time.monotonic()
        awake += min(now - last, 0.25)
        last = now
        if awake > timeout:
            raise RuntimeError(f"{what} within {timeout} s")
        time.sleep(0.05)


async def _await_awake(pred: Any, timeout: float, step: float = 0.1) -> bool:
    """Like :func:`_wait` in an event loop: True once ``pred()``, False after ``timeout``
    seconds of awake time (a freeze counts as at most ``5 * step``)."""
    loop = asyncio.get_running_loop()
    awake, last = 0.0, loop.time()
    while not pred():
        now = loop.time()
        awake += min(now - last, 5 * step)
        last = now
        if awake > timeout:
            return False
        await asyncio.sleep(step)
    return True


class Broker:
    """A private redis-server (AOF, fsync always) or nats-server -js in ``tmp`` on a free port."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind, self.tmp, self.port = kind, tmp, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.kind == "redis":
            argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            argv += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.tmp)]
        else:
            argv = ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port)]
            argv += ["-sd", str(self.tmp)]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.tmp
        )
        _wait(lambda: _reachable(self.port), 20, f"{self.kind} did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def url(self, maxlen: int) -> str:
        if self.kind == "redis":
            return f"redis-streams://127.0.0.1:{self.port}?prefix=soak&maxlen={maxlen}"
        return f"nats://127.0.0.1:{self.port}?prefix=soak&max_msgs_per_subject={maxlen}"


class Server:
    """``rtsim serve`` on a fixed port (so a restart keeps the clients' URL)."""

    def __init__(self, backplane: str) -> None:
        self.port, self.backplane = free_port(), backplane
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [sys.executable, "-m", "rtsim.cli", "serve", "--port", str(self.port)]
        argv += ["--backplane", self.backplane, "--max-connections", "100000"]
        argv += ["--max-connections-per-ip", "100000", "--publish-rate-per-ip", "1000000"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: self.status() == "ok", 30, "rtsim serve was not healthy")

    def status(self) -> str:
        import urllib.request

        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                return str(json.load(r)["status"])
        except (OSError, ValueError):
            return "down"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _poll_awake(conn: Connection, timeout: float) -> bool:
    """``conn.poll`` for ``timeout`` seconds of awake time (see :func:`_wait`)."""
    awake, last = 0.0, time.monotonic()
    while not conn.poll(0.5):
        now = time.monotonic()
        awake += min(now - last, 2.5)
        last = now
        if awake > timeout:
            return False
    return True
