"""Operational errors of the live tools: the environment, not the caller's parameters.

Each carries a one-line message meant for a person (``rtsim serve`` and ``rtsim load``
print it as is and exit with status 1; a notebook shows it instead of hanging).
"""

from __future__ import annotations

import errno

__all__ = ["PortInUseError", "ServerUnreachableError"]


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
