"""The wire protocol of the live server, as pure functions: parse what clients send.

Nothing here touches a socket: :func:`parse_client_frame` turns one WebSocket text frame
into a small frozen dataclass or raises :class:`ProtocolError` with a machine-readable
``code`` and a human-readable message; :func:`parse_channels`, :func:`parse_timeout` and
:func:`parse_resume` do the same for query strings and headers. The server maps a
:class:`ProtocolError` to an ``error`` frame (WebSocket) or a 4xx answer (HTTP). These
functions are fuzzed with hypothesis in ``tests/live/test_protocol.py``: whatever the input,
they return a value or raise :class:`ProtocolError`, nothing else.

The protocol is documented in ``docs/protocol.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rtsim.core.envelope import EnvelopeError, check_sendable, validate_channel
from rtsim.core.positions import MalformedPositionError, split_epoch
from rtsim.core.replaylog import CursorError, decode_cursor

__all__ = [
    "DEFAULT_RETRY_AFTER_S",
    "ClientFrame",
    "Heartbeat",
    "PresenceSet",
    "ProtocolError",
    "Publish",
    "Subscribe",
    "Unsubscribe",
    "check_json",
    "error_frame",
    "gap_frame",
    "gap_object",
    "message_frame",
    "parse_channels",
    "parse_client_frame",
    "parse_json",
    "parse_resume",
    "parse_timeout",
    "retry_after_header",
]

#: Client frame types and the fields each may carry (besides ``type``).
_FIELDS: dict[str, frozenset[str]] = {
    "subscribe": frozenset({"channel", "since"}),
    "unsubscribe": frozenset({"channel"}),
    "publish": frozenset({"channel", "data", "ref"}),
    "heartbeat": frozenset(),
    "presence": frozenset({"channel", "state"}),
}
_MAX_REF_LENGTH = 128


class ProtocolError(ValueError):
    """Input that breaks the protocol. ``code`` names the problem (see docs/protocol.md)."""

    def __init__(
        self, code: str, message: str, *, ref: Any = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        #: For a refusal that may be retried (429/503): seconds to wait first (None: the
        #: server's default, :data:`DEFAULT_RETRY_AFTER_S`).
        self.retry_after_s = retry_after_s


#: Seconds a client is told to wait after a 429/503 refusal that names no better figure.
DEFAULT_RETRY_AFTER_S = 1.0


def retry_after_header(retry_after_s: float) -> str:
    """The ``Retry-After`` header for a wait of ``retry_after_s`` seconds: whole seconds
    (HTTP's unit, RFC 9110 §10.2.3), rounded up, at least 1."""
    return str(max(1, math.ceil(retry_after_s)))


@dataclass(frozen=True, slots=True)
class Subscribe:
    channel: str
    since: str | None = None  # last id the client has; None: from now on


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channel: str


@dataclass(frozen=True, slots=True)
class Publish:
    channel: str
    data: Any
    ref: str | int | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pass


@dataclass(frozen=True, slots=True)
class PresenceSet:
    channel: str
    state: dict[str, Any]


ClientFrame = Subscribe | Unsubscribe | Publish | Heartbeat | PresenceSet


def _channel(value: object) -> str:
    try:
        return validate_channel(value)
    except EnvelopeError as exc:
        raise ProtocolError("bad_channel", str(exc)) from None


def _id(value: object, what: str) -> str:
    try:
        split_epoch(value)  # "42", "1718000000000-3", each optionally "EPOCH:…"
    except MalformedPositionError as exc:
        raise ProtocolError("bad_cursor", f"{what}: {exc}") from None
    assert isinstance(value, str)
    return value


def check_json(value: Any, what: str = "data") -> None:
    """Raise ``ProtocolError("bad_json")`` unless ``value`` can be sent on as UTF-8 JSON
    (:func:`rtsim.core.envelope.check_sendable`: no NaN/Infinity, no lone surrogates in
    strings or keys, not nested too deeply)."""
    try:
        check_sendable(value, what)
    except EnvelopeError as exc:
        raise ProtocolError("bad_json", str(exc)) from None


def _bad_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: str | bytes, what: str = "frame") -> Any:
    """Parse client JSON (a WebSocket frame, an HTTP body) and :func:`check_json` all of it.

    The one entry check of the server: whatever passes can be stored and sent to anyone.
    Raises ``ProtocolError("bad_json")`` for text that is not JSON, NaN/Infinity, nesting
    too deep for the parser, and strings (keys too) with no UTF-8 form.
    """
    try:
        obj = json.loads(raw, parse_constant=_bad_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and bad UTF-8 bytes too
        raise ProtocolError("bad_json", f"{what} is not valid JSON: {exc}") from None
    check_json(obj, what)
    return obj


def parse_client_frame(text: str | bytes, max_bytes: int = 65536) -> ClientFrame:
    """Parse one client WebSocket frame; raise :class:`ProtocolError` if it is not valid."""
    if isinstance(text, bytes | bytearray):
        raise ProtocolError("binary_frame", "binary frames are not supported; send JSON text")
    if not isinstance(text, str):
        raise ProtocolError("bad_frame", f"a frame must be text, got {type(text).__name__}")
    if len(text) > max_bytes:  # characters <= bytes, so this is a cheap first check
        raise ProtocolError("too_big", f"frame is larger than {max_bytes} bytes")
    try:
        obj = json.loads(text, parse_constant=_bad_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad_json", f"frame is not valid JSON: {exc}") from None
    ref = obj.get("ref") if isinstance(obj, dict) else None
    ref = ref if isinstance(ref, str | int) and not isinstance(ref, bool) else None
    try:
        check_json(obj, "frame")  # the whole frame: data, state, ref, keys (see parse_json)
    except ProtocolError as exc:
        try:
            check_sendable(ref)
        except EnvelopeError:
            ref = None
        exc.ref = ref
        raise
    if not isinstance(obj, dict):
        raise ProtocolError("bad_frame", f"a frame must be a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in _FIELDS:
        choices = ", ".join(_FIELDS)
        raise ProtocolError(
            "unknown_type", f"unknown frame type {kind!r}; expected one of: {choices}", ref=ref
        )
    extra = sorted(set(obj) - _FIELDS[kind] - {"type"})
    if extra:
        raise ProtocolError(
            "bad_frame", f"{kind} frame has unknown field(s): {', '.join(extra)}", ref=ref
        )
    try:
        return _build(kind, obj, ref)
    except ProtocolError as exc:
        exc.ref = ref
        raise


def _build(kind: str, obj: dict[str, Any], ref: str | int | None) -> ClientFrame:
    if kind == "heartbeat":
        return Heartbeat()
    if "channel" not in obj:
        raise ProtocolError("bad_frame", f"{kind} frame needs a 'channel'")
    channel = _channel(obj["channel"])
    if kind == "subscribe":
        since = obj.get("since")
        return Subscribe(channel, None if since is None else _id(since, "since"))
    if kind == "unsubscribe":
        return Unsubscribe(channel)
    if kind == "publish":
        if "data" not in obj:
            raise ProtocolError("bad_frame", "publish frame needs 'data'")
        raw_ref = obj.get("ref")
        if raw_ref is not None:
            if isinstance(raw_ref, bool) or not isinstance(raw_ref, str | int):
                raise ProtocolError("bad_frame", "ref must be a string or an integer")
            if isinstance(raw_ref, str) and len(raw_ref) > _MAX_REF_LENGTH:
                raise ProtocolError("bad_frame", f"ref must be at most {_MAX_REF_LENGTH} chars")
        return Publish(channel, obj["data"], ref)
    # presence
    state = obj.get("state", {})
    if state is None:
        state = {}
    if not isinstance(state, dict):
        raise ProtocolError("bad_frame", "presence state must be a JSON object")
    return PresenceSet(channel, state)


# --- query strings and headers -------------------------------------------------------------
def parse_channels(values: Iterable[object], max_channels: int) -> list[str]:
    """The ``channel`` query parameters: at least one, valid, no repeats, at most the limit."""
    out: list[str] = []
    for v in values:
        ch = _channel(v)
        if ch not in out:
            out.append(ch)
        if len(out) > max_channels:
            raise ProtocolError(
                "too_many_subscriptions", f"at most {max_channels} channels per connection"
            )
    if not out:
        raise ProtocolError("bad_channel", "give at least one channel: ?channel=NAME")
    return out


def parse_timeout(value: object, default: float, maximum: float) -> float:
    """The long-poll ``timeout`` parameter in seconds (0 ≤ timeout ≤ maximum)."""
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > 32:
        raise ProtocolError("bad_timeout", "timeout must be a number of seconds")
    try:
        t = float(value)
    except ValueError:
        raise ProtocolError("bad_timeout", f"timeout must be a number, got {value!r}") from None
    if not math.isfinite(t) or t < 0 or t > maximum:
        raise ProtocolError("bad_timeout", f"timeout must be between 0 and {maximum:g} s")
    return t


def parse_resume(value: object, channels: list[str]) -> dict[str, str] | None:
    """A resume position (``Last-Event-ID``, ``last_event_id`` or ``after``) for ``channels``.

    ``None``/empty means "from now on". A multi-channel cursor (``"a=3,b=7"``) must name
    only subscribed channels; channels it does not name start from now. A bare id
    (``"7"``) is accepted when exactly one channel is subscribed.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ProtocolError("bad_cursor", "cursor must be a string")
    if "=" not in value and len(channels) == 1:
        return {channels[0]: _id(value, "cursor")}
    try:
        cursor = decode_cursor(value)
    except CursorError as exc:
        raise ProtocolError("bad_cursor", str(exc)) from None
    unknown = sorted(set(cursor) - set(channels))
    if unknown:
        raise ProtocolError(
            "bad_cursor", f"cursor names channel(s) not subscribed: {', '.join(unknown)}"
        )
    return cursor


# --- server frames ------------------------------------------------------------------------
def _dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def message_frame(encoded_envelope: bytes) -> bytes:
    """The WebSocket ``message`` frame for an envelope already encoded by ``envelope.encode``.

    ``{"type":"message","channel":...,"id":...,"data":...,"ts":...}``: the envelope's JSON
    object with a ``type`` field spliced in front, so a broadcast is encoded once.
    """
    return b'{"type":"message",' + encoded_envelope[1:]


def gap_frame(
    channel: str,
    since: str,
    missed: int,
    first_available_id: str | None,
    *,
    reason: str = "trimmed",
    epoch: str = "",
    position: str | None = None,
) -> str:
    """The ``gap`` frame (see :func:`gap_object`) as JSON text."""
    return _dumps(gap_object(channel, since, missed, first_available_id, reason, epoch, position))


def gap_object(
    channel: str,
    since: str,
    missed: int,
    first_available_id: str | None,
    reason: str = "trimmed",
    epoch: str = "",
    position: str | None = None,
) -> dict[str, Any]:
    """``{"type":"gap","channel","since","missed","first_available_id","reason","epoch",
    "position"}``: ``reason`` is ``"trimmed"`` or ``"epoch"``; ``position`` the cursor
    (``"EPOCH:ID"``) right before the messages that follow, where the client stands now."""
    return {
        "type": "gap",
        "channel": channel,
        "since": since,
        "missed": missed,
        "first_available_id": first_available_id,
        "reason": reason,
        "epoch": epoch,
        "position": position,
    }


def error_frame(
    code: str, message: str, ref: Any = None, retry_after_s: float | None = None
) -> str:
    """An ``error`` frame; ``retry_after_s`` (seconds) for a refusal the client may retry."""
    obj: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref is not None:
        obj["ref"] = ref
    if retry_after_s is not None:
        obj["retry_after_s"] = retry_after_s
    return _dumps(obj)
