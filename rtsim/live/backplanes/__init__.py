"""The message buses behind the server: in memory, Redis (Streams, Pub/Sub), NATS JetStream."""

from .memory import Backplane, MemoryBackplane, make_backplane

__all__ = ["Backplane", "MemoryBackplane", "make_backplane"]
