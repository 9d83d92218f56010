"""Notebook 03 helpers: tables have the expected shape, plots draw."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from rtsim.lab import presence as lp


def test_fanout_table_matches_the_formula_and_plots() -> None:
    df = lp.fanout_table(viewers=(2, 10), rates=(60, 5))
    assert (df["server_out_per_s"] == df["exact_per_s"]).all()
    assert len(lp.plot_fanout(df).axes) == 1


def test_tradeoff_store_and_interpolation_tables() -> None:
    t = lp.tradeoff_table(heartbeats=(15,), timeouts=(60,), clients=20, duration_s=600)
    assert list(t["heartbeat_s"]) == [15] and t["crash_detection_p99_s"].iloc[0] <= 61
    assert lp.plot_tradeoff(t) is not None
    s = lp.store_table(clients=(1_000, 2_000))
    assert s["db_utilisation"].iloc[1] == 2 * s["db_utilisation"].iloc[0]
    assert lp.plot_store(s) is not None
    i = lp.interpolation_table(rates=(5, 10))
    assert (i["interp_error_px_p95"] < i["snap_error_px_p95"]).all()
    assert len(lp.plot_interpolation(i).axes) == 2
    assert "false_offline_per_hour" in lp.presence_panel(viewers=2).index
