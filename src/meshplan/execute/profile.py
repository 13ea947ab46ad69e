"""A device profile measured where the run happens, and the cost model's predictions for it,
so every measured time is printed beside its estimate."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from meshplan.execute.model import RefConfig
from meshplan.specs.problem import Problem


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceProfile:
    """Achievable rates of one worker (one thread on a CPU, as the launcher pins them)."""

    flops: float
    """Matmul FLOP/s (512 x 512, the run's dtype)."""
    bw_bytes_per_s: float
    """Copy bandwidth of a 64 MiB tensor (read + write)."""
    op_overhead_s: float
    """Fixed time of one small tensor op (framework dispatch)."""


def measure(dtype_name: str, repeats: int = 5) -> DeviceProfile:
    dtype = getattr(torch, dtype_name)
    torch.set_num_threads(1)
    a = torch.randn(512, 512, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    flops = 2 * 512**3 / best
    x = torch.empty(64 * 2**20 // 4, dtype=torch.float32)
    y = torch.empty_like(x)
    best_c = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        y.copy_(x)
        best_c = min(best_c, time.perf_counter() - t)
    s = torch.randn(1, 8, dtype=dtype)
    w = torch.randn(8, 8, dtype=dtype)
    t = time.perf_counter()
    for _ in range(2000):
        s @ w
    overhead = (time.perf_counter() - t) / 2000
    return DeviceProfile(flops=flops, bw_bytes_per_s=2 * x.numel() * 4 / best_c, op_overhead_s=overhead)


def tiny_problem(base: Problem, cfg: RefConfig, profile: DeviceProfile, isl: int, osl: int,
                 collective_latency_s: float = 50e-6) -> Problem:
    """The problem as the executor runs it: the reference model's widths on this device, with
    the measured rates as achievable peaks (efficiencies 1) and the measured op overhead."""
    d = base.model_dump(mode="json")
    m = base.model
    d["model"].update(hidden_size=cfg.hidden, head_dim=cfg.head_dim, num_kv_heads=cfg.kv_heads,
                      attention="mha" if cfg.kv_heads == cfg.heads else "gqa", ffn_size=cfg.ffn if m.ffn_size else 0,
                      expert_ffn_size=cfg.expert_ffn, shared_expert_ffn_size=cfg.shared_ffn // max(m.num_shared_experts, 1),
                      vocab_size=cfg.vocab, num_window_layers=0, window_tokens=0, q_lora_rank=0, kv_lora_rank=0,
                      qk_nope_head_dim=0, qk_rope_head_dim=0, v_head_dim=0, attention_bias=False, expert_bias=False)
    d["gpu"].update(name="measured-cpu", peak_flops={"fp32": profile.flops}, hbm_bw_bytes_per_s=profile.bw_bytes_per_s,
                    mfu=1.0, hbm_bw_utilization=1.0, intra_node_bw_bytes_per_s=profile.bw_bytes_per_s / 4,
                    inter_node_bw_bytes_per_s=profile.bw_bytes_per_s / 4, intra_node_latency_s=collective_latency_s,
                    inter_node_latency_s=collective_latency_s, memory_bytes=24e9, nvlink_domain_gpus=1024)
    d["assumptions"].update(kernel_overhead_s=profile.op_overhead_s, cuda_graph_factor=1.0, runtime_reserve_bytes=0.0,
                            activation_dtype="fp32", dispatch_dtype="fp32", combine_dtype="fp32")
    d["workload"].update(isl_tokens=float(isl), isl_max_tokens=float(isl), osl_tokens=float(osl),
                         osl_max_tokens=float(osl), concurrency=None, request_rate_per_s=None)
    d["precision"] = {"weights": "fp32", "attention": None, "experts": None, "kv_cache": "fp32"}
    d["requirements"] = {"memory_headroom": 1.0}
    return Problem.model_validate(d)


def predict(problem: Problem, lay, per_rank: int) -> tuple[float, float]:
    """(TTFT, TPOT) the cost model predicts for ``per_rank`` requests on each attention-dp rank."""
    from meshplan.cost.inputs import CostInputs
    from meshplan.cost.layer import Par
    from meshplan.cost.serving import decode_cost, prefill_cost

    ci = CostInputs.from_problem(problem)
    par = Par.of(lay.tp, lay.dp, lay.ep, lay.etp, lay.pp)
    b = max(per_rank, 1)
    return float(prefill_cost(ci, par, b).latency_s), float(decode_cost(ci, par, b).latency_s)
