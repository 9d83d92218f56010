"""Editors typing into one paragraph under network latency: OT vs CRDT vs last-write-wins.

``simulate_editing(EditingParams(strategy="ot", editors=3, ...), seed=K)`` runs one SimPy
simulation and returns a :class:`~rtsim.core.results.RunResult`: one row per (operation,
replica that applied it) and a summary whose ``extra`` holds the conflict figures.

What is modelled
----------------
* ``editors`` clients, each connected to one server over its own
  :class:`~rtsim.sim.network.Link` (one-way transit = ``rtt_ms / 2`` + exponential jitter).
  Messages on one connection arrive in order (TCP/WebSocket).
* Each editor types a Poisson stream of ``ops_per_s`` edits for ``duration_s``: an insert
  of one character at a random position of *its own current view*, or (with probability
  ``delete_fraction``) a backspace of a random character. Every inserted character is
  unique (drawn from CJK code points, so positions are exercised with non-ASCII text),
  which lets the model check exactly which edits survived.
* **ot** — the ot.js client/server (:mod:`rtsim.core.ot_protocol`): one op in flight per client,
  later ones buffered and composed; the server transforms and broadcasts.
* **crdt** — pycrdt replicas (:mod:`rtsim.core.crdt`): every edit's update bytes go to the
  server at once, which integrates and relays them.
* **lww** — the paragraph is one field of a last-write-wins record
  (:mod:`rtsim.core.lww`): each keystroke writes the whole paragraph; a concurrent write
  with a larger hybrid-logical-clock timestamp replaces it, and its writer gets an
  "overwritten" notice.
* Optimistic UI (claim C12): with optimistic apply the editor sees its keystroke at once
  (``perceived_ms`` = 0); without, it sees it when the server's acknowledgement arrives.
  An optimistic edit is *corrected* if another editor's change was merged into the view
  while the edit was still unconfirmed, and *rejected* if it was overwritten (LWW).
* After ``duration_s`` typing stops and the run continues until every message is
  delivered; ``converged`` says whether every replica then holds the same text.

:func:`simulate_records` is the LWW record model for claim C15: how often concurrent
edits of one record hit the same field, by fields per record and number of users.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import simpy

from ..core.crdt import CrdtReplica
from ..core.lww import HybridTimestamp, LwwMap, Overwritten, Write
from ..core.ot import TextOperation
from ..core.ot_protocol import Client, ClientState, Send, Server
from ..core.params import param, sources, validate
from ..core.results import RunResult, Summary, percentiles_ms
from .network import Link
from .seeding import as_seed_sequence, children

__all__ = [
    "DEFAULTS_SOURCES",
    "STRATEGIES",
    "EditingParams",
    "RecordParams",
    "simulate_editing",
    "simulate_records",
    "unique_char",
]

STRATEGIES = ("ot", "crdt", "lww")
_MAX_INSERTS = 20_992 + 42_720


@dataclass(frozen=True)
class EditingParams:
    """One head-to-head run.

    Every field is declared once with :func:`~rtsim.core.params.param` (bounds, unit, help,
    source) and validated in ``__post_init__`` (``ValueError`` naming the field); also the
    expected number of edits must fit the unique characters. ``rtt_ms`` is the round trip
    client ↔ server (one way = ``rtt_ms / 2``), as in every other model.
    """

    strategy: str = param("ot", choices=STRATEGIES, help="conflict strategy")
    editors: int = param(2, lo=1, unit="editors", help="editors typing into one paragraph")
    ops_per_s: float = param(
        3.0,
        lo=0,
        lo_open=True,
        unit="edits/s",
        help="edits per second per editor",
        source="3 edits/s per editor: ~36 words/min of typing (assumption; the traces type"
        " in bursts of 5-10 keys/s)",
    )
    rtt_ms: float = param(
        100.0,
        lo=0,
        unit="ms",
        help="round trip client <-> server (one way = half)",
        source="100 ms round trip (50 ms one way): same-continent (assumption)",
    )
    jitter_ms: float = param(
        10.0,
        lo=0,
        unit="ms",
        help="mean exponential one-way jitter",
        source="10 ms mean exponential one-way jitter (assumption)",
    )
    duration_s: float = param(
        10.0, lo=0, lo_open=True, unit="s", help="seconds of typing", flag="duration"
    )
    delete_fraction: float = param(
        0.3,
        lo=0,
        hi=1,
        hi_open=True,
        unit="fraction",
        help="edits that are backspaces",
        source="0.3: automerge-paper has 77,463 deletes per 182,315 inserts (30%)",
    )
    initial_text: str = ""

    def __post_init__(self) -> None:
        validate(self)
        expected = self.editors * self.ops_per_s * self.duration_s
        if expected * 1.5 + 100 > _MAX_INSERTS:
            raise ValueError(
                f"editors × ops_per_s × duration = {expected:.0f} edits is too many for"
                f" unique characters (max ~{int((_MAX_INSERTS - 100) / 1.5)})"
            )

    @property
    def link(self) -> Link:
        return Link(rtt_s=self.rtt_ms / 1000, jitter_s=self.jitter_ms / 1000)

    def with_(self, **changes: Any) -> EditingParams:
        return replace(self, **changes)


#: Where the defaults of :class:`EditingParams` come from; derived from the metadata.
DEFAULTS_SOURCES: dict[str, str] = {
    **sources(EditingParams),
    "ack_bytes": "an acknowledgement is a ~12-byte JSON message",
}


def unique_char(k: int) -> str:
    """The ``k``-th unique character: CJK unified ideographs, then CJK extension B."""
    if k < 20_992:
        return chr(0x4E00 + k)
    if k < _MAX_INSERTS:
        return chr(0x20000 + k - 20_992)
    raise ValueError(f"no unique character number {k}")


@dataclass
class _Op:
    """Book-keeping for one edit (one keystroke)."""

    editor: int
    t: float
    applied: dict[int, float] = field(default_factory=dict)  # replica -> time (-1 = server)
    acked: float = math.nan
    corrected: bool = False
    rejected: bool = False


class _Model:
    def __init__(self, p: EditingParams, seed: np.random.SeedSequence) -> None:
        self.p = p
        typing, network = children(seed, 2)
        self.rng_type = np.random.default_rng(typing)
        self.rng = np.random.default_rng(network)
        self.env = simpy.Environment()
        self.link = p.link
        self.ops: list[_Op] = []
        self.wire = 0
        self.inserted: set[str] = set()
        self.deleted: set[str] = set()
        self.next_char = 0
        # FIFO per direction per client: (to server, from server)
        self.up_last = [0.0] * p.editors
        self.down_last = [0.0] * p.editors
        s = p.strategy
        self.ot_clients = [Client(p.initial_text) for _ in range(p.editors)] if s == "ot" else []
        self.ot_server = Server(p.initial_text)
        self.ot_pending: list[list[int]] = [[] for _ in range(p.editors)]  # in flight
        self.ot_buffer: list[list[int]] = [[] for _ in range(p.editors)]
        self.crdt: list[CrdtReplica] = []
        self.crdt_server: CrdtReplica | None = None
        self.crdt_unacked: list[list[int]] = [[] for _ in range(p.editors)]
        if s == "crdt":
            self.crdt_server = CrdtReplica(0)
            if p.initial_text:
                base = self.crdt_server.insert(0, p.initial_text)
            self.crdt = [CrdtReplica(i + 1) for i in range(p.editors)]
            if p.initial_text:
                for r in self.crdt:
                    r.apply_update(base)
        self.lww = [LwwMap(f"e{i:03d}") for i in range(p.editors)] if s == "lww" else []
        self.lww_server = LwwMap("server")
        self.lww_unacked: list[list[int]] = [[] for _ in range(p.editors)]
        self.lww_last_write: list[int] = [-1] * p.editors
        self.notices = 0
        self.lww_op_of: dict[HybridTimestamp, int] = {}
        if s == "lww" and p.initial_text:
            w = self.lww_server.set("doc", "text", p.initial_text, 0.0)
            for m in self.lww:
                m.apply(w, 0.0)

    # --- plumbing ----------------------------------------------------------------------------
    def at(self, t: float, fn: Any, *args: Any) -> None:
        ev = self.env.timeout(max(0.0, t - self.env.now))
        ev.callbacks.append(lambda _e: fn(*args))

    def transit(self, nbytes: int) -> float:
        self.wire += nbytes
        return float(self.link.transit(self.rng, nbytes, 1)[0])

    def up(self, i: int, nbytes: int, fn: Any, *args: Any) -> None:
        # Strictly after the previous message on this connection (1 ns), so float rounding
        # in SimPy's relative delays can never swap two messages (TCP is FIFO).
        t = max(self.env.now + self.transit(nbytes), self.up_last[i] + 1e-9)
        self.up_last[i] = t
        self.at(t, fn, *args)

    def down(self, i: int, nbytes: int, fn: Any, *args: Any) -> None:
        t = max(self.env.now + self.transit(nbytes), self.down_last[i] + 1e-9)
        self.down_last[i] = t
        self.at(t, fn, *args)

    # --- typing ------------------------------------------------------------------------------
    def view(self, i: int) -> str:
        s = self.p.strategy
        if s == "ot":
            return self.ot_clients[i].document
        if s == "crdt":
            return self.crdt[i].text
        return str(self.lww[i].get("doc", "text", ""))

    def editor(self, i: int) -> Any:
        p = self.p
        while True:
            yield self.env.timeout(float(self.rng_type.exponential(1.0 / p.ops_per_s)))
            if self.env.now >= p.duration_s:
                return
            doc = self.view(i)
            n = len(doc)
            if n > 0 and self.rng_type.random() < p.delete_fraction:
                pos = int(self.rng_type.integers(n))
                ch = doc[pos]
                self.deleted.add(ch)
                self.local_edit(i, pos, 1, "")
            else:
                pos = int(self.rng_type.integers(n + 1))
                ch = unique_char(self.next_char)
                self.next_char += 1
                self.inserted.add(ch)
                self.local_edit(i, pos, 0, ch)

    def local_edit(self, i: int, pos: int, dele: int, ins: str) -> None:
        k = len(self.ops)
        op = _Op(i, self.env.now)
        op.applied[i] = self.env.now
        self.ops.append(op)
        s = self.p.strategy
        if s == "ot":
            self.ot_local(i, k, pos, dele, ins)
        elif s == "crdt":
            self.crdt_local(i, k, pos, dele, ins)
        else:
            self.lww_local(i, k, pos, dele, ins)

    def mark_corrected(self, ids: list[int]) -> None:
        for k in ids:
            self.ops[k].corrected = True

    def mark_applied(self, ids: list[int], replica: int) -> None:
        now = self.env.now
        for k in ids:
            self.ops[k].applied.setdefault(replica, now)

    def mark_acked(self, ids: list[int]) -> None:
        for k in ids:
            self.ops[k].acked = self.env.now

    # --- OT ----------------------------------------------------------------------------------
    def ot_local(self, i: int, k: int, pos: int, dele: int, ins: str) -> None:
        c = self.ot_clients[i]
        n = len(c.document)
        op = TextOperation().retain(pos).delete(dele).insert(ins).retain(n - pos - dele)
        send = c.apply_local(op)
        if send is None:
            self.ot_buffer[i].append(k)
        else:
            self.ot_pending[i] = [k]
            self.ot_send(i, send)

    def ot_send(self, i: int, send: Send) -> None:
        ids = list(self.ot_pending[i])
        msg = json.dumps({"v": send.revision, "op": send.op.to_json()}, ensure_ascii=False)
        self.up(i, len(msg.encode()), self.ot_at_server, i, send, ids)

    def ot_at_server(self, i: int, send: Send, ids: list[int]) -> None:
        op = self.ot_server.receive(send.revision, send.op)
        self.mark_applied(ids, -1)
        msg = len(json.dumps({"op": op.to_json()}, ensure_ascii=False).encode())
        for j in range(self.p.editors):
            if j == i:
                self.down(j, 12, self.ot_ack, j)
            else:
                self.down(j, msg, self.ot_remote, j, op, ids)

    def ot_remote(self, j: int, op: TextOperation, ids: list[int]) -> None:
        c = self.ot_clients[j]
        if c.state is not ClientState.SYNCHRONIZED:
            self.mark_corrected(self.ot_pending[j] + self.ot_buffer[j])
        c.apply_server(op)
        self.mark_applied(ids, j)

    def ot_ack(self, j: int) -> None:
        c = self.ot_clients[j]
        self.mark_acked(self.ot_pending[j])
        send = c.server_ack()
        if send is not None:
            self.ot_pending[j], self.ot_buffer[j] = self.ot_buffer[j], []
            self.ot_send(j, send)
        else:
            self.ot_pending[j] = []

    # --- CRDT --------------------------------------------------------------------------------
    def crdt_local(self, i: int, k: int, pos: int, dele: int, ins: str) -> None:
        r = self.crdt[i]
        update = r.delete(pos, dele) if dele else r.insert(pos, ins)
        self.crdt_unacked[i].append(k)
        self.up(i, len(update) + 8, self.crdt_at_server, i, update, k)

    def crdt_at_server(self, i: int, update: bytes, k: int) -> None:
        assert self.crdt_server is not None
        self.crdt_server.apply_update(update)
        self.mark_applied([k], -1)
        for j in range(self.p.editors):
            if j == i:
                self.down(j, 12, self.crdt_ack, j, k)
            else:
                self.down(j, len(update) + 8, self.crdt_remote, j, update, k)

    def crdt_remote(self, j: int, update: bytes, k: int) -> None:
        self.mark_corrected(self.crdt_unacked[j])
        self.crdt[j].apply_update(update)
        self.mark_applied([k], j)

    def crdt_ack(self, j: int, k: int) -> None:
        self.mark_acked([k])
        self.crdt_unacked[j].remove(k)

    # --- LWW ---------------------------------------------------------------------------------
    def lww_local(self, i: int, k: int, pos: int, dele: int, ins: str) -> None:
        m = self.lww[i]
        doc = str(m.get("doc", "text", ""))
        w = m.set("doc", "text", doc[:pos] + ins + doc[pos + dele :], self.env.now)
        self.lww_op_of[w.ts] = k
        self.lww_unacked[i].append(k)
        self.up(i, _write_bytes(w), self.lww_at_server, i, w, k)

    def lww_at_server(self, i: int, w: Write, k: int) -> None:
        self.lww_server.apply(w, self.env.now)
        self.mark_applied([k], -1)
        for j in range(self.p.editors):
            if j == i:
                self.down(j, 12, self.lww_ack, j, k)
            else:
                self.down(j, _write_bytes(w), self.lww_remote, j, w, k)

    def lww_remote(self, j: int, w: Write, k: int) -> None:
        m = self.lww[j]
        before = m.state.get(w.key)
        notice: Overwritten | None = m.apply(w, self.env.now)
        if notice is not None:
            self.notices += 1
            lost = self.lww_op_of.get(notice.lost_ts)
            if lost is not None:
                self.ops[lost].rejected = True
        if before is not None and m.state.get(w.key) is not before:
            self.mark_corrected(self.lww_unacked[j])
        self.mark_applied([k], j)

    def lww_ack(self, j: int, k: int) -> None:
        self.mark_acked([k])
        self.lww_unacked[j].remove(k)

    # --- run ---------------------------------------------------------------------------------
    def final_texts(self) -> list[str]:
        s = self.p.strategy
        if s == "ot":
            return [self.ot_server.document] + [c.document for c in self.ot_clients]
        if s == "crdt":
            assert self.crdt_server is not None
            return [self.crdt_server.text] + [r.text for r in self.crdt]
        return [str(m.get("doc", "text", "")) for m in [self.lww_server, *self.lww]]

    def run(self) -> RunResult:
        p = self.p
        for i in range(p.editors):
            self.env.process(self.editor(i))
        self.env.run()
        texts = self.final_texts()
        converged = len(set(texts)) == 1
        final = set(texts[0])
        expected = self.inserted - self.deleted
        lost = len(expected - final) + len(final & self.deleted)

        rows = []
        conv = []
        perceived = []
        for k, op in enumerate(self.ops):
            everyone = op.applied.keys() >= set(range(p.editors)) | {-1}
            conv.append(max(op.applied.values()) - op.t if everyone else math.nan)
            perceived.append(op.acked - op.t)
            for replica, t in op.applied.items():
                rows.append((k, op.editor, replica, op.t, t))
        frame = pd.DataFrame(
            rows, columns=["op", "editor", "replica", "generated_at", "applied_at"]
        )
        frame["latency_ms"] = (frame["applied_at"] - frame["generated_at"]) * 1000.0
        conv_ms = np.array(conv) * 1000.0
        finite = conv_ms[np.isfinite(conv_ms)]
        perc_ms = np.array(perceived) * 1000.0
        perc_ms = perc_ms[np.isfinite(perc_ms)]
        n_ops = len(self.ops)
        conv_pct = percentiles_ms(finite, (50, 99))
        pess_pct = percentiles_ms(perc_ms, (50, 99))
        extra = {
            "strategy": p.strategy,
            "editors": p.editors,
            "ops": n_ops,
            "converged": converged,
            "lost_updates": lost,
            "lost_fraction": lost / len(self.inserted) if self.inserted else 0.0,
            "bytes_per_op": self.wire / n_ops if n_ops else math.nan,
            "convergence_ms_p50": conv_pct[50],
            "convergence_ms_p99": conv_pct[99],
            "perceived_ms_p50_optimistic": 0.0,
            "perceived_ms_p50_pessimistic": pess_pct[50],
            "perceived_ms_p99_pessimistic": pess_pct[99],
            "corrected_fraction": (
                sum(o.corrected for o in self.ops) / n_ops if n_ops else math.nan
            ),
            "rejected_fraction": sum(o.rejected for o in self.ops) / n_ops if n_ops else math.nan,
            "overwritten_notices": self.notices,
            "final_chars": len(texts[0]),
        }
        summary = Summary.from_latencies(
            finite,
            duration_s=p.duration_s,
            wire_bytes=self.wire,
            requests=0,
            connections=p.editors,
            server_memory_bytes=0.0,
            lost=lost,
            extra=extra,
        )
        params = asdict(p)
        params.pop("initial_text")
        return RunResult(params, frame, summary)


def _write_bytes(w: Write) -> int:
    body = {"r": w.record, "f": w.field, "v": w.value, "ts": [w.ts.l, w.ts.c, w.ts.node]}
    return len(json.dumps(body, ensure_ascii=False).encode())


def simulate_editing(params: EditingParams, seed: int | np.random.SeedSequence = 0) -> RunResult:
    """Run one editing simulation (see the module docstring)."""
    return _Model(params, as_seed_sequence(seed)).run()


# --- C15: LWW records ---------------------------------------------------------------------
@dataclass(frozen=True)
class RecordParams:
    """Users editing fields of shared records (a task board, a CRM form)."""

    users: int = param(5, lo=2, unit="users", help="users editing the records")
    fields: int = param(10, lo=1, help="fields per record")
    records: int = param(1, lo=1, help="shared records")
    edits_per_s: float = param(
        0.2, lo=0, lo_open=True, unit="edits/s", help="edits per second per user"
    )
    rtt_ms: float = param(100.0, lo=0, unit="ms", help="round trip (one way = half)")
    jitter_ms: float = param(10.0, lo=0, unit="ms", help="mean exponential one-way jitter")
    duration_s: float = param(600.0, lo=0, lo_open=True, unit="s", help="simulated time")
    field_skew: float = param(0.0, lo=0, help="Zipf exponent of field popularity; 0 = uniform")
    think_s: float = param(
        2.0, lo=0, unit="s", help="a user edits from a view loaded this long before the write"
    )

    def __post_init__(self) -> None:
        validate(self)


def simulate_records(params: RecordParams, seed: int | np.random.SeedSequence = 0) -> RunResult:
    """LWW on records: fraction of concurrent edits that hit the same field (claim C15).

    Two edits of one record by different users are *concurrent* when neither user had seen
    the other's edit when making their own (a user's view is ``think_s`` old when they
    write, plus the network). Concurrent edits of different fields merge cleanly under
    field-level LWW; on the same field one is lost, and its writer is notified. With
    uniformly popular fields the same-field fraction is ``1/fields``.
    """
    p = params
    rng_edits, rng_net = (np.random.default_rng(s) for s in children(seed, 2))
    link = Link(rtt_s=p.rtt_ms / 1000, jitter_s=p.jitter_ms / 1000)
    n = int(rng_edits.poisson(p.users * p.edits_per_s * p.duration_s))
    t = np.sort(rng_edits.uniform(0, p.duration_s, n))
    user = rng_edits.integers(p.users, size=n)
    record = rng_edits.integers(p.records, size=n)
    weights = 1.0 / np.arange(1, p.fields + 1) ** p.field_skew
    fld = rng_edits.choice(p.fields, size=n, p=weights / weights.sum())
    at_server = t + link.transit(rng_net, 60, n)
    # arrival of edit e at user u: server time + downlink transit
    arrive = at_server[:, None] + link.transit(rng_net, 60, n * p.users).reshape(n, p.users)
    arrive[np.arange(n), user] = t  # own edits are seen at once

    # LWW replicas driven in server order (the server relays in arrival order).
    server = LwwMap("server")
    replicas = [LwwMap(f"u{u:03d}") for u in range(p.users)]
    # Events in time order: a user writes (from its current view), the server and the other
    # users receive it later. Kind 0 = write, 1 = arrival, so a write precedes arrivals at
    # the same instant.
    events: list[tuple[float, int, int, int]] = [(float(t[e]), 0, e, -1) for e in range(n)]
    events += [(float(at_server[e]), 1, e, -1) for e in range(n)]
    events += [
        (float(arrive[e, u]), 1, e, u) for e in range(n) for u in range(p.users) if u != user[e]
    ]
    events.sort()
    writes: dict[int, Write] = {}
    notices = 0
    for when, kind, e, u in events:
        if kind == 0:
            r = replicas[int(user[e])]
            writes[e] = r.set(f"r{record[e]}", f"f{fld[e]}", e, when)
        elif u < 0:
            server.apply(writes[e], when)
        elif replicas[u].apply(writes[e], when) is not None:
            notices += 1

    # Concurrent pairs (same record, different users): neither saw the other in time.
    pairs = same = 0
    window = p.rtt_ms / 1000 + 2 * 10 * p.jitter_ms / 1000 + p.think_s + 1.0
    j0 = 0
    for b in range(n):
        while t[j0] < t[b] - window:
            j0 += 1
        for a in range(j0, b):
            if user[a] == user[b] or record[a] != record[b]:
                continue
            a_unseen = arrive[a, user[b]] > t[b] - p.think_s
            b_unseen = arrive[b, user[a]] > t[a] - p.think_s
            if a_unseen and b_unseen:
                pairs += 1
                same += int(fld[a] == fld[b])
    values = {k: e.value for k, e in server.state.items()}
    converged = all(r.values() == values for r in replicas)
    extra = {
        "users": p.users,
        "fields": p.fields,
        "edits": n,
        "concurrent_pairs": pairs,
        "same_field_pairs": same,
        "same_field_fraction": same / pairs if pairs else math.nan,
        "clean_merge_fraction": 1 - same / pairs if pairs else math.nan,
        "uniform_theory": 1.0 / p.fields,
        "overwritten_notices": notices,
        "lost_fraction": notices / n if n else math.nan,
        "converged": converged,
    }
    frame = pd.DataFrame({"t": t, "user": user, "record": record, "field": fld})
    summary = Summary.from_latencies(
        (at_server - t) * 1000.0,
        duration_s=p.duration_s,
        wire_bytes=0.0,
        requests=0,
        connections=p.users,
        server_memory_bytes=0.0,
        lost=notices,
        extra=extra,
    )
    return RunResult(asdict(p), frame, summary)
