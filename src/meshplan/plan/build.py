"""Candidate -> the typed figures of the plan document (plan.document). Every figure in the
Markdown report comes from here.

The chosen candidate's figures are ``gpus_total, feasible, violations, ttft_s, tpot_s,
output_tok_s, output_tok_s_per_gpu, input_tok_s_per_gpu, max_concurrency, memory_per_gpu_bytes
{weights, kv_cache, activations, reserve, total, capacity, usable}, kv_cache_bytes_per_token`` and
``phases`` {prefill, decode} with the same figures per phase plus ``strategy``. A figure that does
not apply is None (null in the JSON), never missing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.memory import kv_bytes_per_token
from meshplan.cost.serving import PhaseCost, decode_cost, prefill_cost
from meshplan.plan.document import ModelFacts
from meshplan.plan.phase_figures import Memory, Operator, Operators, PhaseFigures, Phases, Strategy
from meshplan.search.candidate import Candidate
from meshplan.search.objectives import Mode
from meshplan.specs.params import count_params
from meshplan.specs.problem import Problem
from meshplan.specs.workload import Phase
from meshplan.strategy.layout import Layout
from meshplan.strategy.mesh import expert_slots_per_rank, stage_layers
from meshplan.strategy.rules import Rule


def _f(x) -> float | None:
    return None if x is None else float(np.asarray(x).reshape(-1)[0])


def par_of(lay: Layout) -> Par:
    return Par.of(lay.tp, lay.dp, lay.ep, lay.etp, lay.pp)


def _memory(pc: PhaseCost) -> Memory:
    m = pc.memory
    return Memory(weights=_f(m.weights), kv_cache=_f(m.kv_cache), activations=_f(m.activations),
                  reserve=float(m.reserve), total=_f(m.total), capacity=float(m.capacity), usable=_f(m.usable))


def _ops(pc: PhaseCost) -> Operators:
    """Per-layer operator breakdown of one pass, in seconds, FLOPs and bytes per GPU."""
    def listed(ops) -> tuple[Operator, ...]:
        return tuple(Operator(op=op.name, kind=op.kind, time_s=_f(op.time_s), flops=_f(op.flops),
                              hbm_bytes=_f(op.mem_bytes), comm_bytes=_f(op.comm_bytes)) for op in ops)
    f = pc.forward
    return Operators(dense_layer=listed(f.dense_layer), moe_layer=listed(f.moe_layer), lm_head=listed(f.head))


def strategy_of(lay: Layout, problem: Problem) -> Strategy:
    stages = stage_layers(problem.model.num_layers, lay.pp)
    return Strategy(string=str(lay), instances=lay.instances, pp=lay.pp, tp=lay.tp, dp=lay.dp, ep=lay.ep, etp=lay.etp,
                    gpus_per_instance=lay.gpus_per_instance, gpus=lay.gpus,
                    layers_per_stage=tuple(len(s) for s in stages),
                    experts_per_gpu=(expert_slots_per_rank(problem.model.num_experts,
                                                           problem.assumptions.redundant_experts, lay.ep)
                                     if problem.model.is_moe else None))


def strategy_dict(lay: Layout, problem: Problem) -> dict[str, Any]:
    """strategy_of as a dict of its fields."""
    return dataclasses.asdict(strategy_of(lay, problem))


def phase_figures(problem: Problem, ci: CostInputs, c: Candidate, phase: Phase) -> PhaseFigures | None:
    """Figures of one phase of the candidate, recomputed with scalars for the breakdowns (``ci``:
    read from ``problem``)."""
    lay = c.prefill if phase is Phase.PREFILL else c.decode
    if lay is None:
        return None
    par = par_of(lay)
    w = ci.workload
    if phase is Phase.PREFILL and problem.pools_differ:  # costed on the prefill pool's own GPU
        problem = problem.for_pool(Phase.PREFILL)
        ci = CostInputs.from_problem(problem)
    if phase is Phase.DECODE:
        pool = c.mode is Mode.DISAGGREGATED  # a disaggregated decode pool runs its own scheduler loop
        pc = decode_cost(ci.for_decode_pool() if pool else ci, par, c.decode_B)
        slots = lay.dp * lay.pp * lay.instances
        d = dict(ttft_s=None, tpot_s=_f(pc.latency_s), output_tok_s_per_gpu=_f(pc.tok_s_per_gpu),
                 input_tok_s_per_gpu=None, output_tok_s=_f(pc.tok_s_per_gpu) * lay.gpus,
                 batch_per_attention_dp_rank=float(c.decode_B), max_concurrency=_f(pc.max_B) * slots,
                 context_tokens=w.decode_context_tokens)
    else:
        pc = prefill_cost(ci, par, c.prefill_B)
        d = dict(ttft_s=_f(pc.latency_s), tpot_s=None, output_tok_s_per_gpu=None,
                 input_tok_s_per_gpu=_f(pc.tok_s_per_gpu), output_tok_s=None,
                 batch_per_attention_dp_rank=float(c.prefill_B), max_concurrency=None, context_tokens=w.isl_tokens)
    other = Rule.TPOT if phase is Phase.PREFILL else Rule.TTFT  # the other phase's requirement
    violations = tuple(v for v in c.violations if v.rule is not other)
    return PhaseFigures(**d, gpu=problem.gpu.name, gpus_total=lay.gpus, feasible=not violations,
                        violations=violations, kv_cache_bytes_per_token=kv_bytes_per_token(ci), step_s=_f(pc.step_s),
                        strategy=strategy_of(lay, problem), memory_per_gpu_bytes=_memory(pc), operators=_ops(pc))


def phases_of(problem: Problem, ci: CostInputs, c: Candidate) -> Phases:
    """The figures of each phase the candidate serves (``ci``: read from ``problem``)."""
    return Phases(prefill=phase_figures(problem, ci, c, Phase.PREFILL),
                  decode=phase_figures(problem, ci, c, Phase.DECODE))


def model_facts(problem: Problem) -> ModelFacts:
    m = problem.model
    pc = count_params(m)
    return ModelFacts(name=m.name, source=m.source, attention=m.attention, layers=m.num_layers,
                      hidden_size=m.hidden_size, heads=m.num_heads, kv_heads=m.num_kv_heads, head_dim=m.head_dim,
                      experts=m.num_experts, top_k=m.top_k, moe_layers=m.num_moe_layers, params_total=pc.total,
                      params_active=pc.active, declared_params=m.declared_params)
