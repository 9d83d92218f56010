"""Hypothesis strategies for documents and ot.js operations (shared by the OT tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from rtsim.core.ot import TextOperation

#: ASCII, accented Latin, CJK and astral-plane emoji: code points, not bytes, must count.
ALPHABET = st.sampled_from(list("abcxyz é漢😀\n"))
docs = st.text(alphabet=ALPHABET, max_size=30)


@st.composite
def op_on(draw: st.DrawFn, doc: str) -> TextOperation:
    """A random operation whose base is ``doc``."""
    op = TextOperation()
    i = 0
    while i < len(doc) or draw(st.booleans()):
        kind = draw(st.sampled_from(["retain", "insert", "delete"]))
        if kind == "insert":
            op.insert(draw(st.text(alphabet=ALPHABET, min_size=1, max_size=4)))
            if i >= len(doc):
                break
            continue
        if i >= len(doc):
            break
        n = draw(st.integers(1, len(doc) - i))
        if kind == "retain":
            op.retain(n)
        else:
            op.delete(n)
        i += n
    op.retain(len(doc) - i)
    return op


@st.composite
def doc_and_op(draw: st.DrawFn) -> tuple[str, TextOperation]:
    doc = draw(docs)
    return doc, draw(op_on(doc))


@st.composite
def doc_and_two_ops(draw: st.DrawFn) -> tuple[str, TextOperation, TextOperation]:
    doc = draw(docs)
    return doc, draw(op_on(doc)), draw(op_on(doc))
