"""A device profile measured where the run happens, and the cost model's predictions for it,
so every measured time is printed beside its estimate."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.roofline import OpKind
from meshplan.cost.serving import decode_cost, prefill_cost
from meshplan.execute.comm import Comm
from meshplan.execute.microbench import best_seconds
from meshplan.execute.model import RefConfig, config_from_spec
from meshplan.execute.runner import Runner
from meshplan.execute.worker import prompts
from meshplan.specs.model import AttentionKind, LayerKind
from meshplan.specs.problem import Problem
from meshplan.strategy.layout import Layout
from meshplan.strategy.mesh import stage_layers


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceProfile:
    """Achievable rates of one worker (one thread on a CPU, as the launcher pins them)."""

    flops: float
    """Matmul FLOP/s (512 x 512 on a CPU, 8192 x 8192 on a GPU, in the run's dtype)."""
    bw_bytes_per_s: float
    """Copy bandwidth of a 64 MiB (CPU) or 1 GiB (GPU) tensor, read + write."""
    op_overhead_s: float
    """Fixed time per operator: measured as one small matmul's dispatch, then replaced by
    ``calibrate`` with the executor's own price per cost-model operator."""


def cpu_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def measure(dtype_name: str, cuda: bool = False, repeats: int = 5) -> DeviceProfile:
    """Best-of-``repeats`` matmul rate, copy bandwidth and small-op time on this machine's CPU
    (one thread) or its first GPU."""
    profile = _measure(dtype_name, cuda, repeats)
    if cuda:  # the probes are gone: give GPU 0 back to the runs that follow in this process
        torch.cuda.empty_cache()
    return profile


def _measure(dtype_name: str, cuda: bool, repeats: int) -> DeviceProfile:
    dtype = getattr(torch, dtype_name)
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    n = 8192 if cuda else 512

    def best(fn, times=repeats) -> float:
        return best_seconds(fn, device, times)

    a = torch.randn(n, n, dtype=dtype, device=device)
    flops = 2 * n**3 / best(lambda: a @ a)
    x = torch.empty((1024 if cuda else 64) * 2**20 // 4, dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    bw = 2 * x.numel() * 4 / best(lambda: y.copy_(x))
    s = torch.randn(1, 8, dtype=dtype, device=device)
    w = torch.randn(8, 8, dtype=dtype, device=device)

    def small_ops():
        for _ in range(2000):
            s @ w

    overhead = best(small_ops, 1) / 2000
    torch.set_num_threads(threads)
    return DeviceProfile(flops=flops, bw_bytes_per_s=bw, op_overhead_s=overhead)


def run_problem(base: Problem, cfg: RefConfig, profile: DeviceProfile, isl: int, osl: int, *,
                link_latency_s: float = 50e-6, link_bw_bytes_per_s: float | None = None, share: float = 1.0,
                num_layers: int | None = None) -> Problem:
    """The problem as the executor runs it: the reference model's widths on this device, the
    measured rates as achievable peaks (efficiencies 1), the measured fixed time per operator
    and the measured link (latency, and bandwidth where more than one rank ran).

    ``share``: the fraction of a core each process gets when a CPU run has more processes than
    cores (cores / processes under the kernel's fair scheduler); compute rates are multiplied
    and fixed times divided by it. 1 on GPUs, one per rank."""
    d = base.model_dump(mode="json")
    m = base.model
    d["model"].update(hidden_size=cfg.hidden, head_dim=cfg.head_dim, num_kv_heads=cfg.kv_heads,
                      attention=(AttentionKind.MHA if cfg.kv_heads == cfg.heads else AttentionKind.GQA).value,
                      ffn_size=cfg.ffn if m.ffn_size else 0,
                      expert_ffn_size=cfg.expert_ffn, shared_expert_ffn_size=cfg.shared_ffn // max(m.num_shared_experts, 1),
                      vocab_size=cfg.vocab, num_window_layers=0, window_tokens=0, q_lora_rank=0, kv_lora_rank=0,
                      qk_nope_head_dim=0, qk_rope_head_dim=0, v_head_dim=0, attention_bias=False, expert_bias=False,
                      num_layers=num_layers or m.num_layers)
    link_bw = link_bw_bytes_per_s or profile.bw_bytes_per_s / 4
    d["gpu"].update(name="measured", peak_flops={"fp32": profile.flops * share},
                    hbm_bw_bytes_per_s=profile.bw_bytes_per_s * share,
                    mfu=1.0, hbm_bw_utilization=1.0, intra_node_bw_bytes_per_s=link_bw,
                    inter_node_bw_bytes_per_s=link_bw, intra_node_latency_s=link_latency_s,
                    inter_node_latency_s=link_latency_s, memory_bytes=1e15, nvlink_domain_gpus=1024)
    d["assumptions"].update(kernel_overhead_s=profile.op_overhead_s / share, roofline_sharpness=64.0,
                            runtime_reserve_bytes=0.0, activation_dtype="fp32", dispatch_dtype="fp32",
                            combine_dtype="fp32", grouped_gemm_efficiency=1.0, expert_load_cv=0.0,
                            gemm_efficiency=1.0, hbm_efficiency=1.0)
    # The executor is a plain PyTorch loop: no engine scheduler, no CUDA graphs, no host time
    # beyond the measured fixed time per operator.
    d["engine"].update(host_cpu_s=0.0, host_cpu_per_request_s=0.0, host_gap_s=0.0, kernel_launch_s=0.0,
                       cuda_graph_max_batch=[{"min_memory_gib": 0, "value": 1}], cuda_graph_max_batch_tp4=[],
                       max_batch=[{"min_memory_gib": 0, "value": 1 << 20}], two_batch_overlap=False,
                       a2a_backend="all_to_all", a2a_backend_large_nvlink=None)
    d["workload"].update(isl_tokens=float(isl), isl_max_tokens=float(isl), osl_tokens=float(osl),
                         osl_max_tokens=float(osl), concurrency=None, request_rate_per_s=None)
    d["precision"] = {"weights": "fp32", "attention": None, "experts": None, "kv_cache": "fp32"}
    d["requirements"] = {"memory_headroom": 1.0}
    return Problem.model_validate(d)


def calibration_layers(m) -> int:
    """The fewest first layers that hold one layer of every kind the model has."""
    kinds = [k.value for k in m.layer_kinds]
    return max(kinds.index(k) for k in set(kinds)) + 1


def calibrate(base: Problem, profile: DeviceProfile, dtype_name: str, cuda: bool, isl: int,
              steps: int = 8) -> DeviceProfile:
    """The executor's fixed time per cost-model operator on this device: one request decoding on
    one process, at tiny widths (compute is negligible there) and over the fewest layers that
    hold each layer kind, timed; the cost model's time for the same step with no fixed cost is
    taken off and the rest divided by the number of operators the cost model counts for it.
    This is the framework's price per operator here (Python and dispatch), the analogue of the
    kernel gap on a GPU engine; the run's predictions then test everything else."""
    n = calibration_layers(base.model)
    tiny = config_from_spec(base.model, "tiny")
    cfg = RefConfig(**{**{f: getattr(tiny, f) for f in RefConfig.__dataclass_fields__}, "layers": tiny.layers[:n]})
    lay = Layout()
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    previous, threads = torch.get_default_device(), torch.get_num_threads()
    torch.set_default_device(device)
    torch.set_num_threads(1)  # as the workers run (OMP_NUM_THREADS=1)
    try:
        runner = Runner(cfg, lay, Comm(lay, 0, cuda=cuda), 0, getattr(torch, dtype_name))
        nxt = runner.forward([(0, prompts(cfg, 1, isl, 0)[0], 0)], prefill=True)
        times = []
        for step in range(steps):
            t = time.perf_counter()
            nxt = runner.forward([(0, nxt, isl + step)], prefill=False)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    finally:
        torch.set_default_device(previous)
        torch.set_num_threads(threads)
        runner = None
        if cuda:
            torch.cuda.empty_cache()
    measured = sorted(times)[len(times) // 2]
    # The predicted step is linear in the fixed time per operator: t0 + operators x overhead.
    t0, t1 = (predict(run_problem(base, cfg, replace(profile, op_overhead_s=o), isl, 2 * steps, num_layers=n),
                      lay, 1).tpot_s for o in (0.0, 1.0))
    operators = t1 - t0
    return replace(profile, op_overhead_s=max((measured - t0) / operators, profile.op_overhead_s))


@dataclass(frozen=True, kw_only=True, slots=True)
class Prediction:
    ttft_s: float
    tpot_s: float
    tpot_collective_s: float
    """Time of a decode step's collectives on the rank's pipeline stage (layers' comm operators
    and the stage-to-stage send)."""


def predict(problem: Problem, lay, per_rank: int, stage: int = 0) -> Prediction:
    """What the cost model predicts for ``per_rank`` requests on each attention-dp rank."""
    ci = CostInputs.from_problem(problem)
    par = Par.of(lay.tp, lay.dp, lay.ep, lay.etp, lay.pp)
    b = max(per_rank, 1)
    decode = decode_cost(ci, par, b)
    fwd = decode.forward
    kinds = problem.model.layer_kinds
    mine = [kinds[i] for i in stage_layers(len(kinds), lay.pp)[stage]]

    def comm(ops) -> float:
        return float(sum(np.asarray(op.time_s) for op in ops if op.kind is OpKind.COMM) or 0.0)

    coll = (sum(comm(fwd.moe_layer if k is LayerKind.MOE else fwd.dense_layer) for k in mine)
            + (comm(fwd.head) if stage == lay.pp - 1 else 0.0) + float(np.asarray(fwd.pp.time_s)))
    return Prediction(ttft_s=float(prefill_cost(ci, par, b).latency_s), tpot_s=float(decode.latency_s),
                      tpot_collective_s=coll)


def decode_collective_s(report: dict, osl: int) -> float:
    """Seconds a rank spent in collectives per decode step (the first step, the prefill, left out)."""
    total = sum(report["collective_s"].values())
    return (total - report.get("first_collective_s", 0.0)) / max(osl - 1, 1)


@dataclass(frozen=True, kw_only=True, slots=True)
class RunPrediction:
    """The cost model's view of a finished run: the profile it used and one prediction per rank."""

    profile: DeviceProfile
    link_latency_s: float
    link_bw_bytes_per_s: float | None
    share: float
    per_rank: list[Prediction]


def predict_run(base: Problem, cfg: RefConfig, lay, reports: list[dict], isl: int, osl: int, dtype_name: str,
                cuda: bool) -> RunPrediction | None:
    """Predictions for every rank of a run from the link it measured and a device profile taken
    now; None for float64 runs (the cost model has no fp64 rates)."""
    if dtype_name != "float32":
        return None
    latency = statistics.median(r["collective_latency_s"] for r in reports)
    bws = [r["collective_bw_bytes_per_s"] for r in reports if r.get("collective_bw_bytes_per_s")]
    link_bw = statistics.median(bws) if bws else None
    share = 1.0 if cuda else min(1.0, cpu_cores() / lay.gpus)
    profile = calibrate(base, measure(dtype_name, cuda), dtype_name, cuda, isl)
    problem = run_problem(base, cfg, profile, isl, osl, link_latency_s=latency, link_bw_bytes_per_s=link_bw,
                          share=share)
    return RunPrediction(profile=profile, link_latency_s=latency, link_bw_bytes_per_s=link_bw, share=share,
                         per_rank=[predict(problem, lay, len(r["requests"]), r["coords"]["pp"]) for r in reports])
