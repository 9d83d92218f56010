"""The message buses behind the server: in memory, Redis (Streams, Pub/Sub), NATS JetStream.

:func:`make_backplane` (in :mod:`.factory`, the one place that knows URL schemes) builds
one from a URL; :class:`Backplane` (in :mod:`.base`) is what the server needs of it.
"""

from .base import Backplane, BackplaneUnavailable
from .factory import BACKPLANES, broker_of, make_backplane
from .memory import MemoryBackplane

__all__ = [
    "BACKPLANES",
    "Backplane",
    "BackplaneUnavailable",
    "MemoryBackplane",
    "broker_of",
    "make_backplane",
]
