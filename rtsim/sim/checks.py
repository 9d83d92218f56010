"""Small predicates the models' parameter validation shares."""

from __future__ import annotations

import math

__all__ = ["nonneg", "positive"]


def positive(x: object) -> bool:
    """A finite number > 0 (booleans are not numbers here)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def nonneg(x: object) -> bool:
    """A finite number >= 0."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x >= 0
