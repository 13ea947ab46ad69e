"""Every assumption of the cost model, named, with its default and where the default comes from.

`meshplan calibrate` fits a few of them (fidelity.calibrate.FACTORS, with engine and benchmark
factors) within physical bounds; the fitted values live in a calibration profile
(catalog/calibration/), which records what they were fitted on.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from meshplan.specs.base import Spec
from meshplan.specs.dtypes import DType


class KvSizing(StrEnum):
    """How much KV cache a decoding sequence is given.

    max: every sequence keeps room for its longest possible length (isl_max + osl_max), as
    TensorRT-LLM's default GUARANTEED_NO_EVICT scheduler reserves. mean: sequences occupy their
    mean length in steady state (isl + osl/2, half the output generated on average) plus room for
    one longest sequence, as vLLM and SGLang admit requests on current use."""

    MAX = "max"
    MEAN = "mean"


class CostAssumptions(Spec):
    """Named factors of the step model. Efficiencies of a GPU come from its catalog file
    (measured per format); the fields here override them when set, and a GPU spec that states its
    own MFU or bandwidth utilization (the seed's problems do) overrides both."""

    gemm_efficiency: float | None = Field(default=None, gt=0, le=1)
    """Override: achievable fraction of peak FLOP/s for every GEMM format. None: the GPU's table."""
    hbm_efficiency: float | None = Field(default=None, gt=0, le=1)
    """Override: achievable fraction of peak memory bandwidth for every format. None: the GPU's table."""
    default_gemm_efficiency: float = Field(default=0.7, gt=0, le=1)
    """For a format the GPU's table lacks. 0.7: DeepGEMM reaches 1550 of 1979 FP8 TFLOP/s (0.78) on
    H800 for large shapes (deepseek-ai/DeepGEMM README), rounded down for mid-size GEMMs."""
    default_hbm_efficiency: float = Field(default=0.8, gt=0, le=1)
    """For a format the GPU's table lacks. 0.8: FlashMLA reaches 3000 of 3350 GB/s (0.9) at best
    (deepseek-ai/FlashMLA README); aiconfigurator's systems files use 0.8."""
    roofline_sharpness: float = Field(default=4.0, ge=1)
    """Exponent n of the smooth roofline (t_compute^n + t_memory^n)^(1/n): n = 1 adds the two, a
    large n tends to max(). 4 reproduces the knee of the measured H200 BF16 GEMM curve (N = K =
    8192: 35.6 us at M = 1, 38.6 us at M = 128, 49 us at M = 256; aiconfigurator gemm_perf tables)."""
    sustained_gemm_share: float = Field(default=1.0, gt=0, le=1)
    """Share of the rate a GEMM or attention kernel reaches measured alone (the GPU's
    gemm_efficiency table, or default_gemm_efficiency) that it sustains inside a model pass, where
    tensor-core load holds the clock at what the power limit allows (NVIDIA rates A100 HPL at the
    1,305 MHz it sustains at its power limit, not the 1,410 MHz boost: 0.93; G. Lockwood, "Peak
    FLOPS", glennklockwood.com/garden/peak-FLOPS), a pass's GEMMs run in fewer waves than a
    benchmark's, and collectives hold SMs. 1: as measured alone (the source's figure; a calibration
    profile fits it). The overrides gemm_efficiency and a GPU's stated MFU are achieved rates
    already and are not scaled."""
    grouped_gemm_efficiency: float = Field(default=0.6, gt=0, le=1)
    """Routed experts' grouped GEMM rate relative to a dense GEMM of the same format. 0.6:
    aiconfigurator's measured MoE module (DeepSeek-V3 shape, EP8, balanced) reaches 29% (H200) and
    38% (B200) of FP8 peak at 16k tokens, against 56-58% for dense FP8 GEMMs. With
    expert_slice_half_width above 0 it is the rate before a slice's narrowing, which also scales
    whole experts (by 2048 / (2048 + h) for DeepSeek-V3's)."""
    expert_slice_half_width: float = Field(default=0.0, ge=0)
    """Width of an expert slice at which its grouped GEMM reaches half its rate. Expert tensor
    parallelism splits each expert's intermediate dimension over etp GPUs, so a GPU's slice is
    n = expert_ffn_size / etp wide: the gate/up GEMM writes 2n columns, the down GEMM sums over n.
    Narrow GEMMs fill fewer output tiles and run shorter reduction loops, and tile and wave
    quantisation leave more of the GPU idle (NVIDIA, "Matrix Multiplication Background User's
    Guide", DU-09799-001, chapter 3), so the routed experts' rate is scaled by n / (n + this).
    0 leaves every slice at the full rate (the model before it). No kernel table that varies etp
    alone was found to source it; a calibration fits it on runs that use both whole experts
    (attention dp with EP) and split ones (TP MoE), as the dev set's do: the bundled profile
    silicon-dev fits it to 658 +- 75 (2026-12-02, with the grouped-GEMM efficiency on its
    measured lower bound 0.5; README, "Expert tensor parallelism")."""
    comm_efficiency: float = Field(default=0.8, gt=0, le=1)
    """Achievable fraction of link bandwidth for collectives. 0.8: NCCL all-reduce bus
    bandwidth 370 GB/s of 450 GB/s per direction on 8x H100 without NVLS (nccl-tests #212)."""
    kernel_overhead_s: float | None = Field(default=None, ge=0)
    """Override: GPU time floor of one kernel, paid by every kernel of every operator. None: the
    GPU's measured floor (GpuSpec.kernel_floor_s) times kernel_floor_scale. Outside CUDA graphs
    the engine's CPU launch cost (EngineProfile.kernel_launch_s) bounds the iteration instead."""
    kernel_floor_scale: float = Field(default=1.0, gt=0)
    """Multiplier on the GPU's kernel floor: engines fuse kernels and overlap their launches
    (programmatic dependent launch), so the floor a served model pays per counted kernel differs
    from an isolated kernel's. 1.0 unless a calibration profile fits it."""
    expert_load_cv: float = Field(default=1.67, ge=0)
    """Coefficient of variation of the routed experts' popularity. The busiest expert-parallel
    rank, holding E/ep experts, gets 1 + cv * sqrt(2 ln(ep) * ep / E) times the mean tokens
    (the expected maximum of ep sums of E/ep experts). 1.67 reproduces TensorRT-LLM's measured
    (max - mean)/mean = 1.56 at EP32 for DeepSeek-R1 without EPLB (tech blog 4); it gives 1.6 at
    EP8, within the 1.3-1.8x that aiconfigurator measures for skewed routing at EP8."""
    eplb_residual: float = Field(default=0.07, ge=0, le=1)
    """Share of the popularity imbalance left when redundant experts balance the load (EPLB):
    TensorRT-LLM blog 4 measures an imbalance of 0.109 with EPLB against 1.564 without."""
    redundant_experts: int = Field(default=0, ge=0)
    """Extra expert replicas spread over the EP ranks (DeepSeek EPLB, SGLang
    --ep-num-redundant-experts): they cost memory and leave eplb_residual of the imbalance."""
    two_batch_overlap: bool | None = None
    """Split each step into two micro-batches so one's communication hides under the other's
    compute (DeepSeek's inference system, SGLang --enable-two-batch-overlap). None: the engine's
    default (off in all three)."""
    tbo_overlap: float = Field(default=0.8, ge=0, le=1)
    """Share of a micro-batch's communication hidden under the other micro-batch's compute with
    two-batch overlap; each micro-batch still pays its own kernel floors, so small batches lose
    (SGLang measures -27% at 32 tokens per GPU and +25-35% at 256 and in prefill, lmsys.org
    large-scale EP blog, 2025-05-05)."""
    clump_coherence: float = Field(default=1.0, ge=0, le=1)
    """Closed loop under a mixed-policy engine: requests that start together finish together (a
    fixed OSL decodes in lockstep), so their clients' next prompts arrive together and are
    prefilled in one iteration, up to the token budget. 1 keeps whole clumps; 0 spreads every
    prompt into an iteration of its own (client and network jitter desynchronise the loop)."""
    wave_coherence: float = Field(default=1.0, ge=0, le=1)
    """Closed loop under a separate-policy engine (SGLang) whose output lengths differ: a wave's
    requests end over the spread of their lengths, so their clients' next prompts could arrive in
    the groups that end within one receive interval. 1 keeps whole waves, as fixed lengths do (the
    prefill-first scheduler starts a wave's requests decoding together); 0 leaves only those
    groups. The bundled profile fits 0.17 on InferenceX's SGLang runs, the dev set's only such runs
    (lengths on [0.8 x len, len]); what holds that share together is not modelled."""
    overhead_cv: float = Field(default=1.0, ge=0, le=4)
    """Simulation only (the closed form takes means): how much a request's overhead, from its send to
    the engine having it (EngineProfile.request_overhead_s + WorkloadSpec.client_overhead_s), varies
    from request to request, as a coefficient of variation; the simulator draws each from a gamma
    law with that mean (0: the same for every request; 1: exponential). Default 1: the exponential
    is the law of a positive delay known only by its mean (the maximum-entropy law, E. T. Jaynes,
    Phys. Rev. 106, 620, 1957). The dev set simulated (2026-12-02, the bundled profile, three draws
    averaged: fidelity.simulated) gives median |TTFT error| 22.7% / 22.4% / 21.8% / 21.4% at
    0 / 0.5 / 1 / 2, signed -0.2% / -0.1% / -1.8% / -4.3%: more spread keeps lowering the error
    while biasing it, so the default stays at the exponential rather than at the best figure. With
    one overhead for all, prompts whose requests finish together keep arriving together and a
    mixed-policy engine keeps prefilling them in clumps, which measured TTFTs show dissolving
    (catalog/cases/harnesses.yaml [AIC-S])."""
    dispatch_dtype: DType | None = None
    """Format of tokens sent to experts. None: the engine's (EngineProfile.dispatch_dtype)."""
    combine_dtype: DType | None = None
    """Format of expert outputs sent back. None: the engine's (EngineProfile.combine_dtype)."""
    activation_dtype: DType = DType.BF16
    """Format of activations and of TP all-reduce traffic."""
    runtime_reserve_bytes: float = Field(default=2.0 * 2**30, ge=0)
    """Memory per GPU taken by the CUDA context, NCCL buffers and CUDA-graph pools before
    weights and KV: about 2 GiB (vLLM profiles it at start-up; typical figure)."""
    kv_sizing: KvSizing | None = None
    """KV reservation per running sequence (see KvSizing). None: as the engine admits requests
    (EngineProfile.kv_admission)."""
    token_budget: int | None = Field(default=None, gt=0)
    """Tokens per iteration per attention-dp rank. None: the engine's default for the GPU."""
    search_max_gpus_per_instance: int = Field(default=1024, gt=0)
    """Largest instance the search builds when the GPU budget is unlimited."""
    pipeline_margin: float = Field(default=0.10, ge=0.0, le=1.0)
    """A plan with pipeline stages is chosen over the best plan without them only when it gives
    more than this share more tokens/s per GPU. Default 10%: about the step model's median TPOT
    error on the dev set (meshplan validate ../shared/cases/silicon-dev.csv), so a smaller modelled
    gain is within the model's error; and the engines' deployment guides serve MoE models without
    stages (attention dp with expert parallel, or tensor parallel), which a stage-by-stage pipeline
    makes harder to run (a micro-batch per stage in flight, the host in every cycle)."""
