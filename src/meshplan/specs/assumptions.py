"""Every assumption of the cost model, named, with its default and where the default comes from.

Calibration (meshplan validate) may fit only these factors; each records the cases it was
fitted on in ``fitted_on``.
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
    """Named factors of the cost model. A GPU spec that states its own MFU or bandwidth
    utilization (the seed's problems do) overrides gemm_efficiency / hbm_efficiency."""

    gemm_efficiency: float = Field(default=0.7, gt=0, le=1)
    """Achievable fraction of dense peak FLOP/s for large GEMMs and attention. 0.7: DeepGEMM
    reaches 1550 of 1979 FP8 TFLOP/s (0.78) on H800 for large shapes (deepseek-ai/DeepGEMM
    README); grouped and mid-size GEMMs run lower, hence rounded down."""
    hbm_efficiency: float = Field(default=0.8, gt=0, le=1)
    """Achievable fraction of peak memory bandwidth for weight and KV reads. 0.8: FlashMLA
    reaches 3000 of 3350 GB/s (0.9) in its best case (deepseek-ai/FlashMLA README); the seed
    problems state 80%."""
    comm_efficiency: float = Field(default=0.8, gt=0, le=1)
    """Achievable fraction of link bandwidth for collectives. 0.8: NCCL all-reduce bus
    bandwidth 370 GB/s of 450 GB/s per direction on 8x H100 without NVLS (nccl-tests #212)."""
    kernel_overhead_s: float = Field(default=4e-6, ge=0)
    """Fixed time per kernel (launch gap and tail), paid by every operator. 4 us: typical
    kernel-to-kernel gap without CUDA graphs on Hopper; decode below uses cuda_graph_factor."""
    cuda_graph_factor: float = Field(default=0.5, ge=0, le=1)
    """Decode runs under CUDA graphs (vLLM, SGLang, TensorRT-LLM default), which removes the CPU
    launch cost but not the GPU-side gap: kernel_overhead_s is multiplied by this in decode."""
    expert_load_skew: float = Field(default=1.0, ge=1)
    """Extra load on the busiest expert-parallel rank beyond the statistical fluctuation of
    uniform top-k routing (real routers are skewed; DeepSeek's EPLB exists to flatten it).
    1.0 assumes a balanced router, as in DeepSeek's published profile (a best case)."""
    redundant_experts: int = Field(default=0, ge=0)
    """Extra expert replicas spread over the EP ranks (DeepSeek EPLB, SGLang
    --ep-num-redundant-experts): they cost memory and remove expert_load_skew."""
    two_batch_overlap: bool = False
    """Split each step into two micro-batches so one's communication hides under the other's
    compute (DeepSeek's inference system, SGLang --enable-two-batch-overlap)."""
    dispatch_dtype: DType = DType.FP8
    """Format of tokens sent to experts (DeepEP dispatches FP8)."""
    combine_dtype: DType = DType.BF16
    """Format of expert outputs sent back (DeepEP combines in BF16)."""
    activation_dtype: DType = DType.BF16
    """Format of activations and of TP all-reduce traffic."""
    runtime_reserve_bytes: float = Field(default=2.0 * 2**30, ge=0)
    """Memory per GPU taken by the CUDA context, NCCL buffers and CUDA-graph pools before
    weights and KV: about 2 GiB (vLLM profiles it at start-up; typical figure)."""
    kv_sizing: KvSizing = KvSizing.MAX
    """KV reservation per decoding sequence (see KvSizing); max is the safe default."""
    prefill_chunk_tokens: int = Field(default=8192, gt=0)
    """Tokens per prefill forward pass per attention-dp rank when serving is aggregated (chunked
    prefill); SGLang's default chunked_prefill_size is 8192 on large GPUs."""
    search_max_gpus_per_instance: int = Field(default=1024, gt=0)
    """Largest instance the search builds when the GPU budget is unlimited."""
    fitted_on: tuple[str, ...] = ()
    """Published cases that calibrated these factors (empty: all defaults)."""
