"""The last messages of each channel as a broker's feed delivered them, held for resumes.

A broker that stores every channel in one sequence (JetStream's stream sequence) can say
which message came before each one in its channel (the ``Rtsim-Prev`` header), so a server
that reads the whole stream through its feed can keep, per channel, an unbroken *tail*: a
run of messages, each one's predecessor the one before it, and the sequence of the message
before the first (``first_prev``). A resume whose cursor lies inside that run
(``first_prev <= after <= last``), or after it but not beyond the feed's position, is
answered from memory with no broker request; messages
stored after ``last`` that the feed has not delivered yet reach the subscriber live (the
hub holds live broadcasts while it reads, and drops what it already replayed).

A message whose predecessor is not the tail's last (the feed missed some, or a message was
written without ``Rtsim-Prev``) starts the channel's tail again from that message. Each
tail keeps at most ``per_channel`` messages (the broker's own per-channel limit, so the
tail never claims more history than the broker holds); all tails together keep at most
``total`` messages, the channel written least recently losing its tail first.
"""

from __future__ import annotations

import bisect
import itertools
from collections import OrderedDict, deque
from typing import Generic, TypeVar

__all__ = ["ChannelTails", "Tail"]

T = TypeVar("T")


class Tail(Generic[T]):
    """One channel's unbroken run of messages: ``seqs[i]`` is ``items[i]``'s sequence."""

    __slots__ = ("first_prev", "items", "seqs")

    def __init__(self, prev: int) -> None:
        self.first_prev = prev  # the sequence of the message before items[0]
        self.seqs: deque[int] = deque()
        self.items: deque[T] = deque()

    @property
    def last(self) -> int:
        """The sequence the run ends at (``first_prev`` while it is empty)."""
        return self.seqs[-1] if self.seqs else self.first_prev

    def covers(self, after: int, fed: int = 0) -> bool:
        """True if every message of the channel after ``after`` that the feed delivered is
        here: ``first_prev <= after <= last``, or up to ``fed``, the feed's position over
        all channels (a cursor past this channel's last message but not past what the feed
        delivered has nothing after it yet: the next one will come through the feed)."""
        return self.first_prev <= after <= max(self.last, fed)

    def after(self, after: int, limit: int | None) -> tuple[list[T], bool]:
        """The held messages after sequence ``after`` (at most ``limit``), and whether more
        are held beyond them. Call only when :meth:`covers` is true."""
        i = bisect.bisect_right(self.seqs, after)
        stop = len(self.seqs) if limit is None else min(len(self.seqs), i + limit)
        return list(itertools.islice(self.items, i, stop)), stop < len(self.seqs)


class ChannelTails(Generic[T]):
    """Every channel's :class:`Tail`, bounded per channel and in total (messages).

    ``per_channel``: messages per channel (the broker's per-channel limit); ``total``:
    messages over all channels, 0 to keep none. Raises ``ValueError`` for a negative bound.
    """

    def __init__(self, per_channel: int, total: int) -> None:
        if per_channel < 1 or total < 0:
            raise ValueError(f"bounds must be per_channel >= 1, total >= 0: {per_channel}, {total}")
        self.per_channel = min(per_channel, total) if total else per_channel
        self.total = total
        self.held = 0
        self._tails: OrderedDict[str, Tail[T]] = OrderedDict()

    def get(self, channel: str) -> Tail[T] | None:
        return self._tails.get(channel)

    def clear(self) -> None:
        self._tails.clear()
        self.held = 0

    def append(self, channel: str, seq: int, prev: int | None, item: T) -> None:
        """Add the feed's next message of ``channel``: ``seq`` its sequence, ``prev`` its
        predecessor's (None if the message does not say: the channel is then not held)."""
        if self.total == 0:
            return
        tail = self._tails.get(channel)
        if tail is not None and (prev != tail.last or seq <= tail.last):
            self._drop(channel)  # a break in the run: start again from this message
            tail = None
        if prev is None:
            return
        if tail is None:
            tail = self._tails[channel] = Tail(prev)
        else:
            self._tails.move_to_end(channel)
        tail.seqs.append(seq)
        tail.items.append(item)
        self.held += 1
        if len(tail.seqs) > self.per_channel:
            tail.first_prev = tail.seqs.popleft()
            tail.items.popleft()
            self.held -= 1
        while self.held > self.total:
            oldest = next(iter(self._tails))
            self._drop(oldest)

    def _drop(self, channel: str) -> None:
        tail = self._tails.pop(channel)
        self.held -= len(tail.seqs)
