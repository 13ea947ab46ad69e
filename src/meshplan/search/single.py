"""A candidate from one pool's table (aggregated, decode-only or prefill-only): its layout, its
instances and its figures at one operating point, checked against the requirements."""

from __future__ import annotations

import math

import numpy as np

from meshplan.cost.inputs import CostInputs
from meshplan.cost.iteration import prefill_budget
from meshplan.cost.layer import Par
from meshplan.cost.queueing import md1_wait_s
from meshplan.search.candidate import Candidate
from meshplan.search.objectives import Mode
from meshplan.search.requirements import with_requirements
from meshplan.search.table import PointTable
from meshplan.specs.problem import Problem
from meshplan.strategy.layout import Layout
from meshplan.strategy.space import LayoutArrays


def layout_at(la: LayoutArrays, i: int, instances: int = 1) -> Layout:
    """Row i of a table's layouts, with ``instances`` instances (at least one)."""
    return Layout(instances=max(1, instances), pp=int(la.pp[i]), tp=int(la.tp[i]), dp=int(la.dp[i]),
                  ep=int(la.ep[i]), etp=int(la.etp[i]))


def pool_instances(p: Problem, gpi: int, per_gpu: float, B: float, slots: int, req_s: float = 0.0) -> int:
    """Instances of a pool: fixed by the concurrency when given, else the fewest that keep up
    with the request rate (utilisation below 1), else enough for the total throughput target,
    else as many as the budget holds, else one. ``req_s`` is one instance's request capacity."""
    if p.workload.concurrency:
        return max(1, round(p.workload.concurrency / (B * slots)))
    if p.workload.request_rate_per_s and req_s > 0:
        return int(p.workload.request_rate_per_s // req_s) + 1
    if p.requirements.min_output_tok_s and per_gpu > 0:
        return max(1, math.ceil(p.requirements.min_output_tok_s / (per_gpu * gpi)))
    if p.gpu_budget:
        return max(1, p.gpu_budget // gpi)
    return 1


def single_candidate(p: Problem, ci: CostInputs, t: PointTable, i: int, j: int, violations=(),
                     instances: int | None = None) -> Candidate:
    """A candidate from one pool's table (aggregated, decode-only or prefill-only), checked
    against the requirements of ``p`` (the problem ``ci`` was read from)."""
    la, w = t.la, ci.workload
    gpi = int(la.gpus_per_instance[i])
    slots = int(la.dp[i] * la.pp[i])
    B = float(t.B[i, j])
    per_gpu = float(t.metric[i, j])
    req_s = float(t.inst_req_s[i, j])
    n = instances or pool_instances(p, gpi, per_gpu, B, slots, req_s)
    lay = layout_at(la, i, n)
    ttft = float(np.broadcast_to(t.ttft, t.B.shape)[i, j]) if t.ttft is not None else None
    tpot = float(np.broadcast_to(t.tpot, t.B.shape)[i, j]) if t.tpot is not None else None
    prefill_only = t.mode is Mode.PREFILL_ONLY
    rate = ci.workload.request_rate_per_s
    if rate and not ci.workload.concurrency:
        # At a given arrival rate the deployment serves the rate, not its capacity, and a request
        # waits for the prefill in service (an M/D/1 queue, cost.queueing).
        if ttft is not None:
            ttft = ttft + md1_wait_s(rate / (n * req_s), ttft)
        per_gpu = min(per_gpu, rate * (w.isl_tokens if prefill_only else w.osl_tokens) / (n * gpi))
    out_gpu = None if prefill_only else per_gpu
    in_gpu = per_gpu if prefill_only else (per_gpu * w.isl_tokens / w.osl_tokens if t.mode is Mode.AGGREGATED else None)
    c = Candidate(mode=t.mode, prefill=None if t.mode is Mode.DECODE_ONLY else lay,
                  decode=None if prefill_only else lay, decode_B=0.0 if prefill_only else B,
                  prefill_B=B if prefill_only else _prompts_per_iteration(ci, lay),
                  gpus_total=n * gpi, ttft_s=ttft, tpot_s=tpot, output_tok_s_per_gpu=out_gpu,
                  input_tok_s_per_gpu=in_gpu, output_tok_s=None if prefill_only else per_gpu * n * gpi,
                  concurrency=B * slots * n, max_concurrency=float(t.max_b[i]) * slots * n,
                  violations=tuple(violations))
    return with_requirements(p, c)


def _prompts_per_iteration(ci: CostInputs, lay: Layout) -> float:
    """Prompts one attention-dp rank prefills per iteration at most (the budget it is costed with)."""
    par = Par.of(lay.tp, lay.dp, lay.ep, lay.etp, lay.pp)
    return float(prefill_budget(ci, par)) / ci.workload.computed_prompt_tokens
