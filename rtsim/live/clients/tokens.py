"""Where :class:`~rtsim.live.clients.client.LiveClient` gets its token: a string, or a
function called before every connection attempt (sync or async)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

__all__ = ["TokenSource", "TokenUnavailable", "call_token_source"]

#: A token, or a function giving a fresh one (called before every connection attempt).
TokenSource = str | Callable[[], str | Awaitable[str]]


class TokenUnavailable(Exception):
    """The token function raised or gave something that is not a token."""


async def call_token_source(source: Callable[[], str | Awaitable[str]]) -> str:
    """A fresh token from ``source``; raises :class:`TokenUnavailable` if it raises or
    gives anything but a non-empty string."""
    try:
        value = source()
        if inspect.isawaitable(value):
            value = await value
    except Exception as exc:
        raise TokenUnavailable(f"the token function failed: {exc!r}") from exc
    if not isinstance(value, str) or not value:
        raise TokenUnavailable(f"the token function gave {value!r}, not a token")
    return value
