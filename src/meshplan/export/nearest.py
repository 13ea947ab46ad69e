"""When an engine cannot express a layout: the nearest layout it can, with its evaluated cost."""

from __future__ import annotations

from typing import Callable

from meshplan.search.candidate import Candidate
from meshplan.search.order import per_gpu_metric
from meshplan.search.evaluate import evaluate_aggregated
from meshplan.specs.problem import Problem
from meshplan.specs.workload import Phase, PoolRole
from meshplan.strategy.layout import Layout
from meshplan.strategy.rules import layout_violations
from meshplan.strategy.space import divisors


def neighbours(lay: Layout) -> list[Layout]:
    """Layouts with the same GPUs per stage, pipeline depth and instances, regrouped: every
    split of the stage's GPUs into attention tp x dp and expert ep x etp."""
    g = lay.tp * lay.dp
    out = []
    for tp in divisors(g):
        for ep in divisors(g):
            cand = Layout(instances=lay.instances, pp=lay.pp, tp=tp, dp=g // tp, ep=ep, etp=g // ep)
            if cand != lay:
                out.append(cand)
    return out


def nearest(problem: Problem, lay: Layout, role: PoolRole, expressible: Callable[[Layout], bool]
            ) -> tuple[Layout, Candidate] | None:
    """The expressible, legal neighbour with the most tokens/s per GPU for a pool of ``role``."""
    sub = problem.model_copy(update={"phase": {PoolRole.PREFILL: Phase.PREFILL, PoolRole.DECODE: Phase.DECODE,
                                               PoolRole.AGGREGATED: Phase.BOTH}[role]})
    best = None
    for cand in neighbours(lay):
        if not problem.model.is_moe and (cand.ep, cand.etp, cand.dp) != (1, 1, 1):
            continue
        if layout_violations(problem, cand) or not expressible(cand):
            continue
        c = evaluate_aggregated(sub, cand)
        score = per_gpu_metric(c)
        if best is None or score > best[2]:
            best = (cand, c, score)
    return None if best is None else (best[0], best[1])
