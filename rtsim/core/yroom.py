"""A Yjs room speaking the y-websocket protocol, sans-I/O, over a pycrdt document.

A stock Yjs client (``y-websocket``'s ``WebsocketProvider``) and Python replicas sync through
one :class:`YRoom`. The room never touches a socket: the caller hands it each binary frame a
connection sent and carries out what it answers — frames for that connection
(:attr:`RoomOutput.reply`) and frames for every other connection
(:attr:`RoomOutput.broadcast`). :attr:`RoomOutput.update` is the document update the frame
applied (to store, or to forward through a backplane).

Wire format (y-protocols, lib0 encoding): a frame is ``varuint type`` + payload.

* ``0`` sync: ``varuint step`` + ``varbytes``: step 1 carries a state vector (answered with
  step 2: what the peer lacks), step 2 and ``2`` (update) carry a Yjs v1 update.
* ``1`` awareness: ``varbytes`` of ``varuint n`` × (``varuint client``, ``varuint clock``,
  ``varstring json``); a ``null`` state removes the client.
* ``3`` query awareness: answered with every known state.

A malformed frame raises :class:`YProtocolError` (a ``ValueError``) and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, Text

from .envelope import EnvelopeError, check_sendable

__all__ = [
    "MAX_FRAME_BYTES",
    "Decoder",
    "Encoder",
    "FrameTooBig",
    "RoomOutput",
    "YProtocolError",
    "YRoom",
    "decode_awareness",
    "decode_state_vector",
    "encode_awareness",
    "encode_frame",
    "sync_frame",
]

MSG_SYNC = 0
MSG_AWARENESS = 1
MSG_AUTH = 2
MSG_QUERY_AWARENESS = 3
SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2

#: Frames larger than this (4 MiB) are refused — a document update included — and so is
#: every later connection that still holds the refused update (see :meth:`YRoom.refuse`).
MAX_FRAME_BYTES = 4 * 1024 * 1024


class YProtocolError(ValueError):
    """A frame that is not valid y-websocket protocol."""


class FrameTooBig(YProtocolError):
    """A frame over :data:`MAX_FRAME_BYTES`, or a connection whose state vector shows it holds
    an update the room refused as too big. Final for that content: resending it is refused."""


class Encoder:
    """lib0 encoding: unsigned LEB128 varints, length-prefixed bytes and UTF-8 strings.

    (pycrdt ships one too, but it prefixes strings with their length in characters rather
    than bytes, which breaks on non-ASCII awareness states.)
    """

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write_var_uint(self, num: int) -> None:
        if num < 0:
            raise ValueError(f"varuint must be >= 0, got {num}")
        out = bytearray()
        while num > 127:
            out.append(128 | (num & 127))
            num >>= 7
        out.append(num)
        self.parts.append(bytes(out))

    def write_var_bytes(self, data: bytes) -> None:
        self.write_var_uint(len(data))
        self.parts.append(data)

    def write_var_string(self, text: str) -> None:
        self.write_var_bytes(text.encode("utf-8"))

    def to_bytes(self) -> bytes:
        return b"".join(self.parts)


class Decoder:
    """The strict reading side of :class:`Encoder`: truncation raises :class:`YProtocolError`."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def read_var_uint(self) -> int:
        num, shift = 0, 0
        while True:
            if self.pos >= len(self.data):
                raise YProtocolError("truncated varuint")
            byte = self.data[self.pos]
            self.pos += 1
            num |= (byte & 127) << shift
            if byte < 128:
                return num
            shift += 7
            if shift > 63:
                raise YProtocolError("varuint longer than 64 bits")

    def read_var_bytes(self) -> bytes:
        n = self.read_var_uint()
        if n > self.remaining:
            raise YProtocolError(f"length {n} exceeds the {self.remaining} bytes left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def read_var_string(self) -> str:
        try:
            return self.read_var_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise YProtocolError(f"string is not UTF-8: {exc}") from exc


@dataclass
class RoomOutput:
    reply: list[bytes] = field(default_factory=list)
    broadcast: list[bytes] = field(default_factory=list)
    update: bytes | None = None


def encode_frame(msg_type: int, *parts: int | bytes) -> bytes:
    """A frame: ``msg_type`` then each part (ints as varuints, bytes length-prefixed)."""
    enc = Encoder()
    enc.write_var_uint(msg_type)
    for p in parts:
        if isinstance(p, int):
            enc.write_var_uint(p)
        else:
            enc.write_var_bytes(p)
    return enc.to_bytes()


def sync_frame(step: int, payload: bytes) -> bytes:
    """A sync frame (step 1: state vector; step 2 / update: a Yjs update)."""
    return encode_frame(MSG_SYNC, step, payload)


def decode_awareness(payload: bytes) -> list[tuple[int, int, Any]]:
    """The (client id, clock, state) entries of an awareness update; ``None`` state = removed."""
    try:
        dec = Decoder(payload)
        n = dec.read_var_uint()
        out = []
        for _ in range(n):
            client = dec.read_var_uint()
            clock = dec.read_var_uint()
            state = json.loads(dec.read_var_string())
            check_sendable(state, "awareness state")  # e.g. a lone surrogate: never stored
            out.append((client, clock, state))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise YProtocolError(f"awareness state is not JSON: {exc}") from exc
    except EnvelopeError as exc:
        raise YProtocolError(str(exc)) from exc
    if dec.remaining:
        raise YProtocolError(f"awareness update has {dec.remaining} trailing bytes")
    return out


def decode_state_vector(sv: bytes) -> dict[int, int]:
    """A Yjs state vector (``varuint n`` × (``varuint client``, ``varuint clock``)) as a dict."""
    dec = Decoder(sv)
    out = {}
    for _ in range(dec.read_var_uint()):
        client = dec.read_var_uint()
        out[client] = dec.read_var_uint()
    if dec.remaining:
        raise YProtocolError(f"state vector has {dec.remaining} trailing bytes")
    return out


def encode_awareness(entries: list[tuple[int, int, Any]]) -> bytes:
    enc = Encoder()
    enc.write_var_uint(len(entries))
    for client, clock, state in entries:
        enc.write_var_uint(client)
        enc.write_var_uint(clock)
        enc.write_var_string(json.dumps(state, separators=(",", ":")))
    return enc.to_bytes()


class YRoom:
    """One shared document plus the awareness states of the clients in it.

    Args:
        name: the room name (for messages).
        text_name: the root ``Text`` the lab's tools read (``text()``); clients may use any
            other shared types too — the room merges whatever updates they send.
    """

    def __init__(self, name: str, text_name: str = "text") -> None:
        self.name = name
        self.doc: Doc[Any] = Doc()
        self._text_name = text_name
        self.doc[text_name] = Text()
        self.awareness: dict[int, tuple[int, Any]] = {}  # client id -> (clock, state)
        self._owner: dict[int, Hashable] = {}  # awareness client id -> connection
        self.connections: set[Hashable] = set()
        self.updates_applied = 0
        # Yjs client ids each connection may write for (its awareness ids, ids its updates
        # moved, ids its state vector holds beyond the room's), and the refused ones:
        # client id -> the room's clock for it when an update from it was refused.
        self._seen: dict[Hashable, set[int]] = {}
        self.refused: dict[int, int] = {}

    # --- connection life cycle ----------------------------------------------------------
    def connect(self, conn: Hashable) -> list[bytes]:
        """A connection joined: the frames to send it (:meth:`greeting`)."""
        self.connections.add(conn)
        self._seen[conn] = set()
        return self.greeting()

    def greeting(self) -> list[bytes]:
        """What a newcomer is sent: our sync step 1 (so it sends what we lack), awareness."""
        frames = [encode_frame(MSG_SYNC, SYNC_STEP1, self.doc.get_state())]
        if self.awareness:
            frames.append(self._awareness_frame(list(self.awareness)))
        return frames

    def disconnect(self, conn: Hashable) -> list[bytes]:
        """A connection left: frames to broadcast (its awareness states removed)."""
        self.connections.discard(conn)
        self._seen.pop(conn, None)
        gone = [c for c, owner in self._owner.items() if owner == conn]
        entries = []
        for c in gone:
            clock, _ = self.awareness.pop(c, (0, None))
            del self._owner[c]
            entries.append((c, clock + 1, None))
        return [encode_frame(MSG_AWARENESS, encode_awareness(entries))] if entries else []

    # --- frames -------------------------------------------------------------------------
    def receive(self, conn: Hashable, frame: bytes) -> RoomOutput:
        """Apply one frame from ``conn``; raise :class:`YProtocolError` if it is malformed."""
        if not isinstance(frame, bytes | bytearray):
            raise YProtocolError(f"a frame must be bytes, got {type(frame).__name__}")
        if len(frame) > MAX_FRAME_BYTES:
            raise FrameTooBig(self.refuse(conn, len(frame)))
        frame = bytes(frame)
        dec = Decoder(frame)
        msg_type = dec.read_var_uint()
        step = -1
        if msg_type == MSG_SYNC:
            step = dec.read_var_uint()
            payload = dec.read_var_bytes()
        elif msg_type == MSG_AWARENESS:
            payload = dec.read_var_bytes()
        elif msg_type in (MSG_QUERY_AWARENESS, MSG_AUTH):
            payload = b""
        else:
            raise YProtocolError(f"unknown message type {msg_type}")

        out = RoomOutput()
        if msg_type == MSG_SYNC:
            if step == SYNC_STEP1:
                self._check_refused(conn, payload)
                try:
                    diff = self.doc.get_update(payload)
                except Exception as exc:  # pycrdt raises its own error types
                    raise YProtocolError(f"bad state vector: {exc}") from exc
                out.reply.append(encode_frame(MSG_SYNC, SYNC_STEP2, diff))
            elif step in (SYNC_STEP2, SYNC_UPDATE):
                if payload != b"\x00\x00":
                    self._apply(payload, conn)
                    out.update = payload
                    out.broadcast.append(encode_frame(MSG_SYNC, SYNC_UPDATE, payload))
            else:
                raise YProtocolError(f"unknown sync step {step}")
        elif msg_type == MSG_AWARENESS:
            entries = decode_awareness(payload)
            changed = []
            for client, clock, state in entries:
                old = self.awareness.get(client)
                # y-protocols' rule: a state moves on only with a higher clock (a removal
                # also at the same clock). Stock clients re-send others' states at the same
                # clock; that must not hand the client id to the re-sender, else the wrong
                # ids are removed when a connection drops.
                if old is not None and not (clock > old[0] or (clock == old[0] and state is None)):
                    continue  # stale or a re-send
                if state is None:
                    self.awareness.pop(client, None)
                    self._owner.pop(client, None)
                else:
                    self.awareness[client] = (clock, state)
                    self._owner[client] = conn
                    self._seen.setdefault(conn, set()).add(client)
                changed.append(client)
            if changed:
                out.broadcast.append(frame)
        elif msg_type == MSG_QUERY_AWARENESS and self.awareness:
            out.reply.append(self._awareness_frame(list(self.awareness)))
        return out

    def refuse(self, conn: Hashable, size: int | None = None) -> str:
        """Refuse ``conn``'s update as too big, for good: the reason to close it with.

        The Yjs client ids ``conn`` showed are remembered with the room's clock for each;
        a later connection whose sync step 1 shows one of them beyond that clock still
        holds the refused update (Yjs would resend it) and is refused at once
        (:class:`FrameTooBig`), before the room asks it for its updates.
        """
        room_sv = decode_state_vector(self.doc.get_state())
        for client in self._seen.get(conn, ()):
            self.refused[client] = room_sv.get(client, 0)
        what = f"update of {size} B" if size is not None else "update"
        return f"{what} over the {MAX_FRAME_BYTES >> 20} MiB Yjs frame limit: refused for this room"

    def apply_update(self, update: bytes) -> list[bytes]:
        """An update from elsewhere (a backplane, a Python replica): frames to broadcast."""
        self._apply(update)
        return [encode_frame(MSG_SYNC, SYNC_UPDATE, update)]

    # --- reading ------------------------------------------------------------------------
    def text(self) -> str:
        """The content of the room's root text."""
        return str(self.doc.get(self._text_name, type=Text))

    def state(self) -> bytes:
        """The whole document as one update (what a late joiner's step 2 carries)."""
        return self.doc.get_update()

    # --- internals ----------------------------------------------------------------------
    def _apply(self, update: bytes, conn: Hashable = None) -> None:
        before = self.doc.get_state()
        try:
            self.doc.apply_update(update)
        except Exception as exc:  # pycrdt raises its own error types
            raise YProtocolError(f"not a valid Yjs update: {exc}") from exc
        after = self.doc.get_state()
        if after != before:
            self.updates_applied += 1
            seen = self._seen.get(conn) if conn is not None else None
            if seen is not None:  # the client ids whose clocks this connection moved
                old = decode_state_vector(before)
                seen.update(c for c, k in decode_state_vector(after).items() if k > old.get(c, 0))

    def _check_refused(self, conn: Hashable, sv: bytes) -> None:
        """Note the client ids of ``conn``'s state vector; raise :class:`FrameTooBig` if it
        still holds an update this room refused."""
        try:
            theirs = decode_state_vector(sv)
        except YProtocolError as exc:
            raise YProtocolError(f"bad state vector: {exc}") from exc
        ours = decode_state_vector(self.doc.get_state())
        # Only what it holds and the room lacks can be what was refused.
        self._seen.setdefault(conn, set()).update(
            c for c, k in theirs.items() if k > ours.get(c, 0)
        )
        for client, clock in theirs.items():
            if client in self.refused and clock > max(self.refused[client], ours.get(client, 0)):
                raise FrameTooBig(
                    f"holds client {client}'s update refused earlier (over the"
                    f" {MAX_FRAME_BYTES >> 20} MiB Yjs frame limit): refused for this room"
                )

    def _awareness_frame(self, clients: list[int]) -> bytes:
        entries = [(c, self.awareness[c][0], self.awareness[c][1]) for c in clients]
        return encode_frame(MSG_AWARENESS, encode_awareness(entries))
