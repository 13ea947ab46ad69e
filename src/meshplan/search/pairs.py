"""Disaggregated candidates: a prefill pool paired with a decode pool, each pool's instances
sized so that one keeps up with the other."""

from __future__ import annotations

import math

import numpy as np

from meshplan.cost.inputs import CostInputs
from meshplan.cost.queueing import md1_rho_for_latency, md1_wait_s
from meshplan.cost.serving import decode_cost
from meshplan.search.candidate import Candidate
from meshplan.search.objectives import Mode
from meshplan.search.grid import B_GRID, capacity_grid, layout_par
from meshplan.search.requirements import with_requirements
from meshplan.search.single import layout_at, pool_instances
from meshplan.search.table import PointTable
from meshplan.specs.problem import Problem

FED_STEPS = 16
"""Batch sizes per doubling a decode pool fed fewer requests than its best point completes
chooses among (FED_GRID): it runs within 2^(1/16) (4.4%) of the batch its feed keeps in flight,
where the search grid (B_GRID, doubling) would credit it up to a factor of 2 below."""

FED_GRID = B_GRID[0] * 2.0 ** (np.arange(round(np.log2(B_GRID[-1] / B_GRID[0])) * FED_STEPS + 1) / FED_STEPS)
"""B_GRID's range in FED_STEPS geometric steps per doubling (1 to 4,096: 193 batch sizes)."""


def pair_candidate(p: Problem, ci: CostInputs, pre: PointTable, i: int, j: int, dec: PointTable, k: int, m: int,
                   fixed: tuple[int, int] | None = None) -> Candidate:
    """A disaggregated candidate: prefill row i at column j, decode row k at column m, checked
    against the requirements of ``p`` (the problem ``ci`` was read from)."""
    w = ci.workload
    g_p = int(pre.la.gpus_per_instance[i])
    g_d = int(dec.la.gpus_per_instance[k])
    r_p, r_d = float(pre.inst_req_s[i, j]), float(dec.inst_req_s[k, m])
    B = float(dec.B[k, m])
    slots = int(dec.la.dp[k] * dec.la.pp[k])
    n_d = pool_instances(p, g_d, w.osl_tokens * r_d / g_d, B, slots, r_d)  # the decode pool's own tok/s per GPU
    if p.gpu_budget and not ci.workload.concurrency and not p.requirements.min_output_tok_s:
        # Split the budget in the ratio of GPU-seconds per request.
        share = (g_d / r_d) / (g_p / r_p + g_d / r_d)
        n_d = max(1, int(p.gpu_budget * share // g_d))
    n_p = max(1, math.ceil(n_d * r_d / r_p - 1e-9))
    if fixed is not None:
        n_p, n_d = fixed
    gpus = n_p * g_p + n_d * g_d
    served = min(n_d * r_d, n_p * r_p)
    ttft = float(np.broadcast_to(pre.ttft, pre.B.shape)[i, j])
    rate = ci.workload.request_rate_per_s
    if rate and not ci.workload.concurrency and fixed is None:
        n_p = _prefill_instances_for_rate(p.requirements.ttft_s, rate, r_p, ttft, g_p,
                                          p.gpu_budget and p.gpu_budget - n_d * g_d)
        gpus = n_p * g_p + n_d * g_d
        ttft += md1_wait_s(rate / (n_p * r_p), ttft)  # the prefill pool's queue
        served = rate
    total_out = served * w.osl_tokens
    c = Candidate(mode=Mode.DISAGGREGATED, prefill=layout_at(pre.la, i, n_p), decode=layout_at(dec.la, k, n_d),
                  decode_B=B, prefill_B=float(pre.B[i, j]), gpus_total=gpus,
                  ttft_s=ttft, tpot_s=float(np.broadcast_to(dec.tpot, dec.B.shape)[k, m]),
                  output_tok_s_per_gpu=total_out / gpus, input_tok_s_per_gpu=total_out / gpus * w.isl_tokens / w.osl_tokens,
                  output_tok_s=total_out, concurrency=B * slots * n_d,
                  max_concurrency=float(dec.max_b[k]) * slots * n_d)
    return with_requirements(p, c)


def pair_candidates(p: Problem, ci: CostInputs, pre: PointTable, i: int, j: int, dec: PointTable, k: int, m: int,
                    fed: tuple[PointTable, int, np.ndarray] | None = None) -> list[Candidate]:
    """The disaggregated pair at the decode pool's best point and, where the prefill pool rounds
    up to serve it (or the GPU budget leaves room for fewer prefill instances only), the pair with
    fewer prefill instances whose decode pool runs at the rate they feed: its best point that
    completes no more requests than they prefill (Little's law: fewer requests in flight, a
    shorter TPOT). ``fed``: the decode row's points at FED_GRID (fed_table), its row there, and
    which of them meet every requirement."""
    full = pair_candidate(p, ci, pre, i, j, dec, k, m)
    w = ci.workload
    if w.concurrency or w.request_rate_per_s:
        # A stated concurrency fixes each decode point's instances (its grid holds no other
        # batch), and an arrival rate sizes the prefill pool itself (_prefill_instances_for_rate).
        return [full]
    n_p, n_d = full.prefill.instances, full.decode.instances
    g_p, g_d = int(pre.la.gpus_per_instance[i]), int(dec.la.gpus_per_instance[k])
    fewer = n_p - 1
    if p.gpu_budget and full.gpus_total > p.gpu_budget:
        fewer = min(fewer, (p.gpu_budget - n_d * g_d) // g_p)
    if fewer < 1 or fed is None:
        return [full]
    table, row, feasible = fed
    col = fed_column(table, row, feasible, fewer * float(pre.inst_req_s[i, j]) / n_d)
    if col is None:
        return [full]
    return [full, pair_candidate(p, ci, pre, i, j, table, row, col, fixed=(fewer, n_d))]


def fed_column(dec: PointTable, k: int, feasible: np.ndarray, fed_req_s: float) -> int | None:
    """The decode row's point a prefill pool feeding ``fed_req_s`` requests/s per decode instance
    sustains: the feasible point completing the most requests, no more than it is fed (None when
    none is that slow), among the points of its table (fed_table's, finer than the search grid)."""
    rates = np.broadcast_to(dec.inst_req_s, dec.B.shape)[k]
    cols = np.nonzero(np.broadcast_to(feasible, dec.B.shape)[k] & (rates <= fed_req_s * (1 + 1e-12)))[0]
    return int(cols[np.argmax(rates[cols])]) if len(cols) else None


def fed_table(ci: CostInputs, dec: PointTable, rows) -> PointTable:
    """Decode rows ``rows`` of ``dec`` at FED_GRID batch sizes (and each row's memory limit), by the
    step model that made ``dec`` (cost.serving.decode_cost): the points a decode pool fed fewer
    requests than its best point completes chooses among (fed_column), one call for every row."""
    la = dec.la.take(np.asarray(rows, dtype=np.int64))
    par = layout_par(la)
    return PointTable.decode(ci, la, decode_cost(ci, par, capacity_grid(ci, par, len(la), FED_GRID)), None)


def _prefill_instances_for_rate(target: float | None, rate: float, r_p: float, ttft: float, g_p: int,
                                room: int | None) -> int:
    """Prefill instances for an arrival rate: enough to serve it (rho < 1), and under a TTFT
    ``target`` enough that the M/D/1 wait keeps TTFT within it (utilisation at most
    cost.queueing.md1_rho_for_latency), where the GPUs left for prefill (``room``) allow. Hand
    check: s = 1 s, target 2 s -> rho <= 2/3, so at 10 req/s and 3 req/s per instance, 5 instances."""
    n = int(rate // r_p) + 1
    if target and target > ttft:
        n = max(n, math.ceil(rate / (r_p * md1_rho_for_latency(target, ttft)) - 1e-9))
    if room is not None and room >= g_p:
        n = min(n, max(int(rate // r_p) + 1, room // g_p))
    return n
