"""The classic ways OT goes wrong, reproducible.

Character-wise operations (insert one character at a position, delete the character at a
position) with the textbook inclusion transformation that breaks ties between two inserts
at one position by site id. Three scenarios from the literature:

* :func:`dopt_puzzle` — Ellis & Gibbs' dOPT (SIGMOD 1989) transforms a remote op against
  every concurrent op in the local log, even when the two were made on different
  documents. Site 2 makes ``O2`` and then ``O3``; both are concurrent with site 1's ``O1``.
  Site 1 transforms ``O3`` against ``O1`` although ``O3`` already includes ``O2`` and
  ``O1`` does not, and the sites diverge (the "dOPT puzzle": Cormack 1995; Ressel et al.
  1996; Sun & Ellis, CSCW 1998).
* :func:`tp2_counterexample` — three sites, no central server: each integrates remote ops
  in the order they arrive, so sites take different transformation paths. Convergence then
  needs TP2, and the position + site-id tie-break violates it (insert/delete/insert at
  adjacent positions; Imine, Molli, Oster & Rusinowitch, ECSCW 2003, show that most
  published transformation functions fail TP2 this way).
* :func:`compose_vs_stepwise` — with ot.js operations, transforming past two operations
  one after the other is not the same as transforming past their composition (docs/facts.md).

A central server that orders everything (:class:`rtsim.core.ot_protocol.Server`, Jupiter / Wave)
avoids the first two: every site transforms along the server's single path, so only TP1
is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ot import TextOperation, transform

__all__ = [
    "CharOp",
    "PuzzleResult",
    "compose_vs_stepwise",
    "dopt_puzzle",
    "naive_transform",
    "tp2_counterexample",
]


@dataclass(frozen=True, slots=True)
class CharOp:
    """Insert ``char`` at ``pos`` (``kind == "ins"``) or delete the character at ``pos``."""

    kind: str  # "ins" | "del" | "noop"
    pos: int
    char: str = ""
    site: int = 0

    def apply(self, doc: str) -> str:
        if self.kind == "ins":
            if not 0 <= self.pos <= len(doc):
                raise ValueError(f"insert at {self.pos} outside a document of {len(doc)}")
            return doc[: self.pos] + self.char + doc[self.pos :]
        if self.kind == "del":
            if not 0 <= self.pos < len(doc):
                raise ValueError(f"delete at {self.pos} outside a document of {len(doc)}")
            return doc[: self.pos] + doc[self.pos + 1 :]
        return doc

    def __str__(self) -> str:
        if self.kind == "ins":
            return f"ins({self.pos},{self.char!r})@site{self.site}"
        if self.kind == "del":
            return f"del({self.pos})@site{self.site}"
        return "noop"


def naive_transform(a: CharOp, b: CharOp) -> CharOp:
    """Include ``b``'s effect in ``a`` (both made on the same document). Textbook rules.

    Two inserts at one position: the lower site id goes first. Deleting a character that
    ``b`` already deleted becomes a no-op.
    """
    if a.kind == "noop" or b.kind == "noop":
        return a
    if a.kind == "ins":
        if b.kind == "ins":
            if a.pos < b.pos or (a.pos == b.pos and a.site < b.site):
                return a
            return CharOp("ins", a.pos + 1, a.char, a.site)
        return a if a.pos <= b.pos else CharOp("ins", a.pos - 1, a.char, a.site)
    # a deletes
    if b.kind == "ins":
        return a if a.pos < b.pos else CharOp("del", a.pos + 1, site=a.site)
    if a.pos < b.pos:
        return a
    if a.pos > b.pos:
        return CharOp("del", a.pos - 1, site=a.site)
    return CharOp("noop", 0, site=a.site)


@dataclass(frozen=True)
class PuzzleResult:
    """What each site ends with, and the story of how it got there."""

    start: str
    sites: dict[str, str]
    steps: list[str]

    @property
    def converged(self) -> bool:
        return len(set(self.sites.values())) == 1


def dopt_puzzle(start: str = "abc") -> PuzzleResult:
    """The dOPT puzzle: ``O1 || O2 → O3`` (O3 made after O2 at the same site)."""
    if len(start) < 2:
        raise ValueError(f"start needs at least 2 characters, got {start!r}")
    o1 = CharOp("del", 0, site=1)  # site 1 deletes start[0]
    o2 = CharOp("ins", 0, "x", site=2)  # site 2 types "x" in front ...
    o3 = CharOp("del", 1, site=2)  # ... and then also deletes start[0] (now at 1)
    steps = [f"start {start!r}; site 1 makes O1={o1}; site 2 makes O2={o2} then O3={o3}"]

    # Site 2: log [O2, O3]; O1 arrives, is concurrent with both: transform in log order.
    s2 = o3.apply(o2.apply(start))
    t = naive_transform(o1, o2)
    t = naive_transform(t, o3)
    s2 = t.apply(s2)
    steps.append(f"site 2 applies O1 transformed past O2, O3 = {t}: {s2!r}")

    # Site 1 (dOPT): log [O1]; O2 arrives, concurrent with O1 -> transform past O1.
    s1 = o1.apply(start)
    o2_1 = naive_transform(o2, o1)
    s1 = o2_1.apply(s1)
    # O3 arrives; dOPT sees it concurrent with O1 and transforms past O1 directly,
    # although O3 was made on a document that includes O2 and O1 was not.
    o3_1 = naive_transform(o3, o1)
    s1 = o3_1.apply(s1)
    steps.append(f"site 1 (dOPT) applies O2 as {o2_1}, then O3 past O1 as {o3_1}: {s1!r}")

    # The fix (adOPTed / GOT / Jupiter): transform O3 past O1 *as it looks after O2*.
    o1_2 = naive_transform(o1, o2)
    o3_fixed = naive_transform(o3, o1_2)
    fixed = o3_fixed.apply(o2_1.apply(o1.apply(start)))
    steps.append(f"correct: O3 past O1' = {o1_2} gives {o3_fixed}: {fixed!r}")
    return PuzzleResult(start, {"site 1 (dOPT)": s1, "site 2": s2, "site 1 (fixed)": fixed}, steps)


def tp2_counterexample(start: str = "abc") -> PuzzleResult:
    """Three peers, no server: TP2 fails and two sites diverge.

    Site 3 inserts ``x`` at 1, site 2 deletes ``start[1]``, site 1 inserts ``y`` at 2 (right
    after the deleted character). Site A receives the ops in the order O1, O2, O3 and site B
    in the order O2, O1, O3, so O3 is transformed along two different paths.
    """
    if len(start) < 3:
        raise ValueError(f"start needs at least 3 characters, got {start!r}")
    o1 = CharOp("ins", 1, "x", site=3)
    o2 = CharOp("del", 1, site=2)
    o3 = CharOp("ins", 2, "y", site=1)
    steps = [f"start {start!r}; concurrent O1={o1}, O2={o2}, O3={o3}"]
    # Path A: O1 then O2 (O2 past O1), then O3 past O1 then past O2'.
    o2_a = naive_transform(o2, o1)
    o3_a = naive_transform(naive_transform(o3, o1), o2_a)
    doc_a = o3_a.apply(o2_a.apply(o1.apply(start)))
    steps.append(f"site A: O1, O2 as {o2_a}, O3 as {o3_a}: {doc_a!r}")
    # Path B: O2 then O1 (O1 past O2), then O3 past O2 then past O1'.
    o1_b = naive_transform(o1, o2)
    o3_b = naive_transform(naive_transform(o3, o2), o1_b)
    doc_b = o3_b.apply(o1_b.apply(o2.apply(start)))
    steps.append(f"site B: O2, O1 as {o1_b}, O3 as {o3_b}: {doc_b!r}")
    steps.append(
        "TP2 asks T(O3, O1∘O2') == T(O3, O2∘O1'); here the delete made O3 and O1 tie at one"
        " position on path B only, and the site-id tie-break put y before x"
    )
    return PuzzleResult(start, {"site A": doc_a, "site B": doc_b}, steps)


def compose_vs_stepwise(start: str = "ab") -> PuzzleResult:
    """docs/facts.md: x=[1,"y",1], b0=[-2], b1=["q"] on "ab": step by step "yq", composed "qy"."""
    if len(start) != 2:
        raise ValueError(f"start must have exactly 2 characters, got {start!r}")
    x = TextOperation.of(1, "y", 1)
    b0 = TextOperation.of(-2)
    b1 = TextOperation.of("q")
    after_b = b1.apply(b0.apply(start))
    x0, _ = transform(x, b0)
    x01, _ = transform(x0, b1)
    step = x01.apply(after_b)
    both = b0.compose(b1)
    xc, _ = transform(x, both)
    composed = xc.apply(after_b)
    steps = [
        f"x={x.to_json()} concurrent with b0={b0.to_json()} then b1={b1.to_json()}",
        f"past b0 then b1: x'={x01.to_json()} -> {step!r}",
        f"past compose(b0, b1)={both.to_json()}: x'={xc.to_json()} -> {composed!r}",
    ]
    return PuzzleResult(start, {"step by step": step, "composed": composed}, steps)
