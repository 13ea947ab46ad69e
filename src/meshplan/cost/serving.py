"""Serving as engines run it: iterations, then TTFT, TPOT and throughput in a closed loop.

Each phase is built from engine iterations (cost.iteration): a forward pass plus host work.

Aggregated serving is solved in steady state for a closed loop of clients (cost.closed_loop).

Disaggregated serving (DistServe, arXiv:2401.09670) has a prefill pool and a decode pool; in the
search they are sized to the same request rate, so GPU-seconds per request add up:
    output tok/s per GPU = osl / (g_p / r_p + g_d / r_d)
with g the GPUs of an instance and r its request rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meshplan.cost.attention import decode_work, prefill_work
from meshplan.cost.capacity import decode_capacity, kv_context
from meshplan.cost.closed_loop import Serving, solve_aggregated
from meshplan.cost.floats import Floats
from meshplan.cost.inputs import CostInputs
from meshplan.cost.iteration import graph_limit, iteration, prefill_budget
from meshplan.cost.kv_transfer import kv_transfer_s
from meshplan.cost.layer import Par
from meshplan.cost.phase import Forward, Memory, max_sequences_per_rank, memory

__all__ = ["PhaseCost", "Serving", "aggregated", "decode_cost", "disaggregated", "kv_context",
           "kv_transfer_s", "prefill_cost"]


@dataclass(frozen=True, kw_only=True, slots=True)
class PhaseCost:
    """One phase at one operating point, for one instance (arrays over candidates)."""

    B: Floats
    """Sequences per attention-dp rank per micro-batch."""
    step_s: Floats
    """Slowest stage's time for one pass: its GPU time in decode, the larger of GPU and kernel-launch
    time in prefill (where passes run outside CUDA graphs)."""
    latency_s: Floats
    """Decode: TPOT. Prefill: time to prefill the batch's prompts (TTFT without queueing)."""
    requests_per_s: Floats
    """Requests one instance completes per second in this phase."""
    tok_s_per_gpu: Floats
    """Decode: output tokens/s per GPU. Prefill: input tokens/s per GPU."""
    memory: Memory
    max_B: Floats
    """Largest B that fits in memory and the engine's batch limit."""
    forward: Forward


def decode_cost(ci: CostInputs, par: Par, B) -> PhaseCost:
    """Pure decode at B sequences per attention-dp rank per micro-batch, at the mean context
    (a disaggregated decode pool, or a decode step of any plan). TPOT is the micro-batch's cycle
    over the tokens it yields per sequence (1, or tau with speculative decoding)."""
    w = ci.workload
    B = np.asarray(B, dtype=float)
    it = iteration(ci, par, decode_work(B, w.decode_context_tokens, par.dp), B <= graph_limit(ci, par))
    out_tok_s = par.dp * par.pp * B * ci.spec_tau / it.cycle_s  # tau tokens per iteration with speculation
    ctx, extra = kv_context(ci)
    rows = np.ceil(B) * (1.0 + ci.spec_k)  # tokens and logit rows of a pass (K + 1 each when verifying)
    mem = memory(ci, par, rows, rows, par.pp * np.ceil(B), ctx, extra)
    return PhaseCost(B=B, step_s=it.forward.stage_s, latency_s=it.cycle_s / ci.spec_tau,
                     requests_per_s=out_tok_s / w.osl_tokens,
                     tok_s_per_gpu=out_tok_s / par.gpus_per_instance, memory=mem,
                     max_B=decode_capacity(ci, par), forward=it.forward)


def prefill_cost(ci: CostInputs, par: Par, B) -> PhaseCost:
    """Prefill of B prompts per attention-dp rank (a disaggregated prefill pool). The prompts go
    in chunks of the engine's budget (one chunk, whatever its size, when the engine does not chunk); a
    chunk passes every pipeline stage, so the last one finishes (chunks + pp - 1) stage times after
    the first starts."""
    w = ci.workload
    B = np.asarray(B, dtype=float)
    total = B * w.computed_prompt_tokens  # prompt tokens not found in the prefix cache
    budget = prefill_budget(ci, par)
    chunks = np.where(ci.engine.chunked_prefill, np.maximum(1.0, np.ceil(total / budget)), 1.0)
    per = total / chunks
    it = iteration(ci, par, prefill_work(per, B / chunks, w.prefill_attended_tokens, par.dp),
                   ci.engine.cuda_graph_mixed & (per <= graph_limit(ci, par)))
    stage = it.pass_s
    # Each chunk passes every stage; the draft's pass over it runs once, on the last stage.
    latency = ((chunks + par.pp - 1) * stage - (par.pp - 1) * it.draft_s + chunks * it.exposed_s
               + ci.request_overhead_s + ci.client_overhead_s)
    busy = chunks * (stage + it.exposed_s)
    mem = memory(ci, par, np.ceil(per), np.ceil(B), par.pp * np.ceil(B), w.isl_max_tokens)
    max_b = max_sequences_per_rank(ci, par, w.isl_max_tokens, tokens_per_seq=w.isl_max_tokens)
    return PhaseCost(B=B, step_s=stage, latency_s=latency, requests_per_s=par.dp * B / busy,
                     tok_s_per_gpu=par.dp * B * w.isl_tokens / busy / par.gpus_per_instance, memory=mem, max_B=max_b,
                     forward=it.forward)


def aggregated(ci: CostInputs, par: Par, B) -> Serving:
    """Closed loop with B requests per attention-dp rank per micro-batch (cost.closed_loop)."""
    return solve_aggregated(ci, par, np.asarray(B, dtype=float))


def disaggregated(ci: CostInputs, par_p: Par, pre: PhaseCost, par_d: Par, dec: PhaseCost) -> Serving:
    """A prefill pool and a decode pool sized to the same request rate (the search's pairing)."""
    w = ci.workload
    gp_per_req = par_p.gpus_per_instance / pre.requests_per_s
    gd_per_req = par_d.gpus_per_instance / dec.requests_per_s
    per_gpu_req = 1.0 / (gp_per_req + gd_per_req)
    return Serving(ttft_s=pre.latency_s + kv_transfer_s(ci, par_p), tpot_s=dec.latency_s,
                   output_tok_s_per_gpu=per_gpu_req * w.osl_tokens, input_tok_s_per_gpu=per_gpu_req * w.isl_tokens,
                   concurrency_per_instance=par_d.dp * par_d.pp * dec.B, prefill_share=0.0)
