"""Clients of the live server: the Python client and the load generator."""

from .client import GapNotice, LiveClient, LiveClientError, Message

__all__ = ["GapNotice", "LiveClient", "LiveClientError", "Message"]
