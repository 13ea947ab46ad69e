"""GPU hardware: one accelerator and the links around it."""

from __future__ import annotations

from pydantic import Field, model_validator

from meshplan.specs.base import Spec
from meshplan.specs.dtypes import DType


class GpuSpec(Spec):
    """One GPU model and its links. Every figure is per GPU; bandwidths are per direction."""

    name: str
    """Catalog key, lower-case with dashes (``h100-sxm``)."""
    display_name: str = ""
    """Name for people (``NVIDIA H100 SXM5 80GB``)."""
    aliases: tuple[str, ...] = ()
    """Other spellings that resolve to this GPU (``H100``, ``h100-80gb``)."""
    memory_bytes: float = Field(gt=0)
    """Memory capacity in bytes as the driver reports it, which is what serving engines size their
    KV cache from (H100 80GB: 81,559 MiB = 85.52e9 bytes); the marketing figure where no driver
    figure is known."""
    hbm_bw_bytes_per_s: float = Field(gt=0)
    """Peak memory bandwidth in bytes/s."""
    peak_flops: dict[DType, float]
    """Dense tensor-core peak FLOP/s per input format (no 2:4 sparsity). A format the GPU has no
    tensor cores for is absent; GEMMs in it run at the next wider format (DType.wider)."""
    nvlink_domain_gpus: int = Field(ge=1)
    """GPUs that share the fast scale-up fabric (NVLink/NVSwitch, Infinity Fabric): 8 in an HGX
    node, 72 in a GB200 NVL72 rack. meshplan calls this group a node."""
    gpus_per_host: int | None = Field(default=None, ge=1)
    """GPUs one host holds (one operating system: a launch script's node): 4 per compute tray of a
    GB200/GB300 NVL72 rack; None: the NVLink domain's (an HGX server). Launch configs count nodes
    in hosts; the cost model's "node" is the NVLink domain."""
    intra_node_bw_bytes_per_s: float = Field(gt=0)
    """Scale-up bandwidth per GPU per direction (NVLink: half the bidirectional figure)."""
    inter_node_bw_bytes_per_s: float = Field(gt=0)
    """Scale-out bandwidth per GPU per direction (one NIC per GPU; 400 Gb/s = 50e9 bytes/s)."""
    intra_node_latency_s: float = Field(ge=0)
    """Fixed cost of one collective inside a node (small-message latency)."""
    inter_node_latency_s: float = Field(ge=0)
    """Fixed cost of one collective that crosses nodes."""
    gemm_efficiency: dict[DType, float] = {}
    """Achievable fraction of peak FLOP/s for large GEMMs, by the format the math runs in (GEMMs
    measured on this GPU generation; sources in the catalog file). A format missing here uses
    CostAssumptions.default_gemm_efficiency."""
    hbm_efficiency: dict[DType, float] = {}
    """Achievable fraction of peak memory bandwidth when streaming weights of each format (and, at
    the BF16 figure, KV cache and activations)."""
    moe_hbm_efficiency: float | None = Field(default=None, gt=0, le=1)
    """Achievable fraction of peak memory bandwidth when a grouped MoE GEMM streams its experts'
    weights (measured MoE modules); None means hbm_efficiency of the experts' format."""
    kernel_floor_s: float = Field(default=3e-6, ge=0)
    """Shortest time of one small kernel under CUDA graphs on this GPU (launch gap, prologue and
    epilogue), which every kernel pays beside its roofline time."""
    mfu: float | None = Field(default=None, gt=0, le=1)
    """Achievable fraction of peak FLOP/s, when the hardware description states one (the seed's
    problems do: "MFU utilization: 60%"); None means the cost assumptions' default."""
    hbm_bw_utilization: float | None = Field(default=None, gt=0, le=1)
    """Achievable fraction of peak memory bandwidth when stated (the seed's "bandwidth
    utilization: 80%"); None means the cost assumptions' default."""

    @property
    def host_gpus(self) -> int:
        """GPUs per host (gpus_per_host, else the NVLink domain)."""
        return self.gpus_per_host or self.nvlink_domain_gpus

    @model_validator(mode="after")
    def _has_a_format(self) -> "GpuSpec":
        if not self.peak_flops:
            raise ValueError("peak_flops: needs at least one format (bf16 or fp16)")
        for dtype, value in self.peak_flops.items():
            if not value > 0:
                raise ValueError(f"peak_flops.{dtype.value} = {value}: a GPU computes at more than 0 FLOP/s")
        return self

    @model_validator(mode="after")
    def _fractions(self) -> "GpuSpec":
        for field in ("gemm_efficiency", "hbm_efficiency"):
            for dtype, value in getattr(self, field).items():
                if not 0 < value <= 1:
                    raise ValueError(f"{field}.{dtype.value} = {value}: an achievable fraction is in (0, 1]")
        return self

    def compute_dtype(self, dtype: DType) -> DType:
        """The format a GEMM with ``dtype`` operands runs in on this GPU: its own if the GPU has
        tensor cores for it, else the next wider one it has (weight-only quantization)."""
        current: DType | None = dtype
        while current is not None and current not in self.peak_flops:
            current = current.wider
        if current is None:
            return max(self.peak_flops, key=lambda d: self.peak_flops[d])
        return current

    def peak_flops_for(self, dtype: DType) -> float:
        """Dense peak FLOP/s for GEMMs whose weights are stored in ``dtype``."""
        return self.peak_flops[self.compute_dtype(dtype)]


def gpus_in_words(gpu: str, prefill_gpu: str | None = None) -> str:
    """The GPUs a plan runs on, as its headings say it: ``gpu``, or with a prefill pool on another
    GPU "PREFILL (prefill) and GPU (decode)" (Problem.prefill_gpu)."""
    return f"{prefill_gpu} (prefill) and {gpu} (decode)" if prefill_gpu else gpu
