"""The pools of a plan document (one shared pool when aggregated, a prefill and a decode pool
when disaggregated): what the DAG builder and the exporters start from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshplan.errors import SpecError, finite_number
from meshplan.io.spec_build import build
from meshplan.search.objectives import Mode
from meshplan.specs.problem import Problem
from meshplan.strategy.layout import Layout, parse_strategy


@dataclass(frozen=True, kw_only=True, slots=True)
class Pool:
    """One pool of a plan: its phase(s), layout, operating point and first GPU id."""

    phases: tuple[str, ...]
    layout: Layout
    B: dict[str, float]
    """Sequences (decode) or prompts (prefill) per attention-dp rank, per phase."""
    offset: int

    @property
    def role(self) -> str:
        """'aggregated', 'prefill' or 'decode'."""
        return "aggregated" if len(self.phases) == 2 else self.phases[0]


MODES = tuple(m.value for m in Mode)
"""Plan modes a plan document may state."""


def _at(doc: Any, *path: str | int) -> Any:
    """The value at ``path`` of a plan document, or one SpecError naming the JSON path."""
    node = doc
    for i, key in enumerate(path):
        where = "plan." + ".".join(str(p) for p in path[: i + 1])
        if not isinstance(node, dict) or key not in node:
            raise SpecError(where, None, "missing; is this a plan JSON written by meshplan plan --json?")
        node = node[key]
    return node


def _batch(doc: dict[str, Any], phase: str) -> float:
    value = _at(doc, "phases", phase, "batch_per_attention_dp_rank")
    if not finite_number(value) or value <= 0:
        raise SpecError(f"plan.phases.{phase}.batch_per_attention_dp_rank", value, "must be a positive number")
    return float(value)


def _layout(doc: dict[str, Any], phase: str, moe: bool) -> Layout:
    text = _at(doc, "phases", phase, "strategy", "string")
    if not isinstance(text, str):
        raise SpecError(f"plan.phases.{phase}.strategy.string", text, "must be a strategy string")
    return parse_strategy(text, is_moe=moe)


def pools_from_doc(doc: dict[str, Any]) -> tuple[Problem, list[Pool]]:
    """Problem and pools of a plan document (meshplan.plan/1), every field checked."""
    if not isinstance(doc, dict):
        raise SpecError("plan", type(doc).__name__, "must be a JSON object written by meshplan plan --json")
    if "problem_spec" not in doc:
        raise SpecError("plan", doc.get("problem"), "this plan JSON has no problem_spec; re-create it with meshplan plan")
    spec = doc["problem_spec"]
    if not isinstance(spec, dict):
        raise SpecError("plan.problem_spec", type(spec).__name__, "must be the problem as meshplan wrote it")
    problem = build(Problem, spec, "plan.problem_spec")
    mode = _at(doc, "mode")
    if mode not in MODES:
        raise SpecError("plan.mode", mode, "must be " + ", ".join(MODES))
    phases = _at(doc, "phases")
    if not isinstance(phases, dict):
        raise SpecError("plan.phases", type(phases).__name__, "must map prefill and decode to their figures")
    moe = problem.model.is_moe
    if mode == "disaggregated":
        pre_lay = _layout(doc, "prefill", moe)
        return problem, [Pool(phases=("prefill",), layout=pre_lay, B={"prefill": _batch(doc, "prefill")}, offset=0),
                         Pool(phases=("decode",), layout=_layout(doc, "decode", moe),
                              B={"decode": _batch(doc, "decode")}, offset=pre_lay.gpus)]
    present = [k for k in ("prefill", "decode") if phases.get(k)]
    if not present:
        raise SpecError("plan.phases", phases, "holds neither a prefill nor a decode phase")
    lay = _layout(doc, present[-1], moe)
    return problem, [Pool(phases=tuple(present), layout=lay, B={k: _batch(doc, k) for k in present}, offset=0)]
