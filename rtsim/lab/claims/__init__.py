"""The article's claims (docs/claims.md): a registry of claims, each with the experiment that
evaluates it and a verdict in one of three forms (*holds*, *holds only when …*, *does
not hold here*).

    from rtsim.lab.claims import ledger, verdict_table, claims_table
    ledger()                          # every claim, quick runs + live measurements
    verdict_table(["C16", "C17"])     # a notebook's claims, seeded simulations only
    claims_table()                    # notebook 00's table

Layout: :mod:`.evidence` (Verdict, Evidence), :mod:`.context` (shared runs),
:mod:`.registry` (Claim, CLAIMS, ledger), one module per topic (memory, transports, sse,
brokers, architecture, conflict, presence).
"""

from __future__ import annotations

from .context import Context
from .evidence import FORMS, Evidence, Form, Verdict, verdict_form
from .registry import (
    CLAIMS,
    COLUMNS,
    Claim,
    claim,
    claims_table,
    evaluate,
    ledger,
    ledger_json,
    verdict_table,
)
from .sse import code_lines, minimal_sse_counts

__all__ = [
    "CLAIMS",
    "COLUMNS",
    "FORMS",
    "Claim",
    "Context",
    "Evidence",
    "Form",
    "Verdict",
    "claim",
    "claims_table",
    "code_lines",
    "evaluate",
    "ledger",
    "ledger_json",
    "minimal_sse_counts",
    "verdict_form",
    "verdict_table",
]
