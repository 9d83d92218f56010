"""Real editing traces (josephg/editing-traces, CC BY 4.0) and their replay.

Three traces ship inside the package, in ``rtsim/data/editing-traces`` (package data, so a
plain ``pip install`` has them too; source, authors and licence in the ``ATTRIBUTION.md``
beside them). The ``RTSIM_TRACES`` environment variable points the lab at another folder
instead. :func:`traces_dir` finds them, :func:`load_trace` reads one (a path
or a name such as ``"automerge-paper"``) and :func:`replay` runs it through a strategy:

* ``string`` — plain Python string splicing (the baseline; sequential traces only);
* ``crdt`` — pycrdt, one transaction per trace transaction. A concurrent trace runs one
  replica per agent: before an agent's transaction, its replica receives exactly the other
  agents' update bytes its ``parents`` name (the version is a vector of per-agent counts);
* ``ot`` — sequential traces go through the ot.js client and server; a two-agent concurrent
  trace goes through a two-party Jupiter link (each side receives the other's messages in
  order up to the version its transaction was made on). Three or more agents need a
  central server, which can only reproduce a transaction's version if that version is a
  prefix of the server's single order; :func:`server_order_violations` counts the
  transactions for which the trace's own order fails that test.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..core.crdt import CrdtReplica
from ..core.ot import TextOperation
from ..core.ot_protocol import Client, JupiterMessage, JupiterSite, Server

__all__ = [
    "TRACE_NAMES",
    "Trace",
    "load_trace",
    "replay",
    "server_order_violations",
    "traces_dir",
    "version_vectors",
]

TRACE_NAMES = ("automerge-paper", "friendsforever", "clownschool")
Patch = tuple[int, int, str]


def traces_dir() -> Path:
    """The folder the trace names (:data:`TRACE_NAMES`) are looked up in.

    ``$RTSIM_TRACES`` when that variable is set and non-empty (returned as given; it may not
    exist), else the folder packaged with rtsim, ``rtsim/data/editing-traces``, found with
    :mod:`importlib.resources`. Raises :class:`RuntimeError` if rtsim is imported from
    somewhere that is not a plain directory (e.g. a zip file); set ``RTSIM_TRACES`` then.
    """
    env = os.environ.get("RTSIM_TRACES")
    if env:
        return Path(env)
    packaged = resources.files("rtsim").joinpath("data", "editing-traces")
    if not isinstance(packaged, Path):
        raise RuntimeError(
            f"the packaged editing traces are not a folder on disk ({packaged}); set RTSIM_TRACES"
        )
    return packaged


@dataclass(frozen=True)
class Trace:
    name: str
    concurrent: bool
    start: str
    end: str
    txns: list[dict[str, Any]]
    agents: int

    @property
    def edits(self) -> int:
        return sum(len(t["patches"]) for t in self.txns)


def load_trace(path: str | Path) -> Trace:
    """Read a trace file (``.json`` or ``.json.gz``) or a trace by name."""
    p = Path(path)
    if not p.exists() and str(path) in TRACE_NAMES:
        p = traces_dir() / f"{path}.json.gz"
    if not p.exists():
        raise ValueError(
            f"no trace at {path!r} (names: {', '.join(TRACE_NAMES)}; directory {traces_dir()})"
        )
    opener: Any = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rt", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read trace {p}: {exc}") from None
    if not isinstance(data, dict) or "txns" not in data or "endContent" not in data:
        raise ValueError(f"{p} is not an editing trace (needs 'txns' and 'endContent')")
    concurrent = data.get("kind") == "concurrent"
    name = p.name.removesuffix(".gz").removesuffix(".json")
    agents = int(data.get("numAgents", 1))
    return Trace(name, concurrent, data.get("startContent", ""), data["endContent"],
                 data["txns"], agents)  # fmt: skip


def version_vectors(trace: Trace) -> list[tuple[int, ...]]:
    """For each transaction, how many transactions of each agent its *parents* include."""
    n = trace.agents
    vv: list[tuple[int, ...]] = []
    full: list[list[int]] = []  # including the txn itself
    own = [0] * n
    for i, t in enumerate(trace.txns):
        v = [0] * n
        for par in t["parents"]:
            if not 0 <= par < i:
                raise ValueError(f"txn {i}: parent {par} is not an earlier transaction")
            v = [max(x, y) for x, y in zip(v, full[par], strict=True)]
        a = t["agent"]
        if v[a] != own[a]:
            raise ValueError(f"txn {i}: agent {a}'s own history is not a chain")
        vv.append(tuple(v))
        v[a] += 1
        full.append(v)
        own[a] += 1
    return vv


def _patch_op(doc_len: int, patch: Patch) -> TextOperation:
    pos, dele, ins = patch
    if not (pos >= 0 and pos + dele <= doc_len):
        raise ValueError(f"patch {list(patch)} does not fit a document of {doc_len}")
    return TextOperation().retain(pos).delete(dele).insert(ins).retain(doc_len - pos - dele)


def _txn_op(doc_len: int, patches: list[Patch]) -> TextOperation:
    op: TextOperation | None = None
    n = doc_len
    for patch in patches:
        step = _patch_op(n, patch)
        op = step if op is None else op.compose(step)
        n = step.target_length
    return op if op is not None else TextOperation().retain(doc_len)


def replay(trace: Trace, strategy: str, *, limit: int | None = None) -> dict[str, Any]:
    """Replay ``trace`` through ``strategy``; figures for one run (wall-clock seconds)."""
    if strategy not in ("ot", "crdt", "string"):
        raise ValueError(f"strategy must be ot, crdt or string, got {strategy!r}")
    txns = trace.txns if limit is None else trace.txns[:limit]
    t0 = time.perf_counter()
    doc: str | None
    if not trace.concurrent:
        fn = {"string": _seq_string, "ot": _seq_ot, "crdt": _seq_crdt}[strategy]
        doc, exchanged, final_bytes, note = fn(trace.start, txns)
    elif strategy == "string":
        raise ValueError("string splicing cannot merge a concurrent trace; use ot or crdt")
    elif strategy == "crdt":
        doc, exchanged, final_bytes, note = _conc_crdt(trace, len(txns))
    else:
        doc, exchanged, final_bytes, note = _conc_ot(trace, len(txns))
    seconds = time.perf_counter() - t0
    edits = sum(len(t["patches"]) for t in txns)
    return {
        "trace": trace.name,
        "strategy": strategy,
        "txns": len(txns),
        "edits": edits,
        "matches_end_content": doc == trace.end if limit is None else None,
        "seconds": seconds,
        "bytes_exchanged": exchanged,
        "bytes_per_edit": exchanged / edits if edits else float("nan"),
        "final_doc_bytes": final_bytes,
        "final_chars": len(doc) if doc is not None else None,
        "note": note,
    }


# --- sequential ------------------------------------------------------------------------------
def _seq_string(start: str, txns: list[dict[str, Any]]) -> tuple[str, int, int, str]:
    doc = start
    exchanged = 0
    for t in txns:
        for pos, dele, ins in t["patches"]:
            doc = doc[:pos] + ins + doc[pos + dele :]
            exchanged += len(json.dumps([pos, dele, ins], ensure_ascii=False).encode())
    return doc, exchanged, len(doc.encode()), "patches as JSON [pos, del, ins]"


def _seq_ot(start: str, txns: list[dict[str, Any]]) -> tuple[str, int, int, str]:
    client, server = Client(start), Server(start)
    exchanged = 0
    for t in txns:
        op = _txn_op(len(client.document), t["patches"])
        send = client.apply_local(op)
        assert send is not None
        exchanged += len(json.dumps({"v": send.revision, "op": op.to_json()}).encode())
        server.receive(send.revision, send.op)
        client.server_ack()
        exchanged += 12
        server.history.clear()  # one client: nothing is ever concurrent; keep memory flat
        client.revision = 0
    ok = client.document == server.document
    return server.document, exchanged, len(server.document.encode()), f"client == server: {ok}"


def _seq_crdt(start: str, txns: list[dict[str, Any]]) -> tuple[str, int, int, str]:
    r = CrdtReplica(1)
    exchanged = 0
    if start:
        exchanged += len(r.insert(0, start))
    for t in txns:
        patches = t["patches"]
        if len(patches) == 1:
            pos, dele, ins = patches[0]
            if dele and not ins:
                u = r.delete(pos, dele)
            elif ins and not dele:
                u = r.insert(pos, ins)
            else:
                u = r.splice(pos, dele, ins)
        else:
            with r.doc.transaction():
                for pos, dele, ins in patches:
                    r.splice(pos, dele, ins)
            u = r._take()
        exchanged += len(u)
    state = r.encode_state()
    check = CrdtReplica(2)
    check.apply_update(state)
    note = f"fresh replica from the encoded state matches: {check.text == r.text}"
    return r.text, exchanged, len(state), note


# --- concurrent ------------------------------------------------------------------------------
def _conc_crdt(trace: Trace, n_txns: int) -> tuple[str, int, int, str]:
    vv = version_vectors(trace)[:n_txns]
    n = trace.agents
    reps = [CrdtReplica(a + 1) for a in range(n)]
    have = [[0] * n for _ in range(n)]  # have[r][a]: agent a's updates applied at replica r
    updates: list[list[tuple[int, bytes]]] = [[] for _ in range(n)]  # (txn, update bytes)
    exchanged = 0

    def catch_up(a: int, target: list[int]) -> int:
        """Give replica ``a`` the others' updates up to ``target``, in causal (trace) order."""
        missing: list[tuple[int, bytes]] = []
        for b in range(n):
            if b == a:
                continue
            if have[a][b] > target[b]:
                raise ValueError(f"replica {a} is ahead of the version it must edit on")
            missing.extend(updates[b][have[a][b] : target[b]])
            have[a][b] = target[b]
        missing.sort()
        for _, u in missing:
            reps[a].apply_update(u)
        return sum(len(u) for _, u in missing)

    for i in range(n_txns):
        t = trace.txns[i]
        a = t["agent"]
        r = reps[a]
        exchanged += catch_up(a, list(vv[i]))
        with r.doc.transaction():
            for pos, dele, ins in t["patches"]:
                r.splice(pos, dele, ins)
        updates[a].append((i, r._take()))
        have[a][a] += 1
    for ai in range(n):  # finally everyone gets everything
        exchanged += catch_up(ai, [len(u) for u in updates])
    texts = {r.text for r in reps}
    note = f"{n} replicas agree: {len(texts) == 1}"
    return reps[0].text, exchanged, len(reps[0].encode_state()), note


def _conc_ot(trace: Trace, n_txns: int) -> tuple[str | None, int, int, str]:
    if trace.agents != 2:
        return _conc_ot_star(trace, n_txns)
    vv = version_vectors(trace)[:n_txns]
    sites = [JupiterSite(0, trace.start), JupiterSite(1, trace.start)]
    inbox: list[list[JupiterMessage]] = [[], []]  # inbox[s]: messages for site s, in order
    head = [0, 0]
    exchanged = 0
    for i in range(n_txns):
        t = trace.txns[i]
        a = t["agent"]
        b = 1 - a
        site = sites[a]
        need = vv[i][b]
        while site.received < need:
            site.receive(inbox[a][head[a]])
            head[a] += 1
        if site.received != need:
            raise ValueError(f"txn {i}: site {a} has seen more than the txn's parents")
        op = _txn_op(len(site.document), t["patches"])
        msg = site.generate(op)
        exchanged += len(json.dumps([msg.sent, msg.received, op.to_json()]).encode())
        inbox[b].append(msg)
    for s in (0, 1):
        while head[s] < len(inbox[s]):
            sites[s].receive(inbox[s][head[s]])
            head[s] += 1
    same = sites[0].document == sites[1].document
    doc = sites[0].document
    return doc, exchanged, len(doc.encode()), f"two Jupiter sites agree: {same}"


def _conc_ot_star(trace: Trace, n_txns: int) -> tuple[str | None, int, int, str]:
    """Jupiter with a central server: one two-party link per client, in the trace's order.

    The server integrates each txn as it is made (trace order = server order) and relays
    it on every other link. Before agent ``a`` makes a txn, its client reads server
    messages until it has seen exactly the other agents' txns its parents name, which is
    possible only if they are a prefix of the server order.
    """
    bad = server_order_violations(trace)
    if bad:
        return (
            None,
            0,
            0,
            f"{trace.agents} agents: not replayed. A central OT server has one order; in the"
            f" trace's order {bad} of {len(trace.txns)} txns were made on a version that is"
            " not a prefix of it, so the server cannot hand their authors that state"
            " (a peer-to-peer OT would need TP2; see ot_puzzles)",
        )
    vv = version_vectors(trace)[:n_txns]
    n = trace.agents
    clients = [JupiterSite(1, trace.start) for _ in range(n)]
    links = [JupiterSite(0, trace.start) for _ in range(n)]  # the server's end of each link
    down: list[list[JupiterMessage]] = [[] for _ in range(n)]
    head = [0] * n
    exchanged = 0
    for i in range(n_txns):
        t = trace.txns[i]
        a = t["agent"]
        c = clients[a]
        need = sum(vv[i]) - vv[i][a]  # other agents' txns seen
        while c.received < need:
            c.receive(down[a][head[a]])
            head[a] += 1
        if c.received != need:
            raise ValueError(f"txn {i}: client {a} has seen more than the txn's parents")
        op = _txn_op(len(c.document), t["patches"])
        msg = c.generate(op)
        exchanged += len(json.dumps([msg.sent, msg.received, op.to_json()]).encode())
        at_server = links[a].receive(msg)
        for d in range(n):
            if d != a:
                out = links[d].generate(at_server)
                exchanged += len(json.dumps([out.sent, out.received, out.op.to_json()]).encode())
                down[d].append(out)
    for d in range(n):
        while head[d] < len(down[d]):
            clients[d].receive(down[d][head[d]])
            head[d] += 1
    docs = {c.document for c in clients} | {links[0].document}
    doc = links[0].document
    note = (
        f"central Jupiter server, {n} links; the trace's order is a valid server order"
        f" (0 violations); all {n} clients and the server agree: {len(docs) == 1}"
    )
    return doc, exchanged, len(doc.encode()), note


def server_order_violations(trace: Trace) -> int:
    """Txns whose version is not a prefix of the trace's order (for their author).

    A central server (ot.js, Wave) gives a client the server's ops in one order, so a
    client can only have seen a *prefix* of the other agents' ops in that order. Using the
    trace's own (topological) order as the server's, count the transactions whose parents
    include some other agent's txn but not an earlier one from a third agent.
    """
    vv = version_vectors(trace)
    n = trace.agents
    # position (in trace order) of the k-th txn of each agent
    pos: list[list[int]] = [[] for _ in range(n)]
    for i, t in enumerate(trace.txns):
        pos[t["agent"]].append(i)
    bad = 0
    for i, t in enumerate(trace.txns):
        a = t["agent"]
        seen_upto = -1  # latest other-agent txn seen
        first_unseen = len(trace.txns)  # earliest other-agent txn not seen
        for b in range(n):
            if b == a:
                continue
            k = vv[i][b]
            if k:
                seen_upto = max(seen_upto, pos[b][k - 1])
            if k < len(pos[b]):
                first_unseen = min(first_unseen, pos[b][k])
        if first_unseen < seen_upto:
            bad += 1
    return bad
