"""Evaluated operating points as tables, the one-pool candidates they give (each checked against
the requirements), and the order candidates rank in (search.pairs pairs the pools, search.ranking
ranks them)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from meshplan.cost.capacity import decode_capacity
from meshplan.cost.inputs import CostInputs
from meshplan.cost.iteration import prefill_budget
from meshplan.cost.layer import Par
from meshplan.cost.serving import PhaseCost, Serving
from meshplan.search.candidate import Candidate
from meshplan.search.grid import B_GRID, with_limit
from meshplan.search.objectives import Mode, Objective
from meshplan.strategy.layout import Layout
from meshplan.strategy.rules import Rule, Violation
from meshplan.strategy.space import LayoutArrays
from meshplan.units import GIB, fmt_seconds, plural

TOP = 40
"""Candidates materialized per mode (the rest are counted, not listed)."""

PREFILL_SHAPES = 6
"""Disaggregated pairs try the best prefill layout of each of this many instance shapes (GPUs,
pipeline stages), best first."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PointTable:
    """One mode's points: rows are layouts, columns operating points."""

    mode: Mode
    la: LayoutArrays
    B: np.ndarray
    metric: np.ndarray
    """Tokens/s per GPU the objective ranks by (output, or input for prefill)."""
    ttft: np.ndarray | None
    tpot: np.ndarray | None
    fits: np.ndarray
    invalid: np.ndarray
    max_b: np.ndarray
    inst_req_s: np.ndarray
    """Requests per second one instance completes."""
    mem_total: np.ndarray
    usable: np.ndarray
    """Usable memory per GPU of each row (cost.phase.usable_bytes)."""

    @staticmethod
    def decode(ci: CostInputs, la, dec: PhaseCost, invalid) -> "PointTable":
        return PointTable(mode=Mode.DECODE_ONLY, la=la, B=dec.B, metric=dec.tok_s_per_gpu, ttft=None,
                          tpot=dec.latency_s, fits=dec.B <= dec.max_B, invalid=_inv(invalid, dec.B),
                          max_b=dec.max_B[:, 0], inst_req_s=dec.requests_per_s, mem_total=dec.memory.total,
                          usable=_rows(dec.memory.usable, dec.B))

    @staticmethod
    def prefill(ci: CostInputs, la, pre: PhaseCost, transfer_s) -> "PointTable":
        ttft = pre.latency_s + (transfer_s if transfer_s is not None else 0.0)
        return PointTable(mode=Mode.PREFILL_ONLY, la=la, B=pre.B, metric=pre.tok_s_per_gpu, ttft=ttft, tpot=None,
                          fits=pre.B <= pre.max_B, invalid=np.zeros(pre.B.shape, bool), max_b=pre.max_B[:, 0],
                          inst_req_s=pre.requests_per_s, mem_total=pre.memory.total,
                          usable=_rows(pre.memory.usable, pre.B))

    @staticmethod
    def aggregated(ci: CostInputs, la, dec: PhaseCost, s: Serving, invalid) -> "PointTable":
        g = (la.pp * la.tp * la.dp)[:, None]
        return PointTable(mode=Mode.AGGREGATED, la=la, B=dec.B, metric=s.output_tok_s_per_gpu, ttft=s.ttft_s,
                          tpot=s.tpot_s, fits=dec.B <= dec.max_B, invalid=_inv(invalid, dec.B),
                          max_b=dec.max_B[:, 0], inst_req_s=s.output_tok_s_per_gpu * g / ci.problem.workload.osl_tokens,
                          mem_total=dec.memory.total, usable=_rows(dec.memory.usable, dec.B))


def _rows(usable, like) -> np.ndarray:
    """One usable-memory figure per row of a (rows, points) table."""
    u = np.asarray(usable, dtype=float).reshape(-1)
    return np.broadcast_to(u, (np.shape(like)[0],))


def _share(ci: CostInputs) -> str:
    """What the memory fraction is a fraction of, for messages."""
    of = "of the memory free once the model is loaded" if ci.kv_of_free else "of capacity"
    return f"{ci.problem.requirements.memory_headroom:.0%} {of}"


def _inv(invalid, like):
    return np.zeros(np.shape(like), bool) if invalid is None else invalid


def _ok(t: PointTable, ci: CostInputs) -> dict[Rule, np.ndarray]:
    req = ci.problem.requirements
    shape = t.B.shape
    ok = {Rule.MEMORY: t.fits}
    ok[Rule.TTFT] = (np.broadcast_to(t.ttft <= req.ttft_s, shape) if (req.ttft_s and t.ttft is not None)
                     else np.ones(shape, bool))
    ok[Rule.TPOT] = (np.broadcast_to(t.tpot <= req.tpot_s, shape) if (req.tpot_s and t.tpot is not None)
                     else np.ones(shape, bool))
    return ok


SATURATION = 0.02
"""Operating points within 2% of a layout's best tokens/s per GPU count as equal, and the one
with the lowest latency (TPOT, or TTFT for prefill) is kept: throughput saturates with batch
size, and the last percent is not worth a latency several times longer."""


def best_per_row(t: PointTable, ci: CostInputs):
    """Column index of the best feasible point per row (or -1), and the feasibility mask."""
    ok = _ok(t, ci)
    feasible = ok[Rule.MEMORY] & ok[Rule.TTFT] & ok[Rule.TPOT] & ~t.invalid
    score = np.where(feasible, t.metric, -np.inf)
    top = np.max(score, axis=1, keepdims=True)
    latency = np.broadcast_to(t.tpot if t.tpot is not None else t.ttft, t.B.shape)
    near = feasible & (score >= top * (1 - SATURATION))
    col = np.argmin(np.where(near, latency, np.inf), axis=1)
    has = np.isfinite(top[:, 0])
    return np.where(has, col, -1), feasible, ok


def capacity_grid(ci: CostInputs, par: Par, rows: int, grid: np.ndarray = B_GRID) -> np.ndarray:
    """Decode batch sizes to evaluate per layout row: ``grid`` plus the row's own KV-cache limit
    (cost.capacity.decode_capacity), so the memory-bound optimum is never missed."""
    return with_limit(grid, np.broadcast_to(decode_capacity(ci, par), (rows, 1))[:, 0])


def layout_par(la: LayoutArrays) -> Par:
    """The parallel degrees of a table's layouts, one row each (shape (rows, 1)), as the cost model
    broadcasts them against the operating points of a row."""
    c = lambda x: x.astype(float)[:, None]  # noqa: E731
    return Par.of(c(la.tp), c(la.dp), c(la.ep), c(la.etp), c(la.pp))


def _layout(la: LayoutArrays, i: int, instances: int = 1) -> Layout:
    return Layout(instances=max(1, instances), pp=int(la.pp[i]), tp=int(la.tp[i]), dp=int(la.dp[i]),
                  ep=int(la.ep[i]), etp=int(la.etp[i]))


def _instances(ci: CostInputs, gpi: int, per_gpu: float, B: float, slots: int, req_s: float = 0.0) -> int:
    """Instances of a pool: fixed by the concurrency when given, else the fewest that keep up
    with the request rate (utilisation below 1), else enough for the total throughput target,
    else as many as the budget holds, else one. ``req_s`` is one instance's request capacity."""
    p = ci.problem
    if p.workload.concurrency:
        return max(1, round(p.workload.concurrency / (B * slots)))
    if p.workload.request_rate_per_s and req_s > 0:
        return int(p.workload.request_rate_per_s // req_s) + 1
    if p.requirements.min_output_tok_s and per_gpu > 0:
        return max(1, math.ceil(p.requirements.min_output_tok_s / (per_gpu * gpi)))
    if p.gpu_budget:
        return max(1, p.gpu_budget // gpi)
    return 1


def _requirement_violations(ci: CostInputs, c: Candidate) -> list[Violation]:
    """Every requirement, checked on the finished candidate: latency targets again (queueing at a
    request rate adds to TTFT after the operating point was chosen), throughput and the budget."""
    p, out = ci.problem, []
    r = p.requirements
    ruled = {v.rule for v in c.violations}
    if r.ttft_s and c.ttft_s is not None and c.ttft_s > r.ttft_s * (1 + 1e-9) and Rule.TTFT not in ruled:
        out.append(Violation(rule=Rule.TTFT, message=f"TTFT {fmt_seconds(c.ttft_s)} > target {fmt_seconds(r.ttft_s)}"))
    if r.tpot_s and c.tpot_s is not None and c.tpot_s > r.tpot_s * (1 + 1e-9) and Rule.TPOT not in ruled:
        out.append(Violation(rule=Rule.TPOT, message=f"TPOT {fmt_seconds(c.tpot_s)} > target {fmt_seconds(r.tpot_s)}"))
    if r.min_output_tok_s_per_gpu and c.output_tok_s_per_gpu is not None and c.output_tok_s_per_gpu < r.min_output_tok_s_per_gpu:
        out.append(Violation(rule=Rule.THROUGHPUT, message=(
            f"output {c.output_tok_s_per_gpu:,.0f} tok/s per GPU < required {r.min_output_tok_s_per_gpu:,.0f}")))
    if r.min_input_tok_s_per_gpu and c.input_tok_s_per_gpu is not None and c.input_tok_s_per_gpu < r.min_input_tok_s_per_gpu:
        out.append(Violation(rule=Rule.THROUGHPUT, message=(
            f"input {c.input_tok_s_per_gpu:,.0f} tok/s per GPU < required {r.min_input_tok_s_per_gpu:,.0f}")))
    if r.min_output_tok_s and c.output_tok_s is not None and c.output_tok_s < r.min_output_tok_s * (1 - 1e-9):
        out.append(Violation(rule=Rule.THROUGHPUT, message=(
            f"output {c.output_tok_s:,.0f} tok/s in total < required {r.min_output_tok_s:,.0f}")))
    if p.gpu_budget and c.gpus_total > p.gpu_budget:
        out.append(Violation(rule=Rule.GPU_BUDGET, message=f"{plural(c.gpus_total, 'GPU')} > budget {p.gpu_budget}"))
    return out


def _miss_reason(t: PointTable, ci: CostInputs, i: int, ok: dict[Rule, np.ndarray]) -> list[Violation]:
    """Why row i has no feasible point, with the numbers of its nearest miss."""
    req = ci.problem.requirements
    if not ok[Rule.MEMORY][i].any():
        j = int(np.argmin(t.B[i]))
        need = float(np.broadcast_to(t.mem_total, t.B.shape)[i, j])
        fit = int(t.max_b[i])
        if fit >= 1:
            return [Violation(rule=Rule.MEMORY, message=(
                f"{t.B[i, j]:,.0f} sequences per attention-dp rank need {need / GIB:.1f} GiB per GPU > usable "
                f"{t.usable[i] / GIB:.1f} GiB ({_share(ci)}); at most {fit:,} fit per rank"))]
        return [Violation(rule=Rule.MEMORY, message=(
            f"even one sequence per rank needs more than the usable {t.usable[i] / GIB:.1f} GiB per GPU "
            f"({_share(ci)}): {need / GIB:.1f} GiB at the smallest point tried"))]
    if t.invalid[i].all():
        slots = int(t.la.dp[i] * t.la.pp[i])
        return [Violation(rule=Rule.CONCURRENCY, message=(
            f"{ci.problem.workload.concurrency} requests in flight < {slots} decode slots of one instance "
            f"(attention dp {int(t.la.dp[i])} x pp {int(t.la.pp[i])}): ranks would sit idle"))]
    mem = ok[Rule.MEMORY][i] & ~t.invalid[i]
    found = []
    if t.ttft is not None and req.ttft_s and not (ok[Rule.TTFT][i] & mem).any():
        best = float(np.min(np.broadcast_to(t.ttft, t.B.shape)[i][mem]))
        found.append(Violation(rule=Rule.TTFT, message=f"TTFT at best {fmt_seconds(best)} > target {fmt_seconds(req.ttft_s)}"))
    if t.tpot is not None and req.tpot_s and not (ok[Rule.TPOT][i] & mem).any():
        best = float(np.min(np.broadcast_to(t.tpot, t.B.shape)[i][mem]))
        found.append(Violation(rule=Rule.TPOT, message=f"TPOT at best {fmt_seconds(best)} > target {fmt_seconds(req.tpot_s)}"))
    if not found:
        found.append(Violation(rule=Rule.MEMORY, message=(
            "no operating point meets memory and the latency targets at once (the concurrency leaves too "
            "many sequences per rank)")))
    return found


def _single(ci: CostInputs, t: PointTable, i: int, j: int, violations=(), instances: int | None = None) -> Candidate:
    """A candidate from one pool's table (aggregated, decode-only or prefill-only)."""
    la, w = t.la, ci.problem.workload
    gpi = int(la.gpus_per_instance[i])
    slots = int(la.dp[i] * la.pp[i])
    B = float(t.B[i, j])
    per_gpu = float(t.metric[i, j])
    req_s = float(t.inst_req_s[i, j])
    n = instances or _instances(ci, gpi, per_gpu, B, slots, req_s)
    lay = _layout(la, i, n)
    ttft = float(np.broadcast_to(t.ttft, t.B.shape)[i, j]) if t.ttft is not None else None
    tpot = float(np.broadcast_to(t.tpot, t.B.shape)[i, j]) if t.tpot is not None else None
    prefill_only = t.mode is Mode.PREFILL_ONLY
    rate = ci.problem.workload.request_rate_per_s
    if rate and not ci.problem.workload.concurrency:
        # At a given arrival rate the deployment serves the rate, not its capacity, and a request
        # waits for the prefill in service: M/D/1 waiting time rho * s / (2 (1 - rho))
        # (Pollaczek-Khinchine formula with deterministic service s).
        rho = rate / (n * req_s)
        if ttft is not None:
            ttft = ttft + (rho * ttft / (2 * (1 - rho)) if rho < 1 else float("inf"))
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
    return _with_requirements(ci, c)


def _prompts_per_iteration(ci: CostInputs, lay: Layout) -> float:
    """Prompts one attention-dp rank prefills per iteration at most (the budget it is costed with)."""
    par = Par.of(lay.tp, lay.dp, lay.ep, lay.etp, lay.pp)
    return float(prefill_budget(ci, par)) / ci.problem.workload.computed_prompt_tokens


def _with_requirements(ci: CostInputs, c: Candidate) -> Candidate:
    extra = _requirement_violations(ci, c)
    if not extra:
        return c
    from dataclasses import replace
    return replace(c, violations=tuple(c.violations) + tuple(extra))


def rank_key(objective: Objective):
    if objective is Objective.MIN_GPUS:
        return lambda c: (not c.feasible, c.gpus_total, -(c.output_tok_s_per_gpu or 0.0))
    return lambda c: (not c.feasible, -((c.output_tok_s_per_gpu if c.output_tok_s_per_gpu is not None
                                          else c.input_tok_s_per_gpu) or 0.0), c.gpus_total)


def per_gpu_metric(c: Candidate) -> float:
    """Output tokens/s per GPU (input tokens/s for a prefill-only plan)."""
    return c.output_tok_s_per_gpu if c.output_tok_s_per_gpu is not None else (c.input_tok_s_per_gpu or 0.0)


def instance_size(c: Candidate) -> tuple[int, int]:
    """(GPUs of the largest instance, its pipeline stages): smaller is simpler to run."""
    lays = [x for x in (c.prefill, c.decode) if x is not None]
    return max(x.gpus_per_instance for x in lays), max(x.pp for x in lays)


def prefer_simple(ranked: list[Candidate], objective: Objective) -> list[Candidate]:
    """Among feasible candidates within SATURATION of the best tokens/s per GPU, put the smaller
    instances (then fewer pipeline stages) first: a few percent of modelled throughput does not
    pay for a deployment that is harder to run and to debug."""
    if objective is Objective.MIN_GPUS or not ranked or not ranked[0].feasible:
        return ranked
    metric = per_gpu_metric
    top = metric(ranked[0])
    near = [c for c in ranked if c.feasible and metric(c) >= top * (1 - SATURATION)]
    rest = [c for c in ranked if not (c.feasible and metric(c) >= top * (1 - SATURATION))]
    return sorted(near, key=instance_size) + rest
