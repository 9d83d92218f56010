"""What a :class:`~rtsim.live.clients.client.LiveClient` hands on: messages, gap notices,
its counters, and the error reconnecting cannot fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rtsim.core.positions import split_epoch
from rtsim.core.transport import Transport

__all__ = ["ClientStats", "GapNotice", "LiveClientError", "Message", "id_key"]


@dataclass(frozen=True, slots=True)
class Message:
    channel: str
    id: str
    data: Any
    ts: float
    transport: Transport | None = None  # the transport it arrived over


@dataclass(frozen=True, slots=True)
class GapNotice:
    """The server could not replay ``missed`` messages of ``channel`` after ``since``.

    ``reason``: ``"trimmed"`` (the replay log dropped them), ``"epoch"`` (``since`` was
    of another epoch: a restarted server or a reset broker; what was missed there is
    unknown) or ``"bad_cursor"`` (the server refused ``since``; subscribed from now on).
    ``position`` is where the client resumed (``"EPOCH:ID"``; ``None`` if from now on).
    """

    channel: str
    since: str
    missed: int
    first_available_id: str | None
    reason: str = "trimmed"
    epoch: str = ""
    position: str | None = None


class LiveClientError(RuntimeError):
    """A failure reconnecting cannot fix (e.g. 401/403: a missing, expired or wrong token)."""

    def __init__(self, status: int, body: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"server refused the client with {status}: {body}")
        self.status = status
        self.body = body
        #: For a 429/503: how long the server asked to wait before trying again, seconds.
        self.retry_after_s = retry_after_s


@dataclass
class ClientStats:
    """A client's counters (``LiveClient.stats``)."""

    received: int = 0
    duplicates: int = 0
    reconnects: int = 0
    connects: dict[Transport, int] = field(default_factory=dict)
    degrades: int = 0  # times an overloaded server sent this client to polling
    recoveries: int = 0  # times it called the client back to pushing


def id_key(message_id: str) -> tuple[int, ...]:
    """Ids compare as integers, part by part ("7" < "12"; Redis-style "5-0" < "5-1"); an
    ``EPOCH:`` prefix is ignored."""
    return tuple(int(p) for p in split_epoch(message_id)[1].split("-"))
