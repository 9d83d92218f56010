"""The fan-out's fast lane: a broadcast's pre-framed bytes sent straight to an idle socket.

The hub's ordinary direct write hands a broadcast's wire bytes to the connection's
transport (``transport.write``), which checks its state, tries ``socket.send()`` and keeps
what the kernel did not take. For a socket with nothing queued and nothing buffered that
is one Python method call of bookkeeping around one system call, repeated for every
subscriber of every broadcast. The fast lane makes the system call itself — a
non-blocking ``socket.send()`` on the transport's own socket — and hands anything the
kernel did not take (a partial send, ``EAGAIN``, an error) to ``transport.write``, which
buffers it behind nothing (the buffer was empty), so bytes stay in order and none is
lost or sent twice.

It reads three private attributes of asyncio's plain-TCP selector transport (``_sock``,
``_buffer``, ``_closing``), so it is used only with exactly that class
(``asyncio.selector_events._SelectorSocketTransport``, checked by ``type(...) is``): never
for TLS, uvloop or any other transport, which keep the ordinary path.
``tests/live/server/test_fast_lane.py`` checks it against the asyncio installed.
"""

from __future__ import annotations

import socket
from asyncio import selector_events
from typing import Any

__all__ = ["SELECTOR_TRANSPORT", "hand_on", "idle", "raw_socket", "send_idle"]

#: The one transport class the fast lane knows (None if this asyncio has no such class).
SELECTOR_TRANSPORT: type | None = getattr(selector_events, "_SelectorSocketTransport", None)


def raw_socket(transport: Any) -> socket.socket | None:
    """The socket under ``transport`` if the fast lane may write to it, else None.

    Only a transport of exactly asyncio's plain-TCP selector class (not a subclass, not
    TLS — whose transport is another class — not uvloop's) with the private fields the
    fast lane reads, over a non-blocking stream socket, qualifies.
    """
    if SELECTOR_TRANSPORT is None or type(transport) is not SELECTOR_TRANSPORT:
        return None
    sock = getattr(transport, "_sock", None)
    if (
        not isinstance(sock, socket.socket)
        or sock.type != socket.SOCK_STREAM
        or sock.gettimeout() != 0.0
        or not hasattr(transport, "_buffer")
        or not hasattr(transport, "_closing")
    ):
        return None
    return sock


def idle(transport: Any) -> bool:
    """True if ``transport`` (one :func:`raw_socket` accepted) buffers nothing and is open."""
    return not transport._buffer and not transport._closing


def send_idle(sock: socket.socket, transport: Any, data: bytes) -> bool:
    """Send ``data`` on ``sock``, whose ``transport`` is :func:`idle`; True if all of it went now.

    False: the kernel took part or none of it (``EAGAIN``) and the rest was handed to
    ``transport.write`` (:func:`hand_on`) — or the send failed, and ``transport.write`` got
    all of it, meets the same error and reports it its own way (closing the connection).
    Nothing is sent twice: bytes the kernel took are never handed on. (The hub's fan-out
    does the same inline.)
    """
    try:
        sent = sock.send(data)
    except Exception:  # EAGAIN, EINTR, or an error the transport meets again
        sent = 0
    if sent == len(data):
        return True
    hand_on(transport, data, sent)
    return False


def hand_on(transport: Any, data: bytes, sent: int) -> None:
    """Give ``transport`` what the kernel did not take of ``data`` (all of it if ``sent`` 0)."""
    transport.write(data[sent:] if sent else data)
