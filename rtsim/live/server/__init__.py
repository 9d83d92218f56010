"""The live server: configuration, admission, the transports and fan-out."""

from .app import SERVER_KEY, LiveServer, ServerConfig, create_app, run_server

__all__ = ["SERVER_KEY", "LiveServer", "ServerConfig", "create_app", "run_server"]
