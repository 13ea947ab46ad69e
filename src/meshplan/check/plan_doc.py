"""Check a meshplan plan (perhaps edited by hand): recompute each figure it states.

A plan JSON/YAML (meshplan plan --json) is read by plan.plan_json.from_json, the one reader of a
plan file (every field it keeps checked), its pools by plan.pools.pools_of, and each figure it
claims is checked to be a number >= 0 before it is compared; a Markdown plan (meshplan plan
--markdown) is read by check.plan_markdown. Both become ``PlanClaims``, checked here the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshplan.check.verdict import Check, Report, Verdict, compare
from meshplan.errors import SpecError, finite_number
from meshplan.plan.plan import candidate_plan
from meshplan.plan.plan_json import from_json
from meshplan.plan.pools import pools_of
from meshplan.search.evaluate import evaluate_aggregated, evaluate_disaggregated, one_layout_allowed
from meshplan.specs.problem import Problem
from meshplan.strategy.layout import Layout, parse_strategy
from meshplan.strategy.rules import REQUIREMENT_RULES, Rule, layout_violations

FIGURES = (("gpus_total", "GPUs"), ("ttft_s", "s"), ("tpot_s", "s"), ("output_tok_s_per_gpu", "tok/s"),
           ("input_tok_s_per_gpu", "tok/s"), ("output_tok_s", "tok/s"), ("kv_cache_bytes_per_token", "bytes"))


@dataclass(frozen=True, kw_only=True, slots=True)
class PlanClaims:
    """What a meshplan plan states: the problem it answers, its strategies and its figures."""

    problem: Problem
    layouts: tuple[Layout, ...]
    """One layout (aggregated), or the prefill and the decode pool's (disaggregated)."""
    figures: dict[str, float]
    """Claimed value of each FIGURES key the plan states, in SI units."""
    memory: tuple[tuple[str, float], ...] = ()
    """(pool, claimed total memory per GPU in bytes); pool '' is the plan's main pool (decode when
    it has one), else 'prefill' or 'decode'."""
    lines: dict[str, int] = field(default_factory=dict)
    """Line of each claim, where the plan has lines (Markdown); memory claims as 'memory:POOL'."""
    kind: str = "meshplan plan"


def _number(value: Any, where: str, unit: str) -> float:
    if not finite_number(value) or value < 0:
        raise SpecError(where, value, f"must be a number ({unit}) >= 0")
    return float(value)


def claims_from_doc(doc: Any) -> PlanClaims:
    """The claims of a plan JSON/YAML, every one checked for shape and type."""
    plan = from_json(doc)
    pools = pools_of(plan)
    figures = {key: _number(getattr(plan, key), f"plan.{key}", unit) for key, unit in FIGURES
               if getattr(plan, key) is not None}
    claimed = (("", _number(plan.memory_per_gpu_bytes.total, "plan.memory_per_gpu_bytes.total", "bytes")),)
    return PlanClaims(problem=plan.problem_spec, layouts=tuple(p.layout for p in pools), figures=figures,
                      memory=claimed)


def check_plan_doc(doc: dict[str, Any], source: str, tolerance: float) -> Report:
    return check_plan(claims_from_doc(doc), source, tolerance)


def check_plan(claims: PlanClaims, source: str, tolerance: float) -> Report:
    """Every figure of ``claims`` against meshplan's evaluation of the plan's own strategies."""
    problem = claims.problem
    if len(claims.layouts) == 1:
        one_layout_allowed(problem, str(claims.layouts[0]), "strategy")
    cand = (evaluate_disaggregated(problem, *claims.layouts) if len(claims.layouts) == 2
            else evaluate_aggregated(problem, claims.layouts[0]))
    ours = candidate_plan(problem, cand)
    report = Report(source=source, kind=claims.kind, plan=ours)
    for key, unit in FIGURES:
        value = claims.figures.get(key)
        if value is None:
            continue
        lines = (claims.lines[key],) if key in claims.lines else ()
        if key == "gpus_total":
            ok = value == ours.gpus_total
            report.checks.append(Check(subject=key, verdict=Verdict.CONFIRMED if ok else Verdict.WRONG, lines=lines,
                                       claimed=value, meshplan=float(ours.gpus_total), unit=unit,
                                       rule="instances x pp x tp x attention dp per pool",
                                       message=f"claimed {value:,.0f}, the strategies give {ours.gpus_total}"))
            continue
        report.checks.append(compare(key, value, getattr(ours, key), unit, "meshplan evaluate of the plan's strategy",
                                     lines, tolerance=tolerance))
    for pool, value in claims.memory:
        part = ours.phases.of(pool) if pool else ours
        mine = None if part is None else part.memory_per_gpu_bytes.total
        lines = (claims.lines[f"memory:{pool}"],) if f"memory:{pool}" in claims.lines else ()
        report.checks.append(compare("memory_per_gpu" + (f" ({pool} pool)" if pool else ""), value, mine, "bytes",
                                     "weights + KV cache + activations + reserve", lines, tolerance=tolerance))
    return report


def check_problem_strategy(problem: Problem, source: str) -> Report:
    """A meshplan problem file that fixes a strategy: is the strategy legal, and what does it give."""
    moe = problem.model.is_moe
    if problem.strategy:
        lay = parse_strategy(problem.strategy, is_moe=moe)
        cand = evaluate_aggregated(problem, lay)
        layouts = [lay]
    elif problem.prefill_strategy and problem.decode_strategy:
        layouts = [parse_strategy(problem.prefill_strategy, is_moe=moe), parse_strategy(problem.decode_strategy, is_moe=moe)]
        cand = evaluate_disaggregated(problem, *layouts)
    else:
        raise SpecError(source, None, "states no strategy to check (strategy, or prefill_strategy + decode_strategy)")
    report = Report(source=source, kind="meshplan problem with a strategy", plan=candidate_plan(problem, cand))
    for lay in layouts:
        for v in layout_violations(problem, lay):
            report.checks.append(Check(subject="layout", verdict=Verdict.WRONG, rule=v.rule.value, message=v.message))
    for v in cand.violations:
        if v.rule in REQUIREMENT_RULES | {Rule.MEMORY, Rule.CONCURRENCY, Rule.GPU_BUDGET}:
            report.checks.append(Check(subject=v.rule.value, verdict=Verdict.WRONG, rule="requirements and memory",
                                       message=v.message))
    report.checks.append(Check(subject="prediction", verdict=Verdict.NOTED, message=(
        f"{cand.label}: {cand.gpus_total} GPUs, TTFT {cand.ttft_s or 0:.3g} s, TPOT {cand.tpot_s or 0:.3g} s, "
        f"{cand.output_tok_s_per_gpu or 0:,.0f} output tok/s per GPU")))
    return report
