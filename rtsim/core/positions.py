"""Message positions that brokers hand out, as ordered keys (sans-I/O).

The in-memory replay log numbers messages ``"1"``, ``"2"``, ... per channel. A broker
backplane uses the broker's own positions instead, so that a client may resume on *another*
server instance: a Redis stream id is ``"<ms>-<seq>"`` (``"1718000000000-3"``), a NATS
JetStream position is the stream sequence number (``"4711"``). Both are *positions*: a
decimal number, optionally followed by ``-`` and a second decimal number.

:func:`parse_position` checks the syntax and returns the ordered key (a tuple of ints), so
that positions of one channel compare correctly (``"9-0" < "10-0"``, which string order
gets wrong). ``"0"`` means "before the first message" and sorts before every other position.
The multi-channel cursor helpers of :mod:`rtsim.core.replaylog` accept any position.

    parse_position("1718000000000-3")   # (1718000000000, 3)
    parse_position("42")                # (42,)
"""

from __future__ import annotations

import re

__all__ = ["MAX_PART_DIGITS", "MalformedPositionError", "compare_positions", "parse_position"]

#: Digits per part: 20 covers Redis' unsigned 64-bit sequence numbers.
MAX_PART_DIGITS = 20
_PART = rf"(?:0|[1-9][0-9]{{0,{MAX_PART_DIGITS - 1}}})"
_POSITION = re.compile(rf"^({_PART})(?:-({_PART}))?$")


class MalformedPositionError(ValueError):
    """A position that is neither ``"N"`` nor ``"N-M"`` (decimal, no sign, no leading zeros)."""


def parse_position(position: object) -> tuple[int, ...]:
    """The ordered key of ``position`` (``(n,)`` or ``(ms, seq)``), else raise.

    Raises :class:`MalformedPositionError` (a ``ValueError``) with a clear message.
    """
    if not isinstance(position, str):
        raise MalformedPositionError(f"id must be a string, got {type(position).__name__}")
    m = _POSITION.match(position)
    if m is None:
        raise MalformedPositionError(
            "id must be a decimal sequence number like '42' or a broker position like"
            f" '1718000000000-3' (no sign, no leading zeros), got {position[:64]!r}"
        )
    first, second = m.group(1), m.group(2)
    return (int(first),) if second is None else (int(first), int(second))


def compare_positions(a: str, b: str) -> int:
    """-1, 0 or 1 as position ``a`` is before, equal to or after ``b`` (same channel)."""
    ka, kb = parse_position(a), parse_position(b)
    return (ka > kb) - (ka < kb)
