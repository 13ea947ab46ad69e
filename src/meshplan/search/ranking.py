"""Ranked, pruned and frontier candidates from the evaluated tables of every mode."""

from __future__ import annotations

import numpy as np

from meshplan.cost.inputs import CostInputs
from meshplan.search.best_point import SATURATION, best_per_row
from meshplan.search.candidate import Candidate
from meshplan.search.frontier import frontier_indices, non_dominated
from meshplan.search.miss import miss_reason
from meshplan.search.objectives import Mode, Objective
from meshplan.search.order import prefer_simple, rank_key
from meshplan.search.pairs import fed_table, pair_candidates
from meshplan.search.single import single_candidate
from meshplan.search.table import PointTable
from meshplan.strategy.rules import Rule
from meshplan.specs.problem import Problem
from meshplan.specs.workload import Phase

TOP = 40
"""Candidates materialized per mode (the rest are counted, not listed)."""

PREFILL_SHAPES = 6
"""Disaggregated pairs try the best prefill layout of each of this many instance shapes (GPUs,
pipeline stages), best first."""


def candidates_from_table(p: Problem, ci: CostInputs, tables: list[PointTable], objective: Objective):
    """Ranked (best first, requirement misses after), pruned (no feasible point, with reasons)
    and the Pareto frontier, under the requirements of ``p`` (the problem ``ci`` was read from)."""
    ranked: list[Candidate] = []
    pruned: list[Candidate] = []
    picks = {}
    req = p.requirements
    full = p.phase is Phase.BOTH  # prefill and decode tables then only feed disaggregated pairs
    for t in tables:
        col, feasible, ok = best_per_row(t, req)
        picks[t.mode] = (t, col, ok)
        pool_only = t.mode in (Mode.PREFILL_ONLY, Mode.DECODE_ONLY) and full
        if not pool_only:  # in full serving, pool tables only feed the disaggregated pairs
            rows = np.nonzero(col >= 0)[0]
            order = rows[np.argsort(-t.metric[rows, col[rows]], kind="stable")][:TOP]
            ranked += [single_candidate(p, ci, t, int(i), int(col[i])) for i in order]
        if pool_only and Mode.AGGREGATED in picks:
            continue  # the aggregated table already explains these layouts
        missed = np.nonzero(col < 0)[0]
        tempting = missed[np.argsort(-np.max(t.metric[missed], axis=1), kind="stable")][:TOP]
        for i in tempting:
            # Its best point among those that fit in memory (the figures shown must be reachable).
            fits = np.broadcast_to(ok[Rule.MEMORY], t.B.shape)[i] & ~np.broadcast_to(t.invalid, t.B.shape)[i]
            j = int(np.argmax(np.where(fits, t.metric[i], -np.inf))) if fits.any() else int(np.argmax(t.metric[i]))
            pruned.append(single_candidate(p, ci, t, int(i), j, miss_reason(t, ci, req, int(i), ok)))
    if full and Mode.PREFILL_ONLY in picks:
        pre, pcol, _ = picks[Mode.PREFILL_ONLY]
        dec, dcol, _ = picks[Mode.DECODE_ONLY]
        prows, drows = np.nonzero(pcol >= 0)[0], np.nonzero(dcol >= 0)[0]
        if len(prows) and len(drows):
            # The simplest prefill layout within SATURATION of the best (see prefer_simple), and the
            # best of each instance size and pipeline depth: with a GPU budget, how the pools split it
            # decides the pair, not the prefill pool's own rate alone.
            pm = pre.metric[prows, pcol[prows]]
            near = prows[pm >= pm.max() * (1 - SATURATION)]
            firsts = [int(near[np.lexsort((pre.la.pp[near], pre.la.gpus_per_instance[near]))[0]])]
            by_shape: dict[tuple[int, int], int] = {}
            for i in prows[np.argsort(-pm, kind="stable")]:
                by_shape.setdefault((int(pre.la.gpus_per_instance[i]), int(pre.la.pp[i])), int(i))
            flat = [i for i in by_shape.values() if pre.la.pp[i] == 1][:1]  # the best without a pipeline
            prefills = list(dict.fromkeys(firsts + list(by_shape.values())[:PREFILL_SHAPES] + flat))
            order = drows[np.argsort(-dec.metric[drows, dcol[drows]], kind="stable")][:TOP]
            w = ci.workload
            # The decode rows at the finer batch sizes a pool fed by fewer prefill instances runs at
            # (none with a stated concurrency or arrival rate: pair_candidates pairs no such pool then).
            fine = None if (w.concurrency or w.request_rate_per_s) else fed_table(ci.for_decode_pool(), dec, order)
            fine_ok = best_per_row(fine, req)[1] if fine is not None else None
            ranked += [c for i in prefills for n, k in enumerate(order)
                       for c in pair_candidates(p, ci, pre, i, int(pcol[i]), dec, int(k), int(dcol[k]),
                                                (fine, n, fine_ok) if fine is not None else None)]
    ranked.sort(key=rank_key(objective))
    ranked = prefer_simple(ranked, objective)
    timed = next((t for t in tables if t.tpot is not None), None)
    pareto = _pareto(p, ci, timed, picks[timed.mode]) if timed is not None else []
    # The disaggregated pairs are formed above, not in a table: their points join the frontier here.
    pairs = [c for c in ranked if c.mode is Mode.DISAGGREGATED and c.feasible and c.tpot_s]
    return ranked, pruned, non_dominated(pareto + pairs) if pairs else pareto


def _pareto(p: Problem, ci: CostInputs, t: PointTable, pick) -> list[Candidate]:
    """Feasible points not beaten on both tokens/s per GPU and tokens/s per user (1/TPOT)."""
    if t.tpot is None:
        return []
    _, _, ok = pick
    feasible = ok[Rule.MEMORY] & ok[Rule.TTFT] & ok[Rule.TPOT] & ~t.invalid
    rows, cols = np.nonzero(feasible)
    if not len(rows):
        return []
    x = t.metric[rows, cols]
    y = 1.0 / np.broadcast_to(t.tpot, t.B.shape)[rows, cols]
    frontier = frontier_indices(x, y)
    frontier = frontier[:: max(1, len(frontier) // 24)]
    return [single_candidate(p, ci, t, int(rows[f]), int(cols[f])) for f in frontier]
