"""Operational errors of the live tools: the environment, not the caller's parameters.

Each carries a one-line message meant for a person (``rtsim serve`` and ``rtsim load``
print it as is and exit with status 1; a notebook shows it instead of hanging).
"""

from __future__ import annotations

import errno
import socket
import urllib.error
import urllib.request

__all__ = ["PortInUseError", "ServerUnreachableError", "require_server"]

#: How long :func:`require_server` waits for an answer (a loopback server answers in ms).
PROBE_TIMEOUT_S = 3.0


class PortInUseError(OSError):
    """The address ``host:port`` is taken by another process (``errno`` is EADDRINUSE)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            errno.EADDRINUSE, f"port {port} on {host} is in use; pick another with --port"
        )
        self.host = host
        self.port = port

    def __str__(self) -> str:
        return str(self.strerror)


class ServerUnreachableError(ConnectionError):
    """No server answers at ``url`` (refused, timed out or unresolvable); ``reason`` says which."""

    def __init__(self, url: str, reason: str, hint: str = "is the server running?") -> None:
        super().__init__(f"no server answers at {url} ({reason}); {hint}")
        self.url = url
        self.reason = reason


def require_server(
    url: str, timeout_s: float = PROBE_TIMEOUT_S, hint: str = "is the server running?"
) -> None:
    """Raise :class:`ServerUnreachableError` unless an HTTP server answers at ``url``.

    Sends ``GET {url}/healthz`` and waits at most ``timeout_s`` seconds. Any HTTP answer
    counts, even an error status (a peer server without ``/healthz`` is still there);
    only a refused, reset, unresolvable or silent address raises. ``hint`` ends the message.
    """
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/healthz", timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # it answered
    except urllib.error.URLError as exc:
        reason = exc.reason
    except (OSError, ValueError) as exc:  # timeouts, resets; ValueError: not a URL
        reason = exc
    if isinstance(reason, ConnectionRefusedError):
        text = "connection refused"
    elif isinstance(reason, TimeoutError | socket.timeout):
        text = f"no answer within {timeout_s:g} s"
    elif isinstance(reason, OSError) and reason.strerror:
        text = reason.strerror
    else:
        text = str(reason)
    raise ServerUnreachableError(url, text, hint)
