"""Tokens and channel permissions: who may subscribe to and publish on which channels.

A token is a JWT (HS256, via PyJWT) with the claims::

    {"sub": "alice", "subscribe": ["user:alice", "team:*"], "publish": ["team:*"],
     "iat": 1700000000, "exp": 1700003600}

plus ``"admin": true`` for a facilitator's token (``rtsim token --admin``: it may step the
room down and up, :mod:`rtsim.live.server.facilitator`).

A pattern is a channel name in which ``*`` matches any run of characters (``team:*``
matches ``team:red`` and ``team:red:chat``). Channel names never contain ``*``, so a
pattern without one matches exactly one channel.

:func:`make_token` issues one (``rtsim token`` calls it); :class:`Authenticator` checks
one and returns the :class:`Grant` a connection keeps. Without a secret the server runs in
*open mode*: every request gets :data:`OPEN_GRANT` (allowed only on a loopback address).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from rtsim.core.envelope import MAX_CHANNEL_LENGTH

__all__ = [
    "MAX_USER_LENGTH",
    "MIN_SECRET_BYTES",
    "OPEN_GRANT",
    "AuthError",
    "Authenticator",
    "Grant",
    "check_secret",
    "check_user",
    "compile_patterns",
    "make_token",
    "parse_patterns",
]

_PATTERN_CHARS = re.compile(r"^[A-Za-z0-9_\-:.@*]+$")
_ALGORITHM = "HS256"
MAX_PATTERNS = 100
#: RFC 7518 §3.2: an HS256 key must be at least as long as the hash (32 bytes).
MIN_SECRET_BYTES = 32


def check_secret(secret: str) -> str:
    """``secret`` if it is long enough for HS256, else ``ValueError`` saying how to make one."""
    if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
        raise ValueError(
            f"secret must be at least {MIN_SECRET_BYTES} bytes for HS256 (RFC 7518 §3.2), got"
            f" {len(secret.encode('utf-8'))}; make one with: python -c"
            " 'import secrets; print(secrets.token_hex(32))'"
        )
    return secret


class AuthError(ValueError):
    """A request that may not proceed. ``status`` is the HTTP status (401 or 403)."""

    def __init__(self, code: str, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


#: The longest user name (a token's ``sub``), characters.
MAX_USER_LENGTH = 200


def check_user(user: object) -> str:
    """``user`` as a token's ``sub``: a non-empty string of at most ``MAX_USER_LENGTH``
    characters that can be sent (encodable as UTF-8: no lone surrogate such as
    ``"\ud800"``, which JSON can carry but no frame or event can). Raises ``ValueError``
    naming what is wrong."""
    if not isinstance(user, str) or not user:
        raise ValueError("the user (sub) must be a non-empty string")
    if len(user) > MAX_USER_LENGTH:
        raise ValueError(
            f"the user (sub) must be at most {MAX_USER_LENGTH} characters, got {len(user)}"
        )
    try:
        user.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"the user (sub) cannot be sent: {user[exc.start : exc.end]!r} at {exc.start}"
            " is not encodable as UTF-8 (a lone surrogate)"
        ) from None
    return user


def parse_patterns(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"user:U,team:*"`` (or a list) → validated patterns; raises ``ValueError``."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"a channel pattern must be a string, got {item!r}")
        p = item.strip()
        if not p:
            continue
        if len(p) > MAX_CHANNEL_LENGTH or not _PATTERN_CHARS.match(p):
            raise ValueError(
                f"channel pattern {p!r} must be letters, digits, _-:.@ and * "
                f"(at most {MAX_CHANNEL_LENGTH} characters)"
            )
        out.append(p)
    if len(out) > MAX_PATTERNS:
        raise ValueError(f"at most {MAX_PATTERNS} channel patterns, got {len(out)}")
    return tuple(out)


def compile_patterns(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One regular expression matching any of ``patterns`` (None: matches nothing)."""
    parts = [".*".join(re.escape(piece) for piece in p.split("*")) for p in patterns]
    if not parts:
        return None
    return re.compile("(?:" + "|".join(parts) + r")\Z")


@dataclass(frozen=True)
class Grant:
    """What one authenticated client may do, and until when.

    ``expires_at``: when the token runs out, UNIX seconds (its ``exp`` plus the
    authenticator's leeway); None in open mode. A connection opened with this grant is
    ended then (see ``docs/protocol.md``, "Token expiry"). ``admin``: the token's
    ``"admin": true`` claim (a facilitator's token).
    """

    user: str
    subscribe: tuple[str, ...]
    publish: tuple[str, ...]
    open_mode: bool = False
    expires_at: float | None = None
    admin: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "_sub_re", compile_patterns(self.subscribe))
        object.__setattr__(self, "_pub_re", compile_patterns(self.publish))

    def may_subscribe(self, channel: str) -> bool:
        rx: re.Pattern[str] | None = self._sub_re  # type: ignore[attr-defined]
        return self.open_mode or (rx is not None and rx.match(channel) is not None)

    def may_publish(self, channel: str) -> bool:
        rx: re.Pattern[str] | None = self._pub_re  # type: ignore[attr-defined]
        return self.open_mode or (rx is not None and rx.match(channel) is not None)

    def check_subscribe(self, channel: str) -> None:
        if not self.may_subscribe(channel):
            raise AuthError(
                "forbidden", f"user {self.user!r} may not subscribe to {channel!r}", 403
            )

    def check_publish(self, channel: str) -> None:
        if not self.may_publish(channel):
            raise AuthError("forbidden", f"user {self.user!r} may not publish to {channel!r}", 403)


#: The grant of every client in open mode (no secret): anything goes.
OPEN_GRANT = Grant(user="anonymous", subscribe=("*",), publish=("*",), open_mode=True)


def make_token(
    secret: str,
    user: str,
    subscribe: str | Sequence[str] = (),
    publish: str | Sequence[str] = (),
    ttl_s: float = 3600.0,
    *,
    now: float | None = None,
    admin: bool = False,
) -> str:
    """A signed token for ``user``. ``now`` defaults to the wall clock (tokens need it);
    ``admin`` adds the ``"admin": true`` claim (a facilitator's token)."""
    check_secret(secret)
    check_user(user)
    if not ttl_s > 0:
        raise ValueError(f"ttl must be > 0 s, got {ttl_s}")
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {
        "sub": user,
        "subscribe": list(parse_patterns(subscribe)),
        "publish": list(parse_patterns(publish)),
        "iat": int(issued),
        "exp": int(issued + ttl_s),
    }
    if admin:
        claims["admin"] = True
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


class Authenticator:
    """Turns a request's token into a :class:`Grant` (or raises :class:`AuthError`)."""

    def __init__(self, secret: str | None, *, leeway_s: float = 0.0) -> None:
        self.secret = None if secret is None else check_secret(secret)
        self.leeway_s = leeway_s

    @property
    def open_mode(self) -> bool:
        return self.secret is None

    def grant(self, token: str | None) -> Grant:
        if self.secret is None:
            return OPEN_GRANT
        if not token:
            raise AuthError("no_token", "a token is required: Authorization: Bearer T or ?token=T")
        if len(token) > 8192:
            raise AuthError("invalid_token", "token is too long")
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[_ALGORITHM],
                leeway=self.leeway_s,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token_expired", "the token has expired; get a new one") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError("invalid_token", f"the token is not valid: {exc}") from None
        try:
            user = check_user(claims["sub"])
        except ValueError as exc:  # stored in presence, sent in frames: refuse it here
            raise AuthError("bad_token", f"the token's sub is not valid: {exc}") from None
        try:
            return Grant(
                user=user,
                subscribe=parse_patterns(_strings(claims.get("subscribe", []))),
                publish=parse_patterns(_strings(claims.get("publish", []))),
                expires_at=float(claims["exp"]) + self.leeway_s,
                admin=claims.get("admin") is True,
            )
        except ValueError as exc:
            raise AuthError("invalid_token", f"the token's claims are not valid: {exc}") from None

    @staticmethod
    def token_from(authorization: str | None, query_token: str | None) -> str | None:
        """The token of a request: ``Authorization: Bearer T`` first, else ``?token=T``."""
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip()
        return query_token or None


def _strings(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("subscribe/publish must be lists of strings")
    return value
