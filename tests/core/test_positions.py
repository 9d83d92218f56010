"""Broker positions ("42", "1718000000000-3") as ordered keys, and cursors that carry them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtsim.core.envelope import Envelope
from rtsim.core.positions import MalformedPositionError, compare_positions, parse_position
from rtsim.core.replaylog import CursorError, advance_cursor, decode_cursor, encode_cursor

PART = st.integers(min_value=0, max_value=10**20 - 1)


def test_examples() -> None:
    assert parse_position("0") == (0,)
    assert parse_position("42") == (42,)
    assert parse_position("1718000000000-3") == (1718000000000, 3)
    assert parse_position("18446744073709551615-18446744073709551615")[1] == 2**64 - 1
    assert compare_positions("9-0", "10-0") == -1  # string order would say the opposite
    assert compare_positions("5-1", "5-1") == 0
    assert compare_positions("0", "1-0") == -1


@pytest.mark.parametrize(
    "bad", ["", "-1", "01", "1-", "-", "1-01", "1--2", "1-2-3", "a", " 1", "1.0", "1" * 21]
)
def test_malformed(bad: str) -> None:
    with pytest.raises(MalformedPositionError, match="broker position"):
        parse_position(bad)


def test_non_string() -> None:
    with pytest.raises(MalformedPositionError, match="must be a string"):
        parse_position(7)


@given(PART, PART, PART, PART)
def test_order_is_numeric(a: int, b: int, c: int, d: int) -> None:
    x, y = f"{a}-{b}", f"{c}-{d}"
    assert compare_positions(x, y) == ((a, b) > (c, d)) - ((a, b) < (c, d))
    assert parse_position(str(a)) == (a,)


@given(st.dictionaries(st.sampled_from(["a", "b", "user:1", "r.x"]), st.tuples(PART, PART)))
def test_cursor_round_trip_with_broker_ids(entries: dict[str, tuple[int, int]]) -> None:
    cursor = {ch: f"{ms}-{seq}" for ch, (ms, seq) in entries.items()}
    assert decode_cursor(encode_cursor(cursor)) == cursor


def test_cursor_rejects_malformed_broker_ids() -> None:
    with pytest.raises(CursorError, match="broker position"):
        decode_cursor("a=1-x")
    with pytest.raises(CursorError, match="cannot encode"):
        encode_cursor({"a": "1-"})


def test_advance_cursor_compares_numerically() -> None:
    cur = {"a": "9-5"}
    assert advance_cursor(cur, Envelope("a", "10-0", None, 0.0)) == {"a": "10-0"}
    assert advance_cursor(cur, Envelope("a", "9-4", None, 0.0)) == cur
