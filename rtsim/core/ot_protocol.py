"""The protocols on top of :mod:`rtsim.core.ot`'s text operations: ot.js / Wave and Jupiter.

The protocol Google Wave and ot.js use (a simplification of Jupiter, Nichols et al., UIST
1995): one :class:`Server` that orders operations and keeps a revision history, and a
:class:`Client` with three states (synchronized, awaiting confirm, awaiting with buffer);
:data:`CLIENT_TRANSITIONS` is the client's state machine as data. :class:`JupiterSite` is
the original two-party Jupiter link, where either side may have many unacknowledged
operations. Everything here is sans-I/O: the caller moves the returned messages.

Operations may count in either unit (see :mod:`rtsim.core.ot`); to serve ot.js peers as they
are, every operation counts in ``"utf16"``. Errors: ``ValueError`` from the operations
(wrong length, mixed units) and from a message or event that does not fit the state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .ot import TextOperation, transform

__all__ = [
    "CLIENT_TRANSITIONS",
    "Client",
    "ClientState",
    "JupiterMessage",
    "JupiterSite",
    "Send",
    "Server",
]


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
    """The ot.js server: orders ops, transforms each past everything since its revision.

    It never needs an old document, so it serves ot.js clients as they are when every
    operation counts in ``"utf16"`` (``TextOperation.from_json(ops, unit="utf16")``).
    """

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
