"""JetStream resumes are answered from the feed's recent messages (issue 14, the soak).

The full-size soak (1,000 clients, 20 drops/s) failed on JetStream: each resume read up to
1,000 messages with one ``get_msg`` request each, the server did nothing else, reads timed
out (503) and clients fell further behind. The feed now keeps each channel's last messages
as an unbroken run (:mod:`rtsim.live.backplanes.tails`); a cursor inside it costs no
request, a trimmed cursor two. Every answer must equal the broker's own (``recent=0``).
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtsim.core.replaylog import Gap
from rtsim.live.backplanes.nats import JetStreamBackplane
from rtsim.live.backplanes.tails import ChannelTails

from .test_trim_while_reading import prefix  # noqa: F401 (the fixture: a stream, dropped after)


# --- the tails alone ------------------------------------------------------------------------
@given(
    n=st.integers(0, 40),
    per_channel=st.integers(1, 12),
    after=st.integers(0, 90),
    limit=st.one_of(st.none(), st.integers(1, 15)),
)
def test_a_tail_answers_exactly_what_a_full_log_would(
    n: int, per_channel: int, after: int, limit: int | None
) -> None:
    # One channel's messages at sequences 2, 4, 6, … (other channels hold the odd ones).
    seqs = [2 * (i + 1) for i in range(n)]
    tails: ChannelTails[int] = ChannelTails(per_channel, total=1000)
    for i, s in enumerate(seqs):
        tails.append("c", s, seqs[i - 1] if i else 0, s)
    tail = tails.get("c")
    if n == 0:
        assert tail is None
        return
    assert tail is not None
    held = seqs[-per_channel:]
    assert list(tail.items) == held
    assert tail.first_prev == (seqs[-per_channel - 1] if n > per_channel else 0)
    assert tail.covers(after) == (tail.first_prev <= after <= seqs[-1])
    if tail.covers(after):
        want = [s for s in seqs if s > after]
        got, more = tail.after(after, limit)
        assert got == want[:limit]
        assert more == (limit is not None and len(want) > limit)


def test_a_break_in_the_run_starts_the_channel_again() -> None:
    tails: ChannelTails[str] = ChannelTails(10, total=100)
    tails.append("c", 5, 0, "a")
    tails.append("c", 9, 5, "b")
    tails.append("c", 20, 12, "d")  # the feed missed 12: what came before is not whole
    tail = tails.get("c")
    assert tail is not None and list(tail.items) == ["d"] and tail.first_prev == 12
    assert not tail.covers(9) and tail.covers(12)
    tails.append("c", 21, None, "e")  # a message that does not name its predecessor
    assert tails.get("c") is None and tails.held == 0


def test_a_cursor_past_the_channel_but_not_past_the_feed_has_nothing_yet() -> None:
    # The soak: long polls whose cursors the broker had moved past the feed's position
    # were read from the broker one request per message; the server fell behind and every
    # poll went to the broker. Up to the feed's position memory answers (nothing yet).
    tails: ChannelTails[str] = ChannelTails(10, total=100)
    tails.append("c", 5, 0, "a")
    tails.append("c", 9, 5, "b")
    tail = tails.get("c")
    assert tail is not None
    assert tail.covers(12, fed=15) and tail.after(12, None) == ([], False)
    assert not tail.covers(16, fed=15)  # ahead of the feed: only the broker knows
    assert not tail.covers(12) and tail.covers(9)


def test_the_total_bound_drops_the_channel_written_least_recently() -> None:
    tails: ChannelTails[int] = ChannelTails(3, total=5)
    for ch, base in (("a", 0), ("b", 100)):
        for k in range(3):
            tails.append(ch, base + k + 1, base + k, k)
    assert tails.get("a") is None  # 6 > 5: "a" was written least recently
    assert tails.get("b") is not None and tails.held == 3
    off: ChannelTails[int] = ChannelTails(3, total=0)
    off.append("a", 1, 0, 1)
    assert off.get("a") is None
    with pytest.raises(ValueError):
        ChannelTails(0, total=10)


# --- against the real broker ---------------------------------------------------------------
def _shape(r: object) -> tuple[object, ...]:
    msgs = tuple((m.id, m.data) for m in r.messages)  # type: ignore[attr-defined]
    gap = (r.missed, r.first_available_id, r.resume_id) if isinstance(r, Gap) else None
    return type(r).__name__, msgs, r.last_id, r.more, gap  # type: ignore[attr-defined]


@pytest.mark.nats
async def test_resumes_from_memory_equal_the_brokers_answers_and_cost_no_requests(
    prefix: str,  # noqa: F811
) -> None:
    kept, sent = 10, 30
    url = f"nats://127.0.0.1:4222?prefix={prefix}&max_msgs_per_subject={kept}"
    fed: list[str] = []
    bp, plain = JetStreamBackplane.from_url(url), JetStreamBackplane.from_url(url + "&recent=0")
    await bp.start(lambda env: fed.append(env.id))
    await plain.start(lambda env: None)
    try:
        ids = [(await bp.publish("c", i)).id for i in range(sent)]
        await bp.publish("other", "x")  # another channel between: sequences are shared
        for _ in range(200):
            if ids[-1] in fed:
                break
            await asyncio.sleep(0.01)
        cursors = ["0", ids[0], ids[5], ids[sent - kept - 1], ids[25], ids[-1]]
        stats = bp.stats
        for since in cursors:
            for limit in (None, 3):
                before = stats.broker_reads
                got = await bp.read_after("c", since, limit)
                assert _shape(got) == _shape(await plain.read_after("c", since, limit)), since
                inside = ids.index(since) >= sent - kept - 1 if since != "0" else False
                # Inside the held run: no request. Trimmed (a gap): the last id and the
                # first held message, then memory.
                assert stats.broker_reads - before == (0 if inside else 2), (since, limit)
        assert stats.reads_from_memory >= 6
        assert plain.stats.reads_from_memory == 0
    finally:
        await bp.close()
        await plain.close()


@pytest.mark.nats
async def test_a_read_from_the_broker_stops_at_the_feed(prefix: str) -> None:  # noqa: F811
    # The soak: long polls read past a lagging feed, so every later poll missed memory and
    # went to the broker, one request per message. Beyond the feed, messages come live.
    url = f"nats://127.0.0.1:4222?prefix={prefix}"
    fed: list[str] = []
    bp = JetStreamBackplane.from_url(url)
    await bp.start(lambda env: fed.append(env.id))
    try:
        ids = [(await bp.publish("c", i)).id for i in range(5)]
        for _ in range(200):
            if ids[-1] in fed:
                break
            await asyncio.sleep(0.01)
        bp._feed_last = int(ids[2].split("-")[0])  # as if the feed had delivered 3 of them
        bp._tails.clear()  # and memory held none: the read goes to the broker
        got = await bp.read_after("c", "0")
        assert [m.id for m in got.messages] == ids[:3]
        ahead = await bp.read_after("c", ids[3])  # a cursor past the feed: nothing yet
        assert ahead.messages == () and ahead.last_id == ids[3]
    finally:
        await bp.close()
