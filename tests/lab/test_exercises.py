"""Exercises: committed unanswered, checked against a run made at check time, never revealed."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from rtsim.lab import exercises
from rtsim.lab.exercises import EXERCISES, check

ROOT = Path(__file__).parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0[1-7]-*.ipynb"))
SOLUTIONS = ROOT / "notebooks" / "solutions"
CHECK = re.compile(r'check\("(\d\d\.\d)", answer\)')


def _cells(path: Path) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = json.loads(path.read_text())["cells"]
    return cells


def _src(cell: dict[str, Any]) -> str:
    s = cell["source"]
    return "".join(s) if isinstance(s, list) else str(s)


def _solution_answers() -> dict[str, str]:
    """Exercise id -> the source of its worked-solution cell (the cell before the check)."""
    out = {}
    for path in sorted(SOLUTIONS.glob("*.ipynb")):
        cells = [c for c in _cells(path) if c["cell_type"] == "code"]
        for prev, cell in itertools.pairwise(cells):
            m = CHECK.search(_src(cell))
            if m:
                out[m.group(1)] = _src(prev)
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_has_two_unanswered_exercises(path: Path) -> None:
    cells = _cells(path)
    ids = []
    for i, cell in enumerate(cells):
        m = CHECK.search(_src(cell)) if cell["cell_type"] == "code" else None
        if not m:
            continue
        ids.append(m.group(1))
        answer_cell = _src(cells[i - 1])
        assert re.fullmatch(r"answer = None  # your value\s*", answer_cell), answer_cell
        assert cells[i - 2]["cell_type"] == "markdown" and m.group(1) in _src(cells[i - 2])
    assert len(ids) >= 2
    assert all(i.startswith(path.name[:2] + ".") for i in ids)
    assert sorted(ids) == sorted(e for e in EXERCISES if e.startswith(path.name[:2]))


def test_every_exercise_has_a_worked_solution() -> None:
    assert set(_solution_answers()) == set(EXERCISES)


@pytest.mark.parametrize("value", [None, ...])
def test_not_answered_yet(value: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert check("02.2", value) is None
    assert "not answered yet" in capsys.readouterr().out


def test_unknown_exercise_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        check("99.9", 1)


def test_wrong_type_is_a_cross_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert check("02.2", "seventeen") is False
    assert check("04.2", 3) is False
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all(line.startswith("✗") for line in out)


def _truth_02_2() -> int:
    from itertools import count

    from rtsim.sim.brokers import broker_capacity

    return next(n for n in count(1) if broker_capacity("redis-pubsub", n) < 100_000)


def _truth_03_1() -> float:
    from rtsim.sim.presence import PresenceParams, simulate_presence

    p = PresenceParams(viewers=40, resources=1, throttle_hz=5, duration_s=60, cursor_pairs=0)
    return float(simulate_presence(p, seed=0).summary.extra["cursor_msgs_out_per_s"])


def _truth_05_2() -> float:
    from rtsim.sim.architecture import ArchitectureParams, simulate_architecture

    small = ArchitectureParams(clients=2000, duration_s=120, instances=4)
    return float(simulate_architecture(small.with_(instances=1), seed=1).summary.p99_ms)


@pytest.mark.parametrize(
    ("ex", "truth"), [("02.2", _truth_02_2), ("03.1", _truth_03_1), ("05.2", _truth_05_2)]
)
def test_right_and_wrong_and_never_revealed(
    ex: str, truth: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    t = truth()
    assert check(ex, t) is True
    assert capsys.readouterr().out.startswith("✓")
    for wrong in (t * 3, t / 3 if ex != "02.2" else 1):
        assert check(ex, wrong) is False
        out = capsys.readouterr().out
        assert out.startswith("✗") and ("too" in out or "more" in out or "fewer" in out)
        for shown in {f"{t:g}", f"{t:.0f}", f"{t:,.0f}", f"{t:.1f}"}:
            assert shown not in out, (shown, out)


def test_no_module_constant_holds_an_answer() -> None:
    """Right values are computed inside the judges, not stored where a learner can print them."""
    answers = {"17", "7800", "axyc", "20857"}
    for name, value in vars(exercises).items():
        if name.startswith("__") or callable(value) or isinstance(value, type(exercises)):
            continue
        text = repr(value)
        for a in answers:
            assert f" {a} " not in text and f"'{a}'" not in text, name
