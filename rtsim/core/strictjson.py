"""Strict JSON (RFC 8259) for everything the lab prints: no NaN, no Infinity.

``dumps(obj)`` turns NaN and ±infinity into ``null``, numpy scalars and arrays into
Python numbers and lists, Enums into their value, and anything else unknown into ``str``;
then it serialises with ``allow_nan=False`` so a stray non-finite float can never slip
through. Sans-I/O: it returns a string.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from enum import Enum
from typing import Any

__all__ = ["dumps", "jsonable"]


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values (dict, list, str, int, float, bool, None), recursively.

    Non-finite floats become ``None``; numpy scalars (anything with ``.item()``) and arrays
    (``.tolist()``) are converted; tuples and sets become lists; mapping keys become strings.
    """
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, Enum):
        return jsonable(obj.value)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {
            str(jsonable(k)) if not isinstance(k, str) else k: jsonable(v) for k, v in obj.items()
        }
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(v) for v in obj]
    if getattr(obj, "ndim", 0) or (hasattr(obj, "tolist") and not hasattr(obj, "item")):
        return jsonable(obj.tolist())
    if hasattr(obj, "item"):
        try:
            return jsonable(obj.item())
        except (TypeError, ValueError):
            pass
    if hasattr(obj, "isoformat"):
        return str(obj.isoformat())
    return str(obj)


def dumps(obj: Any, **kwargs: Any) -> str:
    """One strict JSON document for ``obj`` (see :func:`jsonable`); ``kwargs`` go to
    :func:`json.dumps` (``allow_nan`` is always ``False``)."""
    kwargs.pop("allow_nan", None)
    return json.dumps(jsonable(obj), allow_nan=False, **kwargs)
