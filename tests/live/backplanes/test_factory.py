"""The backplane factory: one registry of URL schemes, each mapped to a class and a Broker."""

from __future__ import annotations

import pytest

from rtsim.core.broker import Broker
from rtsim.live.backplanes import BACKPLANES, Backplane, MemoryBackplane, broker_of, make_backplane
from rtsim.live.backplanes.base import BrokerBackplane


@pytest.mark.parametrize("scheme", sorted(BACKPLANES))
def test_every_scheme_builds_its_class(scheme: str) -> None:
    kind = BACKPLANES[scheme]
    url = "memory" if scheme == "memory" else f"{scheme}://127.0.0.1:1"
    bp = make_backplane(url, max_len=7)
    assert type(bp).__name__ == kind.cls
    assert isinstance(bp, Backplane)  # the runtime-checkable protocol
    if isinstance(bp, BrokerBackplane):
        assert type(bp).scheme == scheme  # the class and the registry agree


def test_schemes_map_to_the_core_broker_names() -> None:
    assert broker_of("nats://127.0.0.1:4222") is Broker.JETSTREAM
    assert broker_of("redis-streams://h:1") is Broker.REDIS_STREAMS
    assert broker_of("redis-pubsub://h:1") is Broker.REDIS_PUBSUB
    assert broker_of("memory") is None
    # Every broker the registry names is a Broker the model knows.
    assert {k.broker for k in BACKPLANES.values()} - {None} <= set(Broker)


def test_unknown_scheme_lists_the_registry() -> None:
    with pytest.raises(ValueError, match="unknown backplane") as err:
        make_backplane("kafka://h:1")
    for scheme in BACKPLANES:
        assert scheme in str(err.value)
    with pytest.raises(ValueError, match="unknown backplane"):
        broker_of("kafka://h:1")


def test_memory_takes_its_limits_and_no_options() -> None:
    bp = make_backplane("memory://", max_len=3, max_age_s=5.0)
    assert isinstance(bp, MemoryBackplane)
    assert (bp.log.max_len, bp.log.max_age_s) == (3, 5.0)
    with pytest.raises(ValueError, match="memory backplane takes no host"):
        make_backplane("memory://somewhere")
