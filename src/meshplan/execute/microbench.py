"""Microbenchmarks of the kernels the step model prices, on this machine's GPUs (or its CPU), written
as a hardware profile: dense GEMMs over a sweep of M, batched expert GEMMs over tokens per expert,
attention decode over batch and context, and all-reduce and all-to-all among the local devices.

Each entry is the best of ``repeats`` timed runs after one warm-up (the device synchronised around
each), with the rate it implies:
- GEMM (M x K) @ (K x N): 2 M N K FLOPs; bytes (M K + K N + M N) x element size.
- Expert GEMMs: E experts with t tokens each, torch.bmm over (E, t, K) @ (E, K, N), the equal-load
  case of a grouped GEMM: 2 E t N K FLOPs.
- Attention decode: one query token per sequence over a context of L cached tokens,
  torch.nn.functional.scaled_dot_product_attention with grouped KV heads; bytes are the K and V
  read, 2 B H_kv L d x element size.
- Collectives (torch.distributed: NCCL among GPUs, gloo among CPU processes): bus bandwidth as
  nccl-tests defines it (NCCL docs "Performance"): all-reduce bytes x 2(n-1)/n / time, all-to-all
  bytes x (n-1)/n / time.
The summary takes the largest GEMM rate, the smallest-M GEMM's bandwidth, the decode bandwidth and
the largest message's bus bandwidth, and compares each with the catalog's figure for the GPU when
one is named (the achieved share is what CostAssumptions' efficiencies stand for).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from meshplan.specs.hardware_profile import SCHEMA


@dataclass(frozen=True, kw_only=True, slots=True)
class Sweep:
    """The sizes measured."""

    gemm_m: tuple[int, ...]
    gemm_nk: int
    experts: int
    tokens_per_expert: tuple[int, ...]
    expert_n: int
    expert_k: int
    decode_batch: tuple[int, ...]
    decode_context: tuple[int, ...]
    heads: int
    kv_heads: int
    head_dim: int
    message_bytes: tuple[int, ...]
    repeats: int


GPU_SWEEP = Sweep(gemm_m=(1, 8, 32, 128, 512, 2048, 8192), gemm_nk=8192, experts=32,
                  tokens_per_expert=(1, 4, 16, 64, 256), expert_n=4096, expert_k=7168,
                  decode_batch=(1, 8, 32, 128), decode_context=(1024, 4096, 16384), heads=64, kv_heads=8,
                  head_dim=128, message_bytes=(2**16, 2**20, 2**24, 2**28), repeats=10)
"""A DeepSeek-V3-like expert shape (7168 x 2048 x 2, gate and up fused) and a 70B-class GEMM."""

CPU_SWEEP = Sweep(gemm_m=(1, 16, 128), gemm_nk=256, experts=4, tokens_per_expert=(1, 16), expert_n=128,
                  expert_k=256, decode_batch=(1, 4), decode_context=(256, 1024), heads=8, kv_heads=2, head_dim=64,
                  message_bytes=(2**12, 2**18), repeats=3)
"""Small enough to finish in seconds on a laptop core: the format and the method, not a figure."""


def cuda_available() -> bool:
    return torch.cuda.is_available()


def _sync(device: torch.device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def best_seconds(fn, device: torch.device, repeats: int) -> float:
    """Best of ``repeats`` timed calls after one warm-up."""
    sync = _sync(device)
    fn()
    sync()
    out = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        out = min(out, time.perf_counter() - t)
    return max(out, 1e-9)


def gemm(device: torch.device, dtype: torch.dtype, s: Sweep) -> list[dict]:
    size = torch.tensor([], dtype=dtype).element_size()
    n = k = s.gemm_nk
    b = torch.randn(k, n, dtype=dtype, device=device)
    out = []
    for m in s.gemm_m:
        a = torch.randn(m, k, dtype=dtype, device=device)
        sec = best_seconds(lambda: a @ b, device, s.repeats)
        out.append({"m": m, "n": n, "k": k, "seconds": sec, "flops_per_s": 2.0 * m * n * k / sec,
                    "bytes_per_s": (m * k + k * n + m * n) * size / sec})
    return out


def expert_gemm(device: torch.device, dtype: torch.dtype, s: Sweep) -> list[dict]:
    size = torch.tensor([], dtype=dtype).element_size()
    e, n, k = s.experts, s.expert_n, s.expert_k
    w = torch.randn(e, k, n, dtype=dtype, device=device)
    out = []
    for t in s.tokens_per_expert:
        x = torch.randn(e, t, k, dtype=dtype, device=device)
        sec = best_seconds(lambda: torch.bmm(x, w), device, s.repeats)
        out.append({"experts": e, "tokens_per_expert": t, "n": n, "k": k, "seconds": sec,
                    "flops_per_s": 2.0 * e * t * n * k / sec, "bytes_per_s": e * (t * k + k * n + t * n) * size / sec})
    return out


def attention_decode(device: torch.device, dtype: torch.dtype, s: Sweep) -> list[dict]:
    size = torch.tensor([], dtype=dtype).element_size()
    h, hkv, d = s.heads, s.kv_heads, s.head_dim
    out = []
    for b in s.decode_batch:
        for ctx in s.decode_context:
            q = torch.randn(b, h, 1, d, dtype=dtype, device=device)
            kv = torch.randn(2, b, hkv, ctx, d, dtype=dtype, device=device)
            sec = best_seconds(lambda: torch.nn.functional.scaled_dot_product_attention(q, kv[0], kv[1],
                                                                                         enable_gqa=True),
                               device, s.repeats)
            out.append({"batch": b, "context": ctx, "heads": h, "kv_heads": hkv, "head_dim": d, "seconds": sec,
                        "bytes_per_s": 2.0 * b * hkv * ctx * d * size / sec})
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _collective_worker(rank: int, world: int, port: int, cuda: bool, sizes: tuple[int, ...], repeats: int,
                       queue) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    try:
        rows = []
        for nbytes in sizes:
            x = torch.ones(max(nbytes // 4, world), dtype=torch.float32, device=device)
            y = torch.empty_like(x)

            def timed(fn):
                dist.barrier()
                return best_seconds(fn, device, repeats)

            ar = timed(lambda: dist.all_reduce(x))
            a2a = timed(lambda: dist.all_to_all_single(y, x))
            size = x.numel() * 4
            rows.append({"bytes": size, "devices": world, "all_reduce_seconds": ar,
                         "all_reduce_bus_bytes_per_s": size * 2.0 * (world - 1) / world / ar,
                         "all_to_all_seconds": a2a, "all_to_all_bus_bytes_per_s": size * (world - 1) / world / a2a})
        if rank == 0:
            queue.put(rows)
    finally:
        dist.destroy_process_group()


def collectives(cuda: bool, devices: int, s: Sweep) -> list[dict]:
    """All-reduce and all-to-all among ``devices`` local processes (one per GPU); [] for one."""
    if devices < 2:
        return []
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_collective_worker, args=(devices, _free_port(), cuda, s.message_bytes, s.repeats, queue),
                       nprocs=devices, join=True, start_method="spawn")
    return queue.get()


def measure(device_kind: str, dtype_name: str, devices: int | None = None, sweep: Sweep | None = None) -> dict:
    """Every table, on ``device_kind`` ("cuda" or "cpu") in ``dtype_name``; collectives among
    ``devices`` local GPUs (default all) or CPU processes (default 2)."""
    cuda = device_kind == "cuda"
    if cuda and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device visible to torch")
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    s = sweep or (GPU_SWEEP if cuda else CPU_SWEEP)
    dtype = getattr(torch, dtype_name)
    count = devices if devices is not None else (torch.cuda.device_count() if cuda else 2)
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    doc = {"schema": SCHEMA, "device": name, "device_kind": device_kind, "devices": count, "dtype": dtype_name,
           "torch": str(torch.__version__), "gemm": gemm(device, dtype, s), "expert_gemm": expert_gemm(device, dtype, s),
           "attention_decode": attention_decode(device, dtype, s), "collectives": collectives(cuda, count, s)}
    if cuda:
        torch.cuda.empty_cache()
    doc["summary"] = summary(doc)
    return doc


def summary(doc: dict) -> dict:
    """The headline rates of a profile's tables."""
    out = {"gemm_flops_per_s": max(r["flops_per_s"] for r in doc["gemm"]),
           "gemm_small_m_bytes_per_s": min(doc["gemm"], key=lambda r: r["m"])["bytes_per_s"],
           "expert_gemm_flops_per_s": max(r["flops_per_s"] for r in doc["expert_gemm"]),
           "decode_attention_bytes_per_s": max(r["bytes_per_s"] for r in doc["attention_decode"])}
    if doc["collectives"]:
        big = max(doc["collectives"], key=lambda r: r["bytes"])
        out["all_reduce_bus_bytes_per_s"] = big["all_reduce_bus_bytes_per_s"]
        out["all_to_all_bus_bytes_per_s"] = big["all_to_all_bus_bytes_per_s"]
    return out
