"""The numbers the cost model needs, read once from a Problem (plain floats, for speed)."""

from __future__ import annotations

from dataclasses import dataclass

from meshplan.specs.model import AttentionKind, LayerKind, ModelSpec
from meshplan.specs.params import count_params
from meshplan.specs.problem import Problem


@dataclass(frozen=True, kw_only=True, slots=True)
class CostInputs:
    """A Problem flattened to the figures the formulas use; built by ``from_problem``."""

    problem: Problem
    model: ModelSpec
    mla: bool
    D: float
    N: float
    K: float
    H: float
    V: float
    E: float
    k: float
    Fe: float
    F: float
    Fs_total: float
    """Sum of shared expert FFN sizes of one MoE layer (num_shared * size)."""
    ffn_mats: float
    """Matrices per FFN: 3 gated (SwiGLU), 2 otherwise."""
    kv_lora: float
    rope: float
    q_lora: float
    nope: float
    v_dim: float
    num_layers: int
    layer_kinds: tuple[LayerKind, ...]
    window_layers: float
    window_tokens: float
    w_attn: float
    """Bytes per attention weight."""
    w_exp: float
    """Bytes per expert (routed and shared) weight."""
    w_other: float
    """Bytes per router / dense FFN weight (the weights format)."""
    w_embed: float
    """Bytes per embedding / LM head weight: at least 16-bit, as quantized checkpoints keep them
    (DeepSeek-V3's FP8 checkpoint; GPT-OSS lists them in modules_to_not_convert)."""
    kv_b: float
    act_b: float
    disp_b: float
    comb_b: float
    flops_attn: float
    """Achievable FLOP/s for attention-dtype GEMMs (peak x efficiency)."""
    flops_exp: float
    flops_other: float
    flops_core: float
    """Achievable FLOP/s of the attention core (activation dtype)."""
    hbm: float
    """Achievable memory bandwidth, bytes/s."""
    intra_bw: float
    inter_bw: float
    intra_lat: float
    inter_lat: float
    gpn: int
    overhead_s: float
    graph_factor: float
    memory_capacity: float
    usable_memory: float
    reserve: float
    skew: float
    redundant: float
    tbo: bool
    attention_norms: float
    attention_bias: float
    router_bias: float

    @staticmethod
    def from_problem(p: Problem) -> "CostInputs":
        m, g, a, prec = p.model, p.gpu, p.assumptions, p.precision
        counts = count_params(m)
        mfu, bwu = p.mfu, p.hbm_util
        attn_dt, exp_dt = prec.attention_dtype, prec.experts_dtype
        return CostInputs(
            problem=p, model=m, mla=m.attention is AttentionKind.MLA,
            D=m.hidden_size, N=m.num_heads, K=m.num_kv_heads, H=m.head_dim, V=m.vocab_size,
            E=m.num_experts, k=m.top_k, Fe=m.expert_ffn_size, F=m.ffn_size,
            Fs_total=m.num_shared_experts * m.shared_ffn_size, ffn_mats=3.0 if m.gated_ffn else 2.0,
            kv_lora=m.kv_lora_rank, rope=m.qk_rope_head_dim, q_lora=m.q_lora_rank, nope=m.qk_nope_head_dim,
            v_dim=m.value_head_dim, num_layers=m.num_layers, layer_kinds=m.layer_kinds,
            window_layers=m.num_window_layers, window_tokens=m.window_tokens,
            w_attn=attn_dt.bytes, w_exp=exp_dt.bytes, w_other=prec.weights.bytes,
            w_embed=max(prec.weights.bytes, 2.0),
            kv_b=prec.kv_cache.bytes, act_b=a.activation_dtype.bytes, disp_b=a.dispatch_dtype.bytes,
            comb_b=a.combine_dtype.bytes,
            flops_attn=g.peak_flops_for(attn_dt) * mfu, flops_exp=g.peak_flops_for(exp_dt) * mfu,
            flops_other=g.peak_flops_for(prec.weights) * mfu, flops_core=g.peak_flops_for(a.activation_dtype) * mfu,
            hbm=g.hbm_bw_bytes_per_s * bwu,
            intra_bw=g.intra_node_bw_bytes_per_s * a.comm_efficiency,
            inter_bw=g.inter_node_bw_bytes_per_s * a.comm_efficiency,
            intra_lat=g.intra_node_latency_s, inter_lat=g.inter_node_latency_s, gpn=g.nvlink_domain_gpus,
            overhead_s=a.kernel_overhead_s, graph_factor=a.cuda_graph_factor,
            memory_capacity=g.memory_bytes, usable_memory=g.memory_bytes * p.requirements.memory_headroom,
            reserve=a.runtime_reserve_bytes, skew=1.0 if a.redundant_experts else a.expert_load_skew,
            redundant=a.redundant_experts, tbo=a.two_batch_overlap,
            attention_norms=2 * m.hidden_size,
            attention_bias=((m.num_heads + 2 * m.num_kv_heads) * m.head_dim + m.hidden_size) if m.attention_bias else 0,
            router_bias=counts.router_per_layer - m.hidden_size * m.num_experts,
        )
