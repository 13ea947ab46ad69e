"""Roofline time of one operator and alpha-beta time of one collective.

Roofline (Williams et al., "Roofline", CACM 2009; scaling-book's T = max(T_math, T_mem)):
    time = max(FLOPs / achievable FLOP/s, bytes / achievable bandwidth) + kernels * overhead
Collectives (Hockney's alpha-beta model; NCCL's ring algorithm moves 2(n-1)/n of the buffer per
GPU for all-reduce and (n-1)/n for all-gather and reduce-scatter, NCCL docs "Performance"):
    time = latency + bytes on the wire per GPU / achievable link bandwidth
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class OpKind(StrEnum):
    """Compute runs on the GPU's SMs; comm on its links."""

    COMPUTE = "compute"
    COMM = "comm"


@dataclass(frozen=True, kw_only=True, slots=True)
class OpCost:
    """One operator's cost on one GPU (arrays broadcast over layouts and batch sizes)."""

    name: str
    kind: OpKind
    flops: object = 0.0
    """Floating-point operations on this GPU."""
    mem_bytes: object = 0.0
    """Bytes read and written from HBM on this GPU."""
    comm_bytes: object = 0.0
    """Bytes this GPU sends over its links."""
    time_s: object = 0.0
    """Estimated time, seconds."""


def compute_op(name: str, flops, mem_bytes, flops_per_s: float, bytes_per_s: float, overhead_s: float,
               kernels: float = 1.0) -> OpCost:
    """Roofline time of a compute operator."""
    t = np.maximum(np.asarray(flops) / flops_per_s, np.asarray(mem_bytes) / bytes_per_s) + kernels * overhead_s
    return OpCost(name=name, kind=OpKind.COMPUTE, flops=flops, mem_bytes=mem_bytes, time_s=t)


def ring_factor(n, kind: str):
    """Bytes on the wire per GPU per byte of buffer: 2(n-1)/n for all-reduce, (n-1)/n for
    all-gather / reduce-scatter (NCCL ring)."""
    n = np.asarray(n, dtype=float)
    return (2.0 if kind == "all_reduce" else 1.0) * (n - 1) / n


def comm_op(name: str, wire_bytes, active, bw, latency) -> OpCost:
    """A collective moving ``wire_bytes`` per GPU over links of achievable bandwidth ``bw``; costs
    nothing where ``active`` is False (group of one)."""
    active = np.asarray(active)
    t = np.where(active, latency + np.asarray(wire_bytes) / bw, 0.0)
    return OpCost(name=name, kind=OpKind.COMM, comm_bytes=np.where(active, wire_bytes, 0.0), time_s=t)
