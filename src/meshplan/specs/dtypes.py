"""Number formats for weights, activations and the KV cache."""

from __future__ import annotations

from enum import StrEnum

from meshplan.errors import SpecError


class DType(StrEnum):
    """A storage format. ``bytes`` includes the block-scale overhead of the format.

    fp4 is counted as NVFP4 (4-bit E2M1 values plus one FP8 scale per 16 values: 4.5 bits per
    value; NVIDIA, "Introducing NVFP4", developer.nvidia.com blog, 2025). OCP MXFP4 (one 8-bit
    scale per 32 values, 4.25 bits) differs by 6%; fp8 block scales (one fp32 per 128x128 block
    in DeepSeek-V3's checkpoint) add 0.02% and are ignored. int4 is weight-only integer
    quantization with one 16-bit scale per group of 32 (compressed-tensors ``pack-quantized``,
    Kimi-K2.5): 4.5 bits per value, and no GPU has tensor cores for it, so its GEMMs run in
    BF16 after dequantization (W4A16).
    """

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    FP4 = "fp4"
    INT4 = "int4"

    @property
    def bytes(self) -> float:
        return _BYTES[self]

    @property
    def wider(self) -> "DType | None":
        """The next wider compute format, used when a GPU has no tensor cores for this one
        (weight-only quantization: the weights are dequantized and the GEMM runs wider)."""
        return _WIDER[self]


_BYTES = {DType.FP32: 4.0, DType.BF16: 2.0, DType.FP16: 2.0, DType.FP8: 1.0, DType.FP4: 4.5 / 8, DType.INT4: 4.5 / 8}
# FP4 and INT4 weights on a GPU without FP4 tensor cores (Hopper) are dequantized and multiplied in
# BF16 (vLLM's Marlin MXFP4/NVFP4 kernels, TensorRT-LLM's W4A16 path), not at the FP8 rate.
_WIDER = {DType.FP4: DType.BF16, DType.INT4: DType.BF16, DType.FP8: DType.BF16, DType.BF16: DType.FP32, DType.FP16: DType.FP32,
          DType.FP32: None}

ALIASES = {
    "float32": DType.FP32, "fp32": DType.FP32, "float": DType.FP32,
    "bfloat16": DType.BF16, "bf16": DType.BF16,
    "float16": DType.FP16, "fp16": DType.FP16, "half": DType.FP16,
    "fp8": DType.FP8, "float8": DType.FP8, "e4m3": DType.FP8, "fp8_e4m3": DType.FP8, "int8": DType.FP8,
    "fp4": DType.FP4, "nvfp4": DType.FP4, "mxfp4": DType.FP4, "int4": DType.INT4, "int4_wo": DType.INT4, "w4a16": DType.INT4,
    "fp8_block": DType.FP8,
}


def parse_dtype(text: str, field: str) -> DType:
    """Read a dtype spelled as people spell it ("FP16", "bfloat16", "fp8")."""
    key = str(text).strip().lower().replace("-", "_")
    if key not in ALIASES:
        raise SpecError(field, text, f"unknown number format; use one of {', '.join(d.value for d in DType)}")
    return ALIASES[key]
