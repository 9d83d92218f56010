"""Tokens whose ``sub`` cannot be sent are refused at the door (issue 14).

A lone surrogate (``"\\ud800"``, valid in JSON, not encodable as UTF-8), an empty string or
more than 200 characters: 401 ``bad_token`` on every entry point, instead of a connection
whose presence or frames break later. ``rtsim token`` will not mint such a token.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import jwt
import pytest

from rtsim.cli import main
from rtsim.live.server import ServerConfig
from rtsim.live.server.auth import Authenticator, AuthError, make_token

from ..conftest import Serve

S = "s" * 32
BAD_SUBS = [
    pytest.param("\ud800", id="lone-surrogate"),
    pytest.param("", id="empty"),
    pytest.param("x" * 201, id="201-chars"),
]


def _token(sub: str, **extra: Any) -> str:
    claims = {"sub": sub, "subscribe": ["*"], "publish": ["*"], "exp": int(time.time()) + 600}
    return jwt.encode({**claims, **extra}, S, algorithm="HS256")


@pytest.mark.parametrize("sub", BAD_SUBS)
def test_the_authenticator_refuses_a_sub_that_cannot_be_sent(sub: str) -> None:
    with pytest.raises(AuthError) as err:
        Authenticator(S).grant(_token(sub))
    assert (err.value.code, err.value.status) == ("bad_token", 401)


def test_a_sub_of_200_characters_and_any_unicode_is_fine() -> None:
    for sub in ("x" * 200, "zoë 😀 名前"):
        assert Authenticator(S).grant(_token(sub)).user == sub


@pytest.mark.parametrize("sub", BAD_SUBS)
async def test_every_entry_point_refuses_a_bad_sub_with_401_bad_token(
    sub: str, serve: Serve
) -> None:
    srv = serve(config=ServerConfig(port=0, secret=S))
    token = _token(sub, admin=True)
    bearer = {"Authorization": f"Bearer {token}"}
    q = {"token": token}
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/ws", {"params": q}),
        ("GET", "/sse", {"params": {"channel": "c", **q}}),
        ("GET", "/poll", {"params": {"channel": "c", "timeout": "5"}, "headers": bearer}),
        ("GET", "/poll", {"params": {"channel": "c", "timeout": "0"}, "headers": bearer}),
        ("POST", "/publish", {"json": {"channel": "c", "data": 1}, "headers": bearer}),
        ("POST", "/presence", {"json": {"channel": "c", "client": "a"}, "headers": bearer}),
        ("GET", "/yjs/room", {"params": q}),
        ("POST", "/facilitator/room", {"json": {"transport": "sse"}, "headers": bearer}),
    ]
    async with aiohttp.ClientSession() as http:
        for method, path, kw in requests:
            async with http.request(method, srv.url + path, **kw) as r:
                body = await r.json()
                assert (r.status, body["error"]["code"]) == (401, "bad_token"), (path, body)
    assert srv.server.gate.active == 0


@pytest.mark.parametrize("sub", BAD_SUBS)
def test_make_token_refuses_it(sub: str) -> None:
    with pytest.raises(ValueError, match="user"):
        make_token(S, sub)


@pytest.mark.parametrize("sub", ["\ud800", "", "x" * 201])
def test_rtsim_token_refuses_it_in_one_line(sub: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--secret", S, "--user", sub]) == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1
    assert "error:" in out.err and "Traceback" not in out.err
