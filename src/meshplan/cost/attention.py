"""The attention block of one layer on one GPU: norm, projections, core, output projection.

A forward pass may carry decode tokens and a prefill chunk together (``Work``): projections run
once over all tokens (one GEMM of M = decode + prefill tokens), the core runs a decode kernel over
the cache and a prefill kernel over the chunk (two kernels, each its own roofline).

Letters: T tokens on this attention-dp rank, Bd decoding sequences with Sd cached tokens each,
Tp prefill tokens attending to Sp keys each on average, N/Kv query/KV heads, H head dim, tp the
tensor-parallel degree (N/tp query heads per GPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meshplan.cost import kernels as K
from meshplan.cost.floats import Floats
from meshplan.cost.inputs import CostInputs
from meshplan.cost.memory import (INDEX_SCALE_BYTES, kv_bytes_per_token_layer, kv_heads_per_gpu, kv_tokens_per_layer,
                                  linear_state_bytes)
from meshplan.cost.roofline import OpCost, OpKind, compute_op
from meshplan.specs.params import attention_params_per_gpu, linear_attention_params_per_gpu


@dataclass(frozen=True, kw_only=True, slots=True)
class Work:
    """What one attention-dp rank computes in one forward pass (arrays broadcast)."""

    decode_seqs: Floats
    """Bd: sequences generating one token each."""
    decode_context: Floats
    """Sd: tokens already cached per decoding sequence (mean)."""
    prefill_tokens: Floats
    """Tp: prompt tokens processed in this pass."""
    prefill_seqs: Floats
    """Prompts those tokens belong to."""
    prefill_attended: Floats
    """Sp: keys each prefill token attends to, on average (half the prompt for a whole causal
    prompt; a later chunk also sees the chunks before it)."""
    moe_tokens: Floats
    """Tokens entering the MoE layers across the stage's attention-dp ranks (they run in lockstep)."""
    decode_queries: Floats = 1.0
    """Positions each decoding sequence runs: 1, or K + 1 when speculative decoding verifies K
    draft tokens (cost.speculative); each attends to the sequence's cache, read once."""

    @property
    def decode_tokens(self):
        return np.asarray(self.decode_seqs, dtype=float) * np.asarray(self.decode_queries, dtype=float)

    @property
    def tokens(self):
        return self.decode_tokens + np.asarray(self.prefill_tokens, dtype=float)

    @property
    def head_rows(self):
        """Rows of the LM head: every decode position (a verify pass scores each draft) and the
        last token of each prompt."""
        return self.decode_tokens + np.asarray(self.prefill_seqs, dtype=float)


def decode_work(B, context, dp) -> Work:
    """A pure decode pass of B sequences per rank on every one of dp ranks."""
    B = np.asarray(B, dtype=float)
    return Work(decode_seqs=B, decode_context=context, prefill_tokens=0.0, prefill_seqs=0.0, prefill_attended=0.0,
                moe_tokens=B * np.asarray(dp, dtype=float))


def prefill_work(T, B, attended, dp) -> Work:
    """A prefill pass of T prompt tokens (of B prompts) on every rank, each token attending to
    ``attended`` keys on average (ISL / 2 for whole prompts; WorkloadSpec.prefill_attended_tokens)."""
    T = np.asarray(T, dtype=float)
    return Work(decode_seqs=0.0, decode_context=0.0, prefill_tokens=T, prefill_seqs=B,
                prefill_attended=np.asarray(attended, dtype=float), moe_tokens=T * np.asarray(dp, dtype=float))


def _core(ci: CostInputs, name: str, decode_flops, decode_bytes, prefill_flops, prefill_bytes, w: Work,
          ovh: float, decode_kernels: float, prefill_kernels: float) -> OpCost:
    """Decode and prefill kernels of the attention core, each a roofline with its own floor."""
    has_d = np.asarray(w.decode_seqs) > 0
    has_p = np.asarray(w.prefill_tokens) > 0
    d = compute_op(name, decode_flops, decode_bytes, ci.core_flop_per_s, ci.hbm_bytes_per_s, ovh, decode_kernels,
                   ci.roofline_sharpness, has_d)
    p = compute_op(name, prefill_flops, prefill_bytes, ci.core_flop_per_s, ci.hbm_bytes_per_s, ovh, prefill_kernels,
                   ci.roofline_sharpness, has_p)
    return OpCost(name=name, kind=OpKind.COMPUTE, flops=d.flops + p.flops, mem_bytes=d.mem_bytes + p.mem_bytes,
                  time_s=d.time_s + p.time_s, kernels=d.kernels + p.kernels)


def _per_full_layer(ci: CostInputs, context):
    """Cached tokens one full-attention layer holds for a sequence of ``context`` tokens."""
    return kv_tokens_per_layer(ci, context, 1) / max(1.0 - ci.linear_share, 1e-9)


def _mla_core(ci: CostInputs, tp, w: Work, ovh: float) -> OpCost:
    """MLA. Decode is absorbed (DeepSeek-V2 paper 2.1.2: W_UK folds into the query, W_UV into the
    output): attention runs over the latent, FLOPs 2 * heads * cached * (2 kv_lora + rope) per
    sequence, reading each cached latent once (FlashMLA). Prefill decompresses K and V for the
    chunk (FlashAttention over full heads). With DeepSeek Sparse Attention the indexer scores every
    cached token per query (2 * I * Hi FLOPs, reading its 132-byte FP8 key and scale) and attention
    then covers only the top-k tokens it picks (DeepSeek-V3.2-Exp report, section 2)."""
    n_g = ci.num_heads / tp
    nope, rope, v, r = ci.nope_head_dim, ci.rope_head_dim, ci.value_head_dim, ci.kv_lora_rank
    kv_b = attention_params_per_gpu(ci.model, tp).kv_up  # the W_UK and W_UV projection weights per GPU
    latent = (r + rope) * ci.kv_bytes_per_value
    cached = _per_full_layer(ci, w.decode_context)
    attended_p = _per_full_layer(ci, w.prefill_attended)
    index_flops_d = index_flops_p = index_bytes_d = 0.0
    if ci.indexer_topk:
        index_flops_d = w.decode_seqs * cached * (2 * ci.indexer_heads * ci.indexer_head_dim)
        index_flops_p = w.prefill_tokens * attended_p * (2 * ci.indexer_heads * ci.indexer_head_dim)
        index_bytes_d = w.decode_seqs * cached * (ci.indexer_head_dim + INDEX_SCALE_BYTES)
        cached = np.minimum(cached, ci.indexer_topk)
        attended_p = np.minimum(attended_p, ci.indexer_topk)
    q = w.decode_tokens  # decode positions: each attends to its sequence's cache
    absorb = 2 * q * kv_b  # W_UK into the query, W_UV out of the latent: 2 FLOPs per weight and position
    d_flops = q * 2 * n_g * cached * (2 * r + rope) + absorb + index_flops_d * w.decode_queries
    d_bytes = w.decode_seqs * cached * latent + index_bytes_d + kv_b * ci.attn_bytes_per_weight
    p_flops = 2 * w.prefill_tokens * kv_b + w.prefill_tokens * 2 * n_g * attended_p * (nope + rope + v) + index_flops_p
    p_bytes = kv_b * ci.attn_bytes_per_weight + w.prefill_tokens * n_g * (2 * (nope + rope) + 2 * v) * ci.act_bytes_per_value
    return _core(ci, "attn_core", d_flops, d_bytes, p_flops, p_bytes, w, ovh, K.MLA_DECODE_CORE, K.PREFILL_CORE + 1)


def _gqa_core(ci: CostInputs, tp, w: Work, ovh: float) -> OpCost:
    """GQA/MHA. Decode reads each cached K and V once per sequence (FlashAttention/FlashInfer
    decode, 4 * heads * H FLOPs per cached token). Prefill: causal attention over the chunk,
    each query seeing Sp keys on average (FlashAttention-2 paper)."""
    n_g = ci.num_heads / tp
    k_g = kv_heads_per_gpu(ci, tp)
    cached = _per_full_layer(ci, w.decode_context)
    attended = _per_full_layer(ci, w.prefill_attended)
    h, a, kv = ci.head_dim, ci.act_bytes_per_value, kv_bytes_per_token_layer(ci, tp)
    d_flops = w.decode_tokens * 4 * n_g * h * cached
    d_bytes = w.decode_seqs * cached * kv + w.decode_tokens * 2 * n_g * h * a
    p_flops = w.prefill_tokens * 4 * n_g * h * attended
    p_bytes = w.prefill_tokens * (2 * n_g + 2 * k_g) * h * a + w.prefill_tokens * kv
    return _core(ci, "attn_core", d_flops, d_bytes, p_flops, p_bytes, w, ovh, K.GQA_DECODE_CORE, K.PREFILL_CORE)


def _linear_core(ci: CostInputs, tp, w: Work, ovh: float) -> OpCost:
    """Gated DeltaNet core on one linear-attention layer. Decode reads and writes each sequence's
    recurrent state (Vh x dk x dv, fp32) once per token: 2 x state bytes, about 4 x Vh x dk x dv
    FLOPs (transformers ``torch_recurrent_gated_delta_rule``). Prefill runs the chunked form:
    per token about 4 x Vh x dk x dv FLOPs for the state products and 2 x 64 x (dk + dv) x Vh for
    the intra-chunk attention of 64-token chunks (fla ``chunk_gated_delta_rule``), reading the
    prompt's q, k, v once."""
    vh = ci.lin_value_heads / tp
    state = linear_state_bytes(ci, tp)
    per_tok = 4 * ci.lin_state_values / tp
    d_flops = w.decode_tokens * per_tok
    d_bytes = w.decode_seqs * 2 * state
    dk = ci.lin_key_dim / max(ci.lin_value_heads, 1.0)
    p_flops = w.prefill_tokens * (per_tok + 2 * 64 * 2 * dk * vh)
    p_bytes = w.prefill_tokens * (2 * ci.lin_key_dim + 2 * ci.lin_value_dim) / tp * ci.act_bytes_per_value + w.prefill_seqs * 2 * state
    return _core(ci, "attn_core", d_flops, d_bytes, p_flops, p_bytes, w, ovh, K.GDN_CORE, K.GDN_PREFILL_CORE)


def _projections(ci: CostInputs, tp, T, ovh: float, linear: bool) -> tuple[OpCost, OpCost]:
    """QKV (or latent) projections in and the output projection out, over all T tokens: the
    weights per GPU are specs.params' (projections and output; MLA's kv_b is the core's)."""
    a = ci.act_bytes_per_value
    params = (linear_attention_params_per_gpu if linear else attention_params_per_gpu)(ci.model, tp)
    qkv, o_params = params.projections, params.output
    if linear:
        kernels = K.GDN_PROJECTIONS + 2 * ci.quant_attn
    elif ci.mla:
        kernels = K.MLA_PROJECTIONS + 2 * ci.quant_attn
        if ci.indexer_topk:
            # The indexer's wq_b, wk and head weights (weights_proj), whole on every rank.
            qkv = qkv + params.indexer + params.indexer_head_weights
            kernels += K.INDEXER
    else:
        kernels = K.GQA_PROJECTIONS + ci.quant_attn
    qkv_op = compute_op("qkv_proj", 2 * T * qkv, qkv * ci.attn_bytes_per_weight + T * (ci.hidden_size + qkv / ci.hidden_size) * a,
                        ci.attn_flop_per_s, ci.hbm_attn_bytes_per_s, ovh, kernels, ci.roofline_sharpness)
    o_op = compute_op("o_proj", 2 * T * o_params, o_params * ci.attn_out_bytes_per_weight + 2 * T * ci.hidden_size * a,
                      ci.attn_out_flop_per_s, ci.hbm_attn_bytes_per_s, ovh, K.O_PROJ + ci.quant_attn_out, ci.roofline_sharpness)
    return qkv_op, o_op


def _mix(full: OpCost, linear: OpCost, share: float) -> OpCost:
    """An average layer of a hybrid model: ``share`` of its layers linear, the rest full."""
    a, b = full.scaled(1.0 - share), linear.scaled(share)
    return OpCost(name=full.name, kind=full.kind, flops=a.flops + b.flops, mem_bytes=a.mem_bytes + b.mem_bytes,
                  comm_bytes=a.comm_bytes + b.comm_bytes, time_s=a.time_s + b.time_s, kernels=a.kernels + b.kernels)


def attention_ops(ci: CostInputs, tp, w: Work, ovh: float) -> list[OpCost]:
    """Norm, projections, core and output projection of one (average) layer; the TP all-reduce
    after it is the caller's (cost.layer)."""
    T = w.tokens
    norm = compute_op("attn_norm", 0.0, 2 * T * ci.hidden_size * ci.act_bytes_per_value, ci.other_flop_per_s,
                      ci.hbm_bytes_per_s, ovh, K.NORM, ci.roofline_sharpness)
    qkv, o = _projections(ci, tp, T, ovh, linear=False)
    core = _mla_core(ci, tp, w, ovh) if ci.mla else _gqa_core(ci, tp, w, ovh)
    if ci.linear_share:
        lqkv, lo = _projections(ci, tp, T, ovh, linear=True)
        share = ci.linear_share
        qkv, o, core = _mix(qkv, lqkv, share), _mix(o, lo, share), _mix(core, _linear_core(ci, tp, w, ovh), share)
    return [norm, qkv, core, o]
