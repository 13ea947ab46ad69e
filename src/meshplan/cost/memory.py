"""Memory per GPU by part (DESIGN.md section 3, "what each GPU holds").

- attention weights 1/tp, replicated across dp; for MLA the down-projections (q_a, kv_a) are
  replicated on every tp rank and the per-head up-projections split (vLLM DeepseekV2MLAAttention
  uses ReplicatedLinear for q_a/kv_a and column/row-parallel layers for q_b, kv_b, o); a
  sparse-attention indexer and linear-attention (Gated DeltaNet) projections are split by head;
- routed experts (E + redundant)/ep per GPU, each split 1/etp; shared experts and dense FFNs
  follow the attention layout (1/tp);
- embedding and LM head vocab-split over tp, on the first and last pipeline stage;
- KV cache for the GPU's own attention-dp rank's sequences: GQA splits KV heads over tp and
  replicates them once tp exceeds K; the MLA latent (and the sparse-attention index key) is
  replicated across tp; linear-attention layers keep a fixed recurrent state per sequence
  instead, split by value head over tp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meshplan.cost.floats import Floats
from meshplan.cost.inputs import CostInputs
from meshplan.specs.params import attention_params_per_gpu, kv_heads_per_rank, linear_attention_params_per_gpu
from meshplan.strategy.mesh import expert_slots_per_rank

INDEX_SCALE_BYTES = 4.0
"""Per token and layer, the sparse-attention index key carries one fp32 scale beside its FP8
values (DeepSeek-V3.2-Exp ``Indexer``: k_cache FP8 with a per-token scale; 128 + 4 = 132 bytes)."""


def kv_heads_per_gpu(ci: CostInputs, tp):
    """KV heads per GPU as float arrays (specs.params.kv_heads_per_rank)."""
    return kv_heads_per_rank(ci.num_kv_heads, np.asarray(tp, dtype=float))


def kv_bytes_per_token_layer(ci: CostInputs, tp=1):
    """KV cache bytes one token adds to one full-attention layer on one GPU.
    GQA/MHA: 2 (K and V) * kv_heads_per_gpu * H * bytes. MLA: (kv_lora_rank + rope dim) * bytes,
    replicated on every tp rank (DeepSeek-V2 paper, section 2.1.2: only c_KV and k_R are cached),
    plus the sparse-attention index key (indexer_head_dim FP8 values and a scale) where there is one."""
    if ci.mla:
        index = (ci.indexer_head_dim + INDEX_SCALE_BYTES) if ci.indexer_topk else 0.0
        return np.broadcast_to((ci.kv_lora_rank + ci.rope_head_dim) * ci.kv_bytes_per_value + index, np.shape(tp)).astype(float)
    return 2.0 * kv_heads_per_gpu(ci, tp) * ci.head_dim * ci.kv_bytes_per_value


def kv_bytes_per_token(ci: CostInputs) -> float:
    """The whole model's KV bytes per token for one copy (tp = 1), over its full-attention layers:
    DeepSeek-V3 bf16 (512 + 64) * 61 * 2 = 70,272; Llama-3.1-70B bf16 2 * 80 * 8 * 128 * 2 =
    327,680 (window layers counted whole)."""
    return float(kv_bytes_per_token_layer(ci, 1)) * ci.num_layers * (1.0 - ci.linear_share)


def linear_state_bytes(ci: CostInputs, tp=1):
    """Recurrent state one sequence holds in one linear-attention layer on one GPU: the
    Vh x dk x dv state in its own format plus the convolution's last kernel - 1 inputs in the
    activation format, both split by head over tp (Qwen3.5: 64 x 128 x 128 x 4 B = 4 MiB plus
    12,288 x 3 x 2 B = 72 KiB per layer at tp 1)."""
    return (ci.lin_state_values * ci.lin_state_bytes_per_value + ci.lin_conv_values * ci.act_bytes_per_value) / np.asarray(tp, dtype=float)


def kv_bytes_of_sequence(ci: CostInputs, context) -> float:
    """KV bytes one sequence of ``context`` tokens holds in one copy of the whole model (tp = 1),
    with window layers capped at their window and linear-attention layers at their state."""
    return kv_per_sequence_stage(ci, 1, ci.num_layers, context)


def kv_tokens_per_layer(ci: CostInputs, context, num_layers):
    """Cached tokens summed over ``num_layers`` layers for a sequence of ``context`` tokens: only
    full-attention layers cache tokens, and window layers (GPT-OSS sliding, Llama-4 chunked) keep
    at most window_tokens. A stage's share of window and linear layers is taken proportional to
    its layer count."""
    share = ci.window_layers / ci.num_layers
    ctx = np.asarray(context, dtype=float)
    windowed = np.minimum(ctx, ci.window_tokens) if ci.window_tokens else ctx
    return num_layers * (1.0 - ci.linear_share) * ((1 - share) * ctx + share * windowed)


def kv_per_sequence_stage(ci: CostInputs, tp, n_layers, context):
    """KV bytes (and recurrent state) one sequence of ``context`` tokens holds on one GPU of a
    stage of n_layers."""
    return (kv_tokens_per_layer(ci, context, n_layers) * kv_bytes_per_token_layer(ci, tp)
            + n_layers * ci.linear_share * linear_state_bytes(ci, tp) * (np.asarray(context) > 0))


@dataclass(frozen=True, kw_only=True, slots=True)
class StageWeights:
    """Weight bytes per GPU of one pipeline stage, by part (arrays broadcast over layouts)."""

    attention: Floats
    dense_ffn: Floats
    experts: Floats
    shared_experts: Floats
    embedding: Floats

    @property
    def total(self):
        return self.attention + self.dense_ffn + self.experts + self.shared_experts + self.embedding


def attention_weight_bytes(ci: CostInputs, tp):
    """One layer's attention weights on one GPU, averaged over full- and linear-attention layers
    by their shares (the counts are specs.params', every part of them)."""
    tp = np.asarray(tp, dtype=float)
    params = attention_params_per_gpu(ci.model, tp)
    full = params.inputs * ci.attn_bytes_per_weight + params.output * ci.attn_out_bytes_per_weight
    if not ci.linear_share:
        return full
    lin = linear_attention_params_per_gpu(ci.model, tp)
    linear = lin.inputs * ci.attn_bytes_per_weight + lin.output * ci.attn_out_bytes_per_weight
    return (1.0 - ci.linear_share) * full + ci.linear_share * linear


def expert_weight_bytes(ci: CostInputs, ep, etp):
    """Routed experts of one MoE layer on one GPU: (E + redundant)/ep experts, each 1/etp."""
    per_expert = ci.ffn_mats * ci.hidden_size * ci.expert_ffn_size
    slots = expert_slots_per_rank(ci.num_experts, ci.redundant_experts, np.asarray(ep, dtype=float))
    return slots * per_expert / np.asarray(etp, dtype=float) * ci.expert_bytes_per_weight


def stage_weights(ci: CostInputs, tp, ep, etp, n_dense, n_moe, first, last) -> StageWeights:
    """Weights per GPU of a stage with ``n_dense`` dense and ``n_moe`` MoE layers; ``first`` and
    ``last`` (0/1) say whether it holds the embedding and the LM head."""
    tp = np.asarray(tp, dtype=float)
    n_layers = n_dense + n_moe
    router = ci.hidden_size * ci.num_experts + ci.router_bias
    shared = ci.ffn_mats * ci.hidden_size * ci.shared_ffn_total / tp * ci.expert_bytes_per_weight + router * ci.router_bytes_per_weight
    embed_params = ci.vocab_size * ci.hidden_size / tp
    head = 0.0 if ci.model.tie_embeddings else embed_params
    return StageWeights(
        attention=n_layers * attention_weight_bytes(ci, tp),
        dense_ffn=n_dense * ci.ffn_mats * ci.hidden_size * ci.ffn_size / tp * ci.other_bytes_per_weight,
        experts=n_moe * expert_weight_bytes(ci, ep, etp),
        shared_experts=n_moe * shared,
        embedding=(first * embed_params + last * head) * ci.embed_bytes_per_weight + last * ci.hidden_size * ci.embed_bytes_per_weight,
    )


def activation_bytes(ci: CostInputs, tp, ep, etp, tokens, seqs):
    """Peak activation and workspace bytes per GPU for a forward pass of ``tokens`` tokens (``seqs``
    sequences) on one attention-dp rank: the residual stream and a few D-wide buffers (4 * T * D),
    the widest intermediate (FFN 2F/tp, attention projections (N/tp + 2 Kg)H with Kg the KV heads
    per GPU (kv_heads_per_gpu: one replicated head once tp exceeds K), or the routed tokens'
    expert intermediates, k * 2Fe/tp per token on average), and fp32 logits for the last token of
    each sequence (seqs * V/tp * 4). It follows how vLLM sizes its profiling run (a dummy forward
    of max_num_batched_tokens)."""
    tp = np.asarray(tp, dtype=float)
    t = np.asarray(tokens, dtype=float)
    if ci.mla:
        proj = ci.num_heads * (ci.nope_head_dim + ci.rope_head_dim + ci.value_head_dim) / tp
    else:
        proj = (ci.num_heads * ci.q_mats / tp + 2 * kv_heads_per_gpu(ci, tp)) * ci.head_dim
    if ci.linear_share:
        proj = np.maximum(proj, (2 * ci.lin_key_dim + 2 * ci.lin_value_dim) / tp)
    widest = np.maximum(2 * max(ci.ffn_size, ci.shared_ffn_total) / tp, proj)
    if ci.num_experts:
        widest = np.maximum(widest, ci.top_k * 2 * ci.expert_ffn_size / tp)
    return t * ci.act_bytes_per_value * (4 * ci.hidden_size + widest) + np.asarray(seqs, dtype=float) * ci.vocab_size / tp * 4.0
