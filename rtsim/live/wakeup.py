"""How long an idle event loop takes to wake up on this machine, by how long it slept.

A process blocked in ``epoll_wait`` is woken by a byte on its socket; how fast depends on
how long its core has been idle (an idle core drops into deeper sleep states, and a
virtual machine's idle vCPU is descheduled after a short halt-polling window). This is
the mechanism behind "faster under load": at high rates the loops never sleep long.

:func:`measure_wakeup` measures it directly: a child process runs an asyncio loop (the
same loop as ``rtsim serve``) on a loopback TCP socket; the parent sends a timestamp
after the child has been idle for each of ``gaps_ms``, and the child records the one-way
latency on the shared CLOCK_MONOTONIC and the CPU it spent since the previous message.
The stage model (:mod:`rtsim.sim.stages`) uses the medians per gap to move its calibrated
wake-ups to other idle gaps and to charge each wake-up its CPU.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence

from ..core.stages import Wakeup

__all__ = ["DEFAULT_GAPS_MS", "Wakeup", "measure_wakeup"]

#: Idle gaps probed (ms): from a busy loop (0.2 ms) to a mostly idle one (100 ms).
DEFAULT_GAPS_MS: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)

_CHILD = r"""
import asyncio, json, socket, struct, sys, time
async def main(port):
    out = []
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    cpu0 = time.process_time()
    while True:
        data = await reader.readexactly(16)
        now = time.monotonic()
        cpu = time.process_time()
        gap, sent = struct.unpack("!dd", data)
        if gap < 0:
            break
        out.append((gap, (now - sent) * 1e3, (cpu - cpu0) * 1e6))
        cpu0 = time.process_time()
    writer.write(json.dumps(out).encode() + b"\n")
    await writer.drain()
    writer.close()
asyncio.run(main(int(sys.argv[1])))
"""


def measure_wakeup(gaps_ms: Sequence[float] = DEFAULT_GAPS_MS, samples: int = 20) -> Wakeup:
    """Wake-up latency and CPU of an asyncio loop idle for each of ``gaps_ms``.

    Takes about ``samples × sum(gaps_ms)`` ms (≈ 4 s by default). Raises
    ``ValueError`` for no gaps, a gap ≤ 0 or ``samples`` < 1; ``RuntimeError`` if the
    child process fails.
    """
    if not gaps_ms or min(gaps_ms) <= 0 or samples < 1:
        raise ValueError("gaps_ms must be positive and samples >= 1")
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(port)], stdout=subprocess.DEVNULL)
    try:
        lsock.settimeout(30)
        conn, _ = lsock.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        time.sleep(0.2)
        for _ in range(samples):
            for g in gaps_ms:
                time.sleep(g / 1e3)
                conn.sendall(struct.pack("!dd", g, time.monotonic()))
        conn.sendall(struct.pack("!dd", -1.0, 0.0))
        buf = b""
        conn.settimeout(30)
        while not buf.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            buf += chunk
        conn.close()
    finally:
        lsock.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
    if not buf.endswith(b"\n"):
        raise RuntimeError("the wake-up probe's child process did not answer")
    rows = json.loads(buf)
    gs = sorted(float(g) for g in gaps_ms)

    def median(v: list[float]) -> float:
        v = sorted(v)
        return v[len(v) // 2] if v else float("nan")

    return Wakeup(
        gaps_ms=gs,
        latency_ms=[median([r[1] for r in rows if r[0] == g]) for g in gs],
        cpu_us=[median([r[2] for r in rows if r[0] == g]) for g in gs],
    )
