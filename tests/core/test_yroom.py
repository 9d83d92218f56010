"""The sans-I/O Yjs room: Python replicas sync through it; malformed frames change nothing."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from rtsim.core.yroom import (
    MSG_AWARENESS,
    SYNC_STEP1,
    SYNC_STEP2,
    SYNC_UPDATE,
    Decoder,
    Encoder,
    YProtocolError,
    YRoom,
    decode_awareness,
    encode_awareness,
    encode_frame,
    sync_frame,
)


class Replica:
    """A minimal y-websocket client on a pycrdt Doc, for tests."""

    def __init__(self, room: YRoom, conn: str) -> None:
        self.doc: Doc = Doc()
        self.doc["text"] = self.text = Text()
        self.room, self.conn = room, conn
        self.inbox: list[bytes] = list(room.connect(conn))
        self.updates: list[bytes] = []
        self.doc.observe(lambda e: self.updates.append(e.update))

    def pump(self, peers: list["Replica"]) -> None:
        """Handle everything the room sent us; send our sync/updates to the room."""
        while self.inbox:
            frame = self.inbox.pop(0)
            dec = Decoder(frame)
            if dec.read_var_uint() != 0:
                continue
            step = dec.read_var_uint()
            payload = dec.read_var_bytes()
            if step == SYNC_STEP1:
                self.send(sync_frame(SYNC_STEP2, self.doc.get_update(payload)), peers)
            else:
                self.doc.apply_update(payload)
        self.updates.clear()

    def send(self, frame: bytes, peers: list["Replica"]) -> None:
        out = self.room.receive(self.conn, frame)
        self.inbox.extend(out.reply)
        for p in peers:
            if p is not self:
                p.inbox.extend(out.broadcast)

    def edit(self, peers: list["Replica"], fn: object) -> None:
        fn(self.text)  # type: ignore[operator]
        for u in list(self.updates):
            self.send(sync_frame(SYNC_UPDATE, u), peers)
        self.updates.clear()


def settle(reps: list[Replica]) -> None:
    for _ in range(4):
        for r in reps:
            r.pump(reps)


def test_two_replicas_converge_through_the_room_with_non_ascii() -> None:
    room = YRoom("doc")
    a, b = Replica(room, "a"), Replica(room, "b")
    reps = [a, b]
    settle(reps)
    a.edit(reps, lambda t: t.insert(0, "héllo wörld"))
    b.edit(reps, lambda t: t.insert(0, "🙂 "))
    settle(reps)
    assert str(a.text) == str(b.text) == room.text()
    assert "héllo" in room.text() and "🙂" in room.text()


def test_late_joiner_receives_the_whole_document() -> None:
    room = YRoom("doc")
    a = Replica(room, "a")
    settle([a])
    a.edit([a], lambda t: t.insert(0, "state survives"))
    room.disconnect("a")
    c = Replica(room, "c")
    # c sends its (empty) state vector; the room answers with everything.
    c.send(sync_frame(SYNC_STEP1, c.doc.get_state()), [c])
    settle([c])
    assert str(c.text) == "state survives"


def test_awareness_round_trip_and_removal_on_disconnect() -> None:
    room = YRoom("doc")
    room.connect("a")
    room.connect("b")
    update = encode_awareness([(7, 1, {"user": {"name": "Zoë"}, "cursor": 3})])
    out = room.receive("a", encode_frame(MSG_AWARENESS, update))
    assert out.broadcast and room.awareness[7] == (1, {"user": {"name": "Zoë"}, "cursor": 3})
    # A stale clock is ignored.
    room.receive("a", encode_frame(MSG_AWARENESS, encode_awareness([(7, 0, {"old": True})])))
    assert room.awareness[7][0] == 1
    (gone,) = room.disconnect("a")
    dec = Decoder(gone)
    assert dec.read_var_uint() == MSG_AWARENESS
    assert decode_awareness(dec.read_var_bytes()) == [(7, 2, None)]
    assert 7 not in room.awareness


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"", "truncated varuint"),
        (b"\x09", "unknown message type 9"),
        (b"\x00\x05\x00", "unknown sync step 5"),
        (b"\x00\x02\x10abc", "exceeds"),
        (b"\x00\x02\x03\xff\xff\xff", "not a valid Yjs update"),
        (b"\x01\x03\x01\x01\x01", "truncated"),
        (b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", "64 bits"),
    ],
)
def test_malformed_frames_raise_and_change_nothing(frame: bytes, message: str) -> None:
    room = YRoom("doc")
    room.connect("a")
    room.apply_update(_update_inserting("keep me"))
    before = room.state()
    with pytest.raises(YProtocolError, match=message):
        room.receive("a", frame)
    assert room.state() == before and room.text() == "keep me"


def _update_inserting(text: str) -> bytes:
    d: Doc = Doc()
    d["text"] = t = Text()
    t.insert(0, text)
    return d.get_update()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_fuzzed_frames_never_crash_the_room(frame: bytes) -> None:
    room = YRoom("doc")
    room.connect("a")
    room.apply_update(_update_inserting("stable"))
    with contextlib.suppress(YProtocolError):
        room.receive("a", frame)
    assert "stable" in room.text()


@given(st.lists(st.tuples(st.integers(0, 2**53), st.integers(0, 2**32), st.text()), max_size=5))
def test_awareness_codec_round_trip(entries: list[tuple[int, int, str]]) -> None:
    data = [(c, k, {"name": s}) for c, k, s in entries]
    assert decode_awareness(encode_awareness(data)) == data


def test_encoder_decoder_varuint() -> None:
    enc = Encoder()
    for n in (0, 1, 127, 128, 300, 2**40):
        enc.write_var_uint(n)
    dec = Decoder(enc.to_bytes())
    assert [dec.read_var_uint() for _ in range(6)] == [0, 1, 127, 128, 300, 2**40]
    with pytest.raises(ValueError, match="varuint must be >= 0"):
        Encoder().write_var_uint(-1)


def _aw(*entries: tuple[int, int, object]) -> bytes:
    return encode_frame(MSG_AWARENESS, encode_awareness(list(entries)))


def _removed(frames: list[bytes]) -> dict[int, int]:
    """client id -> clock of every removal (null state) in awareness ``frames``."""
    out = {}
    for f in frames:
        dec = Decoder(f)
        assert dec.read_var_uint() == MSG_AWARENESS
        for client, clock, state in decode_awareness(dec.read_var_bytes()):
            if state is None:
                out[client] = clock
    return out


def test_a_resend_at_the_same_clock_does_not_move_ownership() -> None:
    room = YRoom("r")
    room.connect("A")
    room.connect("B")
    room.receive("A", _aw((1, 3, {"user": "A"})))
    room.receive("B", _aw((2, 5, {"user": "B"})))
    # Stock clients re-send every state they know, at the clock they know.
    assert room.receive("B", _aw((1, 3, {"user": "A"}), (2, 5, {"user": "B"}))).broadcast == []
    assert room.receive("A", _aw((1, 3, {"user": "A"}), (2, 5, {"user": "B"}))).broadcast == []
    # A's socket drops: A's own id is removed at once (clock + 1), B's is kept.
    assert _removed(room.disconnect("A")) == {1: 4}
    assert room.awareness == {2: (5, {"user": "B"})}
    # A higher clock does move ownership (a client that really took over an id).
    room.connect("C")
    room.receive("C", _aw((2, 6, {"user": "B2"})))
    assert room.disconnect("B") == []
    assert _removed(room.disconnect("C")) == {2: 7}
    assert room.awareness == {}


def test_awareness_state_with_a_lone_surrogate_is_refused() -> None:
    room = YRoom("r")
    room.connect("A")
    frame = encode_frame(MSG_AWARENESS, b"\x01\x01\x01\x0e" + b'{"n":"\\ud800"}')
    with pytest.raises(YProtocolError, match="surrogate"):
        room.receive("A", frame)
    assert room.awareness == {}


def test_an_update_over_the_limit_is_refused_for_good_but_the_room_serves_others() -> None:
    from rtsim.core.yroom import MAX_FRAME_BYTES, FrameTooBig

    room = YRoom("r")
    big, other = Replica(room, "big"), Replica(room, "other")
    big.text.insert(0, "hi")
    big.pump([other])
    other.pump([big])
    assert room.text() == "hi"
    big.text.insert(2, "x" * MAX_FRAME_BYTES)  # one update over the limit
    frame = sync_frame(SYNC_UPDATE, big.updates[-1])
    with pytest.raises(FrameTooBig, match="4 MiB") as refused:
        room.receive("big", frame)
    assert str(len(frame)) in str(refused.value)
    room.disconnect("big")
    assert room.text() == "hi"
    # The client reconnects: its sync step 1 shows it still holds the refused update.
    room.connect("big2")
    with pytest.raises(FrameTooBig, match="refused earlier"):
        room.receive("big2", sync_frame(SYNC_STEP1, big.doc.get_state()))
    room.disconnect("big2")
    # Everyone else carries on, and a fresh client (another id) is served.
    other.edit([], lambda t: t.insert(2, "!"))
    fresh = Replica(room, "fresh")
    fresh.send(sync_frame(SYNC_STEP1, fresh.doc.get_state()), [fresh])
    settle([fresh])
    assert room.text() == "hi!" and str(fresh.text) == "hi!"
