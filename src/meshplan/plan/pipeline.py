"""Why a plan has pipeline stages: the best plan without them, with the numbers.

Engines' own guides deploy MoE models with attention data parallelism and expert parallelism or
with tensor parallelism; a pipeline is full only with as many micro-batches in flight as it has
stages, and every token goes through every stage and back to the host. When the search still
picks a pipeline, the plan says what it gains over the best layout without one.
"""

from __future__ import annotations

from meshplan.search.candidate import Candidate
from meshplan.search.search import SearchResult, search
from meshplan.strategy.space import LayoutArrays, enumerate_layouts


def _metric(c: Candidate) -> float:
    return c.output_tok_s_per_gpu if c.output_tok_s_per_gpu is not None else (c.input_tok_s_per_gpu or 0.0)


def pipeline_note(result: SearchResult) -> dict[str, str] | None:
    """A note when the chosen plan's pools have pp > 1, comparing the best plan with pp = 1."""
    best = result.best
    if best is None:
        return None
    pools = [(name, lay) for name, lay in (("prefill", best.prefill), ("decode", best.decode))
             if lay is not None and lay.pp > 1]
    if not pools:
        return None
    p = result.problem
    cap = p.gpu_budget or p.assumptions.search_max_gpus_per_instance
    la = enumerate_layouts(p.model, p.gpu, cap, p.assumptions.redundant_experts)
    keep = la.pp == 1
    flat = LayoutArrays(tp=la.tp[keep], dp=la.dp[keep], pp=la.pp[keep], ep=la.ep[keep], etp=la.etp[keep])
    stages = ", ".join(f"{name} pool pp {lay.pp}" for name, lay in pools)
    what = "output" if best.output_tok_s_per_gpu is not None else "input"
    if not len(flat):
        return {"field": "strategy.pp", "message": f"pipeline stages ({stages}): no layout without them fits"}
    alt = search(p, result.objective, layouts=flat).best
    if alt is None or not alt.feasible:
        reason = "; ".join(v.message for v in alt.violations) if alt is not None else "none fits"
        return {"field": "strategy.pp", "message": (
            f"pipeline stages ({stages}): without them no layout meets the requirements ({reason})")}
    gain = _metric(best) / max(_metric(alt), 1e-12) - 1
    slots = max(lay.pp * lay.dp for _, lay in pools)
    return {"field": "strategy.pp", "message": (
        f"pipeline stages ({stages}): {_metric(best):,.0f} {what} tok/s per GPU against {_metric(alt):,.0f} for the "
        f"best plan without stages, {alt.label} ({gain:+.0%}); a pipeline stays full only with at least {slots} "
        "micro-batches in flight per instance, and every token passes every stage and the host")}
