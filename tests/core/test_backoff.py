import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtsim.core.backoff import Backoff, Jitter


def test_ceiling_doubles_up_to_cap() -> None:
    b = Backoff(base_s=1, cap_s=30)
    assert [b.ceiling(a) for a in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert b.ceiling(10_000) == 30  # no overflow


@given(
    attempt=st.integers(0, 200),
    seed=st.integers(0, 2**32 - 1),
    jitter=st.sampled_from(list(Jitter)),
)
def test_delay_within_bounds(attempt: int, seed: int, jitter: Jitter) -> None:
    b = Backoff(base_s=0.5, cap_s=20, jitter=jitter)
    d = b.delay(attempt, np.random.default_rng(seed))
    c = b.ceiling(attempt)
    if jitter is Jitter.NONE:
        assert d == c
    elif jitter is Jitter.EQUAL:
        assert c / 2 <= d <= c
    else:
        assert 0 <= d <= c


def test_full_jitter_spreads_uniformly() -> None:
    rng = np.random.default_rng(1)
    b = Backoff(base_s=1, cap_s=8)
    xs = np.array([b.delay(3, rng) for _ in range(20_000)])
    assert abs(xs.mean() - 4.0) < 0.1  # uniform on [0, 8]
    assert xs.min() < 0.05 and xs.max() > 7.95


def test_seeded_delays_are_reproducible() -> None:
    b = Backoff()
    a = [b.delay(i, np.random.default_rng(7)) for i in range(5)]
    c = [b.delay(i, np.random.default_rng(7)) for i in range(5)]
    assert a == c


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_s": 0}, "base_s must be > 0"),
        ({"base_s": 2, "cap_s": 1}, "cap_s must be >= base_s"),
        ({"multiplier": 0.5}, "multiplier must be >= 1"),
        ({"jitter": "some"}, "some"),
    ],
)
def test_invalid_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_negative_attempt() -> None:
    with pytest.raises(ValueError, match="attempt must be >= 0"):
        Backoff().ceiling(-1)
