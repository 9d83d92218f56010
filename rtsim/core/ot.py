"""Operational Transformation: ot.js text operations and the Jupiter client/server protocol.

A :class:`TextOperation` is what ot.js sends on the wire: a list whose items are a positive
int (retain that many characters), a string (insert it) or a negative int (delete that
many characters). Lengths count Unicode code points (a Python ``str`` index), so "é" and
"😀" are one character each.

* ``a.apply(doc)`` runs ``a`` on ``doc`` (``len(doc)`` must equal ``a.base_length``).
* ``a.compose(b)`` is one operation with the effect of ``a`` then ``b``.
* ``a.invert(doc)`` undoes ``a`` (``doc`` is the document ``a`` was applied to).
* ``transform(a, b) -> (a', b')`` for two operations on the same document, so that
  ``b' ∘ a == a' ∘ b`` (TP1). When both insert at one place, ``a``'s insert comes first
  (ot.js's tie-break).

On top sits the protocol Google Wave and ot.js use (a simplification of Jupiter, Nichols et
al., UIST 1995): one :class:`Server` that orders operations and keeps a revision history,
and a :class:`Client` with three states (synchronized, awaiting confirm, awaiting with
buffer). :class:`JupiterSite` is the original two-party Jupiter link, where either side may
have many unacknowledged operations. Everything here is sans-I/O: the caller moves the
returned messages.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Client",
    "ClientState",
    "JupiterMessage",
    "JupiterSite",
    "OpJSON",
    "Send",
    "Server",
    "TextOperation",
    "transform",
]

#: One component of an operation in its JSON form.
OpComponent = int | str
OpJSON = list[OpComponent]


class TextOperation:
    """An ot.js text operation: retains (int > 0), inserts (str) and deletes (int < 0)."""

    __slots__ = ("base_length", "ops", "target_length")

    def __init__(self) -> None:
        self.ops: list[OpComponent] = []
        self.base_length = 0
        self.target_length = 0

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
        self.target_length += len(s)
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
    def from_json(cls, ops: Iterable[Any]) -> TextOperation:
        """Parse the ot.js JSON form; raise ``ValueError`` on anything else."""
        if isinstance(ops, str | bytes | dict) or not isinstance(ops, Iterable):
            raise ValueError(f"an operation is a JSON list, got {type(ops).__name__}")
        out = cls()
        for i, c in enumerate(ops):
            if isinstance(c, bool) or not isinstance(c, int | str):
                raise ValueError(f"operation component {i} must be an int or a string, got {c!r}")
            if isinstance(c, str):
                if c == "":
                    raise ValueError(f"operation component {i} is an empty insert")
                out.insert(c)
            elif c > 0:
                out.retain(c)
            elif c < 0:
                out.delete(-c)
            else:
                raise ValueError(f"operation component {i} is 0 (neither retain nor delete)")
        return out

    def to_json(self) -> OpJSON:
        """The ot.js JSON form (a fresh list)."""
        return list(self.ops)

    def dumps(self) -> str:
        """Compact JSON text of :meth:`to_json` (what goes on the wire)."""
        return json.dumps(self.ops, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def of(cls, *ops: OpComponent) -> TextOperation:
        """Shorthand: ``TextOperation.of(1, "y", 1)``."""
        return cls.from_json(ops)

    # --- semantics -----------------------------------------------------------------------
    def is_noop(self) -> bool:
        return len(self.ops) == 0 or (len(self.ops) == 1 and _is_retain(self.ops[0]))

    def apply(self, doc: str) -> str:
        """Apply to ``doc`` and return the new document."""
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

    def invert(self, doc: str) -> TextOperation:
        """The operation that undoes ``self`` (``doc`` is the document before ``self``)."""
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
        if self.target_length != other.base_length:
            raise ValueError(
                "compose: the second operation's base length must equal the first's target"
                f" length ({other.base_length} != {self.target_length})"
            )
        out = TextOperation()
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
                la, lb = len(a), -int(b)
                if la > lb:
                    a = a[lb:]
                    b, ib = _next(b_ops, ib)
                elif la == lb:
                    a, ia = _next(a_ops, ia)
                    b, ib = _next(b_ops, ib)
                else:
                    b = -(lb - la)
                    a, ia = _next(a_ops, ia)
            elif isinstance(a, str) and _is_retain(b):
                la, bi = len(a), int(b)
                if la > bi:
                    out.insert(a[:bi])
                    a = a[bi:]
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
        return isinstance(other, TextOperation) and self.ops == other.ops

    def __hash__(self) -> int:
        return hash(tuple(self.ops))

    def __repr__(self) -> str:
        return f"TextOperation.of({', '.join(repr(c) for c in self.ops)})"


def _is_retain(c: OpComponent | None) -> bool:
    return isinstance(c, int) and c > 0


def _is_delete(c: OpComponent | None) -> bool:
    return isinstance(c, int) and c < 0


def _next(ops: Sequence[OpComponent], i: int) -> tuple[OpComponent | None, int]:
    return (ops[i] if i < len(ops) else None), i + 1


def transform(a: TextOperation, b: TextOperation) -> tuple[TextOperation, TextOperation]:
    """``(a', b')`` with ``a.compose(b') == b.compose(a')``; on a tie ``a`` inserts first."""
    if a.base_length != b.base_length:
        raise ValueError(
            "transform: both operations must apply to the same document"
            f" ({a.base_length} != {b.base_length} characters)"
        )
    a_prime, b_prime = TextOperation(), TextOperation()
    a_ops, b_ops = a.ops, b.ops
    x = a_ops[0] if a_ops else None
    y = b_ops[0] if b_ops else None
    ia, ib = 1, 1
    while x is not None or y is not None:
        if isinstance(x, str):
            a_prime.insert(x)
            b_prime.retain(len(x))
            x, ia = _next(a_ops, ia)
            continue
        if isinstance(y, str):
            a_prime.retain(len(y))
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


# --- the ot.js / Wave protocol --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send:
    """The client asks the caller to send ``op`` to the server, based on ``revision``."""

    revision: int
    op: TextOperation


class ClientState(enum.Enum):
    SYNCHRONIZED = "synchronized"
    AWAITING_CONFIRM = "awaiting confirm"
    AWAITING_WITH_BUFFER = "awaiting with buffer"


#: The client's transitions as data: (state, event) -> next state (drawn in notebook 04).
CLIENT_TRANSITIONS: dict[tuple[ClientState, str], ClientState] = {
    (ClientState.SYNCHRONIZED, "local op"): ClientState.AWAITING_CONFIRM,
    (ClientState.SYNCHRONIZED, "server op"): ClientState.SYNCHRONIZED,
    (ClientState.AWAITING_CONFIRM, "local op"): ClientState.AWAITING_WITH_BUFFER,
    (ClientState.AWAITING_CONFIRM, "server op"): ClientState.AWAITING_CONFIRM,
    (ClientState.AWAITING_CONFIRM, "ack"): ClientState.SYNCHRONIZED,
    (ClientState.AWAITING_WITH_BUFFER, "local op"): ClientState.AWAITING_WITH_BUFFER,
    (ClientState.AWAITING_WITH_BUFFER, "server op"): ClientState.AWAITING_WITH_BUFFER,
    (ClientState.AWAITING_WITH_BUFFER, "ack"): ClientState.AWAITING_CONFIRM,
}


@dataclass
class Client:
    """An ot.js client: applies local edits at once (optimistic UI), one op in flight.

    Call :meth:`apply_local` for an edit the user made (it returns a :class:`Send` or
    ``None`` if the op was buffered), :meth:`apply_server` for another client's op the
    server broadcast (it returns the op to apply to the screen), and :meth:`server_ack`
    when the server confirms our op (it may return the buffered op to send).
    """

    document: str = ""
    revision: int = 0
    state: ClientState = ClientState.SYNCHRONIZED
    outstanding: TextOperation | None = None
    buffer: TextOperation | None = None

    def _move(self, event: str) -> None:
        try:
            self.state = CLIENT_TRANSITIONS[(self.state, event)]
        except KeyError:
            msg = f"client in state {self.state.value!r} cannot take {event!r}"
            raise ValueError(msg) from None

    def apply_local(self, op: TextOperation) -> Send | None:
        new_doc = op.apply(self.document)  # raises before any change
        self.document = new_doc
        if self.state is ClientState.SYNCHRONIZED:
            self.outstanding = op
            self._move("local op")
            return Send(self.revision, op)
        if self.state is ClientState.AWAITING_CONFIRM:
            self.buffer = op
        else:
            assert self.buffer is not None
            self.buffer = self.buffer.compose(op)
        self._move("local op")
        return None

    def apply_server(self, op: TextOperation) -> TextOperation:
        """Integrate another client's op; return it transformed for our document."""
        if self.state is ClientState.SYNCHRONIZED:
            new_doc = op.apply(self.document)
            out, outstanding, buffer = op, None, None
        else:
            assert self.outstanding is not None
            outstanding, out = transform(self.outstanding, op)
            buffer = None
            if self.buffer is not None:
                buffer, out = transform(self.buffer, out)
            new_doc = out.apply(self.document)
        self.document = new_doc
        if self.state is not ClientState.SYNCHRONIZED:
            self.outstanding, self.buffer = outstanding, buffer
        self.revision += 1
        self._move("server op")
        return out

    def server_ack(self) -> Send | None:
        """The server confirmed our outstanding op; send the buffer if there is one."""
        self._move("ack")
        self.revision += 1
        if self.state is ClientState.SYNCHRONIZED:
            self.outstanding = None
            return None
        assert self.buffer is not None
        self.outstanding, self.buffer = self.buffer, None
        return Send(self.revision, self.outstanding)


@dataclass
class Server:
    """The ot.js server: orders ops, transforms each past everything since its revision."""

    document: str = ""
    history: list[TextOperation] = field(default_factory=list)

    @property
    def revision(self) -> int:
        return len(self.history)

    def receive(self, revision: int, op: TextOperation) -> TextOperation:
        """Integrate a client's op made at ``revision``; return the op to broadcast.

        Raises ``ValueError`` (and changes nothing) if the revision is unknown or the op
        does not fit the document at that revision.
        """
        if not 0 <= revision <= len(self.history):
            raise ValueError(f"revision {revision} is not in the history (0..{len(self.history)})")
        for concurrent in self.history[revision:]:
            op, _ = transform(op, concurrent)
        new_doc = op.apply(self.document)
        self.document = new_doc
        self.history.append(op)
        return op


# --- two-party Jupiter (Nichols et al. 1995) ------------------------------------------------
@dataclass(frozen=True, slots=True)
class JupiterMessage:
    """``op`` is the sender's ``sent``-th op, made after it had received ``received`` of ours."""

    op: TextOperation
    sent: int
    received: int


@dataclass
class JupiterSite:
    """One end of a two-party Jupiter link; either end may have many ops unacknowledged.

    ``site`` (0 or 1) fixes the tie-break: site 0's inserts go first at a shared position.
    Messages must be delivered in order (FIFO), as over one TCP connection.
    """

    site: int
    document: str = ""
    sent: int = 0
    received: int = 0
    outgoing: list[tuple[int, TextOperation]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.site not in (0, 1):
            raise ValueError(f"site must be 0 or 1, got {self.site}")

    def generate(self, op: TextOperation) -> JupiterMessage:
        """Apply a local op and return the message for the other end."""
        self.document = op.apply(self.document)
        msg = JupiterMessage(op, self.sent, self.received)
        self.outgoing.append((self.sent, op))
        self.sent += 1
        return msg

    def receive(self, msg: JupiterMessage) -> TextOperation:
        """Integrate the other end's message; return the op applied here."""
        if msg.sent != self.received:
            raise ValueError(f"message {msg.sent} out of order: expected {self.received}")
        if msg.received > self.sent:
            raise ValueError(f"message acknowledges {msg.received} ops; only {self.sent} sent")
        outgoing = [(n, o) for n, o in self.outgoing if n >= msg.received]
        op = msg.op
        new_out = []
        for n, mine in outgoing:
            if self.site == 0:
                mine, op = transform(mine, op)
            else:
                op, mine = transform(op, mine)
            new_out.append((n, mine))
        new_doc = op.apply(self.document)
        self.document = new_doc
        self.outgoing = new_out
        self.received += 1
        return op
