"""Time of one operator (a smooth roofline plus kernel floors) and of one collective.

Roofline (Williams et al., "Roofline", CACM 2009; scaling-book's T = max(T_math, T_mem)), made
smooth so that an operator near the ridge point costs more than the larger of the two (measured
GEMMs bend gradually: aiconfigurator's H200 BF16 table, N = K = 8192, is flat to M ~ 128 and
linear beyond 256):
    time = (T_math^n + T_mem^n)^(1/n) + kernels * floor,   n = CostAssumptions.roofline_sharpness
Collectives (Hockney's alpha-beta model; NCCL's ring algorithm moves 2(n-1)/n of the buffer per
GPU for all-reduce and (n-1)/n for all-gather and reduce-scatter, NCCL docs "Performance"):
    time = latency + bytes on the wire per GPU / achievable link bandwidth

Takeaway: an operator is never cheaper than its slower resource, nor than its kernels' floors.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from meshplan.cost.floats import Floats


class OpKind(StrEnum):
    """Compute runs on the GPU's SMs; comm on its links."""

    COMPUTE = "compute"
    COMM = "comm"


class Collective(StrEnum):
    """A ring collective over a group of n GPUs (the MoE all-to-all and pipeline sends are costed
    by their own bytes, cost.layer)."""

    ALL_REDUCE = "all_reduce"
    ALL_GATHER = "all_gather"
    REDUCE_SCATTER = "reduce_scatter"

    @property
    def ring_passes(self) -> float:
        """Times the collective sends the buffer's (n-1)/n around the ring (RING_PASSES)."""
        return RING_PASSES[self]


RING_PASSES = {Collective.ALL_REDUCE: 2.0, Collective.ALL_GATHER: 1.0, Collective.REDUCE_SCATTER: 1.0}
"""An all-reduce is a reduce-scatter then an all-gather: NCCL docs "Performance" (bus bandwidth),
2(n-1)/n of the buffer per GPU for all-reduce, (n-1)/n for all-gather and reduce-scatter."""


@dataclass(frozen=True, kw_only=True, slots=True)
class OpCost:
    """One operator's cost on one GPU (arrays broadcast over layouts and batch sizes)."""

    name: str
    kind: OpKind
    flops: Floats = 0.0
    """Floating-point operations on this GPU."""
    mem_bytes: Floats = 0.0
    """Bytes read and written from HBM on this GPU."""
    comm_bytes: Floats = 0.0
    """Bytes this GPU sends over its links."""
    time_s: Floats = 0.0
    """Estimated time, seconds."""
    kernels: Floats = 0.0
    """Kernels the operator launches (each is a CPU launch outside a CUDA graph)."""
    routes: bool = False
    """The operator decides where tokens go (the MoE router): costed as compute, drawn in the DAG
    as routing (dag.nodes.NodeKind.ROUTE)."""

    def scaled(self, share) -> "OpCost":
        """This operator run in ``share`` of the layers (hybrid models average two layer kinds)."""
        return replace(self, flops=self.flops * share, mem_bytes=self.mem_bytes * share,
                       comm_bytes=self.comm_bytes * share, time_s=self.time_s * share, kernels=self.kernels * share)


def smooth_max(a, b, n: float):
    """(a^n + b^n)^(1/n) for non-negative arrays: a + b at n = 1, max(a, b) as n grows.
    Hand check: a = 3, b = 4, n = 2 gives 5."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    top = np.maximum(np.maximum(a, b), 1e-300)
    return top * np.power(np.power(a / top, n) + np.power(b / top, n), 1.0 / n)


def compute_op(name: str, flops, mem_bytes, flops_per_s: float, bytes_per_s, kernel_floor_s: float,
               kernels: float = 1.0, sharpness: float = 4.0, active=True, routes: bool = False) -> OpCost:
    """Smooth-roofline time of a compute operator (nothing where ``active`` is False); ``routes``
    marks the router (OpCost.routes)."""
    t = smooth_max(np.asarray(flops) / flops_per_s, np.asarray(mem_bytes) / bytes_per_s, sharpness) + kernels * kernel_floor_s
    active = np.asarray(active)
    return OpCost(name=name, kind=OpKind.COMPUTE, flops=np.where(active, flops, 0.0),
                  mem_bytes=np.where(active, mem_bytes, 0.0), time_s=np.where(active, t, 0.0),
                  kernels=np.where(active, kernels, 0.0), routes=routes)


def ring_factor(n, collective: Collective):
    """Bytes on the wire per GPU per byte of buffer: 2(n-1)/n for all-reduce, (n-1)/n for
    all-gather / reduce-scatter (NCCL ring; Collective.ring_passes)."""
    n = np.asarray(n, dtype=float)
    return collective.ring_passes * (n - 1) / n


def comm_op(name: str, wire_bytes, active, bw, latency) -> OpCost:
    """A collective moving ``wire_bytes`` per GPU over links of achievable bandwidth ``bw``; costs
    nothing where ``active`` is False (group of one)."""
    active = np.asarray(active)
    t = np.where(active, latency + np.asarray(wire_bytes) / bw, 0.0)
    return OpCost(name=name, kind=OpKind.COMM, comm_bytes=np.where(active, wire_bytes, 0.0), time_s=t,
                  kernels=np.where(active, 1.0, 0.0))
