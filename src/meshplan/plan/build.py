"""Candidate -> plan document (JSON-ready dict). Every figure in the Markdown report comes from here.

Schema (version SCHEMA): top level ``gpus_total, feasible, violations, ttft_s, tpot_s,
output_tok_s, output_tok_s_per_gpu, input_tok_s_per_gpu, max_concurrency, memory_per_gpu_bytes
{weights, kv_cache, activations, total, capacity}, kv_cache_bytes_per_token`` and ``phases``
{prefill, decode} with the same keys per phase plus ``strategy``. A key that does not apply is
null, never missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.memory import kv_bytes_per_token
from meshplan.cost.serving import PhaseCost, decode_cost, prefill_cost
from meshplan.search.candidate import Candidate
from meshplan.search.objectives import Mode
from meshplan.specs.params import count_params
from meshplan.specs.problem import Problem
from meshplan.strategy.layout import Layout
from meshplan.strategy.mesh import expert_slots_per_rank, stage_layers

SCHEMA = "meshplan.plan/1"


def _f(x) -> float | None:
    return None if x is None else float(np.asarray(x).reshape(-1)[0])


def par_of(lay: Layout) -> Par:
    return Par.of(lay.tp, lay.dp, lay.ep, lay.etp, lay.pp)


def _memory(pc: PhaseCost) -> dict[str, float]:
    m = pc.memory
    return {"weights": _f(m.weights), "kv_cache": _f(m.kv_cache), "activations": _f(m.activations),
            "reserve": float(m.reserve), "total": _f(m.total), "capacity": float(m.capacity),
            "usable": _f(m.usable)}


def _ops(pc: PhaseCost) -> dict[str, list[dict[str, Any]]]:
    """Per-layer operator breakdown of one pass, in seconds, FLOPs and bytes per GPU."""
    out = {}
    for name, ops in (("dense_layer", pc.forward.dense_layer), ("moe_layer", pc.forward.moe_layer),
                      ("lm_head", pc.forward.head)):
        out[name] = [{"op": op.name, "kind": op.kind.value, "time_s": _f(op.time_s), "flops": _f(op.flops),
                      "hbm_bytes": _f(op.mem_bytes), "comm_bytes": _f(op.comm_bytes)} for op in ops]
    return out


def strategy_dict(lay: Layout, problem: Problem) -> dict[str, Any]:
    stages = stage_layers(problem.model.num_layers, lay.pp)
    return {"string": str(lay), "instances": lay.instances, "pp": lay.pp, "tp": lay.tp, "dp": lay.dp,
            "ep": lay.ep, "etp": lay.etp, "gpus_per_instance": lay.gpus_per_instance, "gpus": lay.gpus,
            "layers_per_stage": [len(s) for s in stages],
            "experts_per_gpu": (expert_slots_per_rank(problem.model.num_experts, problem.assumptions.redundant_experts,
                                                      lay.ep) if problem.model.is_moe else None)}


def phase_dict(ci: CostInputs, c: Candidate, phase: str) -> dict[str, Any] | None:
    """Figures of one phase of the candidate, recomputed with scalars for the breakdowns."""
    lay = c.prefill if phase == "prefill" else c.decode
    if lay is None:
        return None
    par = par_of(lay)
    w = ci.problem.workload
    if phase == "prefill" and ci.problem.pools_differ:  # costed on the prefill pool's own GPU
        ci = CostInputs.from_problem(ci.problem.for_pool("prefill"))
    if phase == "decode":
        pool = c.mode is Mode.DISAGGREGATED  # a disaggregated decode pool runs its own scheduler loop
        pc = decode_cost(ci.for_decode_pool() if pool else ci, par, c.decode_B)
        slots = lay.dp * lay.pp * lay.instances
        d = {"ttft_s": None, "tpot_s": _f(pc.latency_s), "output_tok_s_per_gpu": _f(pc.tok_s_per_gpu),
             "input_tok_s_per_gpu": None, "output_tok_s": _f(pc.tok_s_per_gpu) * lay.gpus,
             "batch_per_attention_dp_rank": float(c.decode_B), "max_concurrency": _f(pc.max_B) * slots,
             "context_tokens": w.decode_context_tokens}
    else:
        pc = prefill_cost(ci, par, c.prefill_B)
        d = {"ttft_s": _f(pc.latency_s), "tpot_s": None, "output_tok_s_per_gpu": None,
             "input_tok_s_per_gpu": _f(pc.tok_s_per_gpu), "output_tok_s": None,
             "batch_per_attention_dp_rank": float(c.prefill_B), "max_concurrency": None,
             "context_tokens": w.isl_tokens}
    other = "tpot" if phase == "prefill" else "ttft"
    violations = [v.to_dict() for v in c.violations if v.rule.value != other]
    d.update(gpu=ci.problem.gpu.name, gpus_total=lay.gpus, feasible=not violations, violations=violations,
             kv_cache_bytes_per_token=kv_bytes_per_token(ci), step_s=_f(pc.step_s),
             strategy=strategy_dict(lay, ci.problem), memory_per_gpu_bytes=_memory(pc), operators=_ops(pc))
    return d


def candidate_dict(ci: CostInputs, c: Candidate) -> dict[str, Any]:
    """The top-level figures of one candidate (used for the plan and for runner-ups)."""
    phases = {"prefill": phase_dict(ci, c, "prefill"), "decode": phase_dict(ci, c, "decode")}
    main = phases["decode"] or phases["prefill"]
    return {
        "mode": c.mode.value, "label": c.label, "gpus_total": c.gpus_total, "feasible": c.feasible,
        "violations": [v.to_dict() for v in c.violations],
        "ttft_s": c.ttft_s, "tpot_s": c.tpot_s, "output_tok_s": c.output_tok_s,
        "output_tok_s_per_gpu": c.output_tok_s_per_gpu, "input_tok_s_per_gpu": c.input_tok_s_per_gpu,
        "concurrency": c.concurrency, "max_concurrency": c.max_concurrency if c.decode else None,
        "memory_per_gpu_bytes": main["memory_per_gpu_bytes"],
        "kv_cache_bytes_per_token": kv_bytes_per_token(ci),
        "phases": phases,
    }


def model_dict(problem: Problem) -> dict[str, Any]:
    m = problem.model
    pc = count_params(m)
    return {"name": m.name, "source": m.source, "attention": m.attention.value, "layers": m.num_layers,
            "hidden_size": m.hidden_size, "heads": m.num_heads, "kv_heads": m.num_kv_heads, "head_dim": m.head_dim,
            "experts": m.num_experts, "top_k": m.top_k, "moe_layers": m.num_moe_layers,
            "params_total": pc.total, "params_active": pc.active, "declared_params": m.declared_params}
