"""Parameter counts by part, from the structure alone.

Formulas follow the Hugging Face transformers implementations of each family (LlamaAttention,
DeepseekV3Attention for MLA, MixtralSparseMoeBlock, GptOssExperts); norms are counted, rotary
tables are not (they are buffers, not parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meshplan.specs.model import AttentionKind, LayerKind, ModelSpec


@dataclass(frozen=True, kw_only=True, slots=True)
class ParamCounts:
    """Parameters of one model by part (counts, not bytes)."""

    attention_per_layer: float
    """One full-attention layer's attention: QKV/latent projections, output projection, their
    norms and biases, and the sparse-attention indexer where there is one."""
    linear_attention_per_layer: float
    """One linear-attention (Gated DeltaNet) layer's attention block (0 when the model has none)."""
    num_linear_attention_layers: int
    """Layers whose attention is linear; the others have full attention."""
    dense_ffn_per_layer: float
    """One dense FFN layer (0 when the model has none)."""
    expert: float
    """One routed expert."""
    shared_experts_per_layer: float
    """All shared experts of one MoE layer."""
    router_per_layer: float
    """The gate of one MoE layer (and its bias)."""
    embedding: float
    """Input embedding V x D."""
    lm_head: float
    """Output projection V x D (0 when tied to the embedding) plus the final norm."""
    num_dense_layers: int
    num_moe_layers: int
    num_experts: int
    top_k: int

    @property
    def total(self) -> float:
        num_full = self.num_dense_layers + self.num_moe_layers - self.num_linear_attention_layers
        return (self.attention_per_layer * num_full + self.linear_attention_per_layer * self.num_linear_attention_layers
                + self.dense_ffn_per_layer * self.num_dense_layers
                + self.num_moe_layers * (self.expert * self.num_experts + self.shared_experts_per_layer
                                         + self.router_per_layer)
                + self.embedding + self.lm_head)

    @property
    def active(self) -> float:
        """Parameters one token touches: all but the routed experts it does not choose."""
        return self.total - self.num_moe_layers * self.expert * (self.num_experts - self.top_k)


def kv_heads_per_rank(num_kv_heads, tp):
    """KV heads each tp rank keeps, the one owner of this count: K/tp when the heads split, one
    replicated head when tp exceeds K (vLLM and SGLang replicate KV heads so). Ints, or float
    arrays when ``tp`` is an array. Hand check: 8 KV heads over tp 4 -> 2; over tp 16 -> 1."""
    if hasattr(tp, "shape"):
        return np.maximum(num_kv_heads / np.asarray(tp, dtype=float), 1.0)
    return max(num_kv_heads // tp, 1)


@dataclass(frozen=True, kw_only=True, slots=True)
class AttentionParams:
    """One attention layer's parameters on one GPU of a tp group, by part (counts, not bytes; ints
    or arrays as tp is). ``inputs`` and ``output`` are the two groups that may have different
    weight formats; the parts are what the cost model's GEMMs read (cost.attention)."""

    projections: object
    """The input projection matrices every token runs through (the qkv GEMM): GQA/MHA q (with
    its output gate), k and v; MLA q_a and q_b (or q) and kv_a; Gated DeltaNet in_proj_qkvz and
    in_proj_ba."""
    kv_up: object = 0.0
    """MLA kv_b (W_UK and W_UV), which absorbed decode folds into the attention core; 0 otherwise."""
    indexer: object = 0.0
    """DeepSeek Sparse Attention indexer's query projection wq_b and key projection wk, whole on
    every rank (0 without an indexer)."""
    indexer_head_weights: object = 0.0
    """The indexer's per-head weights (weights_proj, D x I), whole on every rank."""
    vectors: object = 0.0
    """Norms and biases: the layer's two RMSNorms, attention biases, MLA latent norms, the
    indexer's key norm."""
    mixer: object = 0.0
    """Gated DeltaNet's own small weights: the depthwise causal conv, A_log, dt_bias and the gated
    RMSNorm (0 for full attention)."""
    output: object
    """The output projection."""

    @property
    def inputs(self):
        return self.projections + self.kv_up + self.indexer + self.indexer_head_weights + self.vectors + self.mixer

    @property
    def total(self):
        return self.inputs + self.output


def attention_params_per_gpu(m: ModelSpec, tp=1) -> AttentionParams:
    """One full-attention layer on one GPU of a tp group, the one owner of these counts (the
    parameter count is its value at tp = 1; the memory model's weights per GPU and the cost
    model's projection GEMMs use it).
    GQA/MHA: D*N*H (q, doubled with an output gate) + 2*D*K*H (k, v) + N*H*D (o), plus two
    RMSNorms (2*D), all split by head over tp except the KV heads when tp exceeds them
    (kv_heads_per_rank) and the norms; biases (N + 2K)*H + D split with their heads.
    MLA (DeepSeek-V2 paper eq. 9-14): q_a D*q_r, q_b q_r*N*(nope+rope) (or D*N*(nope+rope)
    without q compression), kv_a D*(kv_r+rope), kv_b kv_r*N*(nope+v), o N*v*D, plus the latent
    norms (q_r + kv_r): the per-head q_b, kv_b and o split over tp, the compressions and their
    norms replicated. DeepSeek Sparse Attention adds its indexer (DeepSeek-V3.2-Exp ``Indexer``):
    wq_b q_r*I*Hi, wk D*Hi, the head weights D*I and the key norm's weight and bias 2*Hi, for I
    indexer heads of Hi dims, all whole on every rank (vLLM deepseek_v2.py and SGLang's NSA
    indexer build wq_b, wk and weights_proj as ReplicatedLinear: "no tensor parallel, just
    replicated")."""
    d, n, h = m.hidden_size, m.num_heads, m.head_dim
    norms = 2 * d
    if m.attention is AttentionKind.MLA:
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        q_r, kv_r = m.q_lora_rank, m.kv_lora_rank
        q = (d * q_r + q_r * n * qk / tp) if q_r else d * n * qk / tp
        indexer = head_weights = 0.0
        vectors = q_r + kv_r + norms
        if m.index_topk:
            i, hi = m.index_num_heads, m.index_head_dim
            indexer = (q_r or d) * i * hi + d * hi
            head_weights = d * i
            vectors += 2 * hi
        return AttentionParams(projections=q + d * (kv_r + m.qk_rope_head_dim),
                               kv_up=kv_r * n * (m.qk_nope_head_dim + m.value_head_dim) / tp, indexer=indexer,
                               indexer_head_weights=head_weights, vectors=vectors, output=n * m.value_head_dim * d / tp)
    q_mats = 2 if m.attention_output_gate else 1
    bias = ((n + 2 * m.num_kv_heads) * h + d) if m.attention_bias else 0
    return AttentionParams(projections=q_mats * d * n * h / tp + 2 * d * kv_heads_per_rank(m.num_kv_heads, tp) * h,
                           vectors=bias / tp + norms, output=d * n * h / tp)


def attention_params(m: ModelSpec) -> float:
    """Per full-attention layer (attention_params_per_gpu at tp = 1)."""
    return attention_params_per_gpu(m, 1).total


def linear_attention_params_per_gpu(m: ModelSpec, tp=1) -> AttentionParams:
    """One Gated DeltaNet layer on one GPU of a tp group, the one owner of these counts
    (transformers Qwen3NextGatedDeltaNet; Yang et al., "Gated Delta Networks", arXiv:2412.06464).
    With key width Kd = Kh*dk and value width Vd = Vh*dv: in_proj_qkvz D*(2 Kd + 2 Vd) (q, k, v
    and the output gate z) and in_proj_ba D*2 Vh (the write strength beta and the decay a), the
    depthwise causal conv (2 Kd + Vd) * kernel, A_log and dt_bias (2 Vh), the gated RMSNorm dv,
    out_proj Vd*D, plus the layer's two RMSNorms (2 D). Everything per head splits over tp (vLLM
    and SGLang shard the projections column- and row-parallel, the conv by channel); the gated
    norm (one dv-wide weight shared by the heads) and the layer norms are whole on every rank.
    All 0 for a model without linear attention."""
    if m.full_attention_interval == 1:
        return AttentionParams(projections=0.0, output=0.0)
    d = m.hidden_size
    kd = m.linear_num_key_heads * m.linear_key_head_dim
    vd = m.linear_num_value_heads * m.linear_value_head_dim
    vh = m.linear_num_value_heads
    return AttentionParams(projections=d * (2 * kd + 2 * vd + 2 * vh) / tp, vectors=2 * d,
                           mixer=((2 * kd + vd) * m.linear_conv_kernel + 2 * vh) / tp + m.linear_value_head_dim,
                           output=vd * d / tp)


def linear_attention_params(m: ModelSpec) -> float:
    """One Gated DeltaNet layer (linear_attention_params_per_gpu at tp = 1); 0 for a model without
    linear attention."""
    return linear_attention_params_per_gpu(m, 1).total


def ffn_params(hidden: int, ffn: int, gated: bool, bias: bool = False) -> float:
    """One FFN: 3*D*F when gated (gate, up, down), else 2*D*F; biases add (2 or 1)*F + D."""
    mats = 3 if gated else 2
    params = mats * hidden * ffn
    if bias:
        params += (mats - 1) * ffn + hidden
    return params


def count_params(m: ModelSpec) -> ParamCounts:
    """All parts of ``m``."""
    kinds = m.layer_kinds
    num_moe = sum(1 for x in kinds if x is LayerKind.MOE)
    embedding = m.vocab_size * m.hidden_size
    return ParamCounts(
        attention_per_layer=attention_params(m),
        linear_attention_per_layer=linear_attention_params(m),
        num_linear_attention_layers=m.num_linear_attention_layers,
        dense_ffn_per_layer=ffn_params(m.hidden_size, m.ffn_size, m.gated_ffn) if m.ffn_size else 0.0,
        expert=ffn_params(m.hidden_size, m.expert_ffn_size, m.gated_ffn, m.expert_bias) if m.is_moe else 0.0,
        shared_experts_per_layer=(m.num_shared_experts * ffn_params(m.hidden_size, m.shared_ffn_size, m.gated_ffn)
                                  if m.is_moe else 0.0),
        router_per_layer=(m.hidden_size * m.num_experts + (m.num_experts if m.expert_bias else 0)) if m.is_moe else 0.0,
        embedding=embedding,
        lm_head=(0 if m.tie_embeddings else embedding) + m.hidden_size,
        num_dense_layers=len(kinds) - num_moe,
        num_moe_layers=num_moe,
        num_experts=m.num_experts,
        top_k=m.top_k,
    )
