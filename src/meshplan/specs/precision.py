"""Number formats of a model's parts: what a checkpoint stores and what a plan runs."""

from __future__ import annotations

from meshplan.specs.base import Spec
from meshplan.specs.dtypes import DType


class Precision(Spec):
    """Storage formats. Attention and expert weights may differ from the rest."""

    weights: DType = DType.BF16
    """Default format of all weights (dense FFNs, routers)."""
    attention: DType | None = None
    """Attention projections (None: as weights)."""
    attention_out: DType | None = None
    """Attention output projection when it differs from the other attention projections (None:
    as attention). NVIDIA's NVFP4 DeepSeek checkpoints keep the MLA projections in BF16 but
    quantize o_proj (nvidia/DeepSeek-V3.1-NVFP4 hf_quant_config.json exclude_modules)."""
    experts: DType | None = None
    """Routed and shared expert FFNs (None: as weights)."""
    kv_cache: DType = DType.BF16
    """KV cache entries."""

    @property
    def attention_dtype(self) -> DType:
        return self.attention or self.weights

    @property
    def attention_out_dtype(self) -> DType:
        return self.attention_out or self.attention_dtype

    @property
    def experts_dtype(self) -> DType:
        return self.experts or self.weights

    def describe(self) -> str:
        """One line for notes: "attention fp8, experts fp4, other weights bf16, KV cache fp8"."""
        out = f" (output projection {self.attention_out.value})" if self.attention_out else ""
        return (f"attention {self.attention_dtype.value}{out}, experts {self.experts_dtype.value}, "
                f"other weights {self.weights.value}, KV cache {self.kv_cache.value}")
