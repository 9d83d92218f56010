"""Operational Transformation: ot.js text operations, their units, ``compose`` and ``transform``.

A :class:`TextOperation` is what ot.js sends on the wire: a list whose items are a positive
int (retain that many characters), a string (insert it) or a negative int (delete that
many characters).

Units. Every operation counts its lengths in one *unit*, fixed when it is made:

* ``"codepoint"`` (the default): Unicode code points, a Python ``str`` index, so "é" and
  "😀" are one character each. Python callers (the simulation, the trace replays) use it.
* ``"utf16"``: UTF-16 code units, a JavaScript string index, as ot.js counts ("😀" is two).
  On ``"hi 😀"`` ot.js makes operations of base length 5 where code points give 4, and each
  side rejects the other's. Use this unit for anything exchanged with ot.js peers:
  ``TextOperation.from_json(ops, unit="utf16")`` reads an ot.js operation and
  ``op.to_json()`` writes it back unchanged.

Why the unit lives in the operation rather than only at the JSON boundary: ``transform``
and ``compose`` never look at the document, so an ot.js server relays and transforms
operations without keeping old documents. Converting counts between units, however, needs
the document the operation applies to (``retain 1`` over "😀" is 2 code units), and a
server that receives an operation made at an old revision no longer has that document.
Keeping the operation in UTF-16 end to end lets the ot.js server and client
(:mod:`rtsim.core.ot_protocol`) talk to ot.js peers with no conversion at all;
``apply``/``invert`` still work on Python ``str`` (they slice by code units and refuse to
split a surrogate pair, which no Python string can hold and no UTF-8 encoder can send).
Where a code-point operation must cross to ot.js (or back), :meth:`TextOperation.to_unit`
converts it given its base document. Operations of different units never mix: ``compose``
and ``transform`` raise ``ValueError``.

* ``a.apply(doc)`` runs ``a`` on ``doc`` (``len(doc)`` must equal ``a.base_length``).
* ``a.compose(b)`` is one operation with the effect of ``a`` then ``b``.
* ``a.invert(doc)`` undoes ``a`` (``doc`` is the document ``a`` was applied to).
* ``transform(a, b) -> (a', b')`` for two operations on the same document, so that
  ``b' ∘ a == a' ∘ b`` (TP1). When both insert at one place, ``a``'s insert comes first
  (ot.js's tie-break).

The protocols built on these operations (the ot.js / Wave client and server, two-party
Jupiter) live in :mod:`rtsim.core.ot_protocol`. Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Literal

__all__ = [
    "UNITS",
    "OpJSON",
    "TextOperation",
    "Unit",
    "text_length",
    "transform",
]

#: One component of an operation in its JSON form.
OpComponent = int | str
OpJSON = list[OpComponent]

#: What an operation's lengths count: code points (Python) or UTF-16 code units (ot.js).
Unit = Literal["codepoint", "utf16"]
UNITS: tuple[Unit, ...] = ("codepoint", "utf16")


def text_length(s: str, unit: Unit = "codepoint") -> int:
    """Length of ``s`` in ``unit``: code points, or UTF-16 code units (astral = 2)."""
    if unit == "codepoint":
        return len(s)
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def _check_unit(unit: object) -> Unit:
    if unit == "codepoint":
        return "codepoint"
    if unit == "utf16":
        return "utf16"
    raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")


def _utf16(doc: str, what: str) -> bytes:
    """``doc`` as UTF-16-LE bytes; ``ValueError`` if it holds a lone surrogate."""
    try:
        return doc.encode("utf-16-le")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} holds a lone surrogate (not valid Unicode): {exc}") from None


def _from_utf16(raw: bytes, what: str) -> str:
    """Decode UTF-16-LE ``raw``; ``ValueError`` if a cut split a surrogate pair."""
    try:
        return raw.decode("utf-16-le")
    except UnicodeDecodeError:
        raise ValueError(
            f"{what} splits a surrogate pair (an astral character such as an emoji is two"
            " UTF-16 code units; an operation may not cut between them)"
        ) from None


def _split(s: str, n: int, unit: Unit) -> tuple[str, str]:
    """``s[:n]``, ``s[n:]`` with ``n`` counted in ``unit``."""
    if unit == "codepoint":
        return s[:n], s[n:]
    raw = _utf16(s, "insert")
    what = "compose: the second operation"
    return _from_utf16(raw[: 2 * n], what), _from_utf16(raw[2 * n :], what)


class TextOperation:
    """An ot.js text operation: retains (int > 0), inserts (str) and deletes (int < 0).

    ``unit`` (default ``"codepoint"``) is what the counts, ``base_length`` and
    ``target_length`` measure; ``"utf16"`` is ot.js's unit (see the module docstring).
    Raises ``ValueError`` for an unknown unit.
    """

    __slots__ = ("base_length", "ops", "target_length", "unit")

    def __init__(self, unit: Unit = "codepoint") -> None:
        self.ops: list[OpComponent] = []
        self.base_length = 0
        self.target_length = 0
        self.unit: Unit = _check_unit(unit)

    # --- building ------------------------------------------------------------------------
    def retain(self, n: int) -> TextOperation:
        """Skip over ``n`` characters."""
        if n < 0:
            raise ValueError(f"retain count must be >= 0, got {n}")
        if n == 0:
            return self
        self.base_length += n
        self.target_length += n
        if self.ops and _is_retain(self.ops[-1]):
            self.ops[-1] = int(self.ops[-1]) + n
        else:
            self.ops.append(n)
        return self

    def insert(self, s: str) -> TextOperation:
        """Insert ``s`` at the current position."""
        if not isinstance(s, str):
            raise ValueError(f"insert needs a string, got {type(s).__name__}")
        if s == "":
            return self
        self.target_length += len(s) if self.unit == "codepoint" else text_length(s, "utf16")
        ops = self.ops
        if ops and isinstance(ops[-1], str):
            ops[-1] = ops[-1] + s
        elif ops and _is_delete(ops[-1]):
            # Keep inserts before deletes (ot.js normal form): same effect, one canonical list.
            if len(ops) >= 2 and isinstance(ops[-2], str):
                ops[-2] = ops[-2] + s
            else:
                ops.insert(len(ops) - 1, s)
        else:
            ops.append(s)
        return self

    def delete(self, n: int) -> TextOperation:
        """Delete ``n`` characters (``n`` > 0; a negative count is taken as its magnitude)."""
        n = abs(n)
        if n == 0:
            return self
        self.base_length += n
        if self.ops and _is_delete(self.ops[-1]):
            self.ops[-1] = int(self.ops[-1]) - n
        else:
            self.ops.append(-n)
        return self

    # --- JSON ----------------------------------------------------------------------------
    @classmethod
    def from_json(cls, ops: Iterable[Any], unit: Unit = "codepoint") -> TextOperation:
        """Parse the ot.js JSON form, its counts in ``unit``; raise ``ValueError`` otherwise.

        An ot.js peer's operation is ``from_json(ops, unit="utf16")``. An insert holding a
        lone surrogate (JSON ``"\\ud83d"``, half an emoji) is refused: it could be stored
        but never sent as UTF-8.
        """
        if isinstance(ops, str | bytes | dict) or not isinstance(ops, Iterable):
            raise ValueError(f"an operation is a JSON list, got {type(ops).__name__}")
        out = cls(unit)
        for i, c in enumerate(ops):
            if isinstance(c, bool) or not isinstance(c, int | str):
                raise ValueError(f"operation component {i} must be an int or a string, got {c!r}")
            if isinstance(c, str):
                if c == "":
                    raise ValueError(f"operation component {i} is an empty insert")
                _utf16(c, f"operation component {i}")
                out.insert(c)
            elif c > 0:
                out.retain(c)
            elif c < 0:
                out.delete(-c)
            else:
                raise ValueError(f"operation component {i} is 0 (neither retain nor delete)")
        return out

    def to_json(self) -> OpJSON:
        """The ot.js JSON form (a fresh list), counts in :attr:`unit`.

        For an ot.js peer the operation must be in ``"utf16"``: made so, read with
        ``from_json(..., unit="utf16")`` or converted with :meth:`to_unit`.
        """
        return list(self.ops)

    def to_unit(self, unit: Unit, doc: str) -> TextOperation:
        """The same edit with its counts in ``unit``; ``doc`` is the document it applies to.

        Raises ``ValueError`` if ``doc`` does not fit the operation, holds a lone surrogate,
        or (from ``"utf16"``) the operation splits a surrogate pair.
        """
        unit = _check_unit(unit)
        if unit == self.unit:
            return self.copy()
        if text_length(doc, self.unit) != self.base_length:
            raise ValueError(
                f"to_unit needs the document the operation applies to ({self.base_length}"
                f" {self.unit} units), got {text_length(doc, self.unit)}"
            )
        _utf16(doc, "the document")
        out = TextOperation(unit)
        i = 0  # code-point index into doc
        for c in self.ops:
            if isinstance(c, str):
                out.insert(c)
                continue
            n = abs(c)
            if self.unit == "codepoint":
                j = i + n
                m = text_length(doc[i:j], "utf16")
            else:
                j = _advance_utf16(doc, i, n)
                m = j - i
            if c > 0:
                out.retain(m)
            else:
                out.delete(m)
            i = j
        return out

    def copy(self) -> TextOperation:
        """An independent copy."""
        out = TextOperation(self.unit)
        out.ops = list(self.ops)
        out.base_length, out.target_length = self.base_length, self.target_length
        return out

    def dumps(self) -> str:
        """Compact JSON text of :meth:`to_json` (what goes on the wire)."""
        return json.dumps(self.ops, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def of(cls, *ops: OpComponent, unit: Unit = "codepoint") -> TextOperation:
        """Shorthand: ``TextOperation.of(1, "y", 1)``."""
        return cls.from_json(ops, unit)

    # --- semantics -----------------------------------------------------------------------
    def is_noop(self) -> bool:
        return len(self.ops) == 0 or (len(self.ops) == 1 and _is_retain(self.ops[0]))

    def apply(self, doc: str) -> str:
        """Apply to ``doc`` and return the new document.

        Raises ``ValueError`` if ``doc``'s length in :attr:`unit` is not
        :attr:`base_length`, or (``"utf16"``) if the operation splits a surrogate pair.
        """
        if self.unit == "utf16":
            return self._apply_utf16(doc)
        if len(doc) != self.base_length:
            raise ValueError(
                f"operation expects a document of {self.base_length} characters, got {len(doc)}"
            )
        parts: list[str] = []
        i = 0
        for c in self.ops:
            if isinstance(c, str):
                parts.append(c)
            elif c > 0:
                parts.append(doc[i : i + c])
                i += c
            else:
                i -= c
        return "".join(parts)

    def _apply_utf16(self, doc: str) -> str:
        raw = _utf16(doc, "the document")
        if len(raw) // 2 != self.base_length:
            raise ValueError(
                f"operation expects a document of {self.base_length} UTF-16 code units,"
                f" got {len(raw) // 2}"
            )
        parts: list[str] = []
        i = 0
        for c in self.ops:
            if isinstance(c, str):
                parts.append(c)
            elif c > 0:
                parts.append(_from_utf16(raw[2 * i : 2 * (i + c)], "the operation"))
                i += c
            else:
                _from_utf16(raw[2 * i : 2 * (i - c)], "the operation")
                i -= c
        return "".join(parts)

    def invert(self, doc: str) -> TextOperation:
        """The operation that undoes ``self`` (``doc`` is the document before ``self``)."""
        if self.unit == "utf16":
            # Same walk in code points, then back: the inverse of the converted operation.
            cp = self.to_unit("codepoint", doc)
            return cp.invert(doc).to_unit("utf16", cp.apply(doc))
        if len(doc) != self.base_length:
            raise ValueError(
                f"invert needs the document the operation applies to ({self.base_length}"
                f" characters), got {len(doc)}"
            )
        inv = TextOperation()
        i = 0
        for c in self.ops:
            if isinstance(c, str):
                inv.delete(len(c))
            elif c > 0:
                inv.retain(c)
                i += c
            else:
                inv.insert(doc[i : i - c])
                i -= c
        return inv

    def compose(self, other: TextOperation) -> TextOperation:
        """One operation equal to applying ``self`` and then ``other``."""
        if self.unit != other.unit:
            raise ValueError(f"compose: operations count in {self.unit} and {other.unit}")
        if self.target_length != other.base_length:
            raise ValueError(
                "compose: the second operation's base length must equal the first's target"
                f" length ({other.base_length} != {self.target_length})"
            )
        unit = self.unit
        out = TextOperation(unit)
        a_ops, b_ops = self.ops, other.ops
        ia = ib = 0
        a = a_ops[0] if a_ops else None
        b = b_ops[0] if b_ops else None
        ia, ib = 1, 1
        while a is not None or b is not None:
            if a is not None and _is_delete(a):
                out.delete(int(a))
                a, ia = _next(a_ops, ia)
                continue
            if isinstance(b, str):
                out.insert(b)
                b, ib = _next(b_ops, ib)
                continue
            if a is None or b is None:
                raise ValueError("compose: operations have inconsistent lengths")
            if _is_retain(a) and _is_retain(b):
                ai, bi = int(a), int(b)
                if ai > bi:
                    out.retain(bi)
                    a = ai - bi
                    b, ib = _next(b_ops, ib)
                elif ai == bi:
                    out.retain(ai)
                    a, ia = _next(a_ops, ia)
                    b, ib = _next(b_ops, ib)
                else:
                    out.retain(ai)
                    b = bi - ai
                    a, ia = _next(a_ops, ia)
            elif isinstance(a, str) and _is_delete(b):
                la, lb = text_length(a, unit), -int(b)
                if la > lb:
                    a = _split(a, lb, unit)[1]
                    b, ib = _next(b_ops, ib)
                elif la == lb:
                    a, ia = _next(a_ops, ia)
                    b, ib = _next(b_ops, ib)
                else:
                    b = -(lb - la)
                    a, ia = _next(a_ops, ia)
            elif isinstance(a, str) and _is_retain(b):
                la, bi = text_length(a, unit), int(b)
                if la > bi:
                    head, a = _split(a, bi, unit)
                    out.insert(head)
                    b, ib = _next(b_ops, ib)
                elif la == bi:
                    out.insert(a)
                    a, ia = _next(a_ops, ia)
                    b, ib = _next(b_ops, ib)
                else:
                    out.insert(a)
                    b = bi - la
                    a, ia = _next(a_ops, ia)
            else:  # a retain, b delete
                ai, lb = int(a), -int(b)
                if ai > lb:
                    out.delete(lb)
                    a = ai - lb
                    b, ib = _next(b_ops, ib)
                elif ai == lb:
                    out.delete(lb)
                    a, ia = _next(a_ops, ia)
                    b, ib = _next(b_ops, ib)
                else:
                    out.delete(ai)
                    b = -(lb - ai)
                    a, ia = _next(a_ops, ia)
        return out

    # --- dunder --------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TextOperation) and self.ops == other.ops and self.unit == other.unit
        )

    def __hash__(self) -> int:
        return hash((self.unit, *self.ops))

    def __repr__(self) -> str:
        unit = "" if self.unit == "codepoint" else f", unit={self.unit!r}"
        return f"TextOperation.of({', '.join(repr(c) for c in self.ops)}{unit})"


def _advance_utf16(doc: str, i: int, n: int) -> int:
    """Code-point index reached from ``i`` after ``n`` UTF-16 code units of ``doc``."""
    left = n
    while left > 0:
        if i >= len(doc):
            raise ValueError("the operation is longer than the document")
        left -= 2 if doc[i] > "\uffff" else 1
        i += 1
    if left < 0:
        raise ValueError(
            "the operation splits a surrogate pair (an astral character such as an emoji is"
            " two UTF-16 code units; an operation may not cut between them)"
        )
    return i


def _is_retain(c: OpComponent | None) -> bool:
    return isinstance(c, int) and c > 0


def _is_delete(c: OpComponent | None) -> bool:
    return isinstance(c, int) and c < 0


def _next(ops: Sequence[OpComponent], i: int) -> tuple[OpComponent | None, int]:
    return (ops[i] if i < len(ops) else None), i + 1


def transform(a: TextOperation, b: TextOperation) -> tuple[TextOperation, TextOperation]:
    """``(a', b')`` with ``a.compose(b') == b.compose(a')``; on a tie ``a`` inserts first.

    Both operations must count in the same unit (``ValueError`` otherwise); the results
    count in it too.
    """
    if a.unit != b.unit:
        raise ValueError(f"transform: operations count in {a.unit} and {b.unit}")
    if a.base_length != b.base_length:
        raise ValueError(
            "transform: both operations must apply to the same document"
            f" ({a.base_length} != {b.base_length} characters)"
        )
    unit = a.unit
    a_prime, b_prime = TextOperation(unit), TextOperation(unit)
    a_ops, b_ops = a.ops, b.ops
    x = a_ops[0] if a_ops else None
    y = b_ops[0] if b_ops else None
    ia, ib = 1, 1
    while x is not None or y is not None:
        if isinstance(x, str):
            a_prime.insert(x)
            b_prime.retain(text_length(x, unit))
            x, ia = _next(a_ops, ia)
            continue
        if isinstance(y, str):
            a_prime.retain(text_length(y, unit))
            b_prime.insert(y)
            y, ib = _next(b_ops, ib)
            continue
        if x is None or y is None:
            raise ValueError("transform: operations have inconsistent lengths")
        xi, yi = int(x), int(y)
        if xi > 0 and yi > 0:
            m = min(xi, yi)
            a_prime.retain(m)
            b_prime.retain(m)
        elif xi < 0 and yi < 0:
            m = min(-xi, -yi)  # both delete the same characters: nothing left to do
        elif xi < 0:  # a deletes, b retains
            m = min(-xi, yi)
            a_prime.delete(m)
        else:  # a retains, b deletes
            m = min(xi, -yi)
            b_prime.delete(m)
        x, ia = _shrink(xi, m, a_ops, ia)
        y, ib = _shrink(yi, m, b_ops, ib)
    return a_prime, b_prime


def _shrink(c: int, m: int, ops: Sequence[OpComponent], i: int) -> tuple[OpComponent | None, int]:
    """Consume ``m`` characters of retain/delete ``c``; move on if it is used up."""
    rest = c - m if c > 0 else c + m
    if rest == 0:
        return _next(ops, i)
    return rest, i
