"""The serving engine: an input, because engines differ in what a plan reaches (DESIGN.md 2).

An engine profile holds the scheduler facts the step model needs (token budget per iteration,
largest batch, CUDA-graph coverage, how prefill shares iterations with decode, overlap
scheduling, host time, all-to-all backend), each with its source in the profile's data file
(``catalog/engines/*.yaml``). Facts that changed between releases are listed per version there
and resolved here.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from meshplan.errors import SpecError
from meshplan.specs.base import Spec
from meshplan.specs.dtypes import DType


class Engine(StrEnum):
    """Serving engines meshplan predicts for and exports to."""

    TRTLLM = "trtllm"
    SGLANG = "sglang"
    VLLM = "vllm"


DEFAULT_ENGINE = Engine.VLLM
"""The engine a problem is planned for when it names none: vLLM, the most widely deployed of the
three; ``--engine`` or the problem key ``engine`` picks another."""


class PrefillPolicy(StrEnum):
    """How an iteration mixes prompt processing with token generation.

    mixed: prefill chunks and decode tokens share one forward pass under the token budget
    (vLLM V1's unified batch; TensorRT-LLM in-flight batching). separate: an iteration is either
    a prefill (extend) batch or a decode batch, and waiting prefills run first (SGLang without
    --enable-mixed-chunk)."""

    MIXED = "mixed"
    SEPARATE = "separate"


class KvAdmission(StrEnum):
    """How much KV cache a running request holds when the engine admits it.

    reserve_full: room for its whole prompt and output (TensorRT-LLM's GUARANTEED_NO_EVICT
    capacity scheduler). current_use: the tokens it holds so far, with preemption when the cache
    runs out (vLLM, SGLang)."""

    RESERVE_FULL = "reserve_full"
    CURRENT_USE = "current_use"


class KvMemoryShare(StrEnum):
    """What the engine's memory fraction (the plan's memory headroom) is a fraction of.

    of_total: of the GPU's whole memory, which weights, KV cache and activations share (vLLM
    gpu_memory_utilization; SGLang mem_fraction_static covers weights and the KV pool). of_free:
    of the memory left free once the model is loaded, all of it for the KV cache (TensorRT-LLM
    KvCacheConfig.free_gpu_memory_fraction)."""

    OF_TOTAL = "of_total"
    OF_FREE = "of_free"


class A2ABackend(StrEnum):
    """How MoE tokens move between attention-dp ranks when experts are spread (ep > 1).

    all_to_all: each token goes only to the ranks of its experts (DeepEP, TensorRT-LLM's NVLink
    one-sided all-to-all). allgather_reducescatter: every rank gathers all ranks' tokens before
    the experts and reduce-scatters the outputs after (vLLM's default since 0.11, SGLang without
    DeepEP, TensorRT-LLM's fallback)."""

    ALL_TO_ALL = "all_to_all"
    ALLGATHER_REDUCESCATTER = "allgather_reducescatter"


class Tier(Spec):
    """A value that depends on the GPU's memory (engines size defaults by it)."""

    min_memory_gib: float = Field(ge=0)
    """Applies to GPUs with at least this much memory (GiB, as the driver reports it)."""
    value: int = Field(gt=0)


class EngineProfile(Spec):
    """The scheduler and kernel facts of one engine version that set step time."""

    engine: Engine
    version: str
    """The release these facts are for ("" for the profile's newest)."""
    display_name: str
    token_budget: tuple[Tier, ...] = Field(min_length=1)
    """Tokens one iteration may carry per attention-dp rank (TensorRT-LLM max_num_tokens,
    SGLang chunked_prefill_size, vLLM max_num_batched_tokens), by GPU memory."""
    budget_split_over_attention_dp: bool = False
    """The budget is divided by the attention-dp degree (SGLang: chunked_prefill_size //= dp_size)."""
    prefill_batch_tokens: int = Field(default=0, ge=0)
    """Separate-policy engines: most new tokens in one prefill batch (SGLang max_prefill_tokens);
    0 means the token budget."""
    max_batch: tuple[Tier, ...] = Field(min_length=1)
    """Most running requests per attention-dp rank (max_batch_size, max_running_requests,
    max_num_seqs), by GPU memory."""
    cuda_graph_max_batch: tuple[Tier, ...] = Field(min_length=1)
    """Largest decode batch per rank replayed from a CUDA graph, by GPU memory."""
    cuda_graph_max_batch_tp4: tuple[Tier, ...] = ()
    """As cuda_graph_max_batch for tensor-parallel degree 4 and above, where the engine sizes it
    differently (SGLang); empty means the same."""
    cuda_graph_mixed: bool
    """Iterations that carry prefill tokens are also graphed (vLLM's piecewise graphs); False:
    only pure-decode iterations are (TensorRT-LLM, SGLang)."""
    prefill_policy: PrefillPolicy
    chunked_prefill: bool
    """Prompts longer than the budget are split over iterations. TensorRT-LLM's default is off;
    a prompt must then fit the budget whole."""
    overlap_scheduler: bool
    """The CPU prepares iteration n+1 while the GPU runs n, hiding host time up to the GPU time
    (TensorRT-LLM overlap scheduler, SGLang's zero-overhead scheduler, vLLM async scheduling)."""
    overlap_with_pp: bool
    """The overlap scheduler stays on with pipeline parallelism."""
    host_cpu_s: float = Field(ge=0)
    """CPU time per iteration for scheduling, input preparation and output processing (seconds).
    With the overlap scheduler it runs while the GPU computes the previous iteration."""
    host_cpu_per_request_s: float = Field(ge=0)
    """Further CPU time per running request per iteration (seconds)."""
    host_gap_s: float = Field(ge=0)
    """GPU idle time per iteration that overlap scheduling does not hide (result transfer,
    sampling synchronisation), seconds."""
    decode_pool_host_gap_s: float | None = Field(default=None, ge=0)
    """host_gap_s of a disaggregated deployment's decode pool, which runs the engine's decode-server
    loop (SGLang: disaggregation/decode.py event_loop_overlap_disagg_decode: no prefill is scheduled
    there, requests arrive with their KV cache) rather than the aggregated loop; None: host_gap_s."""
    kernel_launch_s: float = Field(ge=0)
    """CPU time to launch one kernel outside a CUDA graph (seconds); with graphs one launch per
    iteration remains."""
    fp8_fused_moe_share: float = Field(default=1.0, gt=0, le=1)
    """Share of the GPU's FP8 grouped-GEMM rate (its FP8 GEMM efficiency x sustained_gemm_share x
    grouped_gemm_efficiency) that the engine's fused-MoE kernels reach with FP8 routed experts: the
    kernels of a MoE layer whose tokens do not come by the all-to-all exchange (SGLang's fused MoE,
    Triton or FlashInfer's; with DeepEP it runs DeepGEMM's grouped GEMMs, cost.layer.moe_ops). 1:
    as fast, for their format, as the other formats' kernels. Not published for any engine; fitted
    by simulation (catalog/calibration). The dev set shows it without a fit: Qwen3.5-397B-A17B on
    4 B200s under SGLang, same layout and lengths, FP8 against FP4, measured TTFT 4.41 s against
    1.74 s (8k/1k, 128 clients), where kernels at the same share of each format's peak give 1.2x."""
    request_overhead_s: float = Field(default=0.0, ge=0)
    """Time a request spends outside the GPU iterations before its first token reaches the client:
    the serving front end (HTTP, tokenization, routing) and the engine's inter-process queues on
    the way in and out (seconds). Not published for any engine; fitted (catalog/calibration)."""
    kv_admission: KvAdmission
    kv_memory_share: KvMemoryShare = KvMemoryShare.OF_TOTAL
    """What the memory fraction is a fraction of (KvMemoryShare)."""
    a2a_backend: A2ABackend
    """MoE token exchange under attention dp with ep > 1."""
    a2a_backend_large_nvlink: A2ABackend | None = None
    """The exchange when the NVLink domain spans more than one 8-GPU board (GB200/GB300 NVL72),
    where some engines switch to an all-to-all over the fabric; None means a2a_backend."""
    a2a_backend_across_nodes: A2ABackend | None = None
    """The exchange when an instance's expert-parallel group spans nodes (over InfiniBand or
    Ethernet): the backend meshplan's launch configs set there (export: vLLM DeepEP kernels,
    SGLang --moe-a2a-backend deepep, TensorRT-LLM WIDEEP), as each engine's multi-node
    expert-parallel guide does, so that a plan is costed as it is launched; None means a2a_backend."""
    dispatch_dtype: DType = DType.FP8
    """Format of the tokens the all-to-all sends to the experts (DeepEP dispatches FP8)."""
    combine_dtype: DType = DType.BF16
    """Format of the expert outputs sent back (DeepEP combines in BF16)."""
    attention_dp_balancing: str = ""
    """How new requests are spread over attention-dp ranks (for reports; the step model assumes
    each rank gets its share of every clump)."""
    attention_dp_balance: bool = False
    """TensorRT-LLM attention_dp_config.enable_balance: under attention dp, new prompts wait until
    every rank has one (so that context phases run on all ranks in the same iteration), or until
    adp_balance_timeout_iters iterations have passed, and then adp_balance_batching_wait_iters
    more while every rank also decodes (TensorRT-LLM tech blog 10, "ADP Balance Strategy").
    Aggregated serving only: a prefill-only or decode-only worker never waits."""
    adp_balance_timeout_iters: int = Field(default=50, ge=1)
    """Iterations a prompt may wait for every rank to have one (AttentionDpConfig.timeout_iters)."""
    adp_balance_batching_wait_iters: int = Field(default=10, ge=0)
    """Further iterations to gather prompts once every rank has one (batching_wait_iters)."""
    recv_interval_iters: int = Field(default=1, ge=1)
    """SGLang --scheduler-recv-interval: the scheduler takes in new requests once every this many
    decode iterations (and at once after an iteration with prefill, or when idle), so a request
    reaching a decoding engine waits for the next of those points (SchedulerRecvSkipper)."""
    two_batch_overlap: bool = False
    """Default state of two-batch overlap (SGLang --enable-two-batch-overlap, vLLM --enable-dbo)."""
    attention_kernels: str = ""
    """Default attention kernels (for reports)."""
    moe_kernels: str = ""
    """Default MoE kernels (for reports)."""

    @property
    def adp_balance(self) -> tuple[int, int] | None:
        """(timeout_iters, batching_wait_iters) when attention-dp balancing is on, else None."""
        if not self.attention_dp_balance:
            return None
        return self.adp_balance_timeout_iters, self.adp_balance_batching_wait_iters

    @model_validator(mode="after")
    def _balance_is_trtllm(self) -> "EngineProfile":
        if self.attention_dp_balance and self.engine is not Engine.TRTLLM:
            raise SpecError("engine.attention_dp_balance", True, f"only TensorRT-LLM has it ({self.display_name} "
                            "spreads requests over attention-dp ranks without waiting)")
        if self.recv_interval_iters > 1 and self.engine is not Engine.SGLANG:
            raise SpecError("engine.recv_interval_iters", self.recv_interval_iters, f"only SGLang has it "
                            f"({self.display_name} takes in new requests at every iteration)")
        return self

    def tier(self, tiers: tuple[Tier, ...], memory_bytes: float) -> int:
        """The value of ``tiers`` for a GPU with ``memory_bytes`` (the highest tier it reaches)."""
        gib = memory_bytes / 2**30
        reached = [t for t in tiers if gib >= t.min_memory_gib]
        return max(reached, key=lambda t: t.min_memory_gib).value if reached else tiers[0].value
