"""rtsim's OT against ot.js itself (the npm package ``ot``, run by Node) on astral text.

ot.js counts UTF-16 code units; rtsim's operations for ot.js peers count ``"utf16"``. Every
case is checked both ways: an rtsim operation applied by ot.js gives rtsim's document, an
ot.js operation applied by rtsim gives ot.js's document, and both transform (and compose,
and invert) concurrent operations to the same result.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rtsim.core.ot import TextOperation, text_length, transform

JS = Path(__file__).parent / "js"
#: ASCII, accented Latin, CJK, astral emoji (two UTF-16 code units each) and a newline.
ALPHABET = list("abcxyz é漢😀🎉\n")


def _require_node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; the ot.js interoperability test needs Node.js")
    if not (JS / "node_modules" / "ot").is_dir():
        pytest.skip(f"ot.js missing: run `npm ci` in {JS} (CI's .ci/run does)")
    return node


def otjs(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answers of ot.js (``js/ot_peer.mjs``) to ``requests``, one per request."""
    node = _require_node()
    proc = subprocess.run(
        [node, str(JS / "ot_peer.mjs")],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        timeout=120,  # a generous "does not hang" bound
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    answers: list[dict[str, Any]] = json.loads(proc.stdout)
    assert len(answers) == len(requests)
    return answers


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(lo, hi)))


def _op(rng: random.Random, doc: str) -> TextOperation:
    """A random code-point operation on ``doc`` (retains, deletes and inserts)."""
    op = TextOperation()
    i = 0
    while i < len(doc):
        kind = rng.choice(["retain", "delete", "insert"])
        if kind == "insert":
            op.insert(_text(rng, 1, 3))
            continue
        n = rng.randint(1, len(doc) - i)
        op.retain(n) if kind == "retain" else op.delete(n)
        i += n
    if rng.random() < 0.5:
        op.insert(_text(rng, 1, 3))
    return op


def _cases(seed: int, n: int) -> list[tuple[str, TextOperation, TextOperation, TextOperation]]:
    """``(doc, a, b, c)``: ``a`` and ``b`` concurrent on ``doc``, ``c`` follows ``a``."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        doc = _text(rng, 0, 12)
        a = _op(rng, doc)
        out.append((doc, a, _op(rng, doc), _op(rng, a.apply(doc))))
    return out


def test_the_issue_example_hi_emoji_has_base_length_5_as_ot_js_says() -> None:
    doc = "hi 😀"
    # ot.js appends "!" the way its editor adapter does: retain the whole text, insert.
    made_by_otjs, rtsim_raw, rtsim_wire = otjs(
        [
            {"do": "splice", "doc": doc, "at": 4, "delete": 0, "insert": "!"},
            {"do": "apply", "op": [4, "!"], "doc": doc},
            {"do": "apply", "op": [5, "!"], "doc": doc},
        ]
    )
    assert made_by_otjs == {"op": [5, "!"], "base": 5}
    # The code-point form (base length 4) is what ot.js rejected before: it still does.
    assert "base length" in rtsim_raw["error"]
    # rtsim's operation for the same edit, in ot.js's unit, has ot.js's base length 5 ...
    ours = TextOperation().retain(len(doc)).insert("!")
    assert ours.base_length == 4
    wire = ours.to_unit("utf16", doc)
    assert wire.base_length == 5 == text_length(doc, "utf16")
    assert wire.to_json() == made_by_otjs["op"]
    assert rtsim_wire == {"doc": "hi 😀!", "base": 5, "target": 6}
    # ... and ot.js's operation, read as UTF-16, applies in rtsim.
    theirs = TextOperation.from_json(made_by_otjs["op"], unit="utf16")
    assert theirs.apply(doc) == "hi 😀!"
    with pytest.raises(ValueError, match="5 characters, got 4"):
        TextOperation.from_json(made_by_otjs["op"]).apply(doc)  # the old code-point reading


def test_rtsim_ops_applied_by_ot_js_and_ot_js_ops_applied_by_rtsim() -> None:
    cases = _cases(seed=7, n=150)
    requests: list[dict[str, Any]] = []
    for doc, a, _, _ in cases:
        requests.append({"do": "apply", "op": a.to_unit("utf16", doc).to_json(), "doc": doc})
        requests.append({"do": "invert", "op": a.to_unit("utf16", doc).to_json(), "doc": doc})
    rng = random.Random(11)
    splices = []
    for doc, _, _, _ in cases:
        at = rng.randint(0, len(doc))
        dele = rng.randint(0, len(doc) - at)
        ins = _text(rng, 0, 3)
        splices.append((doc, at, dele, ins))
        requests.append({"do": "splice", "doc": doc, "at": at, "delete": dele, "insert": ins})
    answers = otjs(requests)
    astral = 0
    for k, (doc, a, _, _) in enumerate(cases):
        applied, inverted = answers[2 * k], answers[2 * k + 1]
        assert applied["doc"] == a.apply(doc), (doc, a)
        assert applied["base"] == text_length(doc, "utf16")
        assert inverted["op"] == a.invert(doc).to_unit("utf16", a.apply(doc)).to_json()
        astral += text_length(doc, "utf16") != len(doc)
    assert astral > 20, "too few documents with astral characters to test anything"
    for k, (doc, at, dele, ins) in enumerate(splices):
        made = answers[2 * len(cases) + k]
        theirs = TextOperation.from_json(made["op"], unit="utf16")
        expected = doc[:at] + ins + doc[at + dele :]
        assert theirs.base_length == made["base"]
        assert theirs.apply(doc) == expected
        assert theirs.to_unit("codepoint", doc).apply(doc) == expected


def test_transform_and_compose_agree_with_ot_js_on_concurrent_ops() -> None:
    cases = _cases(seed=3, n=150)
    requests: list[dict[str, Any]] = []
    for doc, a, b, c in cases:
        a16, b16 = a.to_unit("utf16", doc), b.to_unit("utf16", doc)
        c16 = c.to_unit("utf16", a.apply(doc))
        requests.append({"do": "transform", "a": a16.to_json(), "b": b16.to_json()})
        requests.append({"do": "compose", "a": a16.to_json(), "b": c16.to_json()})
    answers = otjs(requests)
    for k, (doc, a, b, c) in enumerate(cases):
        t, composed = answers[2 * k], answers[2 * k + 1]
        # Python-side in code points, converted at the boundary with each op's base document.
        a1, b1 = transform(a, b)
        assert a1.to_unit("utf16", b.apply(doc)).to_json() == t["a"], (doc, a, b)
        assert b1.to_unit("utf16", a.apply(doc)).to_json() == t["b"], (doc, a, b)
        # Or entirely in UTF-16, as a server relaying ot.js clients does (no documents needed).
        a16, b16 = a.to_unit("utf16", doc), b.to_unit("utf16", doc)
        a2, b2 = transform(a16, b16)
        assert (a2.to_json(), b2.to_json()) == (t["a"], t["b"])
        # TP1 through ot.js's results, applied by rtsim.
        left = TextOperation.from_json(t["b"], unit="utf16").apply(a.apply(doc))
        right = TextOperation.from_json(t["a"], unit="utf16").apply(b.apply(doc))
        assert left == right
        c16 = c.to_unit("utf16", a.apply(doc))
        assert a16.compose(c16).to_json() == composed["op"]
        assert a.compose(c).to_unit("utf16", doc).to_json() == composed["op"]
