"""meshplan evaluate: one strategy, its figures, and why the search would not pick it."""

from __future__ import annotations

from dataclasses import replace

from meshplan.errors import SpecError
from meshplan.plan.candidates import Evaluation, SearchBest, SeedReading
from meshplan.plan.document import Plan, PlanNote
from meshplan.plan.plan import candidate_plan
from meshplan.plan.plan_json import to_json
from meshplan.search.evaluate import evaluate_aggregated, evaluate_disaggregated, one_layout_allowed, unusual_placements
from meshplan.search.search import search
from meshplan.specs.problem import Problem
from meshplan.strategy.layout import Layout, parse_strategy
from meshplan.strategy.notation import from_seed
from meshplan.strategy.rules import REQUIREMENT_RULES, Rule


def _with_gpus(lay: Layout, gpus: int | None, field: str) -> Layout:
    """--gpus is the exact count: it sets the instance count, which must come out whole."""
    if gpus is None:
        return lay
    if gpus % lay.gpus_per_instance:
        raise SpecError("--gpus", gpus, f"must be a multiple of the {lay.gpus_per_instance} GPUs per instance "
                        f"of {field} ({lay.short})")
    return lay.with_instances(gpus // lay.gpus_per_instance)


def run_evaluate(problem: Problem, strategy: str | None, prefill_s: str | None, decode_s: str | None,
                 gpus: int | None) -> dict:
    """evaluate_plan as its JSON (plan.plan_json)."""
    return to_json(evaluate_plan(problem, strategy, prefill_s, decode_s, gpus))


def evaluate_plan(problem: Problem, strategy: str | None, prefill_s: str | None, decode_s: str | None,
                  gpus: int | None) -> Plan:
    """The plan of one strategy (--strategy, or --prefill and --decode, or the problem's own), with
    why the search would not pick it."""
    moe = problem.model.is_moe
    strategy = strategy or problem.strategy
    prefill_s, decode_s = prefill_s or problem.prefill_strategy, decode_s or problem.decode_strategy
    if strategy and (prefill_s or decode_s):
        raise SpecError("--strategy", strategy, "give either --strategy or --prefill and --decode, not both")
    if strategy:
        one_layout_allowed(problem, strategy)
        cand = evaluate_aggregated(problem, _with_gpus(parse_strategy(strategy, is_moe=moe), gpus, "--strategy"))
    elif prefill_s and decode_s:
        cand = evaluate_disaggregated(problem, parse_strategy(prefill_s, is_moe=moe, field="--prefill"),
                                      parse_strategy(decode_s, is_moe=moe, field="--decode"))
    elif problem.seed_strategy is not None:
        reading = from_seed(problem.seed_strategy, problem.model)
        one_layout_allowed(problem, str(reading.layout), "seed_strategy")
        cand = evaluate_aggregated(problem, reading.layout)
    else:
        raise SpecError("--strategy", None, "missing; evaluate needs --strategy S (or --prefill S --decode S)")
    structural = [v for v in cand.violations if v.rule is not Rule.MEMORY and v.rule not in REQUIREMENT_RULES]
    if structural and not problem.seed_strategy:
        raise SpecError("strategy", strategy or f"{prefill_s} / {decode_s}",
                        "; ".join(f"[{v.rule.value}] {v.message}" for v in structural))
    plan = candidate_plan(problem, cand)
    notes = [PlanNote(field="strategy", message=m)
             for lay in {id(x): x for x in (cand.prefill, cand.decode) if x is not None}.values()
             for m in unusual_placements(problem, lay)]
    # The search under the same budget: the problem's, else the GPUs the evaluated plan uses.
    budget = problem.gpu_budget or cand.gpus_total
    best = search(problem.model_copy(update={"gpu_budget": budget})).best
    seed = None
    if problem.seed_strategy is not None and not strategy and not prefill_s:
        seed = SeedReading(layout=str(reading.layout), consistent=reading.consistent, findings=tuple(reading.findings))
    best_seen = None if best is None else SearchBest(
        label=best.label, gpus_total=best.gpus_total, output_tok_s_per_gpu=best.output_tok_s_per_gpu,
        input_tok_s_per_gpu=best.input_tok_s_per_gpu)
    evaluation = Evaluation(why_not=_why_not(cand, best, budget), search_best=best_seen, seed_reading=seed)
    return replace(plan, notes=plan.notes + tuple(notes), evaluation=evaluation)


def _why_not(c, best, budget: int) -> str:
    """Why the search would not pick ``c``: its broken rules, then how it compares with the best."""
    parts = []
    if c.violations:
        parts.append("rejected: " + "; ".join(v.message for v in c.violations))
    if best is None:
        return parts[0] if parts else "no layout meets every requirement; this one does"
    a, b = c.output_tok_s_per_gpu, best.output_tok_s_per_gpu
    if a is None or b is None:
        a, b = c.input_tok_s_per_gpu, best.input_tok_s_per_gpu
    met = "meets every requirement" if best.feasible else "is the closest to the requirements"
    if a is not None and b and a < b * (1 - 1e-6):
        parts.append(f"{1 - a / b:.1%} fewer tokens/s per GPU than the search's best within "
                     f"{budget} GPUs, which {met} "
                     f"({best.label}, {best.gpus_total} GPUs: {b:,.0f} vs {a:,.0f})")
    elif not parts:
        parts.append("as good as the search's best")
    return "; ".join(parts)
