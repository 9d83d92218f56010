"""CRDT replicas backed by pycrdt (Yrs, the Rust port of Yjs), exchanging real update bytes.

A :class:`CrdtReplica` owns one ``pycrdt.Doc`` with a ``Text`` (the shared paragraph) and
a ``Map`` (records: ``"record/field" -> value``). Every local edit returns the Yjs v1
update bytes that a peer or server passes to :meth:`CrdtReplica.apply_update`; the same
bytes would be understood by Yjs in a browser.

Positions: the rest of rtsim counts Unicode code points, but pycrdt's ``Text`` indexes
UTF-8 *bytes* (a "é" is 2, a "😀" 4). Handing a code-point index to pycrdt silently puts
text in the wrong place once the document holds non-ASCII characters, so the replica
converts explicitly (:func:`cp_to_byte`, :func:`byte_to_cp`); while the text is pure ASCII
the two agree and the conversion is skipped.

Speed: a local edit outside a caller's transaction drives pycrdt's native transaction
directly (:meth:`CrdtReplica._edit`): the same Yrs calls and the same update bytes as
``Text.insert`` / ``del text[a:b]``, without pycrdt's per-call Python transaction wrapper
(about 2 µs an edit). What remains is Yrs: it finds a position by walking the text's item
list from its start on every edit (Yjs keeps search markers), so an edit costs time in
proportion to how far into the document it lands (``benchmarks/results/traces.md``).

Two other things pycrdt does not hide: concurrent ``Map`` writes to one key are won by the
higher client id (not by time), and numbers come back as floats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pycrdt import Doc, Map, Text, Transaction, merge_updates

__all__ = ["CrdtReplica", "byte_to_cp", "cp_to_byte"]


def cp_to_byte(s: str, cp: int) -> int:
    """UTF-8 byte offset of code-point offset ``cp`` in ``s``."""
    if not 0 <= cp <= len(s):
        raise ValueError(f"position {cp} outside a text of {len(s)} characters")
    if s.isascii():
        return cp
    return len(s[:cp].encode("utf-8"))


def byte_to_cp(s: str, b: int) -> int:
    """Code-point offset of UTF-8 byte offset ``b`` in ``s`` (must fall on a boundary)."""
    raw = s.encode("utf-8")
    if not 0 <= b <= len(raw):
        raise ValueError(f"byte offset {b} outside a text of {len(raw)} bytes")
    try:
        return len(raw[:b].decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"byte offset {b} splits a multi-byte character") from None


def _varuint(buf: bytes, i: int) -> tuple[int, int]:
    """Decode a lib0 varuint at ``buf[i]``; return (value, next index)."""
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


class CrdtReplica:
    """One replica of a shared document: text plus records.

    >>> a, b = CrdtReplica(1), CrdtReplica(2)
    >>> b.apply_update(a.insert(0, "héllo"))
    >>> b.text
    'héllo'
    """

    def __init__(self, client_id: int, *, text: str = "text", records: str = "records"):
        if not 0 <= client_id < 2**53:
            raise ValueError(f"client_id must be in [0, 2**53), got {client_id}")
        self.client_id = client_id
        self.doc: Doc[Any] = Doc(client_id=client_id)
        self._text = self.doc.get(text, type=Text)
        self._records = self.doc.get(records, type=Map)
        self._updates: list[bytes] = []
        self._parked: list[bytes] = []
        self._sub = self.doc.observe(self._on_update)
        # pycrdt's native objects, for the fast path of _edit (pycrdt>=0.14,<0.15)
        self._native_doc = self.doc._doc
        self._native_text = self._text.integrated
        self._ascii = True
        self._cache: str | None = ""
        self._n = 0  # code points
        self.updates_applied = 0

    def _on_update(self, event: Any) -> None:
        self._updates.append(event.update)

    def _take(self) -> bytes:
        ups = self._updates
        out = ups[0] if len(ups) == 1 else (bytes(merge_updates(*ups)) if ups else b"")
        ups.clear()
        return out

    # --- reading -------------------------------------------------------------------------
    @property
    def text(self) -> str:
        if self._cache is None:
            self._cache = str(self._text)
        return self._cache

    def __len__(self) -> int:
        """Length of the text in code points (tracked, so no read transaction)."""
        return self._n

    def records(self) -> dict[str, Any]:
        return dict(self._records.to_py() or {})

    def state_vector(self) -> bytes:
        return bytes(self.doc.get_state())

    def encode_state(self, since: bytes | None = None) -> bytes:
        """The whole document (or what a peer with state vector ``since`` lacks) as an update."""
        return bytes(self.doc.get_update(since) if since is not None else self.doc.get_update())

    # --- local edits -> update bytes -----------------------------------------------------
    def _byte(self, cp: int) -> int:
        if self._ascii:
            n = len(self)
            if not 0 <= cp <= n:
                raise ValueError(f"position {cp} outside a text of {n} characters")
            return cp
        return cp_to_byte(self.text, cp)

    def _edit(self, b: int, nb: int, s: str) -> bytes:
        """Delete ``nb`` UTF-8 bytes at byte offset ``b``, then insert ``s`` there; return
        the update bytes (``b""`` inside a caller's transaction, whose update comes later).

        Outside a caller's transaction this is one transaction of its own, opened on
        pycrdt's native document the way ``pycrdt.Transaction`` does (its wrapper is set as
        the document's current transaction while Yrs commits, so observers that read the
        document join it; their exceptions are raised as pycrdt raises them). The calls into
        Yrs, and so the update bytes, are those of ``Text.insert`` and ``del text[b:b+nb]``.
        """
        doc = self.doc
        if doc._txn is not None:  # the caller's transaction: join it through the public API
            if nb:
                del self._text[b : b + nb]
            if s:
                self._text.insert(b, s)
            return self._take()
        native = self._native_doc.create_transaction()
        wrapper = Transaction(doc, native)
        wrapper._leases = 1
        doc._txn = wrapper
        try:
            if nb:
                self._native_text.remove_range(native, b, nb)
            if s:
                self._native_text.insert(native, b, s, None)
            native.commit()
        finally:
            native.drop()
            wrapper._txn = None
            doc._txn = None
        if doc._exceptions:  # the caller updates its bookkeeping, then _raise_observer_errors
            return b""
        return self._take()

    def _raise_observer_errors(self) -> None:
        """Raise what observers raised during the last edit, as pycrdt would.

        The edit itself is in the document and in the replica's bookkeeping; its update
        stays queued and goes out merged into the next local edit's update.
        """
        errors = self.doc._exceptions
        if errors:
            group = ExceptionGroup("Observer callback error", tuple(errors))
            errors.clear()
            raise group

    def insert(self, pos: int, s: str) -> bytes:
        """Insert ``s`` at code-point ``pos``; return the update bytes."""
        if not isinstance(s, str) or s == "":
            raise ValueError(f"insert needs a non-empty string, got {s!r}")
        b = self._byte(pos)
        out = self._edit(b, 0, s)
        self._inserted(pos, s)
        self._raise_observer_errors()
        return out

    def _inserted(self, pos: int, s: str) -> None:
        if self._cache is not None:
            c = self._cache
            self._cache = c[:pos] + s + c[pos:] if len(c) < 4096 else None
        self._n += len(s)
        if not s.isascii():
            self._ascii = False

    def _check_delete(self, pos: int, n: int) -> None:
        if n < 1:
            raise ValueError(f"delete count must be >= 1, got {n}")
        total = len(self)
        if pos < 0 or pos + n > total:
            raise ValueError(f"delete {n} at {pos} outside a text of {total} characters")

    def _deleted(self, pos: int, n: int) -> None:
        self._n -= n
        if self._cache is not None:
            c = self._cache
            self._cache = c[:pos] + c[pos + n :] if len(c) < 4096 else None
        if not self._ascii:
            self._ascii = self.text.isascii()

    def delete(self, pos: int, n: int = 1) -> bytes:
        """Delete ``n`` code points from ``pos``; return the update bytes."""
        self._check_delete(pos, n)
        start = self._byte(pos)
        end = self._byte(pos + n)
        out = self._edit(start, end - start, "")
        self._deleted(pos, n)
        self._raise_observer_errors()
        return out

    def splice(self, pos: int, delete: int, insert: str) -> bytes:
        """Delete then insert in one transaction (one update), like a trace patch."""
        if not isinstance(insert, str):
            raise ValueError(f"splice inserts a string, got {insert!r}")
        if not delete and not insert:
            return self._take()
        if delete:
            self._check_delete(pos, delete)
            start = self._byte(pos)
            nb = self._byte(pos + delete) - start
        else:
            start, nb = self._byte(pos), 0
        out = self._edit(start, nb, insert)
        if delete:
            self._deleted(pos, delete)
        if insert:
            self._inserted(pos, insert)
        self._raise_observer_errors()
        return out

    def set_field(self, record: str, field: str, value: Any) -> bytes:
        """Set one field of a record (a key ``record/field`` in the Map)."""
        self._records[f"{record}/{field}"] = value
        return self._take()

    # --- remote updates ------------------------------------------------------------------
    def apply_update(self, update: bytes) -> None:
        """Integrate a peer's update. Malformed bytes raise ``ValueError``; nothing changes.

        An update whose causal dependencies have not arrived yet is parked by Yrs. pycrdt
        0.14 (Yrs) does not always re-integrate *several* parked updates once the missing
        one arrives (found by this lab's property test), so the replica keeps its own list
        of updates that integrated nothing and offers them again after every update that
        did. Over an ordered transport (a WebSocket through one server) nothing is parked.
        """
        if not isinstance(update, bytes | bytearray) or len(update) == 0:
            raise ValueError("an update must be non-empty bytes")
        gap = self._has_gap(bytes(update))
        progressed = self._apply_one(bytes(update))
        if not progressed and gap:
            self._parked.append(bytes(update))
        while progressed and self._parked:
            parked, self._parked = self._parked, []
            progressed = False
            for u in parked:
                if self._apply_one(u):
                    progressed = True
                else:
                    self._parked.append(u)
        self._cache = None
        text = self.text
        self._n = len(text)
        self._ascii = text.isascii()
        self.updates_applied += 1

    @property
    def parked(self) -> int:
        """Updates kept for another try: dependencies missing, or already integrated
        (Yrs integrates some parked updates itself; a duplicate is harmless to re-offer)."""
        return len(self._parked)

    def _has_gap(self, update: bytes) -> bool:
        """Does the update's first block start past what we have from its client?

        Reads the Yjs v1 header (varuint clients, then per client: varuint structs, client,
        clock). Only the first client section is read; that is the sender of a local edit.
        """
        try:
            n_clients, i = _varuint(update, 0)
            if n_clients == 0:
                return False
            _, i = _varuint(update, i)
            client, i = _varuint(update, i)
            clock, i = _varuint(update, i)
        except IndexError:
            return False
        return clock > self._clock_of(client)

    def _clock_of(self, client: int) -> int:
        sv = bytes(self.doc.get_state())
        n, i = _varuint(sv, 0)
        for _ in range(n):
            c, i = _varuint(sv, i)
            k, i = _varuint(sv, i)
            if c == client:
                return k
        return 0

    def _apply_one(self, update: bytes) -> bool:
        self._updates.clear()
        try:
            self.doc.apply_update(update)
        except Exception as exc:  # pycrdt raises ValueError (and may raise others)
            self._updates.clear()
            raise ValueError(f"malformed CRDT update ({len(update)} bytes): {exc}") from None
        progressed = bool(self._updates)
        self._updates.clear()  # our observer also sees remote updates: not ours to send
        return progressed

    def on_change(self, fn: Callable[[], None]) -> None:  # pragma: no cover - convenience
        self._text.observe(lambda _e: fn())
