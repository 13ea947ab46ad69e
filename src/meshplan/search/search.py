"""The search (DESIGN.md section 5): every legal layout x operating point, vectorized.

Per layout the best feasible operating point is kept; infeasible layouts keep the typed reason
of their nearest miss. Aggregated and disaggregated serving are both searched and compared.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.kv_transfer import kv_link_bw
from meshplan.cost.serving import aggregated, decode_cost, kv_transfer_s, prefill_cost
from meshplan.search.candidate import Candidate
from meshplan.search.grid import PREFILL_B_GRID, capacity_grid, concurrency_grid, layout_par
from meshplan.search.objectives import Objective
from meshplan.search.frontier import non_dominated
from meshplan.search.order import per_gpu_metric, rank_key
from meshplan.search.ranking import candidates_from_table
from meshplan.search.table import PointTable
from meshplan.specs.problem import Problem
from meshplan.specs.workload import Phase, Serving
from meshplan.strategy.space import LayoutArrays, enumerate_layouts
from meshplan.units import plural

Progress = Callable[[str], None]


@dataclass(frozen=True, kw_only=True, slots=True)
class SearchResult:
    """Everything the plan needs to explain itself."""

    problem: Problem
    objective: Objective
    ranked: tuple[Candidate, ...]
    """Feasible candidates, best first (one per layout or layout pair)."""
    pruned: tuple[Candidate, ...]
    """Infeasible layouts, each with the reason of its nearest miss."""
    pareto: tuple[Candidate, ...]
    """Frontier of tokens/s per GPU against tokens/s per user (feasible points)."""
    num_layouts: int
    num_points: int

    @property
    def best(self) -> Candidate | None:
        return self.ranked[0] if self.ranked else None

    without_stages: Candidate | None = None
    """When the best plan found has pipeline stages: the best plan without them (searched over pp = 1
    layouts only), chosen instead when within assumptions.pipeline_margin; None otherwise."""
    with_stages: Candidate | None = None
    """When the plan without stages was chosen that way: the plan with stages it was preferred to."""
    other_way: Candidate | None = None
    """With speculative decoding in the problem: the plan the search would choose the other way
    (without it when the best uses it, and the reverse)."""


def _decode_points(ci: CostInputs, la: LayoutArrays, par: Par, budget: int | None):
    w = ci.workload
    if w.concurrency:
        max_inst = np.floor((budget or 2**20) / la.gpus_per_instance).astype(float)
        grid = concurrency_grid(w.concurrency, (la.dp * la.pp).astype(float), np.maximum(max_inst, 1.0))
        grid = np.where(np.isnan(grid), 1.0, grid), np.isnan(grid)
    else:
        grid = capacity_grid(ci, par, len(la)), None
    return decode_cost(ci, par, grid[0]), grid[1]


def search(problem: Problem, objective: Objective = Objective.MAX_PER_GPU,
           progress: Progress | None = None, layouts: LayoutArrays | None = None) -> SearchResult:
    """Search every legal layout for each serving mode the problem's phase allows (or only
    ``layouts``, which is how a named strategy is evaluated). With speculative decoding in the
    problem every layout is searched with it and without it, and the two rankings merged."""
    say = progress or (lambda _msg: None)
    cap = problem.gpu_budget or problem.assumptions.search_max_gpus_per_instance
    la = layouts if layouts is not None else enumerate_layouts(
        problem.model, problem.gpu, cap, redundant_experts=problem.assumptions.redundant_experts)
    say(f"{plural(len(la), 'legal instance layout')} (up to {plural(cap, 'GPU')} each)")
    la_p = la
    if problem.pools_differ:  # the prefill pool's own GPU
        la_p = enumerate_layouts(problem.model, problem.prefill_gpu, cap,
                                 redundant_experts=problem.assumptions.redundant_experts)
        say(f"{plural(len(la_p), 'legal prefill layout')} on {problem.prefill_gpu.name}")

    def one(speculative: bool) -> SearchResult:
        r = _search(problem, objective, say, la, speculative, la_p)
        return _weigh_stages(r, la, speculative, la_p) if layouts is None else r

    result = one(False)
    if problem.speculative is not None and problem.phase is not Phase.PREFILL:
        say(f"again with speculative decoding ({problem.speculative.describe()})")
        result = _merge(result, one(True))
    return result


def _merge(plain: SearchResult, spec: SearchResult) -> SearchResult:
    """One ranking of the candidates with and without speculative decoding: the better of the two
    searches' choices first (each chosen as a search without speculation chooses, pipeline rule
    included), then every other candidate by the objective."""
    key = rank_key(plain.objective)
    chosen = [r for r in (plain, spec) if r.best is not None]
    win = min(chosen, key=lambda r: key(r.best)) if chosen else plain
    lose = spec if win is plain else plain
    rest = sorted((c for c in plain.ranked + spec.ranked if c is not win.best), key=key)
    ranked = ((win.best,) if win.best is not None else ()) + tuple(rest)
    return replace(win, ranked=ranked, other_way=lose.best, pruned=tuple(sorted(plain.pruned + spec.pruned, key=key)),
                   pareto=tuple(non_dominated(list(plain.pareto + spec.pareto))),
                   num_points=plain.num_points + spec.num_points)


def _search(problem: Problem, objective: Objective, say: Progress, la: LayoutArrays,
            speculative: bool = False, la_p: LayoutArrays | None = None) -> SearchResult:
    """One search over ``la`` (and ``la_p`` for a prefill pool on its own GPU, Problem.prefill_gpu):
    without speculative decoding unless ``speculative``."""
    if not speculative:
        problem_used = problem.model_copy(update={"speculative": None})
    else:
        problem_used = problem
    ci = CostInputs.from_problem(problem_used)
    par = layout_par(la)
    ci_p, la_p, nic = ci, (la if la_p is None else la_p), None
    if problem.pools_differ:
        ci_p = CostInputs.from_problem(problem_used.for_pool(Phase.PREFILL))
        nic = kv_link_bw(ci_p, ci)
    par_p = layout_par(la_p)
    tables: list[PointTable] = []
    points = 0
    if problem.phase in (Phase.DECODE, Phase.BOTH):
        dec, invalid = _decode_points(ci, la, par, problem.gpu_budget)
        points += dec.B.size
        say(f"decode: {dec.B.size} operating points evaluated")
    if problem.phase in (Phase.PREFILL, Phase.BOTH):
        pre = prefill_cost(ci_p, par_p, np.broadcast_to(PREFILL_B_GRID, (len(la_p), len(PREFILL_B_GRID))))
        points += pre.B.size
        say(f"prefill: {pre.B.size} operating points evaluated")
    if problem.phase is Phase.DECODE:
        tables.append(PointTable.decode(ci, la, dec, invalid))
    elif problem.phase is Phase.PREFILL:
        tables.append(PointTable.prefill(ci, la, pre, None))
    else:
        if problem.serving is not Serving.DISAGGREGATED and not problem.pools_differ:
            serving = aggregated(ci, par, dec.B)
            tables.append(PointTable.aggregated(ci, la, dec, serving, invalid))
        if problem.serving is not Serving.AGGREGATED:
            tables.append(PointTable.prefill(ci_p, la_p, pre, kv_transfer_s(ci_p, par_p, nic)))
            pool = dec if ci.decode_pool_host_gap_s == ci.host_gap_s else \
                _decode_points(ci.for_decode_pool(), la, par, problem.gpu_budget)[0]  # its own scheduler loop
            tables.append(PointTable.decode(ci, la, pool, invalid))
        say(f"disaggregated serving: a prefill pool on {problem.prefill_gpu.name}, a decode pool on {problem.gpu.name}"
            if problem.pools_differ else {Serving.AUTO: "aggregated and disaggregated serving compared",
             Serving.AGGREGATED: "aggregated serving (prefill and decode on the same instances)",
             Serving.DISAGGREGATED: "disaggregated serving (a prefill pool and a decode pool)"}[problem.serving])
    ranked, pruned, pareto = candidates_from_table(problem_used, ci, tables, objective)
    if speculative:
        ranked, pruned, pareto = ([replace(c, speculative=True) for c in cs] for cs in (ranked, pruned, pareto))
    return SearchResult(problem=problem, objective=objective, ranked=tuple(ranked), pruned=tuple(pruned),
                        pareto=tuple(pareto), num_layouts=len(la), num_points=points)


def _flat(la: LayoutArrays) -> LayoutArrays | None:
    """The layouts without pipeline stages (None when there are none)."""
    keep = la.pp == 1
    if not keep.any():
        return None
    return la.take(keep)


def has_stages(c: Candidate) -> bool:
    return any(lay is not None and lay.pp > 1 for lay in (c.prefill, c.decode))


def _weigh_stages(result: SearchResult, la: LayoutArrays, speculative: bool = False,
                  la_p: LayoutArrays | None = None) -> SearchResult:
    """When the best plan has pipeline stages, search the layouts without them; their best plan is
    chosen instead unless the pipeline gives more than assumptions.pipeline_margin more tokens/s
    per GPU. Either way the result keeps the comparison for the plan's notes."""
    best = result.best
    if result.objective is Objective.MIN_GPUS or best is None or not best.feasible or not has_stages(best):
        return result
    flat, flat_p = _flat(la), _flat(la if la_p is None else la_p)
    if flat is None or flat_p is None:
        return result
    alt = _search(result.problem, result.objective, lambda _msg: None, flat, speculative, flat_p).best
    if alt is None or not alt.feasible:
        return replace(result, without_stages=alt)
    if per_gpu_metric(best) > per_gpu_metric(alt) * (1 + result.problem.assumptions.pipeline_margin):
        return replace(result, without_stages=alt)
    ranked = (alt,) + tuple(c for c in result.ranked if c.label != alt.label)
    return replace(result, ranked=ranked, without_stages=None, with_stages=best)
