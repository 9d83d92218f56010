"""``rtsim token`` and ``rtsim serve`` argument handling."""

from __future__ import annotations

import pytest

from rtsim.cli import main
from rtsim.live.server.auth import Authenticator

SECRET = "c" * 32


def test_token_prints_a_valid_token(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["token", "--secret", SECRET, "--user", "u", "--subscribe", "user:u,team:*"]
    assert main([*argv, "--publish", "team:*", "--ttl", "60"]) == 0
    grant = Authenticator(SECRET).grant(capsys.readouterr().out.strip())
    assert grant.user == "u" and grant.may_subscribe("team:x") and grant.may_publish("team:y")


def test_token_admin_makes_a_facilitator_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--secret", SECRET, "--user", "host", "--admin"]) == 0
    assert Authenticator(SECRET).grant(capsys.readouterr().out.strip()).admin
    assert main(["token", "--secret", SECRET, "--user", "ada"]) == 0
    assert not Authenticator(SECRET).grant(capsys.readouterr().out.strip()).admin
    assert main(["token", "--secret", SECRET, "--links", "3", "--admin"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--admin" in err and "Traceback" not in err


def test_token_with_a_short_secret_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--secret", "short", "--user", "u"]) == 2
    assert "32 bytes" in capsys.readouterr().err


def test_serve_refuses_open_mode_off_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "open mode" in capsys.readouterr().err


@pytest.mark.parametrize("off", ["foo", "websocket,sse,long-polling"])
def test_serve_disable_rejects_unknown_or_all_transports(
    off: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--port", "0", "--disable", off]) == 2
    assert "long-polling" in capsys.readouterr().err  # the message names the choices
