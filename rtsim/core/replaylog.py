"""A bounded per-channel replay log with resume-after-id and an explicit gap answer.

This is step 5 of the article's architecture ("replay from the last event id on
reconnect"), written once and driven by both clocks: the SimPy models pass simulated time,
the live server passes the event loop's. It never reads a clock itself.

    log = ReplayLog(max_len=1000, max_age_s=300)
    env = log.append("news", {"text": "hi"}, now=12.5)   # Envelope(id="1", ts=12.5, ...)
    log.read_after("news", "0")                           # Messages(messages=(env,), ...)

Ids are decimal strings ``"1"``, ``"2"``, ... strictly increasing per channel; ``"0"``
means "before the first message". :meth:`ReplayLog.read_after` answers either
:class:`Messages` (everything after the id, up to ``limit``) or :class:`Gap` when some of
the messages after the id were already trimmed: the client is *told* it missed ``missed``
messages, never silently skipped past them. A :class:`Gap` still carries the messages the
log holds, so a server can send a "you missed some" marker and then continue.

Every log has an :attr:`~ReplayLog.epoch` (random unless given): ids mean something only
within it. ``read_after`` accepts ``"EPOCH:ID"`` (see :func:`~rtsim.core.positions.split_epoch`);
a cursor from another epoch (an earlier run of the server, another instance's log) is
answered with a :class:`Gap` of ``reason="epoch"`` holding everything the log holds, from
its first message on, never read as if its id meant the same here. A bare id is taken as
the current epoch's.

An id the log never issued (ahead of the channel's latest) raises :class:`UnknownIdError`;
a malformed one raises :class:`MalformedIdError`. Both are ``ValueError``.

For one stream that covers several channels (an SSE connection subscribed to a user's
channels), :func:`encode_cursor` / :func:`decode_cursor` pack the last id per channel into
one opaque string (``"chat=EPOCH:7,news=EPOCH:3"``; epochs optional) — fit for the SSE
``id:`` field and the ``Last-Event-ID`` header — and
:meth:`ReplayLog.read_cursor` resumes every channel of a cursor at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .envelope import Envelope, EnvelopeError, validate_channel
from .positions import (
    MalformedPositionError,
    new_epoch,
    parse_position,
    split_epoch,
    validate_epoch,
    with_epoch,
)

__all__ = [
    "CursorError",
    "Gap",
    "MalformedIdError",
    "Messages",
    "ReadResult",
    "ReplayLog",
    "ReplayLogError",
    "UnknownIdError",
    "advance_cursor",
    "decode_cursor",
    "encode_cursor",
    "new_epoch",
    "parse_id",
    "split_epoch",
    "with_epoch",
]

_ID_PATTERN = re.compile(r"^(0|[1-9][0-9]{0,17})$")
#: Longest cursor string accepted by :func:`decode_cursor` (a ``Last-Event-ID`` is a header).
MAX_CURSOR_LENGTH = 8192


class ReplayLogError(ValueError):
    """Base class of the replay log's errors."""


class MalformedIdError(ReplayLogError):
    """An id that is not a decimal sequence number (``"0"``, ``"1"``, ``"2"``, ...)."""


class UnknownIdError(ReplayLogError):
    """An id ahead of anything the channel has issued (e.g. from another server's log)."""


class CursorError(ValueError):
    """A multi-channel cursor string that cannot be decoded."""


def parse_id(message_id: object) -> int:
    """The sequence number of ``message_id`` (a decimal string), else :class:`MalformedIdError`."""
    if not isinstance(message_id, str):
        raise MalformedIdError(f"id must be a string, got {type(message_id).__name__}")
    if not _ID_PATTERN.match(message_id):
        raise MalformedIdError(
            f"id must be a decimal sequence number like '0' or '42' (no sign, no leading"
            f" zeros), got {message_id!r}"
        )
    return int(message_id)


@dataclass(frozen=True, slots=True)
class Messages:
    """The messages after the requested id (possibly none).

    ``last_id`` is the id to resume from next time: the last message returned, or the
    requested id if none was. ``more`` is true when ``limit`` cut the answer short.
    """

    channel: str
    messages: tuple[Envelope, ...]
    last_id: str
    more: bool = False
    epoch: str = ""  # the epoch the ids belong to ("": the backplane's current one)

    @property
    def is_gap(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class Gap:
    """Some messages after the requested id were trimmed: the client missed ``missed``.

    ``first_available_id`` is the oldest id still held (``None`` if the channel's log is
    empty); ``messages`` are the held messages from there on (up to ``limit``), ``last_id``
    and ``more`` as in :class:`Messages`. A client that needs every message must re-fetch
    its state (e.g. from the database) before applying ``messages``.

    ``reason`` is ``"trimmed"`` (the log dropped them) or ``"epoch"`` (the requested id is
    from another epoch: what the client missed there is unknown, ``missed`` counts only
    what this epoch trimmed). ``epoch`` is the epoch of the ids here; ``resume_id`` the
    position right before ``messages`` (where a client stands after the gap itself;
    ``None``: the backplane cannot name it, use ``last_id`` once the messages are in).
    """

    channel: str
    after_id: str
    missed: int
    first_available_id: str | None
    messages: tuple[Envelope, ...]
    last_id: str
    more: bool = False
    reason: str = "trimmed"
    epoch: str = ""
    resume_id: str | None = None

    @property
    def is_gap(self) -> bool:
        return True


ReadResult = Messages | Gap


class _ChannelLog:
    """One channel: held envelopes in id order (a list with a moving head: O(1) indexing)."""

    __slots__ = ("_head", "_items", "next_seq")

    def __init__(self) -> None:
        self._items: list[Envelope] = []
        self._head = 0
        self.next_seq = 1

    def __len__(self) -> int:
        return len(self._items) - self._head

    @property
    def first_seq(self) -> int:
        """Sequence number of the oldest held message (``next_seq`` when empty)."""
        return self.next_seq - len(self)

    def oldest(self) -> Envelope | None:
        return self._items[self._head] if len(self) else None

    def append(self, env: Envelope) -> None:
        self._items.append(env)
        self.next_seq += 1

    def drop_oldest(self, n: int) -> None:
        self._head += min(n, len(self))
        if self._head > 64 and self._head * 2 > len(self._items):
            del self._items[: self._head]
            self._head = 0

    def slice_from(self, seq: int, limit: int | None) -> list[Envelope]:
        start = self._head + (seq - self.first_seq)
        stop = len(self._items) if limit is None else min(len(self._items), start + limit)
        return self._items[start:stop]


class ReplayLog:
    """A bounded replay log, one sub-log per channel.

    Args:
        max_len: messages kept per channel (older ones are trimmed on append), like Redis
            ``XADD ... MAXLEN``.
        max_age_s: if set, messages older than this (by their ``ts``, compared with the
            ``now`` passed to :meth:`append`, :meth:`trim` or :meth:`read_after`) are
            trimmed too, like JetStream's ``MaxAge``.

        epoch: this log's epoch (default: :func:`~rtsim.core.positions.new_epoch`, random);
            give a fixed one for reproducible runs. ``ValueError`` if malformed.

    Time must not go backwards between calls (a ``ValueError`` says so if it does).
    """

    def __init__(
        self, max_len: int = 1000, max_age_s: float | None = None, *, epoch: str | None = None
    ) -> None:
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len must be an integer >= 1, got {max_len!r}")
        if max_age_s is not None and not (math.isfinite(max_age_s) and max_age_s > 0):
            raise ValueError(f"max_age_s must be > 0 (or None for no age limit), got {max_age_s}")
        self.max_len = max_len
        self.max_age_s = max_age_s
        #: The id space of this log: a cursor from another epoch gets a ``reason="epoch"`` gap.
        self.epoch = new_epoch() if epoch is None else validate_epoch(epoch)
        self._channels: dict[str, _ChannelLog] = {}
        self._now = -math.inf
        #: Messages trimmed so far, over all channels.
        self.trimmed = 0

    # --- writing --------------------------------------------------------------------------
    def append(self, channel: str, data: Any, now: float) -> Envelope:
        """Append ``data`` to ``channel`` at time ``now``; return its :class:`Envelope`.

        The new id is the channel's previous latest id + 1. Trims the channel to ``max_len``
        (and, with ``max_age_s``, every message older than ``now - max_age_s``).
        """
        validate_channel(channel)
        self._advance(now)
        log = self._channels.get(channel)
        if log is None:
            log = self._channels[channel] = _ChannelLog()
        env = Envelope(channel=channel, id=str(log.next_seq), data=data, ts=float(now))
        log.append(env)
        excess = len(log) - self.max_len
        if excess > 0:
            log.drop_oldest(excess)
            self.trimmed += excess
        self._trim_age(log)
        return env

    def trim(self, now: float) -> int:
        """Trim every channel by age at ``now``; return how many messages were dropped."""
        self._advance(now)
        before = self.trimmed
        for log in self._channels.values():
            self._trim_age(log)
        return self.trimmed - before

    # --- reading --------------------------------------------------------------------------
    def read_after(
        self,
        channel: str,
        after_id: str,
        limit: int | None = None,
        *,
        now: float | None = None,
    ) -> ReadResult:
        """The messages of ``channel`` after ``after_id``, or a :class:`Gap`.

        ``after_id`` is the last id the client has (``"0"`` for none), optionally with its
        epoch (``"EPOCH:ID"``). The answer is a :class:`Gap` exactly when at least one
        message after ``after_id`` has been trimmed (``reason="trimmed"``) or ``after_id``
        is of another epoch (``reason="epoch"``: everything held follows).
        ``limit`` caps the number of messages returned (``None``: all). With ``now``, the
        log is first trimmed by age. Raises :class:`MalformedIdError` for a malformed id
        and :class:`UnknownIdError` for an id the channel has not issued yet.
        """
        validate_channel(channel)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise ValueError(f"limit must be an integer >= 1 or None, got {limit!r}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        try:
            epoch, bare = split_epoch(after_id)
        except MalformedPositionError as exc:
            raise MalformedIdError(str(exc)) from None
        seq = parse_id(bare)
        if epoch is not None and epoch != self.epoch:
            return self._epoch_gap(channel, after_id, limit, now)
        log = self._channels.get(channel)
        if log is None:
            if seq != 0:
                raise UnknownIdError(
                    f"id {after_id!r} is unknown: channel {channel!r} has no messages yet"
                )
            return Messages(channel=channel, messages=(), last_id="0", epoch=self.epoch)
        if now is not None:
            self._advance(now)
            self._trim_age(log)
        latest = log.next_seq - 1
        if seq > latest:
            raise UnknownIdError(
                f"id {after_id!r} is unknown: the latest id of channel {channel!r} is {latest}"
            )
        first = log.first_seq
        start = max(seq + 1, first)
        items = log.slice_from(start, limit) if start <= latest else []
        more = bool(items) and int(items[-1].id) < latest
        last_id = items[-1].id if items else bare
        if seq + 1 >= first:
            return Messages(
                channel=channel, messages=tuple(items), last_id=last_id, more=more, epoch=self.epoch
            )
        oldest = log.oldest()
        return Gap(
            channel=channel,
            after_id=after_id,
            missed=first - (seq + 1),
            first_available_id=oldest.id if oldest is not None else None,
            messages=tuple(items),
            last_id=last_id if items else str(first - 1),
            more=more,
            epoch=self.epoch,
            resume_id=str(first - 1),
        )

    def _epoch_gap(self, channel: str, after_id: str, limit: int | None, now: float | None) -> Gap:
        """The answer to a cursor of another epoch: everything held, from the first on."""
        log = self._channels.get(channel)
        if log is None:
            return Gap(
                channel, after_id, 0, None, (), "0", reason="epoch", epoch=self.epoch, resume_id="0"
            )
        if now is not None:
            self._advance(now)
            self._trim_age(log)
        first = log.first_seq
        latest = log.next_seq - 1
        items = log.slice_from(first, limit) if first <= latest else []
        oldest = log.oldest()
        return Gap(
            channel=channel,
            after_id=after_id,
            missed=first - 1,
            first_available_id=oldest.id if oldest is not None else None,
            messages=tuple(items),
            last_id=items[-1].id if items else str(first - 1),
            more=bool(items) and int(items[-1].id) < latest,
            reason="epoch",
            epoch=self.epoch,
            resume_id=str(first - 1),
        )

    def read_cursor(
        self,
        cursor: Mapping[str, str],
        limit: int | None = None,
        *,
        now: float | None = None,
    ) -> dict[str, ReadResult]:
        """:meth:`read_after` for every ``channel -> last id`` of a decoded cursor."""
        return {ch: self.read_after(ch, last, limit, now=now) for ch, last in cursor.items()}

    def latest_id(self, channel: str) -> str:
        """The channel's latest id (``"0"`` if nothing was ever appended to it)."""
        validate_channel(channel)
        log = self._channels.get(channel)
        return "0" if log is None else str(log.next_seq - 1)

    def first_id(self, channel: str) -> str | None:
        """The oldest id the channel still holds, or ``None`` if it holds nothing."""
        validate_channel(channel)
        log = self._channels.get(channel)
        oldest = None if log is None else log.oldest()
        return None if oldest is None else oldest.id

    def cursor(self, channels: Iterable[str]) -> dict[str, str]:
        """A cursor at the latest id of each of ``channels`` ("from now on"), with the epoch."""
        return {ch: with_epoch(self.epoch, self.latest_id(ch)) for ch in channels}

    def channels(self) -> list[str]:
        """Channels that have had at least one message, in first-append order."""
        return list(self._channels)

    def held(self, channel: str | None = None) -> int:
        """Messages held for ``channel`` (or in total)."""
        if channel is None:
            return sum(len(log) for log in self._channels.values())
        log = self._channels.get(validate_channel(channel))
        return 0 if log is None else len(log)

    # --- internals ------------------------------------------------------------------------
    def _advance(self, now: float) -> None:
        if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
            raise ValueError(f"now must be a finite number of seconds, got {now!r}")
        if now < self._now:
            raise ValueError(f"time went backwards: now={now} after {self._now}")
        self._now = float(now)

    def _trim_age(self, log: _ChannelLog) -> None:
        if self.max_age_s is None:
            return
        horizon = self._now - self.max_age_s
        n = 0
        for env in log.slice_from(log.first_seq, None):
            if env.ts >= horizon:
                break
            n += 1
        if n:
            log.drop_oldest(n)
            self.trimmed += n


# --- multi-channel cursors ----------------------------------------------------------------
def encode_cursor(cursor: Mapping[str, str]) -> str:
    """Pack ``{channel: last id}`` into one opaque string, e.g. ``"chat=7,news=5"``.

    Ids may be any :func:`~rtsim.core.positions.parse_position` position, so broker ids
    (``"chat=1718000000000-3"``) fit too, each optionally with its epoch
    (``"chat=k3f9:7"``, see :func:`~rtsim.core.positions.split_epoch`).

    Channels are sorted, so equal cursors encode equally. Channel names never contain
    ``=`` or ``,`` (see :data:`rtsim.core.envelope.CHANNEL_PATTERN`), and the result has no
    newline, so it fits an SSE ``id:`` field. Raises :class:`CursorError` on bad input.
    """
    parts = []
    for ch in sorted(cursor):
        try:
            validate_channel(ch)
            split_epoch(cursor[ch])
        except (EnvelopeError, MalformedPositionError) as exc:
            raise CursorError(f"cannot encode cursor entry {ch!r}: {exc}") from exc
        parts.append(f"{ch}={cursor[ch]}")
    return ",".join(parts)


def decode_cursor(text: object) -> dict[str, str]:
    """Unpack a string made by :func:`encode_cursor`; raises :class:`CursorError` if malformed.

    The empty string is the empty cursor.
    """
    if not isinstance(text, str):
        raise CursorError(f"cursor must be a string, got {type(text).__name__}")
    if len(text) > MAX_CURSOR_LENGTH:
        raise CursorError(f"cursor is too long: {len(text)} > {MAX_CURSOR_LENGTH} characters")
    if text == "":
        return {}
    out: dict[str, str] = {}
    for i, part in enumerate(text.split(",")):
        ch, sep, mid = part.partition("=")
        if not sep:
            raise CursorError(f"cursor part {i} ({part!r}) is not of the form channel=id")
        try:
            validate_channel(ch)
            split_epoch(mid)
        except (EnvelopeError, MalformedPositionError) as exc:
            raise CursorError(f"cursor part {i} ({part!r}): {exc}") from exc
        if ch in out:
            raise CursorError(f"cursor names channel {ch!r} twice")
        out[ch] = mid
    return out


def advance_cursor(cursor: Mapping[str, str], envelope: Envelope) -> dict[str, str]:
    """A copy of ``cursor`` with ``envelope.channel`` moved to ``envelope.id`` (never back).

    The channel's epoch in ``cursor`` (if any) is kept: an envelope's id is of the epoch
    the cursor is in (after an epoch gap, set the cursor to the gap's position first).
    """
    out = dict(cursor)
    new = parse_position(envelope.id)
    old = out.get(envelope.channel)
    if old is None:
        out[envelope.channel] = envelope.id
        return out
    epoch, old_id = split_epoch(old)
    if parse_position(old_id) < new:
        out[envelope.channel] = with_epoch(epoch, envelope.id)
    return out
