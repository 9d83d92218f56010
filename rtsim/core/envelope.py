"""The message envelope: what travels from a publisher to every subscriber.

An :class:`Envelope` is a channel name, a message id (opaque, ordered within a channel),
JSON data and the publish timestamp. :func:`encode` turns it into compact JSON bytes and
:func:`decode` parses them back, raising :class:`EnvelopeError` (a ``ValueError``) that
says exactly what was wrong with malformed input.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CHANNEL_PATTERN",
    "MAX_CHANNEL_LENGTH",
    "Envelope",
    "EnvelopeError",
    "check_sendable",
    "decode",
    "encode",
    "validate_channel",
]

MAX_CHANNEL_LENGTH = 200
#: Channel names: letters, digits and ``_ - : . @``; ``*`` is reserved for patterns.
CHANNEL_PATTERN = re.compile(r"^[A-Za-z0-9_\-:.@]+$")


class EnvelopeError(ValueError):
    """Raised for an envelope (or its encoding) that is malformed."""


def validate_channel(channel: object) -> str:
    """Return ``channel`` if it is a valid channel name, else raise :class:`EnvelopeError`."""
    if not isinstance(channel, str):
        raise EnvelopeError(f"channel must be a string, got {type(channel).__name__}")
    if not channel:
        raise EnvelopeError("channel must not be empty")
    if len(channel) > MAX_CHANNEL_LENGTH:
        raise EnvelopeError(
            f"channel must be at most {MAX_CHANNEL_LENGTH} characters, got {len(channel)}"
        )
    if not CHANNEL_PATTERN.match(channel):
        raise EnvelopeError(f"channel {channel!r} has characters outside letters, digits and _-:.@")
    return channel


def _dumps_utf8(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def check_sendable(value: Any, what: str = "data") -> None:
    """Raise :class:`EnvelopeError` unless ``value`` can be sent as strict UTF-8 JSON.

    This is the one check every input passes before it is stored or shown to others
    (message data, presence state, whole client frames and request bodies): JSON values only
    (no NaN/Infinity, no other types), not nested too deeply, and every string — object
    keys too — encodable as UTF-8. A lone UTF-16 surrogate such as ``"\\ud800"`` is a
    valid JSON escape that ``json.loads`` accepts, but it has no UTF-8 form, so a message
    holding one could be stored and then never sent. ``what`` names the value in the message.
    """
    try:
        _dumps_utf8(value)
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end] if isinstance(exc.object, str) else ""
        code = f" (U+{ord(bad[0]):04X})" if bad else ""
        raise EnvelopeError(
            f"{what} holds a lone UTF-16 surrogate{code}, which cannot be encoded as UTF-8"
        ) from None
    except RecursionError:
        raise EnvelopeError(f"{what} is nested too deeply") from None
    except (TypeError, ValueError) as exc:
        raise EnvelopeError(f"{what} is not JSON-serialisable: {exc}") from None


@dataclass(frozen=True, slots=True)
class Envelope:
    """One published message.

    ``id`` is opaque to clients: the in-memory log uses decimal sequence numbers, Redis
    Streams its own ``ms-seq`` positions. ``ts`` is the publish time in seconds (the
    caller's clock: simulated time in ``rtsim.sim``, the event loop's in ``rtsim.live``).
    """

    channel: str
    id: str
    data: Any
    ts: float

    def __post_init__(self) -> None:
        validate_channel(self.channel)
        if not isinstance(self.id, str) or not self.id:
            raise EnvelopeError(f"id must be a non-empty string, got {self.id!r}")
        if isinstance(self.ts, bool) or not isinstance(self.ts, int | float):
            raise EnvelopeError(f"ts must be a number, got {type(self.ts).__name__}")
        if not math.isfinite(self.ts):
            raise EnvelopeError(f"ts must be finite, got {self.ts!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "id": self.id, "data": self.data, "ts": self.ts}


def encode(envelope: Envelope) -> bytes:
    """Compact UTF-8 JSON for ``envelope``; raises :class:`EnvelopeError` if data is not JSON."""
    try:
        return _dumps_utf8(envelope.to_dict())
    except (TypeError, ValueError, RecursionError) as exc:
        raise EnvelopeError(f"data is not JSON-serialisable as UTF-8: {exc}") from exc


def decode(raw: bytes | str) -> Envelope:
    """Parse bytes (or text) made by :func:`encode` back into an :class:`Envelope`."""
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EnvelopeError(f"envelope is not valid UTF-8: {exc}") from exc
    elif isinstance(raw, str):
        text = raw
    else:
        raise EnvelopeError(f"envelope must be bytes or str, got {type(raw).__name__}")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EnvelopeError(f"envelope is not valid JSON: {exc.msg} at position {exc.pos}") from exc
    if not isinstance(obj, dict):
        raise EnvelopeError(f"envelope must be a JSON object, got {type(obj).__name__}")
    missing = [k for k in ("channel", "id", "data", "ts") if k not in obj]
    if missing:
        raise EnvelopeError(f"envelope is missing field(s): {', '.join(missing)}")
    extra = sorted(set(obj) - {"channel", "id", "data", "ts"})
    if extra:
        raise EnvelopeError(f"envelope has unknown field(s): {', '.join(extra)}")
    return Envelope(channel=obj["channel"], id=obj["id"], data=obj["data"], ts=obj["ts"])
