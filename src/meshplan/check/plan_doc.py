"""Check a meshplan plan JSON/YAML (perhaps edited by hand): recompute each figure it states."""

from __future__ import annotations

from typing import Any

from meshplan.check.verdict import Check, Report, Verdict, compare
from meshplan.errors import SpecError
from meshplan.plan.plan import candidate_document
from meshplan.search.evaluate import evaluate_aggregated, evaluate_disaggregated
from meshplan.specs.problem import Problem
from meshplan.strategy.layout import parse_strategy

FIGURES = (("gpus_total", "GPUs"), ("ttft_s", "s"), ("tpot_s", "s"), ("output_tok_s_per_gpu", "tok/s"),
           ("input_tok_s_per_gpu", "tok/s"), ("output_tok_s", "tok/s"), ("kv_cache_bytes_per_token", "bytes"))


def check_plan_doc(doc: dict[str, Any], source: str, tolerance: float) -> Report:
    if "problem_spec" not in doc or "phases" not in doc:
        raise SpecError(source, None, "not a meshplan plan (needs problem_spec and phases; make one with meshplan plan)")
    problem = Problem.model_validate(doc["problem_spec"])
    moe = problem.model.is_moe
    phases = doc["phases"]
    if doc.get("mode") == "disaggregated":
        cand = evaluate_disaggregated(problem, parse_strategy(phases["prefill"]["strategy"]["string"], is_moe=moe),
                                      parse_strategy(phases["decode"]["strategy"]["string"], is_moe=moe))
    else:
        ph = phases.get("decode") or phases.get("prefill")
        cand = evaluate_aggregated(problem, parse_strategy(ph["strategy"]["string"], is_moe=moe))
    ours = candidate_document(problem, cand)
    report = Report(source=source, kind="meshplan plan", evaluation=ours)
    for key, unit in FIGURES:
        if doc.get(key) is None:
            continue
        if key == "gpus_total":
            ok = doc[key] == ours[key]
            report.checks.append(Check(subject=key, verdict=Verdict.CONFIRMED if ok else Verdict.WRONG,
                                       claimed=float(doc[key]), meshplan=float(ours[key]), unit=unit,
                                       rule="instances x pp x tp x attention dp per pool",
                                       message=f"claimed {doc[key]}, the strategies give {ours[key]}"))
            continue
        report.checks.append(compare(key, float(doc[key]), ours.get(key), unit, "meshplan evaluate of the plan's strategy",
                                     tolerance=tolerance))
    mem = (doc.get("memory_per_gpu_bytes") or {}).get("total")
    if mem is not None:
        report.checks.append(compare("memory_per_gpu", float(mem), ours["memory_per_gpu_bytes"]["total"], "bytes",
                                     "weights + KV cache + activations + reserve", tolerance=tolerance))
    return report


def check_problem_strategy(problem: Problem, source: str) -> Report:
    """A meshplan problem file that fixes a strategy: is the strategy legal, and what does it give."""
    from meshplan.strategy.rules import check_layout

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
    ours = candidate_document(problem, cand)
    report = Report(source=source, kind="meshplan problem with a strategy", evaluation=ours)
    for lay in layouts:
        for v in check_layout(problem.model, problem.gpu, lay.tp, lay.dp, lay.pp, lay.ep, lay.etp,
                              redundant=problem.assumptions.redundant_experts):
            report.checks.append(Check(subject="layout", verdict=Verdict.WRONG, rule=v.rule.value, message=v.message))
    for v in cand.violations:
        if v.rule.value in ("memory", "ttft", "tpot", "throughput", "concurrency", "gpu_budget"):
            report.checks.append(Check(subject=v.rule.value, verdict=Verdict.WRONG, rule="requirements and memory",
                                       message=v.message))
    report.checks.append(Check(subject="prediction", verdict=Verdict.NOTED, message=(
        f"{cand.label}: {cand.gpus_total} GPUs, TTFT {cand.ttft_s or 0:.3g} s, TPOT {cand.tpot_s or 0:.3g} s, "
        f"{cand.output_tok_s_per_gpu or 0:,.0f} output tok/s per GPU")))
    return report
