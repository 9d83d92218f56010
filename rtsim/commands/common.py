"""What every ``rtsim`` command shares: a one-line-error parser, flags generated from a
model's parameter declarations (:mod:`rtsim.core.params`), and the table / strict-JSON
printers.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn, TypeAlias

from ..core import strictjson
from ..core.params import Spec, check, specs

__all__ = ["Handler", "Sub", "add_param_flags", "params_from_args", "print_json", "print_result"]

Handler = Callable[[argparse.Namespace], int]
Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``PROG: error: …``), exit 2."""

    def error(self, message: str) -> NoReturn:
        # "argument --rate: must be > 0, got -3" -> "--rate must be > 0, got -3"
        message = re.sub(r"^argument ([^:]+): (?=must |expects )", r"\1 ", message)
        message = re.sub(r"^argument (-\S+)/(-\S+)", r"argument \2", message)
        self.exit(2, f"{self.prog}: error: {message.splitlines()[0]}\n")


def _typed(spec: Spec) -> Callable[[str], Any]:
    """An argparse ``type`` that parses a number and checks it against ``spec``."""

    def parse(text: str) -> Any:
        try:
            value: Any = int(text) if spec.kind == "int" else float(text)
        except ValueError:
            what = "a whole number" if spec.kind == "int" else "a number"
            raise argparse.ArgumentTypeError(f"expects {what}, got {text!r}") from None
        reason = check(value, spec)
        if reason is not None:
            raise argparse.ArgumentTypeError(reason)
        return value

    parse.__name__ = spec.kind  # argparse names the type in its own messages
    return parse


_positive_float = _typed(Spec(kind="float", lo=0, lo_open=True))
_nonneg_float = _typed(Spec(kind="float", lo=0))
_positive_int = _typed(Spec(kind="int", lo=1))
_nonneg_int = _typed(Spec(kind="int", lo=0))
_SEED = Spec(kind="int", lo=0, help="random seed (same seed, same figures)")


def _flag(name: str, spec: Spec) -> str:
    return "--" + (spec.flag or name.replace("_", "-"))


def _shown(v: Any) -> str:
    v = getattr(v, "value", v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def add_param_flags(
    p: argparse.ArgumentParser,
    cls: Any,
    *,
    required: Iterable[str] = (),
    skip: Iterable[str] = (),
) -> None:
    """One flag per declared field of the dataclass ``cls`` (see :mod:`rtsim.core.params`).

    The flag is ``--field-name`` (or the spec's ``flag``), its type and bounds checked at
    parse time, its help "<help> (<unit>; default <default>)". Fields with ``cli=False``,
    in ``skip`` or without a spec get no flag; those in ``required`` have no default.
    """
    required, skip = set(required), set(skip)
    for f, spec in specs(cls):
        if not spec.cli or f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        default = getattr(default, "value", default)
        unit = f"{spec.unit}; " if spec.unit else ""
        bounds = f"{spec.bounds_text()}; " if spec.lo is not None or spec.hi is not None else ""
        shown = "half-way" if default is None else _shown(default)
        help_text = f"{spec.help} ({unit}{bounds}default {shown})".replace("%", "%%")
        kw: dict[str, Any] = {"dest": f.name, "help": help_text}
        if f.name in required:
            kw["required"] = True
            kw["help"] = f"{spec.help} (required)"
        else:
            kw["default"] = default
        if spec.kind == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        elif spec.kind == "choice":
            kw["choices"] = list(spec.choices or ())
        else:
            kw["type"] = _typed(spec)
            kw["metavar"] = "N" if spec.kind == "int" else "X"
        p.add_argument(_flag(f.name, spec), **kw)


def params_from_args(cls: Any, a: argparse.Namespace, **extra: Any) -> Any:
    """``cls(**fields)`` from the flags :func:`add_param_flags` made, plus ``extra``."""
    kw = {f.name: getattr(a, f.name) for f, _ in specs(cls) if hasattr(a, f.name)}
    kw.update(extra)
    return cls(**{k: v for k, v in kw.items() if v is not None or k in extra})


def _flagify(message: str, cls: Any) -> str:
    """Name flags, not fields, in a model's error (``timeout_s`` -> ``--timeout-s``)."""
    for f, spec in specs(cls):
        if spec.cli:
            message = re.sub(rf"(?<![\w-]){re.escape(f.name)}\b", _flag(f.name, spec), message)
    return message


def _build(cls: Any, a: argparse.Namespace, **extra: Any) -> Any:
    try:
        return params_from_args(cls, a, **extra)
    except ValueError as exc:
        raise ValueError(_flagify(str(exc), cls)) from None


def _progress(a: argparse.Namespace) -> bool:
    """Progress bars only on a terminal, never with ``--json``."""
    return not getattr(a, "json", False) and sys.stderr.isatty()


def _num(v: Any) -> str:
    """A number rounded for reading: 3 significant digits below 10, thousands separators."""
    v = getattr(v, "item", lambda: v)() if not isinstance(v, str | bool) else v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a == 0:
        return "0"
    return f"{v:.3g}"


def print_json(obj: Any) -> None:
    """Print ``obj`` as one strict JSON document (the one printer of every ``--json``)."""
    print(strictjson.dumps(obj))


def print_result(
    summary: dict[str, Any], as_json: bool, title: str, notes: dict[str, str] | None = None
) -> None:
    """Print one summary as strict JSON (one object) or as an aligned, rounded table.

    ``notes`` add a remark after a row (e.g. "overload: utilisation above 1").
    """
    if as_json:
        print_json(summary)
        return
    print(title)
    width = max(len(k) for k in summary)
    for k, v in summary.items():
        note = f"  ({notes[k]})" if notes and k in notes else ""
        print(f"  {k:<{width}}  {_num(v)}{note}")


def _table(rows: list[dict[str, Any]], columns: Sequence[str], indent: str = "  ") -> str:
    """Rows as an aligned text table, numbers rounded for reading."""
    cells = [[str(c) for c in columns]] + [[_num(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for j, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append(indent + "  ".join(parts).rstrip())
        if j == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _add_seed_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=_typed(_SEED), default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
