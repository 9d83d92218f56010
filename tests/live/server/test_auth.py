"""Tokens (PyJWT) and channel patterns."""

from __future__ import annotations

import time

import jwt
import pytest

from rtsim.live.server.auth import OPEN_GRANT, Authenticator, AuthError, make_token, parse_patterns

S = "s" * 32


def test_round_trip_and_patterns() -> None:
    t = make_token(S, "alice", "user:alice,team:*", "team:*", 60)
    g = Authenticator(S).grant(t)
    assert g.user == "alice"
    assert g.may_subscribe("user:alice") and g.may_subscribe("team:red:chat")
    assert not g.may_subscribe("user:bob") and not g.may_subscribe("user:alice2")
    assert g.may_publish("team:x") and not g.may_publish("user:alice")


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (None, "no_token"),
        ("", "no_token"),
        ("garbage", "invalid_token"),
        (make_token("o" * 32, "eve", "*", "*", 60), "invalid_token"),
        (make_token(S, "old", "*", "*", 60, now=time.time() - 3600), "token_expired"),
        (jwt.encode({"sub": "x"}, S, algorithm="HS256"), "invalid_token"),  # no exp
        (jwt.encode({"sub": "x", "exp": 2**40}, S * 2, algorithm="HS512"), "invalid_token"),
        (
            jwt.encode({"sub": "x", "exp": 2**40, "subscribe": "a"}, S, algorithm="HS256"),
            "invalid_token",
        ),
    ],
)
def test_refused_tokens(token: str | None, code: str) -> None:
    with pytest.raises(AuthError) as info:
        Authenticator(S).grant(token)
    assert info.value.code == code and info.value.status == 401


def test_tampered_token_is_refused() -> None:
    head, _body, sig = make_token(S, "alice", "a", "", 60).split(".")
    forged = jwt.encode({"sub": "alice", "subscribe": ["*"], "exp": 2**40}, "x" * 32).split(".")[1]
    with pytest.raises(AuthError):
        Authenticator(S).grant(f"{head}.{forged}.{sig}")


def test_open_mode_and_token_sources() -> None:
    assert Authenticator(None).grant(None) is OPEN_GRANT
    assert Authenticator.token_from("Bearer abc", "q") == "abc"
    assert Authenticator.token_from("Basic abc", "q") == "q"
    assert Authenticator.token_from(None, None) is None


def test_bad_patterns() -> None:
    assert parse_patterns(" a , b* ,") == ("a", "b*")
    for bad in ("a b", "a/b", "x" * 300):
        with pytest.raises(ValueError):
            parse_patterns(bad)
    with pytest.raises(ValueError, match="32 bytes"):
        make_token("short", "u")
    with pytest.raises(ValueError):
        make_token(S, "u", ttl_s=0)
