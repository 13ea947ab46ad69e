"""A hardware profile: kernels timed on one machine by ``meshplan calibrate --microbench``
(execute/microbench.py), as the YAML it writes. Every rate is what the kernel achieved there."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from meshplan.specs.base import Spec
from meshplan.specs.dtypes import DType

SCHEMA = "meshplan.hardware-profile/1"
"""The format's name and version (execute.microbench writes it, io.hardware_profile reads it)."""

FORMAT_OF = {"bfloat16": DType.BF16, "float16": DType.FP16, "float32": DType.FP32}
"""The torch dtypes the microbenchmarks time, with the catalog format each is compared with."""


class GemmRow(Spec):
    """One dense GEMM (M x K) @ (K x N)."""

    m: int = Field(ge=1)
    n: int = Field(ge=1)
    k: int = Field(ge=1)
    seconds: float = Field(gt=0)
    flops_per_s: float = Field(gt=0)
    bytes_per_s: float = Field(gt=0)


class ExpertGemmRow(Spec):
    """Batched expert GEMMs: ``experts`` experts with ``tokens_per_expert`` tokens each."""

    experts: int = Field(ge=1)
    tokens_per_expert: int = Field(ge=1)
    n: int = Field(ge=1)
    k: int = Field(ge=1)
    seconds: float = Field(gt=0)
    flops_per_s: float = Field(gt=0)
    bytes_per_s: float = Field(gt=0)


class AttentionDecodeRow(Spec):
    """Attention decode: one query token per sequence over ``context`` cached tokens."""

    batch: int = Field(ge=1)
    context: int = Field(ge=1)
    heads: int = Field(ge=1)
    kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    seconds: float = Field(gt=0)
    bytes_per_s: float = Field(gt=0)


class CollectiveRow(Spec):
    """All-reduce and all-to-all of one message among ``devices`` local devices (bus bandwidth as
    nccl-tests defines it)."""

    bytes: int = Field(ge=1)
    devices: int = Field(ge=2)
    all_reduce_seconds: float = Field(gt=0)
    all_reduce_bus_bytes_per_s: float = Field(gt=0)
    all_to_all_seconds: float = Field(gt=0)
    all_to_all_bus_bytes_per_s: float = Field(gt=0)


class HardwareProfile(Spec):
    """The tables of one ``calibrate --microbench`` run, its summary, and, when it was given
    ``--gpu``, the shares of that catalog GPU's figures."""

    schema_: Literal[SCHEMA] = Field(alias="schema")  # type: ignore[valid-type]
    device: str
    """The device's name as torch reports it (``NVIDIA H200``, or ``cpu``)."""
    device_kind: Literal["cuda", "cpu"]
    devices: int = Field(ge=1)
    """Local devices the collectives ran among."""
    dtype: Literal[tuple(FORMAT_OF)]  # type: ignore[valid-type]
    """The torch dtype of the GEMMs and attention."""
    torch: str
    gemm: tuple[GemmRow, ...] = Field(min_length=1)
    expert_gemm: tuple[ExpertGemmRow, ...] = Field(min_length=1)
    attention_decode: tuple[AttentionDecodeRow, ...] = Field(min_length=1)
    collectives: tuple[CollectiveRow, ...] = ()
    summary: dict[str, float]
    catalog: dict[str, float | str] | None = None
    """Shares of the catalog GPU named at measurement (``gpu``: its catalog name)."""
