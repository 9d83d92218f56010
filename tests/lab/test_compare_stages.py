"""The stage-model comparison: the pass criterion, the confidence interval, the CLI's
parameter checks (the live sweep itself runs in benchmarks/bench_compare.py)."""

import math
import subprocess
import sys

import pytest

from rtsim.lab.stage_compare import ci95 as _ci95
from rtsim.lab.stage_compare import passes


def test_ci95_brackets_the_mean_and_widens_with_spread() -> None:
    mean, lo, hi = _ci95([1.0, 2.0, 3.0])
    assert mean == 2.0 and lo < 2.0 < hi
    _, lo2, hi2 = _ci95([1.9, 2.0, 2.1])
    assert hi2 - lo2 < hi - lo
    one = _ci95([5.0])
    assert one[0] == 5.0 and math.isnan(one[1]) and math.isnan(one[2])


@pytest.mark.parametrize(
    ("metric", "sim", "lo", "hi", "meas", "ok"),
    [
        ("p50_ms", 1.09, math.nan, math.nan, 1.0, True),  # within 10%
        ("p50_ms", 1.15, math.nan, math.nan, 1.0, False),
        ("p50_ms", 1.15, 0.8, 1.2, 1.0, True),  # inside the measured CI
        ("p99_ms", 1.19, math.nan, math.nan, 1.0, True),  # within 20%
        ("p99_ms", 0.7, 0.9, 1.1, 1.0, False),
        ("p99_ms", math.nan, 0.9, 1.1, 1.0, False),
    ],
)
def test_pass_criterion(
    metric: str, sim: float, lo: float, hi: float, meas: float, ok: bool
) -> None:
    assert passes(metric, sim, lo, hi, meas) is ok


@pytest.mark.parametrize("loads", ["0.2,x", "0", "2", ""])
def test_cli_bad_loads_exit_2(loads: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "rtsim.cli", "compare", "--transport", "sse", "--loads", loads],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "--loads" in r.stderr


def test_committed_sweep_tables_and_plots() -> None:
    """The notebook's views of the committed sweep: every configuration, every stage."""
    import matplotlib

    matplotlib.use("Agg")
    from rtsim.lab import compare as cmp
    from rtsim.lab import stage_compare as sc

    data = cmp.load_result("compare_stages")
    table = sc.stage_error_table(data)
    assert set(table.index.get_level_values("transport")) == {"websocket", "sse", "long-polling"}
    assert (table["passing"] <= table["points"]).all()
    dom = sc.dominant_stages(data)
    assert ((dom["share of the stages"] > 0) & (dom["share of the stages"] <= 1)).all()
    assert sc.plot_stage_sweep(data, "p99_ms").axes
    assert sc.stage_waterfall(data, next(iter(data["stages"]))).axes


def test_controls_open_on_the_comparison_passed_in_and_measure_on_a_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Notebook 07's controls show the comparison its cell above just made, as it is; a
    change measures (stubbed here: no live run), and so does a return to the start."""
    import pandas as pd

    from rtsim.lab import stage_compare, stage_controls

    def made(transport: str, subscribers: int, load: float) -> tuple[pd.DataFrame, dict]:
        row = {"transport": transport, "subscribers": subscribers, "load": load, "rate": 1.0}
        row |= {"metric": "p50_ms", "simulated": 1.0, "measured": 1.0, "rel_error": 0.0}
        return pd.DataFrame([{**row, "lost": 0}]), {f"{transport}/{subscribers}/{load:g}": {}}

    calls: list[tuple[str, int, float]] = []

    def measure(transport: str, subscribers: int, load: float) -> tuple[pd.DataFrame, dict]:
        calls.append((transport, subscribers, load))
        return made(transport, subscribers, load)

    monkeypatch.setattr(stage_controls, "small_stage_comparison", measure)
    monkeypatch.setattr(stage_compare, "stage_waterfall", lambda data, point: None)
    ui = stage_controls.stage_comparison_controls(*made("sse", 200, 0.3))
    assert calls == []
    assert [c.value for c in ui.children[:3]] == ["sse", 200, 0.3]
    ui.children[1].value = 250
    assert calls == [("sse", 250, 0.3)]
    ui.children[1].value = 200
    assert calls == [("sse", 250, 0.3), ("sse", 200, 0.3)]
    stage_controls.stage_comparison_controls()
    assert calls[-1] == ("websocket", 100, 0.5)  # nothing passed in: the start is measured
