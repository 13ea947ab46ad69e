"""The numbers the cost model needs, read once from a Problem (plain floats, for speed)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from meshplan.cost.kernels import gemm_quant_kernels
from meshplan.specs.assumptions import KvSizing
from meshplan.specs.dtypes import DType
from meshplan.specs.engine import A2ABackend, EngineProfile, KvAdmission, KvMemoryShare, PrefillPolicy
from meshplan.specs.model import AttentionKind, LayerKind, ModelSpec
from meshplan.specs.params import count_params
from meshplan.specs.problem import Problem
from meshplan.specs.speculative import SpecMethod
from meshplan.specs.workload import WorkloadSpec


@dataclass(frozen=True, kw_only=True, slots=True)
class CostInputs:
    """A Problem flattened to the figures the formulas use; built by ``from_problem``."""

    workload: WorkloadSpec
    """The workload: prompt and output lengths, concurrency or rate, prefix hits."""
    model: ModelSpec
    """The model's structure: the parameter counts per GPU (specs.params) are read from it rather
    than copied here, so that they have one owner."""
    engine: EngineProfile
    """The serving engine's profile: its scheduling switches (overlap scheduler, chunked prefill,
    CUDA graphs for mixed batches, MoE exchange backends) are read from it; the numeric factors a
    fit varies are copied below."""
    mla: bool
    """Multi-head latent attention (DeepSeek-V2/V3, Kimi-K2, GLM-5)."""
    hidden_size: float
    """Model width (config hidden_size), values per token."""
    num_heads: float
    """Attention (query) heads."""
    num_kv_heads: float
    """Key/value heads (config num_key_value_heads)."""
    head_dim: float
    """Values per attention head."""
    vocab_size: float
    """Vocabulary entries (embedding and LM-head rows)."""
    num_experts: float
    """Routed experts per MoE layer (0 for a dense model)."""
    top_k: float
    """Routed experts each token is sent to."""
    expert_ffn_size: float
    """Intermediate width of one routed expert's FFN."""
    ffn_size: float
    """Intermediate width of a dense layer's FFN."""
    shared_ffn_total: float
    """Sum of shared expert FFN sizes of one MoE layer (num_shared * size)."""
    ffn_mats: float
    """Matrices per FFN: 3 gated (SwiGLU), 2 otherwise."""
    kv_lora_rank: float
    """MLA: width of the compressed KV latent (config kv_lora_rank)."""
    rope_head_dim: float
    """MLA: rotary part of each query/key head (config qk_rope_head_dim), cached with the latent."""
    q_lora_rank: float
    """MLA: width of the compressed query (config q_lora_rank; 0 without query compression)."""
    nope_head_dim: float
    """MLA: non-rotary part of each query/key head (config qk_nope_head_dim)."""
    value_head_dim: float
    """MLA: values per head of the value projection (config v_head_dim)."""
    q_mats: float
    """Query projections per head: 2 with an output gate (Qwen3.5), else 1."""
    num_layers: int
    """Transformer layers."""
    layer_kinds: tuple[LayerKind, ...]
    """Each layer's kind (dense or MoE FFN), in order."""
    window_layers: float
    """Layers with sliding-window attention."""
    window_tokens: float
    """Tokens a sliding-window layer attends to."""
    linear_share: float
    """Share of layers with linear attention (Gated DeltaNet), 0 for ordinary models."""
    lin_key_dim: float
    """Linear attention: key width Kh * dk (queries and keys each)."""
    lin_value_dim: float
    """Linear attention: value width Vh * dv."""
    lin_value_heads: float
    """Linear attention: value heads Vh."""
    lin_state_values: float
    """Linear attention: recurrent state values per sequence and layer, Vh * dk * dv."""
    lin_conv_values: float
    """Linear attention: convolution inputs kept per sequence and layer, (2 Kd + Vd) * (kernel - 1)."""
    lin_state_bytes_per_value: float
    """Bytes per recurrent-state value."""
    indexer_heads: float
    """DeepSeek Sparse Attention: indexer heads."""
    indexer_head_dim: float
    """DeepSeek Sparse Attention: values per indexer head."""
    indexer_topk: float
    """DeepSeek Sparse Attention: tokens each query attends to after the indexer's choice (0: dense
    attention, no indexer)."""
    attn_bytes_per_weight: float
    """Bytes per attention weight."""
    attn_out_bytes_per_weight: float
    """Bytes per attention output-projection weight."""
    expert_bytes_per_weight: float
    """Bytes per expert (routed and shared) weight."""
    expert_dtype: DType
    """Format of the experts' weights (a factor that reaches only runs of one format reads it)."""
    other_bytes_per_weight: float
    """Bytes per dense FFN weight (the weights format)."""
    router_bytes_per_weight: float
    """Bytes per router weight: at least 16-bit, as every checkpoint read here keeps the router
    (modules_to_not_convert / exclude_modules); the router GEMM reads and memory holds these."""
    embed_bytes_per_weight: float
    """Bytes per embedding / LM head weight: at least 16-bit, as quantized checkpoints keep them
    (DeepSeek-V3's FP8 checkpoint; GPT-OSS lists them in modules_to_not_convert)."""
    quant_attn: float
    """Activation-quantization kernels per attention GEMM (cost.kernels.gemm_quant_kernels)."""
    quant_attn_out: float
    """The same per attention output-projection GEMM."""
    quant_exp: float
    """The same per expert GEMM."""
    quant_other: float
    """The same per dense FFN GEMM."""
    kv_bytes_per_value: float
    """Bytes per KV-cache value (the KV-cache format)."""
    act_bytes_per_value: float
    """Bytes per activation value (the activation format)."""
    dispatch_bytes_per_value: float
    """Bytes per value of the MoE dispatch (tokens sent to their experts)."""
    combine_bytes_per_value: float
    """Bytes per value of the MoE combine (expert outputs sent back)."""
    attn_flop_per_s: float
    """Achievable FLOP/s for attention-projection GEMMs (peak x efficiency of their format)."""
    attn_out_flop_per_s: float
    """Achievable FLOP/s of the attention output projection (its format)."""
    expert_flop_per_s: float
    """Achievable FLOP/s of the routed experts' grouped GEMMs before a GPU's slice of each expert
    narrows them (cost.layer.expert_rate, CostAssumptions.expert_slice_half_width)."""
    fused_moe_share: float
    """The share of expert_flop_per_s the engine's fused-MoE kernels reach, those of a MoE layer
    whose tokens do not come by the all-to-all exchange: EngineProfile.fp8_fused_moe_share with FP8
    routed experts, else 1."""
    expert_slice_half_width: float
    """CostAssumptions.expert_slice_half_width."""
    shared_flop_per_s: float
    """Achievable FLOP/s of shared-expert GEMMs (dense GEMMs in the experts' format)."""
    other_flop_per_s: float
    """Achievable FLOP/s of dense FFN, router and LM-head GEMMs (the weights format)."""
    core_flop_per_s: float
    """Achievable FLOP/s of the attention core (activation format)."""
    hbm_bytes_per_s: float
    """Achievable memory bandwidth for activations and the KV cache, bytes/s."""
    hbm_attn_bytes_per_s: float
    """Achievable bandwidth streaming attention weights (their format)."""
    hbm_expert_bytes_per_s: float
    """Achievable bandwidth streaming expert weights (their format)."""
    hbm_other_bytes_per_s: float
    """Achievable bandwidth streaming the other weights (the weights format)."""
    intra_node_bytes_per_s: float
    """Achievable NVLink bandwidth per GPU (catalog figure x comm_efficiency)."""
    inter_node_bytes_per_s: float
    """Achievable network bandwidth per GPU between NVLink domains."""
    intra_node_latency_s: float
    """Latency of one transfer inside an NVLink domain."""
    inter_node_latency_s: float
    """Latency of one transfer between NVLink domains."""
    nvlink_domain_gpus: int
    """GPUs of one NVLink domain (8 for HGX, 72 for NVL72)."""
    kernel_floor_s: float
    """GPU floor per kernel: the least time a kernel takes however little it does (the GPU's
    kernel_floor_s x assumptions.kernel_floor_scale, or assumptions.kernel_overhead_s where stated)."""
    roofline_sharpness: float
    """Smooth-roofline exponent."""
    memory_bytes: float
    """Memory of one GPU."""
    usable_memory_bytes: float
    """The memory fraction (requirements.memory_headroom) x capacity."""
    reserve_bytes: float
    """Memory per GPU held by the runtime (CUDA context, NCCL buffers, graphs)."""
    kv_of_free: bool
    """The memory fraction applies to the memory left once weights and the reserve are in
    (KvMemoryShare.OF_FREE, TensorRT-LLM) rather than to the whole (cost.phase.usable_bytes)."""
    expert_load_cv: float
    """Expert popularity coefficient of variation in effect (reduced by redundant experts)."""
    redundant_experts: float
    """Redundant expert replicas per MoE layer (assumptions.redundant_experts)."""
    two_batch_overlap: bool
    """Two micro-batches overlap compute with communication."""
    tbo_overlap_share: float
    """Share of the communication two-batch overlap hides (assumptions.tbo_overlap)."""
    router_bias: float
    """Router weights per layer beyond its hidden_size x num_experts matrix (score bias)."""
    token_budget: int
    """The engine's per-iteration token budget setting (max_num_tokens, chunked_prefill_size,
    max_num_batched_tokens); per attention-dp rank except where the engine divides it over the
    ranks (cost.iteration.prefill_budget)."""
    max_batch: int
    """Most running requests per attention-dp rank the engine schedules."""
    graph_max_batch: int
    """Largest decode batch per rank replayed from a CUDA graph (tp below 4)."""
    graph_max_batch_tp4: int
    """The same for tp of 4 and above."""
    mixed: bool
    """Prefill chunks share iterations with decode (PrefillPolicy.MIXED)."""
    kv_reserve_full: bool
    """Running requests hold KV for their whole length (KvAdmission.RESERVE_FULL)."""
    requests_per_client: float
    """Requests each closed-loop client sends in a run (WorkloadSpec.requests_per_client)."""
    clump_coherence: float
    """CostAssumptions.clump_coherence."""
    wave_coherence: float
    """CostAssumptions.wave_coherence."""
    overhead_cv: float
    """CostAssumptions.overhead_cv (the simulator's; the closed form takes the overheads' means)."""
    host_cpu_s: float
    """EngineProfile.host_cpu_s (the engine's numeric factors are copied here so that a fit can
    vary them with dataclasses.replace)."""
    host_cpu_per_request_s: float
    """EngineProfile.host_cpu_per_request_s."""
    host_gap_s: float
    """EngineProfile.host_gap_s: GPU idle per iteration the scheduler leaves exposed."""
    decode_pool_host_gap_s: float
    """EngineProfile.decode_pool_host_gap_s, resolved (host_gap_s where the profile leaves it unset);
    for_decode_pool puts it in host_gap_s."""
    kernel_launch_s: float
    """EngineProfile.kernel_launch_s: CPU time per kernel launched outside a CUDA graph."""
    request_overhead_s: float
    """EngineProfile.request_overhead_s: front end, tokenization and queues per request."""
    client_overhead_s: float
    """WorkloadSpec.client_overhead_s: what the benchmark client adds to each TTFT."""
    spec_k: float = 0.0
    """Speculative decoding: draft tokens per sequence and iteration (0: plain decoding)."""
    spec_tau: float = 1.0
    """Tokens one iteration yields per decoding sequence (Speculative.tokens_per_step; 1 without)."""
    spec_method: SpecMethod | None = None
    """Speculative decoding: where the draft tokens come from (MTP module, EAGLE head or a draft
    model); None without it."""
    spec_rates: tuple[float, ...] = ()
    """Speculative decoding: per draft position, the chance the target accepts it given the earlier
    ones were (Speculative.rates); empty without it."""
    spec_modules: float = 0.0
    """MTP modules the draft holds: min(spec_k, the checkpoint's); EAGLE: one layer."""
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
        reserve_full = ((eng.kv_admission is KvAdmission.RESERVE_FULL) if kv_sizing is None
                        else kv_sizing is KvSizing.MAX)
        return CostInputs(
            workload=p.workload, model=m, engine=eng, mla=m.attention is AttentionKind.MLA,
            hidden_size=m.hidden_size, num_heads=m.num_heads, num_kv_heads=m.num_kv_heads, head_dim=m.head_dim, vocab_size=m.vocab_size,
            num_experts=m.num_experts, top_k=m.top_k, expert_ffn_size=m.expert_ffn_size, ffn_size=m.ffn_size,
            shared_ffn_total=m.num_shared_experts * m.shared_ffn_size, ffn_mats=3.0 if m.gated_ffn else 2.0,
            kv_lora_rank=m.kv_lora_rank, rope_head_dim=m.qk_rope_head_dim, q_lora_rank=m.q_lora_rank, nope_head_dim=m.qk_nope_head_dim,
            value_head_dim=m.value_head_dim, q_mats=2.0 if m.attention_output_gate else 1.0,
            num_layers=m.num_layers, layer_kinds=m.layer_kinds,
            window_layers=m.num_window_layers, window_tokens=m.window_tokens,
            linear_share=m.num_linear_attention_layers / m.num_layers,
            lin_key_dim=kd, lin_value_dim=vd, lin_value_heads=m.linear_num_value_heads,
            lin_state_values=m.linear_num_value_heads * m.linear_key_head_dim * m.linear_value_head_dim if lin else 0.0,
            lin_conv_values=(2 * kd + vd) * max(m.linear_conv_kernel - 1, 0) if lin else 0.0,
            lin_state_bytes_per_value=m.linear_state_bytes,
            indexer_heads=m.index_num_heads, indexer_head_dim=m.index_head_dim, indexer_topk=m.index_topk,
            attn_bytes_per_weight=attn_dt.bytes, attn_out_bytes_per_weight=out_dt.bytes,
            expert_bytes_per_weight=exp_dt.bytes, expert_dtype=exp_dt, other_bytes_per_weight=prec.weights.bytes,
            embed_bytes_per_weight=max(prec.weights.bytes, 2.0), router_bytes_per_weight=max(prec.weights.bytes, 2.0),
            quant_attn=gemm_quant_kernels(attn_dt), quant_attn_out=gemm_quant_kernels(out_dt),
            quant_exp=gemm_quant_kernels(exp_dt), quant_other=gemm_quant_kernels(prec.weights),
            kv_bytes_per_value=prec.kv_cache.bytes, act_bytes_per_value=act.bytes,
            dispatch_bytes_per_value=(a.dispatch_dtype or eng.dispatch_dtype).bytes,
            combine_bytes_per_value=(a.combine_dtype or eng.combine_dtype).bytes,
            attn_flop_per_s=flops(attn_dt), attn_out_flop_per_s=flops(out_dt),
            expert_flop_per_s=flops(exp_dt) * a.grouped_gemm_efficiency, shared_flop_per_s=flops(exp_dt),
            fused_moe_share=eng.fp8_fused_moe_share if exp_dt is DType.FP8 else 1.0,
            expert_slice_half_width=a.expert_slice_half_width,
            other_flop_per_s=flops(prec.weights), core_flop_per_s=flops(act),
            hbm_bytes_per_s=bw(act), hbm_attn_bytes_per_s=bw(attn_dt),
            hbm_expert_bytes_per_s=g.hbm_bw_bytes_per_s * p.moe_hbm_efficiency(exp_dt),
            hbm_other_bytes_per_s=bw(prec.weights),
            intra_node_bytes_per_s=g.intra_node_bw_bytes_per_s * a.comm_efficiency,
            inter_node_bytes_per_s=g.inter_node_bw_bytes_per_s * a.comm_efficiency,
            intra_node_latency_s=g.intra_node_latency_s, inter_node_latency_s=g.inter_node_latency_s,
            nvlink_domain_gpus=g.nvlink_domain_gpus,
            kernel_floor_s=(a.kernel_overhead_s if a.kernel_overhead_s is not None
                            else g.kernel_floor_s * a.kernel_floor_scale), roofline_sharpness=a.roofline_sharpness,
            memory_bytes=g.memory_bytes, usable_memory_bytes=g.memory_bytes * p.requirements.memory_headroom,
            reserve_bytes=a.runtime_reserve_bytes, kv_of_free=eng.kv_memory_share is KvMemoryShare.OF_FREE,
            expert_load_cv=a.expert_load_cv * (a.eplb_residual if a.redundant_experts else 1.0),
            redundant_experts=a.redundant_experts,
            two_batch_overlap=eng.two_batch_overlap if a.two_batch_overlap is None else a.two_batch_overlap,
            tbo_overlap_share=a.tbo_overlap,
            router_bias=counts.router_per_layer - m.hidden_size * m.num_experts,
            token_budget=a.token_budget or eng.tier(eng.token_budget, g.memory_bytes),
            max_batch=eng.tier(eng.max_batch, g.memory_bytes),
            graph_max_batch=eng.tier(eng.cuda_graph_max_batch, g.memory_bytes),
            graph_max_batch_tp4=eng.tier(eng.cuda_graph_max_batch_tp4 or eng.cuda_graph_max_batch, g.memory_bytes),
            mixed=eng.prefill_policy is PrefillPolicy.MIXED,
            kv_reserve_full=reserve_full,
            requests_per_client=p.workload.requests_per_client or float("inf"), clump_coherence=a.clump_coherence,
            wave_coherence=a.wave_coherence, overhead_cv=a.overhead_cv,
            host_cpu_s=eng.host_cpu_s, host_cpu_per_request_s=eng.host_cpu_per_request_s, host_gap_s=eng.host_gap_s,
            decode_pool_host_gap_s=eng.host_gap_s if eng.decode_pool_host_gap_s is None else eng.decode_pool_host_gap_s,
            kernel_launch_s=eng.kernel_launch_s, request_overhead_s=eng.request_overhead_s,
            client_overhead_s=p.workload.client_overhead_s,
            spec_k=float(spec.draft_tokens) if spec else 0.0, spec_tau=spec.tokens_per_step if spec else 1.0,
            spec_method=spec.method if spec else None, spec_rates=spec.rates if spec else (), draft=draft,
            spec_modules=(float(min(spec.draft_tokens, m.mtp_modules)) if spec.method is SpecMethod.MTP else 1.0)
            if spec else 0.0,
        )

    def a2a_backend(self) -> A2ABackend:
        """The MoE token exchange the engine uses on this GPU's NVLink domain."""
        e = self.engine
        if e.a2a_backend_large_nvlink is not None and self.nvlink_domain_gpus > 8:
            return e.a2a_backend_large_nvlink
        return e.a2a_backend

    def a2a_backend_across_nodes(self) -> A2ABackend:
        """The exchange when the expert-parallel group spans NVLink domains."""
        return self.engine.a2a_backend_across_nodes or self.a2a_backend()
