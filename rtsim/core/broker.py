"""The brokers a fan-out tier can use, by one name each in the model, the live server and the lab.

The live server's ``--backplane`` URL schemes map onto these names in one place
(``rtsim/live/backplanes/factory.py``): ``nats://`` is :attr:`Broker.JETSTREAM`. Kafka is
modelled only; the live server has no Kafka backplane.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Broker", "parse_broker"]


class Broker(StrEnum):
    """A message broker between server instances (the article's step 3)."""

    REDIS_PUBSUB = "redis-pubsub"
    REDIS_STREAMS = "redis-streams"
    JETSTREAM = "jetstream"
    KAFKA = "kafka"

    @property
    def replays(self) -> bool:
        """True when the broker keeps a log a client can resume from (all but Pub/Sub)."""
        return self is not Broker.REDIS_PUBSUB


def parse_broker(value: object) -> Broker:
    """``Broker(value)``; raise ``ValueError`` listing the choices for an unknown name."""
    if isinstance(value, Broker):
        return value
    try:
        return Broker(str(value))
    except ValueError:
        choices = ", ".join(b.value for b in Broker)
        raise ValueError(f"unknown broker {value!r}; choose one of {choices}") from None
