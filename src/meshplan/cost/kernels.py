"""Kernels per operator: each pays the GPU's per-kernel floor (CostAssumptions.kernel_overhead_s)
and, outside a CUDA graph, a CPU launch (EngineProfile.kernel_launch_s).

Counts follow the decode path of vLLM's and SGLang's model code (vllm/model_executor/models/
llama.py, deepseek_v2.py, qwen3_next.py; sglang/srt/models/deepseek_v2.py), where fused kernels
are the default: the residual add is fused into the next RMSNorm, RoPE into the KV-cache write.
A GEMM whose weights are FP8 or FP4 is preceded by a kernel that quantizes its activations (per
token group for FP8 block scales, per 16 values for NVFP4); weight-only INT4 dequantizes inside
the GEMM and adds none.
"""

from __future__ import annotations

from meshplan.specs.dtypes import DType

NORM = 1
"""Fused residual add + RMSNorm."""
GQA_PROJECTIONS = 2
"""QKV GEMM; RoPE fused with the KV-cache write."""
MLA_PROJECTIONS = 6
"""Fused q_a/kv_a GEMM, the two latent RMSNorms, q_b GEMM, RoPE, latent cache write."""
INDEXER = 7
"""DeepSeek Sparse Attention's indexer: wq_b and wk GEMMs, key LayerNorm, RoPE, head-weight GEMM,
FP8 logits over the cache, top-k selection (DeepSeek-V3.2-Exp ``Indexer``)."""
GDN_PROJECTIONS = 6
"""Gated DeltaNet: the two input GEMMs, causal conv1d, gating (beta, decay), gated RMSNorm, and
the state-update kernel's preparation (vLLM qwen3_next.py)."""
GQA_DECODE_CORE = 2
"""Split-KV decode attention and the merge of its partial results."""
MLA_DECODE_CORE = 4
"""W_UK absorption bmm, scheduling metadata, FlashMLA, W_UV bmm."""
PREFILL_CORE = 1
"""FlashAttention over the chunk (MLA prefill: one more, the K/V decompression GEMM, counted in it)."""
GDN_CORE = 1
"""The fused recurrent gated delta rule of a decode step."""
GDN_PREFILL_CORE = 8
"""The chunked gated delta rule of a prefill (fla ops/gated_delta_rule/chunk.py
chunk_gated_delta_rule_fwd, which vLLM's and SGLang's Qwen3-Next and Qwen3.5 layers call with
use_qk_l2norm_in_kernel): the L2 norms of q and of k, chunk_local_cumsum of the decay,
chunk_scaled_dot_kkt_fwd, solve_tril, recompute_w_u_fwd, chunk_gated_delta_rule_fwd_h and
chunk_fwd_o."""
O_PROJ = 1
DENSE_FFN = 3
"""gate_up GEMM, SiLU-and-multiply, down GEMM."""
ROUTER = 2
"""Router GEMM and top-k (with the sigmoid/softmax and bias correction fused)."""
EXPERTS = 4
"""Token permutation (align/sort), grouped gate_up GEMM, activation, grouped down GEMM; the
weighted combine is the next operator's."""
EXPERT_COMBINE = 1
SHARED_EXPERTS = 3
LM_HEAD = 2
"""Final norm and the LM head GEMM (sampling is counted in the engine's host time)."""
DRAFT_FUSION = 3
"""A speculative draft layer's input: the norms of the hidden state and the token embedding, and
the projection GEMM of their concatenation (vLLM deepseek_mtp.py: enorm, hnorm, eh_proj)."""


def gemm_quant_kernels(dtype: DType) -> float:
    """Activation-quantization kernels before one GEMM with weights in ``dtype``."""
    return 1.0 if dtype in (DType.FP8, DType.FP4) else 0.0
