"""What a claim's evaluation produces: a :class:`Verdict` in one of three forms, and the
:class:`Evidence` (figures, conditions, source) behind it.

The vocabulary is closed: a verdict is *holds*, *holds only when …* (with the condition) or
*does not hold here*, followed by the figures behind it. Nothing else can be constructed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["FORMS", "Evidence", "Form", "Verdict", "verdict_form"]


class Form(enum.Enum):
    """The three verdict forms; ``value`` is the words a verdict starts with."""

    HOLDS = "holds"
    HOLDS_ONLY_WHEN = "holds only when"
    DOES_NOT_HOLD = "does not hold here"


#: The forms' words, longest first (so "holds only when" is matched before "holds").
FORMS = (Form.HOLDS_ONLY_WHEN.value, Form.DOES_NOT_HOLD.value, Form.HOLDS.value)


@dataclass(frozen=True)
class Verdict:
    """A verdict: its form, the condition (only and always for *holds only when*), and the
    figures behind it (``detail``, may be empty).

    Rendered by ``str()`` as ``"<form>[ <condition>][: <detail>]"``. Raises ``ValueError``
    if a condition is missing for *holds only when* or given for another form.
    """

    form: Form
    detail: str = ""
    condition: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.form, Form):
            raise ValueError(f"a verdict's form must be a Form, got {self.form!r}")
        if (self.form is Form.HOLDS_ONLY_WHEN) != bool(self.condition.strip()):
            raise ValueError(
                "a 'holds only when' verdict needs a condition, and no other form takes one"
            )

    @classmethod
    def holds(cls, detail: str = "") -> Verdict:
        return cls(Form.HOLDS, detail)

    @classmethod
    def only_when(cls, condition: str, detail: str = "") -> Verdict:
        return cls(Form.HOLDS_ONLY_WHEN, detail, condition)

    @classmethod
    def does_not_hold(cls, detail: str = "") -> Verdict:
        return cls(Form.DOES_NOT_HOLD, detail)

    def __str__(self) -> str:
        head = self.form.value
        if self.condition:
            head += " " + self.condition
        return f"{head}: {self.detail}" if self.detail else head


@dataclass(frozen=True)
class Evidence:
    """One claim's evaluation: the simulated and measured figures (text), the conditions
    they were obtained under, the :class:`Verdict`, and where the figures come from
    (``source``: "quick run", "live measurement", "committed result: …", or "error")."""

    simulated: str
    measured: str
    conditions: str
    verdict: Verdict
    source: str


def verdict_form(verdict: str) -> str | None:
    """The form a rendered verdict starts with (one of :data:`FORMS`), or None if it has
    none (e.g. "holds only with jitter", "supported")."""
    for form in FORMS:
        if verdict == form or verdict.startswith(form + ":") or verdict.startswith(form + " "):
            if form == Form.HOLDS.value and verdict.startswith("holds only"):
                return None  # "holds only ..." must be "holds only when ..."
            return form
    return None
