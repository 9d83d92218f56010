"""Backplane URLs: the one place that knows the schemes, their classes and their brokers.

    make_backplane("nats://127.0.0.1:4222?storage=memory")   # a JetStreamBackplane

:data:`BACKPLANES` maps each URL scheme to the module and class that implement it (a
module is imported only when its scheme is first used, so ``redis`` and ``nats`` load
only when asked) and to the :class:`~rtsim.core.broker.Broker` the model calls it.
Adding a backplane is one new module in this package plus one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from rtsim.core.broker import Broker

from .base import Backplane, BackplaneClass

__all__ = ["BACKPLANES", "BackplaneKind", "broker_of", "make_backplane", "scheme_of"]


@dataclass(frozen=True)
class BackplaneKind:
    """One URL scheme: ``module`` (in this package) and class ``cls`` implement it;
    ``broker`` is the model's name for it (None for the in-process memory backplane)."""

    module: str
    cls: str
    broker: Broker | None

    def load(self) -> BackplaneClass:
        """The class (imports its module on first use)."""
        cls: BackplaneClass = getattr(
            importlib.import_module(f"{__package__}.{self.module}"), self.cls
        )
        return cls


#: scheme -> implementation; the only list of backplanes.
BACKPLANES: dict[str, BackplaneKind] = {
    "memory": BackplaneKind("memory", "MemoryBackplane", None),
    "redis-streams": BackplaneKind("redis", "RedisStreamsBackplane", Broker.REDIS_STREAMS),
    "redis-pubsub": BackplaneKind("redis", "RedisPubSubBackplane", Broker.REDIS_PUBSUB),
    "nats": BackplaneKind("nats", "JetStreamBackplane", Broker.JETSTREAM),
}


def scheme_of(url: str) -> str:
    """The scheme of a backplane URL (``"memory"`` for ``memory``); raises ``ValueError``
    naming the available ones if it is not in :data:`BACKPLANES`."""
    scheme = url.partition("://")[0]
    if scheme not in BACKPLANES:
        available = ", ".join(s if s == "memory" else f"{s}://HOST:PORT" for s in BACKPLANES)
        raise ValueError(f"unknown backplane {url!r}; available: {available}")
    return scheme


def broker_of(url: str) -> Broker | None:
    """The model's :class:`~rtsim.core.broker.Broker` for a backplane URL (None: memory).

    Raises ``ValueError`` for an unknown scheme.
    """
    return BACKPLANES[scheme_of(url)].broker


def make_backplane(url: str, *, max_len: int = 1000, max_age_s: float | None = None) -> Backplane:
    """The backplane named by ``url``: ``memory`` (default), ``redis-streams://HOST:PORT``,
    ``redis-pubsub://HOST:PORT`` or ``nats://HOST:PORT`` (JetStream), options as query
    parameters (see :mod:`rtsim.live.backplanes.redis` and :mod:`~rtsim.live.backplanes.nats`).

    ``max_len``: messages kept per channel for replay (``ServerConfig.replay_len``, 1000 by
    default); ``max_age_s``: optional age limit where the server keeps the log. Raises
    ``ValueError`` for an unknown scheme, a malformed URL or an unknown option.
    """
    return BACKPLANES[scheme_of(url)].load().from_url(url, max_len=max_len, max_age_s=max_age_s)
