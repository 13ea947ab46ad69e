"""The pools of a plan document (one shared pool when aggregated, a prefill and a decode pool
when disaggregated): what the DAG builder and the exporters start from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshplan.errors import SpecError
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


def pools_from_doc(doc: dict[str, Any]) -> tuple[Problem, list[Pool]]:
    """Problem and pools of a plan document (meshplan.plan/1)."""
    if "problem_spec" not in doc:
        raise SpecError("plan", doc.get("problem"), "this plan JSON has no problem_spec; re-create it with meshplan plan")
    problem = Problem.model_validate(doc["problem_spec"])
    phases = doc["phases"]
    moe = problem.model.is_moe
    if doc["mode"] == "disaggregated":
        pre, dec = phases["prefill"], phases["decode"]
        pre_lay = parse_strategy(pre["strategy"]["string"], is_moe=moe)
        return problem, [Pool(phases=("prefill",), layout=pre_lay, B={"prefill": pre["batch_per_attention_dp_rank"]},
                              offset=0),
                         Pool(phases=("decode",), layout=parse_strategy(dec["strategy"]["string"], is_moe=moe),
                              B={"decode": dec["batch_per_attention_dp_rank"]}, offset=pre_lay.gpus)]
    present = [k for k in ("prefill", "decode") if phases.get(k)]
    lay = parse_strategy(phases[present[-1]]["strategy"]["string"], is_moe=moe)
    return problem, [Pool(phases=tuple(present), layout=lay,
                          B={k: phases[k]["batch_per_attention_dp_rank"] for k in present}, offset=0)]
