"""SearchResult -> the plan (plan.document): chosen deployment, requirement check, bounds, runner-ups."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from meshplan.cost.draft import draft_kv_per_sequence
from meshplan.cost.inputs import CostInputs
from meshplan.cost.memory import kv_bytes_of_sequence, kv_bytes_per_token
from meshplan.errors import SpecError
from meshplan.io.catalog import load_model
from meshplan.plan.build import model_facts, phases_of
from meshplan.plan.candidates import ByMode, CandidateSummary, Pruned, RunnerUp, SearchCounts
from meshplan.plan.document import AssumptionsUsed, Bound, BoundRule, BudgetUse, CheckUnit, FitLayout, PartFactors, Plan, \
    PlanNote, Requirement, RequirementCheck, SmallestFit, Status, Unmet, Verdict
from meshplan.plan.phase_figures import Memory, Phases
from meshplan.plan.pipeline import pipeline_note
from meshplan.plan.plan_json import to_json
from meshplan.search.best_point import SATURATION
from meshplan.search.candidate import Candidate, problem_of
from meshplan.search.evaluate import evaluate_aggregated
from meshplan.search.fit import smallest_fit
from meshplan.search.objectives import Mode, Objective
from meshplan.search.order import instance_size, per_gpu_metric
from meshplan.search.search import SearchResult
from meshplan.specs.params import count_params
from meshplan.specs.problem import Problem
from meshplan.specs.workload import Phase, Requirements
from meshplan.strategy.rules import Rule
from meshplan.units import fmt_seconds, plural


def decode_kv_bound(ci: CostInputs) -> float:
    """Most output tokens/s one GPU can give at the mean decode context, whatever the layout:
    every generated token reads its sequence's whole KV cache once, and those bytes are spread
    over the GPUs that hold them, so per GPU
        tokens/s <= achievable HBM bandwidth / KV bytes of one sequence at the mean context
    (weight reads only lower it; window layers count at most their window). Splitting over more
    GPUs does not help: each holds less KV but serves proportionally fewer sequences. With
    speculative decoding one read (the target's KV and the draft's) yields tau tokens."""
    ctx = ci.workload.decode_context_tokens
    return ci.hbm_bytes_per_s * ci.spec_tau / (kv_bytes_of_sequence(ci, ctx) + float(draft_kv_per_sequence(ci, 1, ctx)))


def _notes(problem: Problem) -> list[PlanNote]:
    notes = [PlanNote(field=n.field, message=n.message) for n in problem.notes]
    m = problem.model
    if m.declared_params:
        total = count_params(m).total
        diff = total / m.declared_params - 1
        if abs(diff) > 0.01:
            notes.append(PlanNote(field="model.declared_params", message=(
                f"declared {m.declared_params / 1e9:,.1f}B parameters, but the stated dimensions give "
                f"{total / 1e9:,.2f}B ({diff:+.0%}); meshplan plans with the structure, not the declared count")))
    notes += _catalog_differences(m)
    return notes


def _catalog_differences(m) -> list[PlanNote]:
    """When a problem names a catalog model but states other dimensions, say which."""
    if not m.source.endswith(".md"):
        return []
    try:
        ref = load_model(m.name)
    except SpecError:
        return []
    fields = ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "num_experts", "top_k",
              "expert_ffn_size", "vocab_size")
    diffs = [f"{f} {getattr(m, f)} (catalog {getattr(ref, f)})" for f in fields if getattr(m, f) != getattr(ref, f)]
    if not diffs:
        return []
    return [PlanNote(field="model", message=(
        f"'{m.name}' names the catalog model {ref.name}, but the problem states other dimensions: "
        f"{', '.join(diffs)}; meshplan takes the file as written"))]


def _requirement_checks(ci: CostInputs, r: Requirements, c: Candidate, mem: Memory) -> tuple[RequirementCheck, ...]:
    """Each requirement stated in ``r`` against candidate ``c``'s figures (``mem``: its main pool's
    memory)."""
    checks = []

    def add(name, target, predicted, higher_is_better, unit, bound=None):
        if target is None:
            return
        met = predicted is not None and (predicted >= target if higher_is_better else predicted <= target)
        checks.append(RequirementCheck(requirement=name, target=target, predicted=predicted, unit=unit, met=met,
                                       bound=bound))

    add(Requirement.TTFT_S, r.ttft_s, c.ttft_s, False, CheckUnit.SECONDS)
    add(Requirement.TPOT_S, r.tpot_s, c.tpot_s, False, CheckUnit.SECONDS)
    bound = None
    if r.min_output_tok_s_per_gpu and c.output_tok_s_per_gpu is not None \
            and c.output_tok_s_per_gpu < r.min_output_tok_s_per_gpu:
        b = decode_kv_bound(ci)
        per = (f"once per iteration of {ci.spec_tau:.2f} tokens (speculative decoding, its draft's KV too)"
               if ci.spec_k else "once per generated token")
        bound = Bound(value=b, rule=BoundRule.DECODE_KV_BANDWIDTH, message=(
            f"decode reads every cached token's KV {per}: at a mean context of "
            f"{ci.workload.decode_context_tokens:,.0f} tokens and {kv_bytes_per_token(ci):,.0f} KV bytes per "
            f"token, {ci.hbm_bytes_per_s / 1e12:.2f} TB/s of achievable HBM bandwidth gives at most {b:,.0f} output tokens/s "
            "per GPU in any layout"))
    tok_s = CheckUnit.TOKENS_PER_S
    add(Requirement.MIN_OUTPUT_TOK_S_PER_GPU, r.min_output_tok_s_per_gpu, c.output_tok_s_per_gpu, True, tok_s, bound)
    add(Requirement.MIN_INPUT_TOK_S_PER_GPU, r.min_input_tok_s_per_gpu, c.input_tok_s_per_gpu, True, tok_s)
    add(Requirement.MIN_OUTPUT_TOK_S, r.min_output_tok_s, c.output_tok_s, True, tok_s)
    add(Requirement.MEMORY_HEADROOM, mem.usable, mem.total, False, CheckUnit.BYTES)
    return tuple(checks)


CACHE_ROOM_WARNING = 0.05
"""The prefix-cache note warns when the room left is below this share of the KV cache the running
requests hold (a judgement for the note's wording, not a cost-model factor)."""


def _prefix_cache_note(problem: Problem, c: Candidate, phases: Phases, main: Memory) -> PlanNote | None:
    """With a stated prefix hit rate: the memory per GPU the operating point leaves outside the
    running requests' KV, where the engine keeps cached prefixes (the pool that prefills: the
    instance itself, or a disaggregated plan's prefill pool; ``main``: the plan's main pool's)."""
    h = problem.workload.prefix_hit_rate
    if not h:
        return None
    disaggregated = c.mode is Mode.DISAGGREGATED and phases.prefill is not None
    mem = phases.prefill.memory_per_gpu_bytes if disaggregated else main
    room = max(mem.usable - mem.total, 0.0)
    message = (f"prefix cache: the stated {h:.1%} hit rate needs cached prefixes kept in KV memory the running "
               f"requests leave free; this operating point leaves {room / 2**30:,.1f} GiB per GPU of the "
               f"{mem.usable / 2**30:,.1f} GiB usable")
    if room < CACHE_ROOM_WARNING * mem.kv_cache:
        message += ("; its running requests fill the KV cache, so cached prefixes would be evicted as they come (a lower "
                    "concurrency, or more GPUs, leaves them room)")
    return PlanNote(field="workload.prefix_hit_rate", message=message)


def _speculative_note(result: SearchResult, chosen: Candidate) -> PlanNote | None:
    """With speculative decoding in the problem: what it gives the plan, against the best plan the
    other way."""
    spec = result.problem.speculative
    if spec is None or result.problem.phase is Phase.PREFILL:
        return None
    other = result.other_way if result.other_way is not None and result.other_way.feasible else None
    way = "with" if chosen.speculative else "without"
    message = f"speculative decoding ({spec.describe()}): the plan decodes {way} it"
    if other is not None and chosen.output_tok_s_per_gpu and other.output_tok_s_per_gpu and other.tpot_s:
        message += (f"; the best plan {'without' if chosen.speculative else 'with'} it ({other.label}) gives "
                    f"{other.output_tok_s_per_gpu:,.0f} output tokens/s per GPU at a TPOT of {other.tpot_s * 1e3:,.2f} ms "
                    f"against {chosen.output_tok_s_per_gpu:,.0f} at {chosen.tpot_s * 1e3:,.2f} ms")
    message += ("; its gain rests on the stated acceptance, which depends on the model, the draft and the "
                "traffic: measure it on your prompts (engines log it) and restate it")
    return PlanNote(field="speculative", message=message)


def _verdict(problem: Problem, chosen: Candidate, checks: tuple[RequirementCheck, ...]) -> Verdict:
    """What the plan amounts to, said first: every requirement met (feasible), a layout that holds
    the model but misses requirements (each unmet one with its target and what is reachable), or
    nothing that holds the model and one request in the budget (with the smallest GPU count that
    could). ``figures`` is False when the layout cannot load its weights: it has no TTFT, TPOT or
    throughput to show."""
    if chosen.feasible:
        return Verdict(status=Status.FEASIBLE, figures=True, message="meets every requirement", unmet=())
    unmet = tuple(Unmet(rule=v.rule, message=v.message) for v in chosen.violations)
    if any(v.rule is Rule.MEMORY for v in chosen.violations):
        fit = smallest_fit(problem)
        budget = f"{problem.gpu_budget} {problem.gpu.name} GPUs" if problem.gpu_budget else "any instance searched"
        if fit is None:
            message = (f"nothing fits: no layout of up to {problem.assumptions.search_max_gpus_per_instance} "
                       f"{problem.gpu.name} GPUs holds {problem.model.name}'s weights and one request")
            smallest = None
        else:
            flat = "" if fit.flat is None or fit.flat == fit.layout else (
                f"; without pipeline stages {fit.flat.gpus} ({fit.flat.short})")
            message = (f"nothing fits in {budget}: {problem.model.name}'s weights and one request of "
                       f"{problem.workload.max_context_tokens:,.0f} tokens need at least {fit.gpus} "
                       f"{problem.gpu.name} GPUs ({fit.layout.short}){flat}")
            smallest = SmallestFit(gpus=fit.gpus, layout=fit.layout.short, without_pipeline=(
                None if fit.flat is None else FitLayout(gpus=fit.flat.gpus, layout=fit.flat.short)))
        return Verdict(status=Status.DOES_NOT_FIT, figures=False, message=message, unmet=unmet,
                       smallest_fit=smallest)
    missed = [c for c in checks if not c.met and c.requirement is not Requirement.MEMORY_HEADROOM]
    names = ", ".join(c.requirement.value for c in missed) or ", ".join(v.rule for v in unmet)
    return Verdict(status=Status.REQUIREMENTS_UNMET, figures=True, unmet=unmet,
                   message=f"no layout meets every requirement ({names}); the closest is shown")


def pareto_knee(frontier: tuple[Candidate, ...] | list[Candidate]) -> Candidate | None:
    """The frontier's knee: the point farthest from the straight line joining its two ends once
    both axes (tokens/s per GPU, tokens/s per user = 1 / TPOT), taken on log scales because both
    span orders of magnitude, are scaled to [0, 1] (Kneedle, Satopaa et al., ICDCS 2011): past it,
    each step trades much latency for little throughput or the reverse. Hand check: ends
    (e, 1) and (1, e) in (x, y) and a middle point (e^0.8, e^0.8) -> the middle (score 1.6 vs 1)."""
    pts = [c for c in frontier if c.tpot_s and c.output_tok_s_per_gpu]
    if len(pts) < 3:
        return None
    x = [math.log(1.0 / c.tpot_s) for c in pts]
    y = [math.log(c.output_tok_s_per_gpu) for c in pts]
    sx, sy = (max(x) - min(x)) or 1.0, (max(y) - min(y)) or 1.0
    score = [(a - min(x)) / sx + (b - min(y)) / sy for a, b in zip(x, y)]
    return pts[max(range(len(pts)), key=score.__getitem__)]


def _latency_note(problem: Problem, chosen: Candidate, frontier) -> PlanNote | None:
    """With no latency target the search maximises tokens/s per GPU, which runs decode at the
    largest batch memory holds: say so, with its TPOT, and name the knee of the frontier."""
    r = problem.requirements
    if r.ttft_s or r.tpot_s or not chosen.feasible or chosen.tpot_s is None or not chosen.max_concurrency:
        return None
    if chosen.concurrency < 0.9 * chosen.max_concurrency:
        return None
    knee = pareto_knee(frontier)
    msg = (f"no latency target: the plan runs at the memory limit ({chosen.concurrency:,.0f} of "
           f"{chosen.max_concurrency:,.0f} requests in flight) with TPOT {fmt_seconds(chosen.tpot_s)}")
    if knee is not None and knee.tpot_s < chosen.tpot_s and knee.output_tok_s_per_gpu:
        msg += (f"; the knee of the throughput/latency frontier is {knee.label} at concurrency "
                f"{knee.concurrency:,.0f}: {knee.output_tok_s_per_gpu:,.0f} tok/s per GPU "
                f"({knee.output_tok_s_per_gpu / chosen.output_tok_s_per_gpu - 1:+.0%}) at TPOT "
                f"{fmt_seconds(knee.tpot_s)} ({chosen.tpot_s / knee.tpot_s:.1f}x faster per user); --tpot sets a target")
    return PlanNote(field="requirements.tpot_s", message=msg)


def _budget_use(problem: Problem, chosen: Candidate, verdict: Verdict) -> BudgetUse | None:
    """How much of the GPU budget the plan uses, its throughput per GPU of the whole budget, and
    why the rest is left idle."""
    budget, used = problem.gpu_budget, chosen.gpus_total
    if not budget or used >= budget or not verdict.figures:
        return None
    left = budget - used
    sizes = sorted({lay.gpus_per_instance for lay in (chosen.prefill, chosen.decode) if lay is not None})
    w = problem.workload
    if left < sizes[0]:
        why = (f"the {plural(left, 'GPU')} left cannot hold another instance (the smallest in the plan has "
               f"{sizes[0]})")
    elif w.request_rate_per_s and not w.concurrency:
        r = problem.requirements
        targets = "which already meet their targets" if (r.ttft_s or r.tpot_s) else "for which no target is given"
        why = (f"{w.request_rate_per_s:g} requests/s are served with {plural(used, 'GPU')}; more instances would only "
               f"lower the latencies (TTFT {fmt_seconds(chosen.ttft_s)} with queueing), {targets}"
               if chosen.feasible and chosen.ttft_s is not None else
               f"{w.request_rate_per_s:g} requests/s are served with {plural(used, 'GPU')}")
        if chosen.mode is Mode.AGGREGATED and chosen.decode is not None:
            why += "; " + _spread(problem, chosen, f"the {w.request_rate_per_s:g} requests/s")
    elif chosen.prefill is not None and chosen.decode is not None and chosen.prefill is not chosen.decode:
        why = ("the prefill and decode pools are sized to the same request rate; one more instance in either pool "
               "would wait on the other and lower tokens/s per GPU")
    elif w.concurrency and chosen.decode is not None:
        why = (f"the objective is tokens/s per GPU, and the {w.concurrency:,} requests in flight are served by "
               f"{plural(chosen.gpus_total, 'GPU')}; " + _spread(problem, chosen, "they"))
    else:
        why = "another instance would not fit the plan's operating point within the requirements"
    out = chosen.output_tok_s
    return BudgetUse(budget=budget, used=used, idle=left, why=why,
                     output_tok_s_per_budget_gpu=None if out is None else out / budget)


def _spread(problem: Problem, chosen: Candidate, what: str) -> str:
    """What the budget's other GPUs would do as more instances of the same layout sharing the same
    load (the figures of search.evaluate at the same concurrency or request rate)."""
    lay = chosen.decode
    n = problem.gpu_budget // lay.gpus_per_instance
    alt = evaluate_aggregated(problem, lay.with_instances(n))
    if alt.output_tok_s is None or chosen.output_tok_s is None or alt.tpot_s is None or alt.ttft_s is None:
        return "another instance would not fit the plan's operating point within the requirements"
    gpus = n * lay.gpus_per_instance
    met = "" if alt.feasible else " (but it misses a requirement: " + "; ".join(v.message for v in alt.violations) + ")"
    return (f"spread over {plural(n, 'instance')} on {plural(gpus, 'GPU')} {what} would give TTFT "
            f"{fmt_seconds(alt.ttft_s)}, TPOT {fmt_seconds(alt.tpot_s)} and {alt.output_tok_s:,.0f} output tok/s "
            f"in total ({alt.output_tok_s_per_gpu:,.0f} per GPU), against {chosen.output_tok_s:,.0f} "
            f"({chosen.output_tok_s_per_gpu:,.0f} per GPU) now{met}; evaluate --strategy "
            f"'{lay.with_instances(n).short}' --gpus {gpus} shows it")


def _why_lost(best: Candidate, c: Candidate, margin: float, objective: Objective = Objective.MAX_PER_GPU) -> str:
    """Why ``c`` ranks after ``best``, in words that follow from the numbers they quote."""
    if not c.feasible:
        return "; ".join(v.message for v in c.violations)
    if objective is Objective.MIN_GPUS and c.gpus_total != best.gpus_total:
        return f"needs {plural(c.gpus_total, 'GPU')} vs {best.gpus_total} (the objective is the fewest GPUs)"
    b, x = per_gpu_metric(best), per_gpu_metric(c)
    what = "tokens/s per GPU" if best.output_tok_s_per_gpu is not None else "input tokens/s per GPU"
    diff = (x / b - 1.0) if b else 0.0
    (cg, cp), (bg, bp) = instance_size(c), instance_size(best)
    if cp > bp and cg >= bg:
        shape = f"pipeline stages (pp {cp} vs {bp})"
    elif cg > bg:
        shape = f"larger instances ({cg} vs {bg} GPUs)"
    else:
        shape = ""
    if diff > 0 and cp > 1 and bp == 1:
        return (f"{diff:.1%} more {what} ({x:,.0f} vs {b:,.0f}) with {shape or 'pipeline stages'}, within the "
                f"{margin:.0%} a pipeline must win by (assumptions.pipeline_margin)")
    if diff > 0 and shape:
        return (f"{diff:.1%} more {what} ({x:,.0f} vs {b:,.0f}) with {shape}, within the {SATURATION:.0%} under "
                f"which the simpler layout is preferred")
    if diff < 0:
        return f"{-diff:.1%} fewer {what} ({x:,.0f} vs {b:,.0f})" + (f", with {shape}" if shape else "")
    if c.gpus_total > best.gpus_total:
        return f"the same {what} ({x:,.0f}) with more GPUs ({c.gpus_total} vs {best.gpus_total})"
    return f"the same {what} ({x:,.0f}); ranked after by GPU count and instance size"


def _summary_fields(c: Candidate) -> dict[str, Any]:
    return dict(label=c.label, mode=c.mode, gpus_total=c.gpus_total, feasible=c.feasible, ttft_s=c.ttft_s,
                tpot_s=c.tpot_s, output_tok_s_per_gpu=c.output_tok_s_per_gpu, input_tok_s_per_gpu=c.input_tok_s_per_gpu,
                concurrency=c.concurrency, violations=tuple(c.violations))


def _short(c: Candidate) -> CandidateSummary:
    return CandidateSummary(**_summary_fields(c))


def build_plan(result: SearchResult, *, runner_ups: int = 6) -> Plan:
    """The plan of a search's result: its best candidate (or the first pruned when none is feasible)."""
    chosen = result.best or (result.pruned[0] if result.pruned else None)
    if chosen is None:
        raise ValueError("the search produced no candidate at all")
    problem = problem_of(result.problem, chosen)  # without speculative decoding when the plan decodes without it
    ci = CostInputs.from_problem(problem)
    phases = phases_of(problem, ci, chosen)
    memory = (phases.decode or phases.prefill).memory_per_gpu_bytes
    checks = _requirement_checks(ci, problem.requirements, chosen, memory)
    verdict = _verdict(problem, chosen, checks)
    budget_use = _budget_use(problem, chosen, verdict)
    notes = _notes(problem) + [n for n in (pipeline_note(result), _latency_note(problem, chosen, result.pareto),
                                           _prefix_cache_note(problem, chosen, phases, memory),
                                           _speculative_note(result, chosen)) if n is not None]
    shown = verdict.figures  # a layout that cannot load its weights has no TTFT, TPOT or throughput
    prec = problem.precision
    used = {"attention": prec.attention_dtype, "experts": prec.experts_dtype, "other": prec.weights}
    assumptions = AssumptionsUsed(
        gemm_efficiency_used=PartFactors(**{part: problem.gemm_efficiency(dt) for part, dt in used.items()}),
        hbm_efficiency_used=PartFactors(**{part: problem.hbm_efficiency(dt) for part, dt in used.items()}),
        two_batch_overlap_used=ci.two_batch_overlap)
    others = [c for c in result.ranked if c is not chosen]
    margin = problem.assumptions.pipeline_margin
    by_mode = {mode.value: next((c for c in result.ranked if c.mode is mode), None)
               for mode in (Mode.AGGREGATED, Mode.DISAGGREGATED)}
    counts = Counter(v.rule for c in result.pruned for v in c.violations[:1])
    return Plan(
        problem=problem.name, objective=result.objective, mode=chosen.mode, label=chosen.label,
        gpus_total=chosen.gpus_total, feasible=chosen.feasible, violations=tuple(chosen.violations),
        ttft_s=chosen.ttft_s if shown else None, tpot_s=chosen.tpot_s if shown else None,
        output_tok_s=chosen.output_tok_s if shown else None,
        output_tok_s_per_gpu=chosen.output_tok_s_per_gpu if shown else None,
        input_tok_s_per_gpu=chosen.input_tok_s_per_gpu if shown else None, concurrency=chosen.concurrency,
        max_concurrency=chosen.max_concurrency if chosen.decode else None, memory_per_gpu_bytes=memory,
        kv_cache_bytes_per_token=kv_bytes_per_token(ci), phases=phases, model=model_facts(problem),
        requirements_check=checks, verdict=verdict, budget_use=budget_use, notes=tuple(notes),
        assumptions_used=assumptions,
        runner_ups=tuple(RunnerUp(**_summary_fields(c), why_lost=_why_lost(chosen, c, margin, result.objective))
                         for c in others[:runner_ups]),
        aggregated_vs_disaggregated=ByMode(**{m: _short(c) if c else None for m, c in by_mode.items()}),
        pruned=Pruned(listed=len(result.pruned), first_reason_counts=dict(counts),
                      examples=tuple(_short(c) for c in result.pruned[:8])),
        pareto=tuple(_short(c) for c in result.pareto),
        search=SearchCounts(layouts=result.num_layouts, operating_points=result.num_points),
        problem_spec=problem)


def plan_document(result: SearchResult, *, runner_ups: int = 6) -> dict[str, Any]:
    """The plan as a JSON-ready dict (plan.plan_json)."""
    return to_json(build_plan(result, runner_ups=runner_ups))


def candidate_plan(problem: Problem, cand: Candidate) -> Plan:
    """The plan of one evaluated candidate (a named strategy rather than a search)."""
    result = SearchResult(problem=problem, objective=Objective.MAX_PER_GPU, ranked=(cand,) if cand.feasible else (),
                          pruned=() if cand.feasible else (cand,), pareto=(), num_layouts=1, num_points=0)
    return build_plan(result)


def candidate_document(problem: Problem, cand: Candidate) -> dict[str, Any]:
    """candidate_plan as a JSON-ready dict."""
    return to_json(candidate_plan(problem, cand))
