"""Parameters declared once: bounds, unit, help and source on each dataclass field.

A model's parameter dataclass declares each field with :func:`param`::

    @dataclass(frozen=True)
    class P:
        loss: float = param(0.0, lo=0, hi=1, hi_open=True, unit="probability",
                            help="packet loss", source="0: no loss unless asked")

        def __post_init__(self) -> None:
            validate(self)        # ValueError("loss must be in [0, 1), got 1.5")

From the same metadata come the command-line flags (``rtsim.cli``), slider ranges
(:func:`slider_range`), the defaults tables the notebooks show (:func:`defaults_table`) and
the ``DEFAULTS_SOURCES`` dicts (:func:`sources`).

Rules every numeric field obeys: booleans are not numbers; the value must be finite (unless
the field declares ``inf_ok=True``, for an "unlimited"/"not modelled" sentinel); integers
must be whole numbers. Sans-I/O: nothing here reads files, clocks or the environment.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterator, Sequence
from enum import Enum
from typing import Any

__all__ = [
    "Spec",
    "check",
    "defaults_table",
    "param",
    "slider_range",
    "sources",
    "specs",
    "validate",
]

_KEY = "rtsim.param"


@dataclasses.dataclass(frozen=True)
class Spec:
    """What one parameter may be. ``lo``/``hi`` are bounds (``None``: unbounded); an
    ``*_open`` end excludes the bound itself. ``kind`` is ``"int"``, ``"float"``, ``"bool"``
    or ``"choice"`` (one of ``choices``, compared as strings, an Enum by its value).
    ``flag`` overrides the command-line spelling (default: the field name with dashes);
    ``cli=False`` keeps a field off the command line."""

    kind: str = "float"
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    unit: str = ""
    help: str = ""
    source: str = ""
    choices: tuple[str, ...] | None = None
    optional: bool = False
    inf_ok: bool = False
    flag: str | None = None
    cli: bool = True

    def bounds_text(self) -> str:
        """``[0, 1)``, ``>= 1``, ``> 0`` or ``""`` (no bounds)."""
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            left = "(" if self.lo_open else "["
            right = ")" if self.hi_open else "]"
            return f"{left}{_fmt(lo)}, {_fmt(hi)}{right}"
        if lo is not None:
            return f"{'>' if self.lo_open else '>='} {_fmt(lo)}"
        if hi is not None:
            return f"{'<' if self.hi_open else '<='} {_fmt(hi)}"
        return ""


def _fmt(x: float) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return f"{x:g}"


def param(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    unit: str = "",
    help: str = "",
    source: str = "",
    choices: Sequence[str] | None = None,
    integer: bool | None = None,
    kind: str | None = None,
    optional: bool = False,
    inf_ok: bool = False,
    flag: str | None = None,
    cli: bool = True,
) -> Any:
    """A ``dataclasses.field`` carrying a :class:`Spec` in its metadata.

    ``kind`` is inferred when not given: ``"choice"`` with ``choices``, ``"bool"`` for a
    bool default, ``"int"`` for an int default (or ``integer=True``), else ``"float"``.
    Raises ``ValueError`` if the declaration itself is inconsistent (``lo > hi``, an
    unknown kind, or a default that breaks its own bounds).
    """
    if kind is None:
        if choices is not None:
            kind = "choice"
        elif isinstance(default, bool):
            kind = "bool"
        elif integer or (integer is None and isinstance(default, int)):
            kind = "int"
        else:
            kind = "float"
    if kind not in ("int", "float", "bool", "choice"):
        raise ValueError(f"kind must be int, float, bool or choice, got {kind!r}")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"lo ({lo}) must be <= hi ({hi})")
    spec = Spec(
        kind=kind,
        lo=lo,
        hi=hi,
        lo_open=lo_open,
        hi_open=hi_open,
        unit=unit,
        help=help,
        source=source,
        choices=tuple(choices) if choices is not None else None,
        optional=optional,
        inf_ok=inf_ok,
        flag=flag,
        cli=cli,
    )
    if default is not dataclasses.MISSING:
        reason = check(default, spec)
        if reason is not None:
            raise ValueError(f"default {reason}")
    meta = {_KEY: spec}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def check(value: Any, spec: Spec) -> str | None:
    """Why ``value`` breaks ``spec`` (e.g. ``"must be in [0, 1), got 1.5"``), or ``None``."""
    if value is None:
        return None if spec.optional else "must be given, got None"
    if spec.kind == "bool":
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if spec.kind == "choice":
        text = str(value.value) if isinstance(value, Enum) else str(value)
        assert spec.choices is not None
        if text in spec.choices:
            return None
        return f"must be one of {', '.join(spec.choices)}; got {value!r}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"must be a number, got {value!r}"
    whole = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
    if spec.kind == "int" and not whole:
        return f"must be a whole number, got {value!r}"
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not spec.inf_ok):
        return f"must be finite, got {_show(v)}"
    lo, hi = spec.lo, spec.hi
    bad = (
        (lo is not None and (v < lo or (spec.lo_open and v == lo)))
        or (hi is not None and (v > hi or (spec.hi_open and v == hi)))
    )  # fmt: skip
    if bad:
        where = spec.bounds_text()
        verb = "must be in" if lo is not None and hi is not None else "must be"
        return f"{verb} {where}, got {_show(value)}"
    return None


def _show(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    return str(v)


def specs(cls_or_obj: Any) -> Iterator[tuple[dataclasses.Field[Any], Spec]]:
    """(field, spec) for every field of a dataclass (class or instance) declared by
    :func:`param`, in declaration order. Raises ``TypeError`` for a non-dataclass."""
    for f in dataclasses.fields(cls_or_obj):
        spec = f.metadata.get(_KEY)
        if isinstance(spec, Spec):
            yield f, spec


def validate(obj: Any) -> None:
    """Check every declared field of the dataclass instance ``obj``.

    Raises ``ValueError("<field> must be …, got …")`` for the first field that breaks
    its spec. Integer fields given as whole floats (``3.0``) are stored as ``int``.
    Cross-field rules (``channels <= clients``) stay with the model, after this call.
    """
    for f, spec in specs(obj):
        value = getattr(obj, f.name)
        reason = check(value, spec)
        if reason is not None:
            raise ValueError(f"{f.name} {reason}")
        if spec.kind == "int" and value is not None and not isinstance(value, int):
            object.__setattr__(obj, f.name, int(value))


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def sources(cls: Any) -> dict[str, str]:
    """``{field: source}`` for every declared field that names a source (notebook tables)."""
    return {f.name: spec.source for f, spec in specs(cls) if spec.source}


def defaults_table(cls: Any) -> list[dict[str, Any]]:
    """One row per declared field: parameter, default, unit, bounds, meaning, source.

    A list of plain dicts (``pandas.DataFrame(rows)`` makes the table); the default is the
    field's declared default (an Enum as its value).
    """
    rows = []
    for f, spec in specs(cls):
        d = _default(f)
        rows.append(
            {
                "parameter": f.name,
                "default": d.value if isinstance(d, Enum) else d,
                "unit": spec.unit,
                "bounds": spec.bounds_text() or (", ".join(spec.choices or ()) or ""),
                "meaning": spec.help,
                "source": spec.source,
            }
        )
    return rows


def slider_range(
    cls: Any, name: str, lo: float | None = None, hi: float | None = None
) -> tuple[float, float]:
    """(min, max) for a slider over field ``name``: the requested ``lo``/``hi`` clipped to
    the field's declared bounds (an open end is kept out). Raises ``ValueError`` if the
    field is not declared, or the clipped range is empty."""
    spec = next((s for f, s in specs(cls) if f.name == name), None)
    if spec is None:
        raise ValueError(f"{name} is not a declared parameter of {cls.__name__}")
    a = spec.lo if lo is None else lo
    b = spec.hi if hi is None else hi
    if a is None or b is None:
        raise ValueError(f"{name} has no declared bound on one side; give lo and hi")
    if spec.lo is not None:
        a = max(a, spec.lo)
    if spec.hi is not None:
        b = min(b, spec.hi)
    if spec.hi_open and spec.hi is not None and b >= spec.hi:
        b = spec.hi - (spec.hi - a) * 1e-9 if spec.kind != "int" else spec.hi - 1
    if spec.lo_open and spec.lo is not None and a <= spec.lo:
        a = spec.lo + (b - spec.lo) * 1e-9 if spec.kind != "int" else spec.lo + 1
    if a > b:
        raise ValueError(f"empty slider range for {name}: [{a}, {b}]")
    return float(a), float(b)
