"""A plan written in the seed system's Markdown (problems/seed-plan.md) -> raw problem mapping.

Such a plan states its layout several times, in several forms ("DP=1, PP=1, TP=1, EP=16",
"- **EP**: 16" bullets, "Total GPUs: 128"), sometimes inconsistently. This reader collects every
statement with its line number, takes the last complete one as the plan's final layout, and
pairs it with the problem the plan answers (by default the bundled seed problem). Checking each
numeric claim of the plan belongs to the checker (DESIGN.md section 9); this reader only gives
the layout so the plan can be evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from meshplan.errors import SpecError
from meshplan.io.seed_markdown import MAX_DIGITS

_INLINE = re.compile(r"\b(DP|TP|PP|EP)\s*=\s*([^\s,;:*)\]]*)")
_BULLET = re.compile(r"^\s*[-*]\s*\*\*(DP|TP|PP|EP)\*\*\s*:\s*([^\s,;(]*)")
_TOTAL = re.compile(r"Total GPUs(?: Required)?\**\s*:?\s*\**\s*([0-9]+)|([0-9]+)\s*GPUs total", re.IGNORECASE)


@dataclass(kw_only=True)
class LayoutStatement:
    """One place the plan states its layout."""

    line: int
    degrees: dict[str, int] = field(default_factory=dict)
    gpus: int | None = None

    @property
    def complete(self) -> bool:
        return {"dp", "tp", "pp", "ep"} <= set(self.degrees)

    def add(self, axis: str, value: str, source: str, line: int) -> None:
        """One stated degree: a whole number >= 1 in ASCII digits, each axis once per statement."""
        key, value = axis.lower(), value.removesuffix(".")  # "EP=16." ends a sentence
        where = f"{source}:{line} {axis.upper()}"
        if not re.fullmatch(r"[0-9]+", value) or not value.strip("0") or len(value.lstrip("0")) > MAX_DIGITS:
            raise SpecError(where, value[:30],
                            f"{key} is a degree: a whole number >= 1 (of at most {MAX_DIGITS} digits)")
        if key in self.degrees:
            raise SpecError(where, value, f"{axis.upper()} is stated twice in the layout of line {self.line}")
        self.degrees[key] = int(value)

    def text(self) -> str:
        body = ", ".join(f"{k.upper()}={v}" for k, v in sorted(self.degrees.items()))
        return body + (f", {self.gpus} GPUs" if self.gpus is not None else "")


def looks_like_plan(text: str) -> bool:
    first = text.lstrip().splitlines()[0].lower() if text.strip() else ""
    return first.startswith("#") and "plan" in first and "environment condition" not in text.lower()


def layout_statements(text: str, source: str = "plan.md") -> tuple[list[LayoutStatement], list[tuple[int, int]]]:
    """Every layout statement, and every GPU total stated (line, count). A line that states two
    or more degrees (``DP=1, PP=1, TP=1, EP=16``) or a run of ``- **EP**: 16`` bullets is a
    statement; a degree in one that is not a whole number >= 1 is refused (file:line, axis)."""
    statements: list[LayoutStatement] = []
    totals: list[tuple[int, int]] = []
    group: LayoutStatement | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        for m in _TOTAL.finditer(line):
            count = m.group(1) or m.group(2)
            if not count.strip("0") or len(count.lstrip("0")) > MAX_DIGITS:
                raise SpecError(f"{source}:{lineno} Total GPUs", m.group(0)[:40],
                                f"a GPU count is a whole number >= 1 (of at most {MAX_DIGITS} digits)")
            totals.append((lineno, int(count)))
        inline = _INLINE.findall(line)
        if len(inline) >= 2:
            st = LayoutStatement(line=lineno)
            for axis, value in inline:
                st.add(axis, value, source, lineno)
            m = _TOTAL.search(line)
            st.gpus = int(m.group(1) or m.group(2)) if m else None
            statements.append(st)
            continue
        bullet = _BULLET.match(line)
        if bullet:
            group = group or LayoutStatement(line=lineno)
            group.add(bullet.group(1), bullet.group(2), source, lineno)
            continue
        if group is not None and "total gpus" in line.lower():
            m = _TOTAL.search(line)
            group.gpus = int(m.group(1) or m.group(2)) if m else None
            continue
        if group is not None and (line.startswith("#") or not line.strip()):
            statements.append(group)
            group = None
    if group is not None:
        statements.append(group)
    return statements, totals


def read_seed_plan(text: str, source: str, problem_raw: dict[str, Any]) -> dict[str, Any]:
    """The problem ``problem_raw`` with the plan's final layout as its seed strategy."""
    statements, totals = layout_statements(text, source)
    complete = [s for s in statements if s.complete]
    if not complete:
        raise SpecError(source, None, "no complete layout (DP, TP, PP and EP) stated in this plan")
    final = complete[-1]
    raw = dict(problem_raw)
    notes = list(raw.get("notes", []))
    notes.append({"field": "plan", "message": (
        f"{source} is a plan; it is paired with the problem it answers ({raw.get('name')}) and its final "
        f"layout (line {final.line}: {final.text()}) is evaluated")})
    for st in statements:
        notes.append({"field": f"{source}:{st.line}", "message": f"layout stated: {st.text()}"})
    distinct = sorted({n for _, n in totals})
    if len(distinct) > 1:
        where = ", ".join(f"{n} (line {ln})" for ln, n in totals)
        notes.append({"field": "plan.gpus", "message": f"the plan states contradicting GPU totals: {where}"})
    d = final.degrees
    raw["seed_strategy"] = {"dp": d["dp"], "tp": d["tp"], "pp": d["pp"], "ep": d["ep"],
                            "gpus": final.gpus if final.gpus is not None else (totals[-1][1] if totals else None)}
    raw["notes"] = notes
    raw["name"] = source.rsplit(".", 1)[0]
    return raw
