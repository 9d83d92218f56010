from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsim.core.ot import TextOperation, text_length, transform
from rtsim.core.ot_protocol import Client, ClientState, JupiterSite, Server

from .strategies_ot import doc_and_op, doc_and_two_ops, op_on

T = TextOperation.of
PROPS = settings(max_examples=200, deadline=None)


# --- semantics and JSON form ------------------------------------------------------------
def test_json_round_trip_and_ot_js_form() -> None:
    op = TextOperation.from_json([3, "héllo", -2, 1])
    assert op.to_json() == [3, "héllo", -2, 1]
    assert op.base_length == 6 and op.target_length == 9
    assert op.apply("abcdef") == "abchéllof"


def test_lengths_are_code_points() -> None:
    op = T(1, "😀", -1)
    assert op.apply("é漢") == "é😀"
    assert op.base_length == 2


def test_insert_before_delete_normal_form() -> None:
    a = TextOperation().retain(1).delete(2).insert("x")
    assert a.to_json() == [1, "x", -2]


@pytest.mark.parametrize(
    "bad",
    [[0], [1, ""], [1.5], [True], "abc", None, [[1]], {"a": 1}],
)
def test_malformed_json_raises(bad: object) -> None:
    with pytest.raises(ValueError):
        TextOperation.from_json(bad)  # type: ignore[arg-type]


def test_wrong_base_length_raises() -> None:
    with pytest.raises(ValueError, match="expects a document of 3"):
        T(3, "x").apply("ab")
    with pytest.raises(ValueError):
        transform(T(1), T(2))
    with pytest.raises(ValueError):
        T(1).compose(T(2))


def test_tie_break_first_argument_inserts_first() -> None:
    a, b = T(1, "A", 1), T(1, "B", 1)
    a2, b2 = transform(a, b)
    assert b2.apply(a.apply("xy")) == "xABy" == a2.apply(b.apply("xy"))


# --- units: code points (Python) and UTF-16 code units (ot.js) ---------------------------
def U(*ops: int | str) -> TextOperation:
    return TextOperation.of(*ops, unit="utf16")


def test_utf16_unit_counts_astral_characters_twice() -> None:
    doc = "hi 😀"
    assert (text_length(doc), text_length(doc, "utf16")) == (4, 5)
    op = U(5, "!")
    assert (op.base_length, op.target_length) == (5, 6)
    assert op.apply(doc) == "hi 😀!"
    assert U(3, "🎉", -2).apply(doc) == "hi 🎉"
    with pytest.raises(ValueError, match="3 UTF-16 code units, got 4"):
        U(3, "!").apply("😀ab")  # 3 is its length in code points, not in code units


@pytest.mark.parametrize("op", [[1, "x", 1], [1, -1], [-1, 1], [1, "x", -1]])
def test_utf16_op_may_not_split_a_surrogate_pair(op: list[int | str]) -> None:
    with pytest.raises(ValueError, match="surrogate pair"):
        U(*op).apply("😀")
    with pytest.raises(ValueError, match="surrogate pair"):
        U(*op).to_unit("codepoint", "😀")


def test_compose_refuses_to_cut_an_inserted_emoji_in_half() -> None:
    with pytest.raises(ValueError, match="surrogate pair"):
        U("😀").compose(U(1, -1))
    assert U("😀a").compose(U(2, -1)) == U("😀")


def test_units_never_mix_and_unknown_units_raise() -> None:
    with pytest.raises(ValueError, match="codepoint and utf16"):
        transform(T(1), U(1))
    with pytest.raises(ValueError, match="utf16 and codepoint"):
        U(1).compose(T(1))
    with pytest.raises(ValueError, match="unit must be"):
        TextOperation("bytes")  # type: ignore[arg-type]
    assert T(1) != U(1)


def test_lone_surrogate_inserts_are_refused_at_the_boundary() -> None:
    for unit in ("codepoint", "utf16"):
        with pytest.raises(ValueError, match="lone surrogate"):
            TextOperation.from_json([1, "\ud83d"], unit=unit)  # type: ignore[arg-type]


def test_server_relays_utf16_ops_without_old_documents() -> None:
    # Two ot.js clients edit "hi 😀" at revision 0; the second is transformed past the first.
    srv = Server(document="hi 😀")
    first = srv.receive(0, U(5, "!"))
    second = srv.receive(0, U("> ", 5))
    assert first == U(5, "!") and second == U("> ", 6)
    assert srv.document == "> hi 😀!"


@PROPS
@given(doc_and_op())
def test_to_unit_round_trip_and_same_effect(d: tuple[str, TextOperation]) -> None:
    doc, op = d
    wire = op.to_unit("utf16", doc)
    assert wire.base_length == text_length(doc, "utf16")
    assert wire.target_length == text_length(op.apply(doc), "utf16")
    assert wire.apply(doc) == op.apply(doc)
    assert TextOperation.from_json(wire.to_json(), unit="utf16") == wire
    assert wire.to_unit("codepoint", doc) == op
    assert wire.invert(doc).apply(wire.apply(doc)) == doc


@PROPS
@given(doc_and_two_ops())
def test_transform_commutes_with_unit_conversion(
    d: tuple[str, TextOperation, TextOperation],
) -> None:
    doc, a, b = d
    a1, b1 = transform(a, b)
    a2, b2 = transform(a.to_unit("utf16", doc), b.to_unit("utf16", doc))
    assert a2 == a1.to_unit("utf16", b.apply(doc))
    assert b2 == b1.to_unit("utf16", a.apply(doc))


# --- properties ------------------------------------------------------------------------
@PROPS
@given(doc_and_op())
def test_json_round_trip(d: tuple[str, TextOperation]) -> None:
    _, op = d
    assert TextOperation.from_json(op.to_json()) == op


@PROPS
@given(st.data())
def test_apply_compose_equivalence(data: st.DataObject) -> None:
    doc, a = data.draw(doc_and_op())
    mid = a.apply(doc)
    b = data.draw(op_on(mid))
    ab = a.compose(b)
    assert ab.apply(doc) == b.apply(mid)
    assert ab.base_length == len(doc)


@PROPS
@given(doc_and_op())
def test_invert_round_trip(d: tuple[str, TextOperation]) -> None:
    doc, a = d
    inv = a.invert(doc)
    assert inv.apply(a.apply(doc)) == doc
    assert a.compose(inv).apply(doc) == doc


@PROPS
@given(doc_and_two_ops())
def test_tp1(d: tuple[str, TextOperation, TextOperation]) -> None:
    doc, a, b = d
    a2, b2 = transform(a, b)
    assert b2.apply(a.apply(doc)) == a2.apply(b.apply(doc))
    assert a.compose(b2) == b.compose(a2) or a.compose(b2).apply(doc) == b.compose(a2).apply(doc)


# --- the protocol ---------------------------------------------------------------------------
def test_client_state_machine() -> None:
    c = Client("ab")
    s = c.apply_local(T(2, "x"))
    assert s is not None and s.revision == 0 and c.state is ClientState.AWAITING_CONFIRM
    assert c.apply_local(T(3, "y")) is None
    assert c.state is ClientState.AWAITING_WITH_BUFFER
    out = c.apply_server(T("q", 2))  # another client's op, made on "ab"
    assert out.apply("abxy") == "qabxy"
    assert c.document == "qabxy"
    s2 = c.server_ack()
    assert s2 is not None and s2.revision == 2 and c.state is ClientState.AWAITING_CONFIRM
    assert c.server_ack() is None and c.state is ClientState.SYNCHRONIZED
    with pytest.raises(ValueError, match="cannot take 'ack'"):
        c.server_ack()


def test_server_rejects_bad_revision_and_bad_op_unchanged() -> None:
    srv = Server("abc")
    srv.receive(0, T(3, "d"))
    with pytest.raises(ValueError, match="revision 5"):
        srv.receive(5, T(4, "e"))
    with pytest.raises(ValueError):
        srv.receive(1, T(9, "e"))
    assert srv.document == "abcd" and srv.revision == 1


def test_client_rejects_bad_local_op_unchanged() -> None:
    c = Client("ab")
    with pytest.raises(ValueError):
        c.apply_local(T(5))
    assert c.document == "ab" and c.state is ClientState.SYNCHRONIZED


def test_jupiter_two_party_converges_with_many_outstanding() -> None:
    a, b = JupiterSite(0, "abc"), JupiterSite(1, "abc")
    m1 = a.generate(T(3, "1"))
    m2 = a.generate(T(4, "2"))
    n1 = b.generate(T("x", 3))
    n2 = b.generate(T(1, "y", 3))
    b.receive(m1)
    b.receive(m2)
    a.receive(n1)
    a.receive(n2)
    assert a.document == b.document == "xyabc12"
    with pytest.raises(ValueError, match="out of order"):
        a.receive(n1)
