"""The numbers the cost model needs, read once from a Problem (plain floats, for speed)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from meshplan.cost.kernels import gemm_quant_kernels
from meshplan.specs.engine import A2ABackend, EngineProfile, KvAdmission, KvMemoryShare, PrefillPolicy
from meshplan.specs.model import AttentionKind, LayerKind, ModelSpec
from meshplan.specs.params import count_params
from meshplan.specs.problem import Problem
from meshplan.specs.speculative import SpecMethod


@dataclass(frozen=True, kw_only=True, slots=True)
class CostInputs:
    """A Problem flattened to the figures the formulas use; built by ``from_problem``."""

    problem: Problem
    model: ModelSpec
    engine: EngineProfile
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
    q_mats: float
    """Query projections per head: 2 with an output gate (Qwen3.5), else 1."""
    num_layers: int
    layer_kinds: tuple[LayerKind, ...]
    window_layers: float
    window_tokens: float
    linear_share: float
    """Share of layers with linear attention (Gated DeltaNet), 0 for ordinary models."""
    lin_key_dim: float
    """Linear attention: key width Kh * dk (queries and keys each)."""
    lin_value_dim: float
    """Linear attention: value width Vh * dv."""
    lin_value_heads: float
    lin_state_values: float
    """Linear attention: recurrent state values per sequence and layer, Vh * dk * dv."""
    lin_conv_values: float
    """Linear attention: convolution inputs kept per sequence and layer, (2 Kd + Vd) * (kernel - 1)."""
    lin_state_b: float
    """Bytes per recurrent-state value."""
    idx_heads: float
    idx_dim: float
    idx_topk: float
    """DeepSeek Sparse Attention: indexer heads and dims, tokens attended (0: dense attention)."""
    w_attn: float
    """Bytes per attention weight."""
    w_attn_out: float
    """Bytes per attention output-projection weight."""
    w_exp: float
    """Bytes per expert (routed and shared) weight."""
    w_other: float
    """Bytes per dense FFN weight (the weights format)."""
    w_router: float
    """Bytes per router weight: at least 16-bit, as every checkpoint read here keeps the router
    (modules_to_not_convert / exclude_modules); the router GEMM reads and memory holds these."""
    w_embed: float
    """Bytes per embedding / LM head weight: at least 16-bit, as quantized checkpoints keep them
    (DeepSeek-V3's FP8 checkpoint; GPT-OSS lists them in modules_to_not_convert)."""
    quant_attn: float
    """Activation-quantization kernels per attention GEMM (cost.kernels.gemm_quant_kernels)."""
    quant_attn_out: float
    quant_exp: float
    quant_other: float
    kv_b: float
    act_b: float
    disp_b: float
    comb_b: float
    flops_attn: float
    """Achievable FLOP/s for attention-projection GEMMs (peak x efficiency of their format)."""
    flops_attn_out: float
    flops_exp: float
    """Achievable FLOP/s of the routed experts' grouped GEMMs."""
    flops_shared: float
    """Achievable FLOP/s of shared-expert GEMMs (dense GEMMs in the experts' format)."""
    flops_other: float
    flops_core: float
    """Achievable FLOP/s of the attention core (activation format)."""
    hbm: float
    """Achievable memory bandwidth for activations and the KV cache, bytes/s."""
    hbm_attn: float
    """Achievable bandwidth streaming attention weights (their format)."""
    hbm_exp: float
    """Achievable bandwidth streaming expert weights (their format)."""
    hbm_other: float
    intra_bw: float
    inter_bw: float
    intra_lat: float
    inter_lat: float
    gpn: int
    overhead_s: float
    """GPU floor per kernel."""
    sharp: float
    """Smooth-roofline exponent."""
    memory_capacity: float
    usable_memory: float
    """The memory fraction (requirements.memory_headroom) x capacity."""
    reserve: float
    kv_of_free: bool
    """The memory fraction applies to the memory left once weights and the reserve are in
    (KvMemoryShare.OF_FREE, TensorRT-LLM) rather than to the whole (cost.phase.usable_bytes)."""
    load_cv: float
    """Expert popularity coefficient of variation in effect (reduced by redundant experts)."""
    redundant: float
    tbo: bool
    tbo_overlap: float
    attention_norms: float
    router_bias: float
    budget: int
    """The engine's per-iteration token budget setting (max_num_tokens, chunked_prefill_size,
    max_num_batched_tokens); per attention-dp rank except where the engine divides it over the
    ranks (cost.iteration.prefill_budget)."""
    max_batch: int
    """Most running requests per attention-dp rank the engine schedules."""
    graph_max: int
    """Largest decode batch per rank replayed from a CUDA graph (tp below 4)."""
    graph_max_tp4: int
    """The same for tp of 4 and above."""
    mixed: bool
    """Prefill chunks share iterations with decode (PrefillPolicy.MIXED)."""
    kv_reserve_full: bool
    """Running requests hold KV for their whole length (KvAdmission.RESERVE_FULL)."""
    requests_per_client: float
    """Requests each closed-loop client sends in a run (WorkloadSpec.requests_per_client)."""
    clump_coherence: float
    """CostAssumptions.clump_coherence."""
    host_cpu_s: float
    """EngineProfile.host_cpu_s (the engine's numeric factors are copied here so that a fit can
    vary them with dataclasses.replace)."""
    host_cpu_per_request_s: float
    host_gap_s: float
    decode_pool_host_gap_s: float
    """EngineProfile.decode_pool_host_gap_s, resolved (host_gap_s where the profile leaves it unset);
    for_decode_pool puts it in host_gap_s."""
    kernel_launch_s: float
    request_overhead_s: float
    client_overhead_s: float
    """WorkloadSpec.client_overhead_s: what the benchmark client adds to each TTFT."""
    spec_k: float = 0.0
    """Speculative decoding: draft tokens per sequence and iteration (0: plain decoding)."""
    spec_tau: float = 1.0
    """Tokens one iteration yields per decoding sequence (Speculative.tokens_per_step; 1 without)."""
    spec_method: SpecMethod | None = None
    spec_modules: float = 0.0
    """MTP modules the draft holds: min(K, the checkpoint's); EAGLE: one layer."""
    draft: "CostInputs | None" = None
    """The draft model's inputs (method draft), at the target's formats and engine."""

    def for_decode_pool(self) -> "CostInputs":
        """These inputs for a disaggregated deployment's decode pool: its scheduler loop's exposed
        host time (EngineProfile.decode_pool_host_gap_s). The one place a decode pool differs."""
        return replace(self, host_gap_s=self.decode_pool_host_gap_s)

    @staticmethod
    def from_problem(p: Problem) -> "CostInputs":
        m, g, a, prec, eng = p.model, p.gpu, p.assumptions, p.precision, p.engine
        counts = count_params(m)
        attn_dt, out_dt, exp_dt = prec.attention_dtype, prec.attention_out_dtype, prec.experts_dtype
        act = a.activation_dtype

        def flops(dt):
            return g.peak_flops_for(dt) * p.gemm_efficiency(dt)

        def bw(dt):
            return g.hbm_bw_bytes_per_s * p.hbm_efficiency(dt)

        lin = m.full_attention_interval > 1
        kd = m.linear_num_key_heads * m.linear_key_head_dim
        vd = m.linear_num_value_heads * m.linear_value_head_dim
        spec = p.speculative
        draft = None
        if spec is not None and spec.draft_model is not None:
            draft = CostInputs.from_problem(p.model_copy(update={"model": spec.draft_model, "speculative": None}))
        kv_sizing = a.kv_sizing
        reserve_full = (eng.kv_admission is KvAdmission.RESERVE_FULL) if kv_sizing is None else kv_sizing.value == "max"
        return CostInputs(
            problem=p, model=m, engine=eng, mla=m.attention is AttentionKind.MLA,
            D=m.hidden_size, N=m.num_heads, K=m.num_kv_heads, H=m.head_dim, V=m.vocab_size,
            E=m.num_experts, k=m.top_k, Fe=m.expert_ffn_size, F=m.ffn_size,
            Fs_total=m.num_shared_experts * m.shared_ffn_size, ffn_mats=3.0 if m.gated_ffn else 2.0,
            kv_lora=m.kv_lora_rank, rope=m.qk_rope_head_dim, q_lora=m.q_lora_rank, nope=m.qk_nope_head_dim,
            v_dim=m.value_head_dim, q_mats=2.0 if m.attention_output_gate else 1.0,
            num_layers=m.num_layers, layer_kinds=m.layer_kinds,
            window_layers=m.num_window_layers, window_tokens=m.window_tokens,
            linear_share=m.num_linear_attention_layers / m.num_layers,
            lin_key_dim=kd, lin_value_dim=vd, lin_value_heads=m.linear_num_value_heads,
            lin_state_values=m.linear_num_value_heads * m.linear_key_head_dim * m.linear_value_head_dim if lin else 0.0,
            lin_conv_values=(2 * kd + vd) * max(m.linear_conv_kernel - 1, 0) if lin else 0.0,
            lin_state_b=m.linear_state_bytes,
            idx_heads=m.index_num_heads, idx_dim=m.index_head_dim, idx_topk=m.index_topk,
            w_attn=attn_dt.bytes, w_attn_out=out_dt.bytes, w_exp=exp_dt.bytes, w_other=prec.weights.bytes,
            w_embed=max(prec.weights.bytes, 2.0), w_router=max(prec.weights.bytes, 2.0),
            quant_attn=gemm_quant_kernels(attn_dt), quant_attn_out=gemm_quant_kernels(out_dt),
            quant_exp=gemm_quant_kernels(exp_dt), quant_other=gemm_quant_kernels(prec.weights),
            kv_b=prec.kv_cache.bytes, act_b=act.bytes, disp_b=(a.dispatch_dtype or eng.dispatch_dtype).bytes,
            comb_b=(a.combine_dtype or eng.combine_dtype).bytes,
            flops_attn=flops(attn_dt), flops_attn_out=flops(out_dt),
            flops_exp=flops(exp_dt) * a.grouped_gemm_efficiency, flops_shared=flops(exp_dt),
            flops_other=flops(prec.weights), flops_core=flops(act),
            hbm=bw(act), hbm_attn=bw(attn_dt), hbm_exp=g.hbm_bw_bytes_per_s * p.moe_hbm_efficiency(exp_dt),
            hbm_other=bw(prec.weights),
            intra_bw=g.intra_node_bw_bytes_per_s * a.comm_efficiency,
            inter_bw=g.inter_node_bw_bytes_per_s * a.comm_efficiency,
            intra_lat=g.intra_node_latency_s, inter_lat=g.inter_node_latency_s, gpn=g.nvlink_domain_gpus,
            overhead_s=(a.kernel_overhead_s if a.kernel_overhead_s is not None
                        else g.kernel_floor_s * a.kernel_floor_scale), sharp=a.roofline_sharpness,
            memory_capacity=g.memory_bytes, usable_memory=g.memory_bytes * p.requirements.memory_headroom,
            reserve=a.runtime_reserve_bytes, kv_of_free=eng.kv_memory_share is KvMemoryShare.OF_FREE,
            load_cv=a.expert_load_cv * (a.eplb_residual if a.redundant_experts else 1.0),
            redundant=a.redundant_experts,
            tbo=eng.two_batch_overlap if a.two_batch_overlap is None else a.two_batch_overlap,
            tbo_overlap=a.tbo_overlap,
            attention_norms=2 * m.hidden_size,
            router_bias=counts.router_per_layer - m.hidden_size * m.num_experts,
            budget=a.token_budget or eng.tier(eng.token_budget, g.memory_bytes),
            max_batch=eng.tier(eng.max_batch, g.memory_bytes),
            graph_max=eng.tier(eng.cuda_graph_max_batch, g.memory_bytes),
            graph_max_tp4=eng.tier(eng.cuda_graph_max_batch_tp4 or eng.cuda_graph_max_batch, g.memory_bytes),
            mixed=eng.prefill_policy is PrefillPolicy.MIXED,
            kv_reserve_full=reserve_full,
            requests_per_client=p.workload.requests_per_client or float("inf"), clump_coherence=a.clump_coherence,
            host_cpu_s=eng.host_cpu_s, host_cpu_per_request_s=eng.host_cpu_per_request_s, host_gap_s=eng.host_gap_s,
            decode_pool_host_gap_s=eng.host_gap_s if eng.decode_pool_host_gap_s is None else eng.decode_pool_host_gap_s,
            kernel_launch_s=eng.kernel_launch_s, request_overhead_s=eng.request_overhead_s,
            client_overhead_s=p.workload.client_overhead_s,
            spec_k=float(spec.draft_tokens) if spec else 0.0, spec_tau=spec.tokens_per_step if spec else 1.0,
            spec_method=spec.method if spec else None, draft=draft,
            spec_modules=(float(min(spec.draft_tokens, m.mtp_modules)) if spec.method is SpecMethod.MTP else 1.0)
            if spec else 0.0,
        )

    def a2a_backend(self) -> A2ABackend:
        """The MoE token exchange the engine uses on this GPU's NVLink domain."""
        e = self.engine
        if e.a2a_backend_large_nvlink is not None and self.gpn > 8:
            return e.a2a_backend_large_nvlink
        return e.a2a_backend

    def a2a_backend_across_nodes(self) -> A2ABackend:
        """The exchange when the expert-parallel group spans NVLink domains."""
        return self.engine.a2a_backend_across_nodes or self.a2a_backend()
