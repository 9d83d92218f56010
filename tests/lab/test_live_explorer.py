"""Notebook 06's slider answers with one clear line once its server is stopped."""

from __future__ import annotations

import pytest

from rtsim.lab import live as L
from rtsim.live import serve_in_background


def test_slider_after_stop_prints_the_stopped_message(capsys: pytest.CaptureFixture[str]) -> None:
    srv = serve_in_background()
    try:
        ex = L.drop_and_resume_explorer(srv)
        frame = ex.f(during=2)
        assert frame is not None and int(frame["received"].iloc[0]) >= 5
    finally:
        srv.stop()
    capsys.readouterr()
    assert ex.f(during=5) is None
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "the server is stopped; run the cell that starts it" in out[0]
