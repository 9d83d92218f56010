"""``LoadParams.publish_url``: the publisher sends to another server than the subscribers'.

Two in-memory servers share nothing, so publishing on A while subscribing on B must reach
no subscriber, and A (not B) must count the publishes. The crossing through a real broker
is tested in tests/lab/test_broker_compare.py (Redis Streams).
"""

import urllib.request
from collections.abc import Iterator

import pytest

from rtsim.live.clients.loadgen import LoadParams, run_load
from rtsim.live.errors import ServerUnreachableError
from rtsim.live.process import free_port, serve_process


def _published(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("rtsim_published_total "):
                return float(line.split()[1])
    return 0.0


@pytest.fixture(scope="module")
def two() -> Iterator[tuple[str, str]]:
    with serve_process() as (a, _), serve_process() as (b, _):
        yield a, b


def test_publishes_go_to_publish_url_not_to_url(two: tuple[str, str]) -> None:
    a, b = two
    before_a, before_b = _published(a), _published(b)
    p = LoadParams(
        url=b, publish_url=a, subscribers=6, rate=20, duration_s=1, processes=1, settle_s=0.5
    )
    s = run_load(p, progress=False).summary
    assert s.extra["published"] == p.messages == 20
    assert _published(a) - before_a == 20 and _published(b) == before_b
    assert s.deliveries == 0 and s.lost == s.extra["expected"] == 6 * 20


def test_without_publish_url_the_publisher_uses_url(two: tuple[str, str]) -> None:
    _a, b = two
    p = LoadParams(url=b, subscribers=6, rate=20, duration_s=1, processes=1, settle_s=0.5)
    assert p.publisher_url == b
    s = run_load(p, progress=False).summary
    assert s.lost == 0 and s.deliveries == 6 * 20


def test_bad_or_unreachable_publish_url(two: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="publish_url must be http"):
        LoadParams(url="http://127.0.0.1:1", publish_url="ws://x")
    p = LoadParams(url=two[1], publish_url=f"http://127.0.0.1:{free_port()}", subscribers=2)
    with pytest.raises(ServerUnreachableError, match="publish_url"):
        run_load(p, progress=False)
