"""The claims registry: every claim once, verdicts in three forms only, shared runs made
once, and ``rtsim claims --json --seed 0`` pinned to the baseline taken before the registry."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import rtsim.lab.claims as claims_pkg
from rtsim.cli import main
from rtsim.lab.claims import (
    CLAIMS,
    COLUMNS,
    FORMS,
    Claim,
    Context,
    Evidence,
    Form,
    Verdict,
    architecture,
    claim,
    claims_table,
    evaluate,
    ledger,
    ledger_json,
    sse,
    transports,
    verdict_form,
    verdict_table,
)

IDS = [f"C{i}" for i in range(1, 22)]
PACKAGE = Path(claims_pkg.__file__).parent
BASELINE = json.loads((Path(__file__).parent / "claims_seed0.json").read_text())


def test_registry_is_c1_to_c21_once() -> None:
    assert [c.id for c in CLAIMS] == IDS
    assert [b["id"] for b in BASELINE["claims"]] == IDS


def test_registry_statements_match_the_baseline() -> None:
    assert [c.statement for c in CLAIMS] == [b["claim"] for b in BASELINE["claims"]]


def test_every_claim_names_a_notebook_and_a_topic_module() -> None:
    notebooks = Path(__file__).parents[2] / "notebooks"
    for c in CLAIMS:
        assert list(notebooks.glob(f"{c.notebook}-*.ipynb")), c
        assert (PACKAGE / f"{c.topic}.py").exists(), c
        assert c.evaluate.__module__ == f"rtsim.lab.claims.{c.topic}", c


def test_claims_table_is_the_registry() -> None:
    t = claims_table()
    assert list(t["id"]) == IDS
    assert list(t["claim"]) == [c.statement for c in CLAIMS]


def test_unknown_claim() -> None:
    with pytest.raises(KeyError, match="unknown claim"):
        claim("C99")


@pytest.mark.parametrize(
    ("verdict", "text"),
    [
        (Verdict.holds(), "holds"),
        (Verdict.holds("3 KB"), "holds: 3 KB"),
        (Verdict.only_when("pipelined", "600k/s"), "holds only when pipelined: 600k/s"),
        (Verdict.only_when("pipelined"), "holds only when pipelined"),
        (Verdict.does_not_hold("18 KB"), "does not hold here: 18 KB"),
    ],
)
def test_verdict_renders_in_its_form(verdict: Verdict, text: str) -> None:
    assert str(verdict) == text
    assert verdict_form(str(verdict)) == verdict.form.value


@pytest.mark.parametrize(
    "make",
    [
        lambda: Verdict(Form.HOLDS_ONLY_WHEN, "x"),  # no condition
        lambda: Verdict(Form.HOLDS, "x", condition="y"),  # a condition on another form
        lambda: Verdict(Form.DOES_NOT_HOLD, condition="y"),
        lambda: Verdict.only_when("  "),
        lambda: Verdict("holds"),  # type: ignore[arg-type]
    ],
)
def test_no_other_verdict_can_be_made(make: Any) -> None:
    with pytest.raises(ValueError):
        make()


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


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_bad_seed(seed: Any) -> None:
    with pytest.raises(ValueError, match="seed must be"):
        ledger(seed=seed)


def test_a_failing_experiment_is_a_row_not_an_exception() -> None:
    def broken(ctx: Context) -> Evidence:
        raise OSError("disk on fire\nsecond line")

    ev = evaluate(Claim("C0", "x", "y", "00", "memory", broken), Context(live=False))
    assert ev.verdict.form is Form.DOES_NOT_HOLD
    assert ev.source == "error"
    assert "OSError: disk on fire" in ev.conditions
    assert "second line" not in ev.conditions


def _grid(extra_p50: list[float], ws_p50: list[float]) -> pd.DataFrame:
    rtts = [20.0, 100.0, 300.0]
    rows = []
    for i, rtt in enumerate(rtts):
        for rate in (0.5, 20.0):
            rows.append(
                {
                    "rtt_ms": rtt,
                    "rate": rate,
                    "ws_p50_ms": ws_p50[i],
                    "ws_p99_ms": 2 * ws_p50[i],
                    "lp_p50_ms": ws_p50[i] + extra_p50[i],
                    "lp_p99_ms": 0.0,
                    "extra_p50_ms": extra_p50[i],
                    "bytes_ratio": 1.5,
                }
            )
    return pd.DataFrame(rows)


def _arch() -> dict[str, Any]:
    return {"p50": 30.0, "p99": 60.0, "lost": 0, "duration": 60.0, "deliveries_per_s": 1e3,
            "published_per_s": 10.0, "peak": 25_000, "source": "quick run"}  # fmt: skip


def test_shared_runs_are_made_once_per_context(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_c3_runs(seed: int = 0) -> pd.DataFrame:
        calls.append(seed)
        return _grid([0.0, 60.0, 160.0], [10.0, 60.0, 160.0])

    monkeypatch.setattr("rtsim.lab.transports.c3_runs", fake_c3_runs)
    ctx = Context(seed=3, live=False)
    ctx.__dict__["architecture"] = _arch()
    c3 = transports.c3(ctx)
    c19 = architecture.c19(ctx)
    assert calls == [3]
    assert c3.verdict.form is Form.HOLDS_ONLY_WHEN
    assert "0–160 ms here" in str(c3.verdict)
    # met at RTT 20 ms (p50 10, p99 20), missed from 100 ms on (p50 60)
    assert str(c19.verdict).startswith("holds only when the round trip is short: met up to RTT 20")
    assert "live measurements are off" in c19.measured


@pytest.mark.parametrize(
    ("extra", "form"),
    [
        ([120.0, 150.0, 200.0], Form.HOLDS),
        ([0.0, 50.0, 150.0], Form.HOLDS_ONLY_WHEN),
        ([0.0, 10.0, 60.0], Form.DOES_NOT_HOLD),
    ],
)
def test_c3_form_follows_the_thresholds(extra: list[float], form: Form) -> None:
    ctx = Context(live=False)
    ctx.__dict__["c3_runs"] = _grid(extra, [10.0, 50.0, 150.0])
    assert transports.c3(ctx).verdict.form is form


def test_c6_counts_the_minimal_example_not_the_server() -> None:
    ev = sse.c6(Context(live=False))
    counts = sse.minimal_sse_counts()
    assert set(counts) == {"endpoint", "file"}
    assert f"{counts['endpoint']} code lines" in ev.measured
    assert "rtsim/live/minimal_sse.py" in ev.measured
    for path in PACKAGE.glob("*.py"):
        text = path.read_text()
        assert "LiveServer" not in text and "_sse_writer" not in text, path


def test_no_module_over_600_lines() -> None:
    for path in (PACKAGE.parent).rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 600, path


@pytest.fixture(scope="module")
def seed0_json() -> dict[str, list[dict[str, str]]]:
    """``rtsim claims --json --seed 0`` (quick mode, live runs included), run once."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["claims", "--json", "--seed", "0"]) == 0
    result: dict[str, list[dict[str, str]]] = json.loads(buf.getvalue(), parse_constant=_refuse)
    return result


@pytest.mark.slow
@pytest.mark.xdist_group("claims-seed0")  # one worker: one ledger run
def test_claims_json_seed0_matches_the_baseline(
    seed0_json: dict[str, list[dict[str, str]]],
) -> None:
    rows = seed0_json["claims"]
    assert [r["id"] for r in rows] == IDS
    for r, b in zip(rows, BASELINE["claims"], strict=True):
        assert r["claim"] == b["claim"]
        if "verdict" in b:
            assert r["verdict"] == b["verdict"], r["id"]
        else:
            assert verdict_form(r["verdict"]) in b["forms"], (r["id"], r["verdict"])


@pytest.mark.slow
@pytest.mark.xdist_group("claims-seed0")  # one worker: one ledger run
def test_claims_json_rows_are_complete(seed0_json: dict[str, list[dict[str, str]]]) -> None:
    for r in seed0_json["claims"]:
        assert set(r) == set(COLUMNS)
        assert verdict_form(r["verdict"]) in FORMS, r
        assert r["source"], r
        assert r["source"] != "error", r  # every experiment ran on this machine
    by_id = {r["id"]: r for r in seed0_json["claims"]}
    assert "live measurement" in by_id["C1"]["source"]
    assert "retry: True" in by_id["C4"]["measured"]
    assert by_id["C6"]["measured"].split()[1:3] == ["code", "lines"]


@pytest.mark.slow
def test_notebook_01_verdicts_are_the_registry_s() -> None:
    """Notebook 01's call: the registry with a seeded, live-off context."""
    ctx = Context(seed=0, live=False)
    v = verdict_table(["C3", "C5", "C20", "C21"], ctx=ctx)
    pinned = {b["id"]: b["verdict"] for b in BASELINE["claims"] if "verdict" in b}
    assert list(v.index) == ["C3", "C5", "C20", "C21"]
    for cid, text in v["verdict"].items():
        assert text == pinned[cid], cid


@pytest.mark.parametrize("argv", [["--seed", "-1"], ["--seed", "x"], ["--bogus"]])
def test_claims_cli_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["claims", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" in err


def _refuse(constant: str) -> object:
    """Strict RFC 8259: NaN and Infinity are not JSON."""
    raise ValueError(f"non-standard JSON constant {constant}")
