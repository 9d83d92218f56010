"""Stateless seed derivation.

``SeedSequence.spawn`` remembers how many children it has made, so calling it twice on the
same object gives different streams; a run that receives a seed must not depend on what was
spawned from it before. :func:`children` derives the same ``n`` children every time.
"""

from __future__ import annotations

import numpy as np

__all__ = ["as_seed_sequence", "children"]


def as_seed_sequence(seed: int | np.integer | np.random.SeedSequence) -> np.random.SeedSequence:
    """Accept a non-negative int or a SeedSequence; raise ``ValueError`` otherwise."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool) and seed >= 0:
        return np.random.SeedSequence(int(seed))
    raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def children(seed: int | np.random.SeedSequence, n: int) -> list[np.random.SeedSequence]:
    """The ``n`` children of ``seed``, the same on every call (unlike ``spawn``)."""
    ss = as_seed_sequence(seed)
    return [
        np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, i), pool_size=ss.pool_size)
        for i in range(n)
    ]
