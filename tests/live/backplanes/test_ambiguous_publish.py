"""A publish whose answer is late is reported as "not published", yet it may be stored.

Found by the soak (benchmarks/bench_soak.py, full size): the machine was frozen for about 20
minutes; on resuming, each publish in flight timed out in the server (``socket_timeout`` 5 s)
although Redis had run it; the server answered ``backplane_unavailable`` "the message was
not published — retry later"; the publisher sent it again and each of the 20 channels held
one message twice. Reproduced here with ``DEBUG SLEEP 6`` on a private redis-server (so the
shared one is not stopped): the publish waits in its socket, times out in the server after
5 s, and Redis runs it when it wakes. Fixed: each publish carries a token, the script
returns the stored id when the token was already set, and a publish whose answer timed out
is sent again with the same token — so it is stored once and answered with its id. When
Redis stays silent past ``PUBLISH_RETRY_S`` the answer says the outcome is unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from rtsim.live.backplanes import BackplaneUnavailable, make_backplane
from rtsim.live.process import free_port

from ..broker_fixtures import reachable, require_binary

pytestmark = [pytest.mark.redis, pytest.mark.slow]  # 7-12 s each (Redis sleeps)


def _admin(port: int) -> Any:
    """A client for ``DEBUG SLEEP`` that waits for its answer and never sends it again.

    redis-py 8's defaults (a 5 s socket timeout, then up to 10 retries) would send
    ``DEBUG SLEEP 6`` again each time its answer is late: Redis slept about a minute, and
    the publish under test, which gives up after ``PUBLISH_RETRY_S`` (30 s), failed in CI.
    """
    from rtsim.live.backplanes.redis import no_retry_client

    return no_retry_client(port=port, use_asyncio=True, socket_timeout=None)


async def test_a_publish_whose_answer_timed_out_is_stored_once() -> None:
    require_binary("redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--enable-debug-command", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp,
        )  # fmt: skip
        try:
            end = time.monotonic() + 10
            while not reachable(port):
                assert time.monotonic() < end, "redis-server did not start"
                await asyncio.sleep(0.05)
            bp = make_backplane(f"redis-streams://127.0.0.1:{port}?prefix=amb")
            await bp.start(lambda env: None)
            try:
                await bp.publish("c", 0)
                admin = _admin(port)
                sleep = asyncio.ensure_future(admin.execute_command("DEBUG", "SLEEP", "6"))
                await asyncio.sleep(0.2)  # Redis is asleep
                env = await bp.publish("c", 1)  # timed out once (5 s), sent again: answered
                assert env.data == 1
                with contextlib.suppress(Exception):  # its answer may time out too
                    await sleep
                await admin.aclose()
                await asyncio.sleep(0.5)
                got = await bp.read_after("c", "0")
                assert [m.data for m in got.messages] == [0, 1]  # once, not twice
                assert got.messages[1].id == env.id
            finally:
                await bp.close()
        finally:
            proc.kill()
            proc.wait()


async def test_a_publish_redis_never_answers_is_reported_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rtsim.live.backplanes import base

    require_binary("redis-server")
    monkeypatch.setattr(base, "PUBLISH_RETRY_S", 1.0)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--enable-debug-command", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp,
        )  # fmt: skip
        try:
            end = time.monotonic() + 10
            while not reachable(port):
                assert time.monotonic() < end, "redis-server did not start"
                await asyncio.sleep(0.05)
            bp = make_backplane(f"redis-streams://127.0.0.1:{port}?prefix=amb2")
            await bp.start(lambda env: None)
            try:
                admin = _admin(port)
                sleep = asyncio.ensure_future(admin.execute_command("DEBUG", "SLEEP", "12"))
                await asyncio.sleep(0.2)
                with pytest.raises(BackplaneUnavailable, match="may or may not have been"):
                    await bp.publish("c", 1)  # 5 s, then one more try of 5 s: no answer
                with contextlib.suppress(Exception):
                    await sleep
                await admin.aclose()
                end = time.monotonic() + 15
                while True:  # the pool's connections recover from the silence
                    try:
                        got = await bp.read_after("c", "0")
                        break
                    except BackplaneUnavailable:
                        assert time.monotonic() < end
                        await asyncio.sleep(0.2)
                # Redis may drop a command whose connection was closed meanwhile: never
                # stored twice, and the answer did not claim either way.
                assert [m.data for m in got.messages] in ([], [1])
            finally:
                await bp.close()
        finally:
            proc.kill()
            proc.wait()


@pytest.mark.nats
async def test_a_jetstream_publish_whose_answer_timed_out_is_stored_once(tmp_path: Path) -> None:
    # The same kind on JetStream: the broker stopped (SIGSTOP) while a publish is in flight;
    # nats-py gives up waiting for the ack, the backplane sends it again with the same
    # Nats-Msg-Id, and when the broker resumes it keeps one copy and acks it.
    import signal

    from ..broker_fixtures import BrokerProcess

    require_binary("nats-server")
    broker = BrokerProcess("nats", tmp_path)
    broker.start()
    try:
        await broker.wait_up()
        bp = make_backplane(f"nats://127.0.0.1:{broker.port}?prefix=amb")
        await bp.start(lambda env: None)
        try:
            await bp.publish("c", 0)
            assert broker.proc is not None
            broker.proc.send_signal(signal.SIGSTOP)
            task = asyncio.ensure_future(bp.publish("c", 1))
            await asyncio.sleep(7.0)  # past nats-py's publish timeout: sent again
            broker.proc.send_signal(signal.SIGCONT)
            env = await asyncio.wait_for(task, 30)
            assert env.data == 1
            got = await bp.read_after("c", "0")
            assert [m.data for m in got.messages] == [0, 1]  # once, not twice
        finally:
            await bp.close()
    finally:
        if broker.proc is not None:
            broker.proc.send_signal(signal.SIGCONT)
        broker.kill()
