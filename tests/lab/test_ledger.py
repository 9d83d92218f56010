"""The claims ledger: every claim once, a verdict form each, JSON that parses."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from rtsim.cli import main
from rtsim.lab.claims import CLAIMS
from rtsim.lab.ledger import COLUMNS, FORMS, ledger, ledger_json, verdict_form

IDS = [f"C{i}" for i in range(1, 22)]


def test_claims_table_is_c1_to_c21() -> None:
    assert [c[0] for c in CLAIMS] == IDS


@pytest.mark.parametrize(
    ("verdict", "form"),
    [
        ("holds", "holds"),
        ("holds: 3 KB", "holds"),
        ("holds only when pipelined: 600k/s", "holds only when"),
        ("does not hold here: 18 KB", "does not hold here"),
        ("holds only with jitter", None),
        ("supported", None),
        ("holdsx", None),
    ],
)
def test_verdict_form(verdict: str, form: str | None) -> None:
    assert verdict_form(verdict) == form


def test_ledger_json_is_one_object() -> None:
    df = pd.DataFrame([dict.fromkeys(COLUMNS, "x") | {"id": "C1", "verdict": "holds"}])
    out = json.loads(ledger_json(df))
    assert list(out) == ["claims"]
    assert out["claims"][0]["id"] == "C1"
    assert set(out["claims"][0]) == set(COLUMNS)


def test_bad_seed() -> None:
    with pytest.raises(ValueError, match="seed must be"):
        ledger(seed=-1)


@pytest.fixture(scope="module")
def quick_json() -> dict[str, list[dict[str, str]]]:
    """``rtsim claims --json`` in its default (quick) mode, run once for the module."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["claims", "--json"]) == 0
    result: dict[str, list[dict[str, str]]] = json.loads(buf.getvalue())
    return result


@pytest.mark.slow
def test_quick_ledger_covers_every_claim_once(quick_json: dict[str, list[dict[str, str]]]) -> None:
    rows = quick_json["claims"]
    assert [r["id"] for r in rows] == IDS
    for r in rows:
        assert set(r) == set(COLUMNS)
        assert verdict_form(r["verdict"]) in FORMS, r
        assert r["source"], r
        assert r["source"] != "error", r  # every experiment ran on this machine


@pytest.mark.slow
def test_quick_ledger_figures_are_computed(quick_json: dict[str, list[dict[str, str]]]) -> None:
    by_id = {r["id"]: r for r in quick_json["claims"]}
    # live rows carry a measured number; simulated rows a simulated one
    assert re.search(r"\d+(\.\d+)? KiB", by_id["C1"]["measured"])
    assert "live measurement" in by_id["C1"]["source"]
    assert "retry: True" in by_id["C4"]["measured"]
    assert re.search(r"^\d+ code lines", by_id["C6"]["measured"])
    assert re.search(r"\d", by_id["C11"]["simulated"])
    assert by_id["C6"]["verdict"].startswith(("holds", "does not hold here"))
