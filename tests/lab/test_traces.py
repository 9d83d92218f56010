from __future__ import annotations

import dataclasses
import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest

import rtsim
from rtsim.cli import main
from rtsim.lab.traces import (
    TRACE_NAMES,
    Trace,
    load_trace,
    replay,
    server_order_violations,
    traces_dir,
)


def test_default_dir_is_the_packaged_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RTSIM_TRACES", raising=False)
    packaged = Path(rtsim.__file__).resolve().parent / "data" / "editing-traces"
    assert traces_dir().resolve() == packaged
    for name in TRACE_NAMES:
        assert (traces_dir() / f"{name}.json.gz").is_file(), name
    assert "CC BY 4.0" in (traces_dir() / "ATTRIBUTION.md").read_text(encoding="utf-8")
    monkeypatch.setenv("RTSIM_TRACES", "/somewhere")
    assert traces_dir() == Path("/somewhere")
    # An empty variable means "unset", not the current directory.
    monkeypatch.setenv("RTSIM_TRACES", "")
    assert traces_dir().resolve() == packaged


def test_rtsim_traces_overrides_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"startContent": "", "endContent": "x", "txns": [{"patches": [[0, 0, "x"]]}]}
    _write(tmp_path, data).rename(tmp_path / "friendsforever.json.gz")
    monkeypatch.setenv("RTSIM_TRACES", str(tmp_path))
    tr = load_trace("friendsforever")
    assert (tr.concurrent, tr.end, tr.edits) == (False, "x", 1)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path))):
        load_trace("clownschool")


def _write(tmp: Path, data: object) -> Path:
    p = tmp / "t.json.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        json.dump(data, f)
    return p


def test_tiny_sequential_trace_all_strategies(tmp_path: Path) -> None:
    data = {
        "startContent": "hé",
        "endContent": "h😀 yo",
        "txns": [{"patches": [[1, 1, "😀"]]}, {"patches": [[2, 0, " yo"]]}],
    }
    tr = load_trace(_write(tmp_path, data))
    for s in ("string", "ot", "crdt"):
        r = replay(tr, s)
        assert r["matches_end_content"], s


def test_tiny_concurrent_trace(tmp_path: Path) -> None:
    # Two agents type concurrently from "", then agent 0 merges and types again.
    data = {
        "kind": "concurrent",
        "endContent": "ab!c",
        "numAgents": 2,
        "txns": [
            {"parents": [], "agent": 0, "patches": [[0, 0, "a"]]},
            {"parents": [0], "agent": 1, "patches": [[1, 0, "c"]]},
            {"parents": [0], "agent": 0, "patches": [[1, 0, "b"]]},
            {"parents": [1, 2], "agent": 0, "patches": [[2, 0, "!"]]},
        ],
    }
    tr = load_trace(_write(tmp_path, data))
    assert replay(tr, "crdt")["matches_end_content"]
    assert replay(tr, "ot")["matches_end_content"]
    with pytest.raises(ValueError, match="concurrent"):
        replay(tr, "string")


def test_bad_trace_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no trace"):
        load_trace(tmp_path / "missing.json.gz")
    with pytest.raises(ValueError, match="not an editing trace"):
        load_trace(_write(tmp_path, {"x": 1}))


@pytest.mark.parametrize(
    "name, strategy",
    [
        ("friendsforever", "crdt"),
        ("clownschool", "crdt"),
        ("friendsforever", "ot"),
        ("clownschool", "ot"),
    ],
)
def test_concurrent_traces_reach_end_content(name: str, strategy: str) -> None:
    r = replay(load_trace(name), strategy)
    assert r["matches_end_content"], r["note"]


def test_clownschool_trace_order_is_a_valid_server_order() -> None:
    assert server_order_violations(load_trace("clownschool")) == 0


@pytest.fixture(scope="module")
def automerge_paper() -> Trace:
    return load_trace("automerge-paper")


def _splice(doc: str, txns: list[dict[str, Any]]) -> str:
    """``doc`` after ``txns``, by plain string splicing (the test's own reference)."""
    for t in txns:
        for pos, dele, ins in t["patches"]:
            doc = doc[:pos] + ins + doc[pos + dele :]
    return doc


def test_automerge_paper_replays_by_splicing(automerge_paper: Trace) -> None:
    """The whole trace (259,778 edits) reaches its end content by string splicing."""
    r = replay(automerge_paper, "string")
    assert r["matches_end_content"] and r["edits"] == 259_778


@pytest.fixture(scope="module")
def automerge_windows(automerge_paper: Trace) -> list[Trace]:
    """Two pieces of the trace, each with the document it starts from and the one it ends on
    (by splicing): the first 30,000 transactions (the document grows from empty) and the
    last 4,000 (on the ~100,000 characters they start from). OT costs O(document) per edit:
    the whole trace through OT takes minutes, so it is bench_traces.py's job, not a test's."""
    tr = automerge_paper
    cut = len(tr.txns) - 4_000
    head = _splice(tr.start, tr.txns[:30_000])
    before_tail = _splice(head, tr.txns[30_000:cut])
    return [
        dataclasses.replace(tr, end=head, txns=tr.txns[:30_000]),
        dataclasses.replace(tr, start=before_tail, txns=tr.txns[cut:]),  # ends on tr.end
    ]


@pytest.mark.parametrize("strategy", ["ot", "crdt"])
def test_automerge_paper_windows_replay_like_splicing(
    automerge_windows: list[Trace], strategy: str
) -> None:
    """OT and the CRDT reproduce splicing on the trace's start and on its end, and their own
    cross-check holds (OT client == server; a fresh CRDT replica from the encoded state)."""
    for window in automerge_windows:
        r = replay(window, strategy)
        assert r["matches_end_content"], (strategy, window.start[:40], r["note"])
        assert r["edits"] >= len(window.txns) and r["note"].endswith("True"), r["note"]


def test_cli_replay_trace(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay-trace", "friendsforever", "--strategy", "crdt", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["matches_end_content"] is True
    for k in ("seconds", "bytes_exchanged", "final_doc_bytes"):
        assert k in out
