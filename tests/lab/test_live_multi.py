"""Notebook 06's multi-instance helper: Redis Streams between two servers, or a clear skip."""

import pytest

from rtsim.lab import live as L


@pytest.mark.redis
def test_two_instances_lose_nothing_across_a_resume() -> None:
    if not L.redis_running():
        pytest.skip("no Redis on 127.0.0.1:6379 (CI's .ci/run starts one)")
    r = L.two_instances(before=2, during=4)
    assert r == {
        "published on A": 6,
        "live on B": 2,
        "resumed on B": 4,
        "lost": 0,
        "duplicates": 0,
        "in order": True,
    }


def test_without_redis_it_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(L, "redis_running", lambda *a, **k: False)
    assert L.two_instances() is None
    assert "skipped: no Redis" in capsys.readouterr().out
