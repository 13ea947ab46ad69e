"""What a check says about one claim."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from meshplan.plan.document import Plan
from meshplan.plan.plan_json import to_json
from meshplan.units import GIB, fmt_bytes, fmt_seconds

TOLERANCE = 0.25
"""A claimed figure within 25% of meshplan's counts as confirmed: meshplan's own estimates carry
errors of that order (median 25% on the published cases, `meshplan validate`), so a tighter
test would flag honest estimates."""


class Verdict(StrEnum):
    CONFIRMED = "confirmed"
    WRONG = "wrong"
    UNVERIFIABLE = "unverifiable"
    NOTED = "noted"
    """Something meshplan had to assume or noticed in the problem itself."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Check:
    subject: str
    verdict: Verdict
    lines: tuple[int, ...] = ()
    claimed: float | None = None
    meshplan: float | None = None
    unit: str = ""
    rule: str = ""
    """The rule or formula meshplan's value comes from."""
    message: str = ""
    text: str = ""
    """The plan's own words (first line)."""

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "verdict": self.verdict.value, "lines": list(self.lines),
                "claimed": self.claimed, "meshplan": self.meshplan, "unit": self.unit, "rule": self.rule,
                "message": self.message, "text": self.text}


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "bytes":
        if value < 1e8:
            return fmt_bytes(value)
        return f"{value / 1e9:,.2f} GB ({value / GIB:,.2f} GiB)"
    if unit == "s":
        return fmt_seconds(value)
    if unit == "fraction":
        return f"{value:.1%}"
    if unit == "tok/s":
        return f"{value:,.0f} tok/s ({value / 1e3:,.1f} tokens/ms)"
    if unit == "params":
        return f"{value / 1e9:,.2f}B"
    return f"{value:,.6g}"


def compare(subject: str, claimed: float, ours: float | None, unit: str, rule: str, lines=(), text: str = "",
            tolerance: float = TOLERANCE, extra: str = "") -> Check:
    """Confirmed within the tolerance, else wrong with meshplan's value and the rule."""
    if ours is None:
        return Check(subject=subject, verdict=Verdict.UNVERIFIABLE, lines=tuple(lines), claimed=claimed, unit=unit,
                     rule=rule, text=text, message=f"meshplan has no {subject} for this layout")
    ok = abs(claimed - ours) <= tolerance * abs(ours) if ours else claimed == 0
    ratio = claimed / ours if ours else float("inf")
    message = (f"claimed {fmt(claimed, unit)}, meshplan {fmt(ours, unit)}"
               + ("" if ok else f" (the claim is {ratio:,.2f}x meshplan's)") + (f"; {extra}" if extra else ""))
    return Check(subject=subject, verdict=Verdict.CONFIRMED if ok else Verdict.WRONG, lines=tuple(lines),
                 claimed=claimed, meshplan=ours, unit=unit, rule=rule, message=message, text=text)


@dataclass(kw_only=True, slots=True)
class Report:
    """The checker's answer: every claim's verdict, the consistent layout and its evaluation."""

    source: str
    kind: str
    checks: list[Check] = field(default_factory=list)
    reading: dict[str, Any] | None = None
    plan: Plan | None = None
    """meshplan's own plan of the layout checked."""

    @property
    def evaluation(self) -> dict[str, Any] | None:
        """``plan`` as its JSON (plan.plan_json)."""
        return None if self.plan is None else to_json(self.plan)

    @property
    def any_wrong(self) -> bool:
        return any(c.verdict is Verdict.WRONG for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "meshplan.check/1", "source": self.source, "kind": self.kind,
                "any_wrong": self.any_wrong, "checks": [c.to_dict() for c in self.checks],
                "reading": self.reading, "evaluation": self.evaluation}
