"""A load worker's traced deliveries, packed for the trip to the parent process.

A run of 100 messages traces every one of them (``LoadParams.traced`` is 200 by default),
so 1,000 subscribers hand back 100,000 ``(trace, port, scheduled, sent, read, handled)``
tuples; pickled one by one they were ~1.4 MB per worker and tens of milliseconds of the
parent's CPU to unpickle. Packed, the floats travel as float64 arrays, the ports as an
int64 array and each trace key once (the same key is delivered to every subscriber of its
channel), with an int32 index per delivery.

    packed = pack_traced(worker.traced)     # in the worker, after its measured window
    tuples = unpack_traced(packed)          # in the parent, the same list back
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["TracedDelivery", "pack_traced", "unpack_traced"]

#: One traced delivery: trace key, local port, then CLOCK_MONOTONIC seconds scheduled,
#: sent (NaN if the publisher gave none), read off the socket and handled.
TracedDelivery = tuple[str, int, float, float, float, float]


def pack_traced(traced: Sequence[TracedDelivery]) -> dict[str, Any]:
    """``traced`` as ``{"keys": [str], "key": int32[n], "port": int64[n], "times":
    float64[n, 4]}`` (picklable, compact); :func:`unpack_traced` reverses it exactly."""
    index: dict[str, int] = {}
    keys = np.fromiter(
        (index.setdefault(t[0], len(index)) for t in traced), dtype=np.int32, count=len(traced)
    )
    ports = np.fromiter((t[1] for t in traced), dtype=np.int64, count=len(traced))
    times = np.array([t[2:] for t in traced], dtype=np.float64).reshape(len(traced), 4)
    return {"keys": list(index), "key": keys, "port": ports, "times": times}


def unpack_traced(packed: dict[str, Any]) -> list[TracedDelivery]:
    """The tuples :func:`pack_traced` packed, in their order (floats bit for bit)."""
    keys: list[str] = packed["keys"]
    return [
        (keys[k], port, s, sent, read, handled)
        for k, port, (s, sent, read, handled) in zip(
            packed["key"].tolist(), packed["port"].tolist(), packed["times"].tolist(), strict=True
        )
    ]
