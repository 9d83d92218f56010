"""The claims ledger (kept for existing callers): see :mod:`rtsim.lab.claims`.

``ledger(quick=True, seed=0)`` and ``ledger_json(df)`` are the registry's.
"""

from __future__ import annotations

from .claims import (
    COLUMNS,
    FORMS,
    code_lines,
    ledger,
    ledger_json,
    minimal_sse_counts,
    verdict_form,
)

__all__ = [
    "COLUMNS",
    "FORMS",
    "code_lines",
    "ledger",
    "ledger_json",
    "minimal_sse_counts",
    "verdict_form",
]
