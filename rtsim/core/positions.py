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

**Epochs.** An id means something only within one *epoch*: the life of one id space (one
in-memory log of one server run, one Redis stream prefix, one JetStream stream). A
position may carry its epoch in front, ``"EPOCH:ID"`` (``"k3f9a2c1:7"``); the server
issues cursors in that form, so that a cursor from an earlier run or another id space is
recognised (and answered with an epoch gap) instead of silently meaning something else.
:func:`split_epoch` / :func:`with_epoch` take a position apart and put it together; an
epoch is 1–32 characters from letters, digits and ``_``.

    split_epoch("k3f9a2c1:7")   # ("k3f9a2c1", "7")
    split_epoch("7")            # (None, "7"): no epoch, taken as the current one
"""

from __future__ import annotations

import re
import secrets

__all__ = [
    "EPOCH_SEPARATOR",
    "MAX_PART_DIGITS",
    "MalformedPositionError",
    "compare_positions",
    "new_epoch",
    "parse_position",
    "split_epoch",
    "validate_epoch",
    "with_epoch",
]

#: Digits per part: 20 covers Redis' unsigned 64-bit sequence numbers.
MAX_PART_DIGITS = 20
_PART = rf"(?:0|[1-9][0-9]{{0,{MAX_PART_DIGITS - 1}}})"
_POSITION = re.compile(rf"^({_PART})(?:-({_PART}))?$")


#: Between the epoch and the id in ``"EPOCH:ID"``.
EPOCH_SEPARATOR = ":"
_EPOCH = re.compile(r"^[A-Za-z0-9_]{1,32}$")


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


def validate_epoch(epoch: object) -> str:
    """``epoch`` if it is 1–32 letters, digits or ``_``; else :class:`MalformedPositionError`."""
    if not isinstance(epoch, str) or not _EPOCH.match(epoch):
        raise MalformedPositionError(
            f"an epoch is 1-32 letters, digits or '_', got {str(epoch)[:40]!r}"
        )
    return epoch


def split_epoch(position: object) -> tuple[str | None, str]:
    """``"EPOCH:ID"`` → ``(EPOCH, ID)``; ``"ID"`` → ``(None, ID)``; both parts checked.

    Raises :class:`MalformedPositionError` if the epoch or the id is malformed.
    """
    if not isinstance(position, str):
        raise MalformedPositionError(f"id must be a string, got {type(position).__name__}")
    epoch, sep, mid = position.rpartition(EPOCH_SEPARATOR)
    parse_position(mid)
    return (validate_epoch(epoch), mid) if sep else (None, mid)


def with_epoch(epoch: str | None, message_id: str) -> str:
    """``"EPOCH:ID"`` (just ``ID`` when ``epoch`` is ``None`` or empty)."""
    return f"{epoch}{EPOCH_SEPARATOR}{message_id}" if epoch else message_id


def new_epoch() -> str:
    """A fresh random epoch: 12 hex digits (48 bits), for an id space that starts anew."""
    return secrets.token_hex(6)
