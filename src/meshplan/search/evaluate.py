"""Evaluate one named strategy with the search's own machinery, and say why it is not the best."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from meshplan.errors import SpecError
from meshplan.cost.inputs import CostInputs
from meshplan.cost.kv_transfer import kv_link_bw
from meshplan.cost.serving import aggregated, decode_cost, kv_transfer_s, prefill_cost
from meshplan.search.candidate import Candidate
from meshplan.search.best_point import best_per_row
from meshplan.search.grid import PREFILL_B_GRID, capacity_grid, layout_par
from meshplan.search.miss import miss_reason
from meshplan.search.objectives import Objective
from meshplan.search.order import rank_key
from meshplan.search.pairs import fed_column, fed_table, pair_candidate
from meshplan.search.single import single_candidate
from meshplan.search.table import PointTable
from meshplan.specs.problem import Problem
from meshplan.specs.workload import Phase
from meshplan.strategy.layout import Layout
from meshplan.strategy.rules import UNUSUAL, Rule, Violation, layout_violations
from meshplan.strategy.space import one_layout


def _arrays(lay: Layout):
    la = one_layout(lay.tp, lay.dp, lay.pp, lay.ep, lay.etp)
    return la, layout_par(la)


def _decode_table(ci: CostInputs, lay: Layout, la, par):
    w = ci.workload
    if w.concurrency:
        grid = np.array([[w.concurrency / (lay.instances * lay.dp * lay.pp)]])
    else:
        grid = capacity_grid(ci, par, 1)
    return decode_cost(ci, par, grid)


def _pick(problem: Problem, ci, t: PointTable, structural, instances: int) -> Candidate:
    col, _, ok = best_per_row(t, problem.requirements)
    if col[0] >= 0:
        return single_candidate(problem, ci, t, 0, int(col[0]), structural, instances=instances)
    j = int(np.argmax(t.metric[0]))
    misses = miss_reason(t, ci, problem.requirements, 0, ok)
    return single_candidate(problem, ci, t, 0, j, tuple(structural) + tuple(misses), instances=instances)


def structural_violations(problem: Problem, lay: Layout, total_gpus: int) -> tuple[Violation, ...]:
    """The rules the layout breaks; unusual placements (strategy.rules.UNUSUAL) are not among them."""
    return tuple(v for v in layout_violations(problem, lay, gpus=total_gpus) if v.rule not in UNUSUAL)


def unusual_placements(problem: Problem, lay: Layout) -> list[str]:
    """What is legal but unusual about the layout, with how it is costed."""
    g = problem.gpu
    out = []
    if lay.tp > g.nvlink_domain_gpus:
        nodes = -(-lay.tp // g.nvlink_domain_gpus)
        out.append(f"tp {lay.tp} spans {nodes} nodes of {g.nvlink_domain_gpus} GPUs: its two all-reduces per layer "
                   f"cross the inter-node link (NCCL's rings use every NIC of a node: {g.nvlink_domain_gpus} x "
                   f"{g.inter_node_bw_bytes_per_s / 1e9:,.0f} GB/s, {g.inter_node_latency_s * 1e6:,.0f} us), and are "
                   "costed so; engines run it (SGLang's two-node TP16 recipe) but most deployments keep tensor "
                   "parallelism inside a node")
    return out


def _both_ways(problem: Problem, evaluate) -> Candidate:
    """``evaluate(problem)``, and with speculative decoding in the problem the better of it with and
    without speculation, as the search chooses (search.order.rank_key)."""
    if problem.speculative is None:
        return evaluate(problem)
    plain = evaluate(problem.model_copy(update={"speculative": None}))
    spec = replace(evaluate(problem), speculative=True)
    return min((plain, spec), key=rank_key(Objective.MAX_PER_GPU))


def one_layout_allowed(problem: Problem, strategy: str, field: str = "--strategy") -> None:
    """A single layout for every instance needs one kind of GPU (Problem.prefill_gpu)."""
    if problem.pools_differ and problem.phase is Phase.BOTH:
        raise SpecError(field, strategy, f"one layout for every instance cannot run on two kinds of GPU (prefill on "
                        f"{problem.prefill_gpu.name}, decode on {problem.gpu.name}); give a prefill and a decode "
                        "strategy")


def evaluate_aggregated(problem: Problem, lay: Layout) -> Candidate:
    """One layout serving every phase the problem asks for (with speculative decoding in the
    problem: the better of with and without it)."""
    return _both_ways(problem, lambda p: _evaluate_aggregated(p, lay))


def _evaluate_aggregated(problem: Problem, lay: Layout) -> Candidate:
    ci = CostInputs.from_problem(problem)
    la, par = _arrays(lay)
    structural = structural_violations(problem, lay, lay.gpus)
    if problem.phase is Phase.PREFILL:
        pre = prefill_cost(ci, par, PREFILL_B_GRID[None, :])
        return _pick(problem, ci, PointTable.prefill(ci, la, pre, None), structural, lay.instances)
    dec = _decode_table(ci, lay, la, par)
    if problem.phase is Phase.DECODE:
        return _pick(problem, ci, PointTable.decode(ci, la, dec, None), structural, lay.instances)
    table = PointTable.aggregated(ci, la, dec, aggregated(ci, par, dec.B), None)
    return _pick(problem, ci, table, structural, lay.instances)


def evaluate_disaggregated(problem: Problem, pre_lay: Layout, dec_lay: Layout) -> Candidate:
    """A prefill pool and a decode pool with the instance counts given in their strategies (with
    speculative decoding in the problem: the better of with and without it)."""
    return _both_ways(problem, lambda p: _evaluate_disaggregated(p, pre_lay, dec_lay))


def _evaluate_disaggregated(problem: Problem, pre_lay: Layout, dec_lay: Layout) -> Candidate:
    ci = CostInputs.from_problem(problem)
    ci_p = CostInputs.from_problem(problem.for_pool(Phase.PREFILL))  # its own GPU (Problem.prefill_gpu)
    pla, ppar = _arrays(pre_lay)
    dla, dpar = _arrays(dec_lay)
    total = pre_lay.gpus + dec_lay.gpus
    structural = structural_violations(problem.for_pool(Phase.PREFILL), pre_lay, total) + tuple(
        v for v in structural_violations(problem, dec_lay, total) if v.rule is not Rule.GPU_BUDGET)
    nic = kv_link_bw(ci_p, ci) if problem.pools_differ else None
    pre_t = PointTable.prefill(ci_p, pla, prefill_cost(ci_p, ppar, PREFILL_B_GRID[None, :]), kv_transfer_s(ci_p, ppar, nic))
    dec_t = PointTable.decode(ci, dla, _decode_table(ci.for_decode_pool(), dec_lay, dla, dpar), None)
    req = problem.requirements
    pcol, _, pok = best_per_row(pre_t, req)
    dcol, _, dok = best_per_row(dec_t, req)
    misses = list(structural)
    if pcol[0] < 0:
        misses += miss_reason(pre_t, ci_p, req, 0, pok)
    if dcol[0] < 0:
        misses += miss_reason(dec_t, ci, req, 0, dok)
    i = int(pcol[0]) if pcol[0] >= 0 else int(np.argmax(pre_t.metric[0]))
    j = int(dcol[0]) if dcol[0] >= 0 else int(np.argmax(dec_t.metric[0]))
    # A prefill pool that prefills fewer requests than the decode pool's best point completes feeds
    # it a smaller batch (Little's law), as the search pairs them (pairs.pair_candidates).
    fed = pre_lay.instances * float(pre_t.inst_req_s[0, i]) / dec_lay.instances
    # (A stated concurrency fixes the decode batch: its table's one point stays.)
    rate_d = float(np.broadcast_to(dec_t.inst_req_s, dec_t.B.shape)[0, j])
    if dcol[0] >= 0 and not problem.workload.concurrency and rate_d > fed:
        fine = fed_table(ci.for_decode_pool(), dec_t, [0])
        m_fed = fed_column(fine, 0, best_per_row(fine, req)[1], fed)
        if m_fed is not None:
            dec_t, j = fine, m_fed
    c = pair_candidate(problem, ci, pre_t, 0, i, dec_t, 0, j, fixed=(pre_lay.instances, dec_lay.instances))
    return replace(c, violations=tuple(misses) + tuple(c.violations))
