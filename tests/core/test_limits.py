"""The sans-I/O limits: a token bucket per key and a deadline, on a fake clock."""

from __future__ import annotations

import pytest

from rtsim.core.limits import KeyedRateLimiter, TokenBucket, seconds_until


def test_a_bucket_gives_its_burst_then_its_rate() -> None:
    b = TokenBucket(rate=2.0, burst=3)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.retry_after(0.0) == pytest.approx(0.5)
    assert not b.take(0.4)
    assert b.take(0.5)  # one token per 1/rate seconds
    assert not b.take(0.5)
    assert [b.take(100.0) for _ in range(4)] == [True, True, True, False]  # never over burst


def test_a_clock_that_goes_back_adds_nothing() -> None:
    b = TokenBucket(rate=1.0, burst=1)
    assert b.take(10.0)
    assert not b.take(5.0)


@pytest.mark.parametrize(
    ("rate", "burst"), [(0, 1), (float("inf"), 1), (1, 0.5), (1, float("nan"))]
)
def test_bad_buckets_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


def test_keys_have_their_own_buckets_and_full_ones_are_swept() -> None:
    lim = KeyedRateLimiter(rate=1.0, burst=1, sweep_at=2)
    assert lim.take("a", 0.0) and not lim.take("a", 0.0)
    assert lim.take("b", 0.0)
    assert lim.retry_after("a", 0.0) == pytest.approx(1.0)
    assert lim.retry_after("unknown", 0.0) == 0.0
    assert lim.take("c", 5.0)  # the table is at sweep_at: a and b refilled, forgotten
    assert set(lim.buckets) == {"c"}


def test_seconds_until_a_deadline() -> None:
    assert seconds_until(None, 5.0) is None
    assert seconds_until(12.5, 10.0) == pytest.approx(2.5)
    assert seconds_until(9.0, 10.0) == 0.0
