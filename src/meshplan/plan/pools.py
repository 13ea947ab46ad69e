"""The pools of a plan (one shared pool when aggregated, a prefill and a decode pool when
disaggregated): what the DAG builder, the exporters, the report and the simulator start from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshplan.errors import SpecError, finite_number
from meshplan.plan.document import Plan
from meshplan.plan.plan_json import from_json
from meshplan.specs.problem import Problem
from meshplan.specs.workload import Phase, PoolRole
from meshplan.strategy.layout import Layout, parse_strategy


@dataclass(frozen=True, kw_only=True, slots=True)
class Pool:
    """One pool of a plan: its phase(s), layout, operating point and first GPU id."""

    phases: tuple[Phase, ...]
    layout: Layout
    B: dict[Phase, float]
    """Sequences (decode) or prompts (prefill) per attention-dp rank, per phase."""
    offset: int

    def __post_init__(self) -> None:
        # Phases given by name (a caller's "prefill") are read as Phase members, so that every
        # comparison below is between enums.
        object.__setattr__(self, "phases", tuple(Phase(p) for p in self.phases))
        object.__setattr__(self, "B", {Phase(k): v for k, v in self.B.items()})

    @property
    def role(self) -> PoolRole:
        """Aggregated (both phases), prefill or decode."""
        return PoolRole.AGGREGATED if len(self.phases) == 2 else PoolRole(self.phases[0].value)


def _batch(plan: Plan, phase: Phase) -> float:
    value = plan.phases.of(phase).batch_per_attention_dp_rank
    if not finite_number(value) or value <= 0:
        raise SpecError(f"plan.phases.{phase}.batch_per_attention_dp_rank", value, "must be a positive number")
    return float(value)


def _layout(plan: Plan, phase: Phase) -> Layout:
    figures = plan.phases.of(phase)
    if figures is None:
        raise SpecError(f"plan.phases.{phase}", None, f"missing; a {plan.mode.value} plan has a {phase} phase")
    return parse_strategy(figures.strategy.string, is_moe=plan.problem_spec.model.is_moe)


def pools_of(plan: Plan) -> list[Pool]:
    """The pools of a plan: the one place a plan's strategies become layouts."""
    if plan.disaggregated:
        pre, dec = Phase.PREFILL, Phase.DECODE
        pre_lay = _layout(plan, pre)
        return [Pool(phases=(pre,), layout=pre_lay, B={pre: _batch(plan, pre)}, offset=0),
                Pool(phases=(dec,), layout=_layout(plan, dec), B={dec: _batch(plan, dec)}, offset=pre_lay.gpus)]
    present = [phase for phase, _ in plan.phases.present()]
    if not present:
        raise SpecError("plan.phases", None, "holds neither a prefill nor a decode phase")
    lay = _layout(plan, present[-1])
    return [Pool(phases=tuple(present), layout=lay, B={k: _batch(plan, k) for k in present}, offset=0)]


def pools_from_doc(doc: Any) -> tuple[Problem, list[Pool]]:
    """Problem and pools of a plan JSON (plan.plan_json.from_json, every field checked)."""
    plan = from_json(doc)
    return plan.problem_spec, pools_of(plan)
