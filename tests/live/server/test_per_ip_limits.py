"""Per-address limits beside the global ones: connections and publishes per client IP.

Loopback clients count too, so the server tests use 127.0.0.1 for the address that hits
the limit; "another address" is shown through the gate with requests from fake peers
(``X-Forwarded-For`` is not trusted, so it cannot stand in for one).
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from rtsim.cli import main
from rtsim.core.transport import Transport
from rtsim.live.backplanes.memory import MemoryBackplane
from rtsim.live.protocol import ProtocolError
from rtsim.live.server import SERVED, ServerConfig
from rtsim.live.server.auth import Authenticator
from rtsim.live.server.gate import Gate
from rtsim.live.server.metrics import Metrics

from ..conftest import Serve, wait_until, ws_until

WS = Transport.WEBSOCKET


def request_from(ip: str, path: str = "/ws", **headers: str) -> Any:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (ip, 40000) if name == "peername" else default
    )
    return make_mocked_request("GET", path, headers=headers, transport=transport)


def gate(per_ip: int = 2, rate: float = 1000.0) -> Gate:
    return Gate(
        Authenticator(None),
        MemoryBackplane(),
        Metrics(SERVED),
        SERVED,
        max_connections=100,
        max_frame_bytes=65536,
        max_connections_per_ip=per_ip,
        publish_rate_per_ip=rate,
    )


def test_the_n_plus_first_connection_from_one_address_is_refused_another_is_admitted() -> None:
    g = gate(per_ip=2)
    for _ in range(2):
        g.admit(request_from("192.0.2.1"), WS)
        g.opened(WS, "192.0.2.1")
    with pytest.raises(ProtocolError) as err:
        g.admit(request_from("192.0.2.1"), Transport.SSE)
    assert err.value.code == "too_many_connections_per_ip"
    g.admit(request_from("198.51.100.7"), WS)  # another address is admitted
    # X-Forwarded-For is not trusted: the TCP peer is what counts.
    with pytest.raises(ProtocolError):
        g.admit(request_from("192.0.2.1", **{"X-Forwarded-For": "198.51.100.8"}), WS)
    assert g.metrics.sample("rtsim_rejected_total", {"reason": "too_many_connections_per_ip"}) == 2
    g.closed(WS, "192.0.2.1")  # one leaves: room for one more
    g.admit(request_from("192.0.2.1"), WS)
    g.closed(WS, "192.0.2.1")
    assert g.per_ip == {}  # no entries kept for addresses with nothing open


async def test_one_address_loopback_included_is_limited_on_a_real_server(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    srv = serve(max_connections_per_ip=2)
    ws_url = srv.url.replace("http", "ws") + "/ws"
    async with http.ws_connect(ws_url), http.get(srv.url + "/sse?channel=c") as stream:
        assert stream.status == 200
        await wait_until(lambda: srv.server.active == 2)
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(ws_url)
        assert err.value.status == 429
        async with http.get(srv.url + "/sse?channel=c") as r:
            assert r.status == 429
            assert (await r.json())["error"]["code"] == "too_many_connections_per_ip"
    assert srv.metric("rtsim_rejected_total", {"reason": "too_many_connections_per_ip"}) == 2
    await wait_until(lambda: srv.server.active == 0)
    async with http.ws_connect(ws_url):  # the address is below its limit again
        pass


async def test_publishes_past_the_rate_of_one_address_are_refused_with_429(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    srv = serve(publish_rate_per_ip=1)  # a burst of 1, then one per second
    body = {"channel": "c", "data": 1}
    async with http.post(srv.url + "/publish", json=body) as r:
        assert r.status == 200
    async with http.post(srv.url + "/publish", json=body) as r:
        assert r.status == 429
        assert (await r.json())["error"]["code"] == "too_many_publishes_per_ip"
    async with http.ws_connect(srv.url.replace("http", "ws") + "/ws") as ws:
        await ws.send_json({"type": "publish", "channel": "c", "data": 2, "ref": 7})
        err = await ws_until(ws, "error")
        assert (err["code"], err["ref"]) == ("too_many_publishes_per_ip", 7)
    assert srv.metric("rtsim_rejected_total", {"reason": "too_many_publishes_per_ip"}) == 2
    assert srv.metric("rtsim_published_total") == 1


def test_publish_limits_are_per_address() -> None:
    g = gate(rate=1)
    assert g.publishes.take("192.0.2.1", 0.0)
    assert not g.publishes.take("192.0.2.1", 0.0)
    assert g.publishes.take("198.51.100.7", 0.0)  # another address has its own bucket


@pytest.mark.parametrize(
    ("field", "value"), [("max_connections_per_ip", 0), ("publish_rate_per_ip", 0.5)]
)
def test_config_refuses_limits_below_one(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        ServerConfig(**{field: value})


@pytest.mark.parametrize(
    "args", [["--max-connections-per-ip", "0"], ["--publish-rate-per-ip", "0.5"]]
)
def test_cli_refuses_bad_limits_in_one_line(args: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert args[0] in err[-1] and "Traceback" not in "\n".join(err)
