"""The load generator against a real server process: zero loss at moderate load, exact loss
when subscribers vanish on purpose, clear errors for bad parameters."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from rtsim.live.clients.loadgen import LoadParams, capacity_search, run_load
from rtsim.live.process import free_port


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtsim.cli", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    yield url, proc.pid
    proc.terminate()
    proc.wait(timeout=10)
    if proc.stdout:
        proc.stdout.close()


@pytest.mark.parametrize(
    ("transport", "ws_client"),
    [
        ("websocket", "raw"),
        ("websocket", "picows"),
        ("websocket", "aiohttp"),
        ("sse", "raw"),
        ("sse", "aiohttp"),
        ("long-polling", "raw"),
        ("long-polling", "aiohttp"),
    ],
)
def test_zero_loss_and_no_duplicates_at_moderate_load(
    server: tuple[str, int], transport: str, ws_client: str
) -> None:
    kind = {"sse": "sse_client", "long-polling": "lp_client"}.get(transport, "ws_client")
    clients = {kind: ws_client}
    url, pid = server
    p = LoadParams(
        url=url,
        transport=transport,
        subscribers=60,
        channels=3,
        rate=60,
        duration_s=3,
        processes=2,
        server_pid=pid,
        settle_s=1.5,
        **clients,  # type: ignore[arg-type]
    )
    s = run_load(p, progress=False).summary
    assert s.extra["errors"] == 0, s.extra["error_samples"]
    assert s.extra["expected"] == 60 * 60 // 3 * 3  # every message to its 20 subscribers
    assert s.lost == 0 and s.extra["duplicates"] == 0
    assert s.deliveries == s.extra["expected"]
    assert 0 < s.p50_ms <= s.p95_ms <= s.p99_ms <= s.max_ms
    assert s.extra["server_rss_bytes"] > 10_000_000
    assert s.extra["server_cpu_s"] >= 0 and s.extra["loadgen_cpu_s"] > 0
    assert 0 <= s.extra["other_cpu_cores"] <= os.cpu_count()
    assert s.extra["loadgen_ws_client"] == ws_client
    per_delivery = s.extra["loadgen_cpu_s"] / s.deliveries * 1e6
    assert s.extra["loadgen_cpu_us_per_delivery"] == pytest.approx(per_delivery)


def test_lost_count_is_exact_when_subscribers_vanish(server: tuple[str, int]) -> None:
    url, pid = server
    p = LoadParams(
        url=url,
        transport="websocket",
        subscribers=40,
        channels=4,
        rate=40,
        duration_s=2,
        kill_before_publish=6,
        processes=2,
        server_pid=pid,
    )
    s = run_load(p, progress=False).summary
    per_channel = p.messages // p.channels
    assert s.lost == 6 * per_channel
    assert s.deliveries == (40 - 6) * per_channel
    assert s.extra["duplicates"] == 0


def test_capacity_search_stops_at_the_sla(server: tuple[str, int]) -> None:
    url, pid = server
    p = LoadParams(
        url=url,
        transport="websocket",
        subscribers=20,
        duration_s=1,
        processes=1,
        server_pid=pid,
        settle_s=0.5,
    )
    curve = capacity_search(p, rates=[20, 40], sla_p95_ms=1e6)
    assert list(curve["rate"]) == [20, 40] and curve["within_sla"].all()
    tight = capacity_search(p, rates=[20, 40, 80], sla_p95_ms=1e-3)
    assert len(tight) == 1 and not tight["within_sla"].iloc[0]


@pytest.mark.parametrize(
    ("how", "ws_client"),
    [
        (["--transport", "sse"], "raw"),
        (["--transport", "sse", "--sse-client", "aiohttp"], "aiohttp"),
        (["--transport", "websocket", "--ws-client", "aiohttp"], "aiohttp"),
        (["--transport", "websocket", "--ws-client", "picows"], "picows"),
        (["--transport", "websocket"], "raw"),
    ],
)
def test_cli_json(server: tuple[str, int], how: list[str], ws_client: str) -> None:
    url, pid = server
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rtsim.cli",
            "load",
            "--url",
            url,
            *how,
            "--subscribers",
            "10",
            "--rate",
            "20",
            "--duration",
            "1",
            "--server-pid",
            str(pid),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    d = json.loads(out.stdout, parse_constant=_refuse)
    for key in (
        "expected",
        "delivered",
        "lost",
        "duplicates",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "deliveries_per_s",
        "server_rss_bytes",
        "server_cpu_us_per_delivery",
        "loadgen_cpu_us_per_delivery",
    ):
        assert key in d
    assert d["lost"] == 0 and d["delivered"] == d["expected"] == 200
    assert d["loadgen_ws_client"] == ws_client and d["loadgen_cpu_us_per_delivery"] > 0


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"url": "ftp://x"}, "url must be http"),
        ({"transport": "polling"}, "transport must be websocket, sse or long-polling"),
        ({"subscribers": 0}, "subscribers must be >= 1"),
        ({"rate": -1}, "rate must be > 0"),
        ({"channels": 5, "subscribers": 2}, "channels must be between"),
        ({"ws_client": "websockets"}, "ws_client must be raw, picows or aiohttp"),
        ({"sse_client": "httpx"}, "sse_client must be raw or aiohttp, got 'httpx'"),
        ({"lp_client": "requests"}, "lp_client must be raw or aiohttp, got 'requests'"),
    ],
)
def test_bad_parameters(kw: dict[str, object], message: str) -> None:
    args = {"url": "http://127.0.0.1:1", **kw}
    with pytest.raises(ValueError, match=message):
        LoadParams(**args)  # type: ignore[arg-type]


def test_cli_bad_parameter_exits_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rtsim.cli", "load", "--url", "nope", "--transport", "sse"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "url must be http" in proc.stderr


def _refuse(constant: str) -> object:
    """Strict RFC 8259: NaN and Infinity are not JSON."""
    raise ValueError(f"non-standard JSON constant {constant}")
