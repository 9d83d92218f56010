from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsim.core.crdt import CrdtReplica, byte_to_cp, cp_to_byte


def test_position_conversion() -> None:
    s = "aé漢😀b"
    assert [cp_to_byte(s, i) for i in range(6)] == [0, 1, 3, 6, 10, 11]
    assert [byte_to_cp(s, b) for b in (0, 1, 3, 6, 10, 11)] == list(range(6))
    with pytest.raises(ValueError, match="splits"):
        byte_to_cp(s, 2)
    with pytest.raises(ValueError):
        cp_to_byte(s, 7)


def test_non_ascii_positions_do_not_corrupt() -> None:
    a, b = CrdtReplica(1), CrdtReplica(2)
    b.apply_update(a.insert(0, "héllo wörld 😀"))
    a.apply_update(b.insert(2, "X"))  # code point 2: after "hé"
    b.apply_update(a.insert(14, "!"))  # after the emoji
    b.apply_update(a.delete(7, 2))  # "wö" -> ""
    assert a.text == b.text == "héXllo rld 😀!"


def test_records_map() -> None:
    a, b = CrdtReplica(1), CrdtReplica(2)
    b.apply_update(a.set_field("card1", "title", "Plan"))
    ua = a.set_field("card1", "status", "todo")
    ub = b.set_field("card1", "status", "done")
    a.apply_update(ub)
    b.apply_update(ua)
    # pycrdt: concurrent writes to one key are won by the higher client id (b = 2).
    assert a.records() == b.records() == {"card1/title": "Plan", "card1/status": "done"}


@pytest.mark.parametrize("bad", [b"", b"\x00", b"\x01\x02\x03garbage", b"\xff" * 20])
def test_malformed_update_raises_and_leaves_replica_unchanged(bad: bytes) -> None:
    a = CrdtReplica(1)
    a.insert(0, "héllo")
    before = (a.text, a.state_vector(), a.encode_state())
    with pytest.raises(ValueError):
        a.apply_update(bad)
    assert (a.text, a.state_vector(), a.encode_state()) == before


def test_bad_positions_raise_and_leave_replica_unchanged() -> None:
    a = CrdtReplica(1)
    a.insert(0, "abc")
    with pytest.raises(ValueError):
        a.insert(9, "x")
    with pytest.raises(ValueError):
        a.delete(2, 5)
    with pytest.raises(ValueError):
        a.insert(0, "")
    assert a.text == "abc"


EDIT = st.tuples(st.integers(0, 2), st.booleans(), st.integers(0, 1000), st.sampled_from("aé漢😀"))


@settings(max_examples=100, deadline=None)
@given(st.lists(EDIT, max_size=30), st.randoms(use_true_random=False))
def test_random_concurrent_edits_converge(edits: list, rnd: object) -> None:  # type: ignore[type-arg]
    reps = [CrdtReplica(i + 1) for i in range(3)]
    inbox: list[list[bytes]] = [[] for _ in reps]
    for who, ins, pos, ch in edits:
        r = reps[who]
        n = len(r)
        u = r.insert(pos % (n + 1), ch) if ins or n == 0 else r.delete(pos % n, 1)
        for j in range(3):
            if j != who:
                inbox[j].append(u)
        # deliver some pending updates, in a random order (Yjs buffers missing deps)
        j = pos % 3
        if inbox[j] and ins:
            k = pos % len(inbox[j])
            reps[j].apply_update(inbox[j].pop(k))
    for j, r in enumerate(reps):
        for u in inbox[j]:
            r.apply_update(u)
    assert reps[0].text == reps[1].text == reps[2].text


def test_rng_untouched() -> None:
    # crdt.py is sans-I/O and draws no randomness of its own
    g = np.random.default_rng(0)
    CrdtReplica(1, text="t").insert(0, "a")
    assert g.integers(10) == np.random.default_rng(0).integers(10)


def test_several_parked_updates_are_integrated() -> None:
    # Raw pycrdt 0.14 ends at "bac" for this delivery order; the replica re-offers parked
    # updates and reaches the sender's "bdac".
    a = CrdtReplica(1)
    us = [a.insert(0, "a"), a.insert(0, "b"), a.insert(2, "c"), a.insert(1, "d")]
    b = CrdtReplica(2)
    for i in (2, 3, 0, 1):
        b.apply_update(us[i])
    assert b.text == a.text == "bdac"


SPLICE = st.tuples(st.integers(0, 1000), st.integers(0, 3), st.text("aé漢😀", max_size=3))


@settings(max_examples=100, deadline=None)
@given(st.lists(SPLICE, min_size=1, max_size=25))
def test_local_edits_send_the_bytes_of_pycrdts_public_api(edits: list) -> None:  # type: ignore[type-arg]
    # The replica's fast path (its own native transaction per edit) must send exactly the
    # update a plain pycrdt Text sends for the same edit through Text.insert / del text[a:b].
    from pycrdt import Doc, Text

    r = CrdtReplica(7)
    doc: Doc = Doc(client_id=7)  # type: ignore[type-arg]
    text = doc.get("text", type=Text)
    sent: list[bytes] = []
    sub = doc.observe(lambda e: sent.append(e.update))
    plain = ""
    for pos, dele, ins in edits:
        pos %= len(plain) + 1
        dele = min(dele, len(plain) - pos)
        got = r.splice(pos, dele, ins)
        b = len(plain[:pos].encode())
        nb = len(plain[pos : pos + dele].encode())
        with doc.transaction():
            if nb:
                del text[b : b + nb]
            if ins:
                text.insert(b, ins)
        plain = plain[:pos] + ins + plain[pos + dele :]
        assert got == (sent.pop() if sent else b"")
        assert r.text == str(text) == plain and len(r) == len(plain)
    doc.unobserve(sub)
    assert r.encode_state() == bytes(doc.get_update())


def test_observer_reading_the_text_during_an_edit_sees_it_and_errors_surface() -> None:
    r = CrdtReplica(1)
    seen: list[str] = []
    r.on_change(lambda: seen.append(str(r._text)))
    r.insert(0, "ab")
    r.delete(0, 1)
    assert seen == ["ab", "b"]

    def boom() -> None:
        raise RuntimeError("observer failed")

    r.on_change(boom)
    with pytest.raises(ExceptionGroup, match="Observer callback error"):
        r.insert(1, "c")
    assert r.text == "bc" and len(r) == 2  # the edit happened and the replica knows it
    fresh = CrdtReplica(2)
    fresh.apply_update(r.encode_state())
    assert fresh.text == "bc"
