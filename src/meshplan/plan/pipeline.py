"""Why a plan has pipeline stages, or why it has none: the comparison the search made.

Engines' own guides deploy MoE models with attention data parallelism and expert parallelism or
with tensor parallelism; a pipeline is full only with as many micro-batches in flight as it has
stages, and every token goes through every stage and back to the host. The search (search.search)
chooses stages only when they give more than assumptions.pipeline_margin more tokens/s per GPU
than the best plan without them; the plan says which way that went, with the numbers.
"""

from __future__ import annotations

from meshplan.cost.imbalance import popularity_skew
from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import expert_rate
from meshplan.plan.document import PlanNote
from meshplan.search.candidate import Candidate, problem_of
from meshplan.search.objectives import Mode
from meshplan.search.search import SearchResult, has_stages
from meshplan.search.order import per_gpu_metric as _metric


def _stages(c: Candidate) -> str:
    return ", ".join(f"{name} pool pp {lay.pp}" for name, lay in (("prefill", c.prefill), ("decode", c.decode))
                     if lay is not None and lay.pp > 1)


def _slots(c: Candidate) -> int:
    return max(lay.pp * lay.dp for lay in (c.prefill, c.decode) if lay is not None and lay.pp > 1)


def _experts(ci: CostInputs, etp: int, ep: int) -> str:
    width = ci.expert_ffn_size / etp
    share = float(expert_rate(ci, etp) / ci.expert_flop_per_s)
    split = "whole experts" if etp == 1 else f"experts split etp {etp}"
    if ep == 1:
        return f"{split} ({width:,.0f} wide, {share:.0%} of the grouped-GEMM rate) on one expert rank"
    skew = float(popularity_skew(ep, ci.num_experts, ci.expert_load_cv))
    return (f"{split} ({width:,.0f} wide, {share:.0%} of the grouped-GEMM rate), the busiest of {ep} expert ranks "
            f"at {skew:.2f}x the mean tokens (expert popularity CV {ci.expert_load_cv:g})")


def expert_contrast(result: SearchResult, staged: Candidate, flat: Candidate) -> str:
    """Why stages pay off in the MoE layers, with numbers: for each pool with stages, its experts'
    slice width and rate (cost.layer.expert_rate) and its busiest expert rank's share of the
    tokens from expert popularity (cost.imbalance.popularity_skew), against the same pool of the
    plan without stages (for an aggregated plan, its one layout). Empty for a dense model, pools
    whose experts are laid out alike, or plans of different modes."""
    if staged.mode is not flat.mode:
        return ""
    parts = []
    pools = ("prefill", "decode") if staged.mode is Mode.DISAGGREGATED else ("decode",)
    for name in pools:
        s, f = getattr(staged, name), getattr(flat, name)
        if s is None or f is None or s.pp == 1 or (s.etp, s.ep) == (f.etp, f.ep):
            continue
        ci = CostInputs.from_problem(problem_of(result.problem, staged).for_pool(name))
        if not ci.num_experts:
            return ""
        where = f"{name} pool's MoE layers" if len(pools) == 2 else "MoE layers"
        parts.append(f"{where} with stages: {_experts(ci, s.etp, s.ep)}; without: {_experts(ci, f.etp, f.ep)}")
    return "".join(f"; {p}" for p in parts)


def pipeline_note(result: SearchResult) -> PlanNote | None:
    """A note when pipeline stages were weighed: kept (with their gain over the best plan without
    them) or passed over (with the gain that fell within the margin)."""
    best = result.best
    if best is None:
        return None
    margin = result.problem.assumptions.pipeline_margin
    what = "output" if best.output_tok_s_per_gpu is not None else "input"
    if result.with_stages is not None:
        staged = result.with_stages
        gain = _metric(staged) / max(_metric(best), 1e-12) - 1
        return PlanNote(field="strategy.pp", message=(
            f"no pipeline stages: the best plan with them, {staged.label} ({_stages(staged)}), gives "
            f"{_metric(staged):,.0f} {what} tok/s per GPU against {_metric(best):,.0f} ({gain:+.1%}), within the "
            f"{margin:.0%} a pipeline must win by (assumptions.pipeline_margin)"))
    if not has_stages(best):
        return None
    stages, slots = _stages(best), _slots(best)
    tail = (f"; a pipeline stays full only with at least {slots} micro-batches in flight per instance, and every "
            "token passes every stage and the host")
    alt = result.without_stages
    if alt is None:
        return PlanNote(field="strategy.pp", message=f"pipeline stages ({stages}): no layout without them fits" + tail)
    if not alt.feasible:
        reason = "; ".join(v.message for v in alt.violations) or "none fits"
        return PlanNote(field="strategy.pp", message=(
            f"pipeline stages ({stages}): without them no layout meets the requirements ({reason})" + tail))
    gain = _metric(best) / max(_metric(alt), 1e-12) - 1
    return PlanNote(field="strategy.pp", message=(
        f"pipeline stages ({stages}): {_metric(best):,.0f} {what} tok/s per GPU against {_metric(alt):,.0f} for the "
        f"best plan without stages, {alt.label} ({gain:+.1%}, above the {margin:.0%} margin of "
        "assumptions.pipeline_margin)" + expert_contrast(result, best, alt) + tail))
