"""JetStream: a channel trimmed while ``read_after`` reads it (found by the soak).

``read_after`` fetches one message per request (``get_msg`` next-by-subject). If the log is
trimmed between two requests, the next request silently returns a later message: the soak
(1,200 messages, ``max_msgs_per_subject=20``, drops) saw a long-polling client lose
messages that no gap named. The fix checks each message's ``Rtsim-Prev``: the read ends at
the break and the next read reports the gap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from rtsim.core.replaylog import Gap, Messages
from rtsim.live.backplanes import make_backplane

from ..broker_fixtures import reachable, require_binary, unique_prefix

pytestmark = pytest.mark.nats


@pytest.fixture
def prefix() -> Iterator[str]:
    require_binary("nats-server")
    if not reachable(4222):
        pytest.skip("no NATS JetStream on 127.0.0.1:4222")
    p = unique_prefix()
    yield p
    asyncio.run(_drop_stream(p))


async def _drop_stream(name: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect("nats://127.0.0.1:4222", connect_timeout=1)
    try:
        await nc.jetstream().delete_stream(name)
    except NotFoundError:
        pass
    finally:
        await nc.close()


async def test_trim_between_two_fetches_ends_the_read_and_the_next_is_a_gap(prefix: str) -> None:
    # recent=0: every read goes to the broker (the path under test)
    bp = make_backplane(f"nats://127.0.0.1:4222?prefix={prefix}&max_msgs_per_subject=3&recent=0")
    await bp.start(lambda env: None)
    try:
        ids = [(await bp.publish("c", i)).id for i in range(3)]  # held: 0, 1, 2
        js = bp._js  # the JetStream context the reads use
        real_get_msg = js.get_msg
        fetches = 0

        async def get_msg_then_publish(*args: Any, **kwargs: Any) -> Any:
            # After the first message fetched, three more publishes trim 0, 1 and 2.
            nonlocal fetches
            raw = await real_get_msg(*args, **kwargs)
            fetches += bool(kwargs.get("next"))
            if fetches == 1 and kwargs.get("next"):
                for i in range(3, 6):
                    ids.append((await bp.publish("c", i)).id)
            return raw

        js.get_msg = get_msg_then_publish
        first = await bp.read_after("c", "0")
        js.get_msg = real_get_msg
        # Before the fix: messages 0 and 3 (1 and 2 gone, and no gap said so).
        assert isinstance(first, Messages) and not isinstance(first, Gap)
        assert [m.data for m in first.messages] == [0]
        assert first.more
        second = await bp.read_after("c", first.last_id)
        assert isinstance(second, Gap)
        assert second.first_available_id == ids[3]
        assert [m.data for m in second.messages] == [3, 4, 5]
    finally:
        await bp.close()
