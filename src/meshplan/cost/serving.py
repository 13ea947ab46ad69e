"""Serving figures: decode, prefill, aggregated (shared instances) and disaggregated (pools).

Aggregated serving fuses prefill chunks with decode steps in one pass (Sarathi-Serve,
arXiv:2403.02310); see ``aggregated`` for the rate it sustains.
Disaggregated serving (DistServe, arXiv:2401.09670) sizes a prefill pool and a decode pool to
the same request rate; GPU-seconds per request add up, so
    output tok/s per GPU = osl / (g_p / r_p + g_d / r_d)
with g the GPUs of an instance and r its request rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.memory import kv_bytes_of_sequence
from meshplan.cost.phase import Forward, Memory, forward, max_sequences_per_rank, memory
from meshplan.specs.assumptions import KvSizing


@dataclass(frozen=True, kw_only=True, slots=True)
class PhaseCost:
    """One phase at one operating point, for one instance (arrays over candidates)."""

    B: object
    """Sequences per attention-dp rank per micro-batch."""
    step_s: object
    """Slowest stage's time for one pass."""
    latency_s: object
    """Decode: TPOT = pp * step. Prefill: TTFT of the batch = pp * step."""
    requests_per_s: object
    """Requests one instance completes per second in this phase."""
    tok_s_per_gpu: object
    """Decode: output tokens/s per GPU. Prefill: input tokens/s per GPU."""
    memory: Memory
    max_B: object
    """Largest B that fits in memory."""
    forward: Forward


def gpus_per_instance(par: Par):
    return par.pp * par.tp * par.dp


def kv_context(ci: CostInputs) -> tuple[float, float]:
    """(tokens reserved per decoding sequence, extra room for one longest sequence), by
    CostAssumptions.kv_sizing."""
    w = ci.problem.workload
    if ci.problem.assumptions.kv_sizing is KvSizing.MAX:
        return w.max_context_tokens, 0.0
    return w.decode_context_tokens, w.max_context_tokens - w.decode_context_tokens


def decode_cost(ci: CostInputs, par: Par, B) -> PhaseCost:
    """Decode at B sequences per attention-dp rank per micro-batch, at the mean context."""
    w = ci.problem.workload
    B = np.asarray(B, dtype=float)
    fwd = forward(ci, par, B, B, w.decode_context_tokens, decode=True)
    step = fwd.stage_s
    out_tok_s = par.dp * B / step
    ctx, extra = kv_context(ci)
    mem = memory(ci, par, np.ceil(B), np.ceil(B), par.pp * np.ceil(B), ctx, extra)
    return PhaseCost(B=B, step_s=step, latency_s=par.pp * step, requests_per_s=out_tok_s / w.osl_tokens,
                     tok_s_per_gpu=out_tok_s / gpus_per_instance(par), memory=mem,
                     max_B=max_sequences_per_rank(ci, par, ctx, extra_context=extra), forward=fwd)


def prefill_cost(ci: CostInputs, par: Par, B) -> PhaseCost:
    """Prefill of B prompts (mean length) per attention-dp rank in one pass."""
    w = ci.problem.workload
    B = np.asarray(B, dtype=float)
    T = B * w.isl_tokens
    fwd = forward(ci, par, T, B, w.isl_tokens, decode=False)
    step = fwd.stage_s
    mem = memory(ci, par, np.ceil(B) * w.isl_max_tokens, np.ceil(B), par.pp * np.ceil(B), w.isl_max_tokens)
    max_b = max_sequences_per_rank(ci, par, w.isl_max_tokens, tokens_per_seq=w.isl_max_tokens)
    return PhaseCost(B=B, step_s=step, latency_s=par.pp * step, requests_per_s=par.dp * B / step,
                     tok_s_per_gpu=par.dp * T / step / gpus_per_instance(par), memory=mem, max_B=max_b,
                     forward=fwd)


def kv_transfer_s(ci: CostInputs, par_prefill: Par):
    """Moving one prompt's KV cache from a prefill to a decode instance over the NICs of the
    GPUs that hold it (its tp ranks in every stage): KV bytes of the prompt / (tp * pp * NIC)."""
    w = ci.problem.workload
    return kv_bytes_of_sequence(ci, w.isl_tokens) / (ci.inter_bw * par_prefill.tp * par_prefill.pp) + ci.inter_lat


@dataclass(frozen=True, kw_only=True, slots=True)
class Serving:
    """Full serving figures per instance and per GPU (arrays over candidates)."""

    ttft_s: object
    tpot_s: object
    output_tok_s_per_gpu: object
    input_tok_s_per_gpu: object
    concurrency_per_instance: object
    """Requests in flight per instance (decode side)."""
    prefill_share: object
    """Share of time an aggregated instance spends in prefill (0 for disaggregated)."""


def aggregated(ci: CostInputs, par: Par, dec: PhaseCost, chunk: PhaseCost, dec_one: PhaseCost) -> Serving:
    """Prefill and decode on the same instances with chunked prefill, fused as Sarathi-Serve
    does: a pass carrying a prefill chunk of C tokens also advances the B decoding sequences,
    whose weight reads ride along, so the chunk pass costs t_chunk + m with the decode marginal
    m = max(t_step(B) - t_step(1), t_chunk * B / C) (their KV reads, or at least their share of
    the chunk's compute). Per attention-dp rank, with p_c chunk passes and p_d pure decode passes
    per second: p_c * C = x * isl, (p_c + p_d) * B = x * osl, p_c (t_chunk + m) + p_d t_step = 1:
        x = 1 / (isl/C * (t_chunk + m) + max(osl/B - isl/C, 0) * t_step)
    Every pass advances each sequence of its micro-batch by one token, so TPOT = pp * B / (x * osl).
    TTFT: the prompt's chunks, pipelined over pp stages, (isl/C + pp - 1) chunk passes, plus the
    pass in flight when it arrives. ``chunk`` is a prefill pass of prefill_chunk_tokens per
    rank; ``dec_one`` the decode step at B = 1."""
    w = ci.problem.workload
    c_tokens = chunk.B * w.isl_tokens
    m = np.maximum(dec.step_s - dec_one.step_s, chunk.step_s * dec.B / c_tokens)
    n_chunks = np.maximum(1.0, w.isl_tokens / c_tokens)
    chunk_pass = chunk.step_s + m
    x = 1.0 / (w.isl_tokens / c_tokens * chunk_pass
               + np.maximum(w.osl_tokens / dec.B - w.isl_tokens / c_tokens, 0.0) * dec.step_s)
    g = gpus_per_instance(par)
    return Serving(ttft_s=(n_chunks + par.pp - 1) * chunk_pass + dec.step_s,
                   tpot_s=par.pp * dec.B / (x * w.osl_tokens),
                   output_tok_s_per_gpu=par.dp * x * w.osl_tokens / g,
                   input_tok_s_per_gpu=par.dp * x * w.isl_tokens / g,
                   concurrency_per_instance=par.dp * par.pp * dec.B,
                   prefill_share=x * w.isl_tokens / c_tokens * chunk_pass)


def disaggregated(ci: CostInputs, par_p: Par, pre: PhaseCost, par_d: Par, dec: PhaseCost) -> Serving:
    """A prefill pool and a decode pool sized to the same request rate."""
    w = ci.problem.workload
    gp_per_req = gpus_per_instance(par_p) / pre.requests_per_s
    gd_per_req = gpus_per_instance(par_d) / dec.requests_per_s
    per_gpu_req = 1.0 / (gp_per_req + gd_per_req)
    return Serving(ttft_s=pre.latency_s + kv_transfer_s(ci, par_p), tpot_s=dec.latency_s,
                   output_tok_s_per_gpu=per_gpu_req * w.osl_tokens, input_tok_s_per_gpu=per_gpu_req * w.isl_tokens,
                   concurrency_per_instance=par_d.dp * par_d.pp * dec.B, prefill_share=0.0)
