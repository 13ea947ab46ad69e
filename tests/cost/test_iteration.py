"""One engine iteration by hand: CUDA graphs, kernel launches, the overlap scheduler, pipeline
cycles and two-batch overlap.

The forward pass is replaced by a stand-in of fixed GPU time and kernel count, so every figure is
pencil arithmetic on the engine numbers the test sets itself.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from meshplan.cost import iteration as it
from meshplan.cost.attention import decode_work
from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.phase import layer_time
from meshplan.cost.roofline import OpCost, OpKind
from meshplan.io.problem_file import problem_from_raw


def _ci(engine="trtllm", **fields):
    ci = CostInputs.from_problem(problem_from_raw({
        "model": "llama-3.1-8b", "gpu": "h100-sxm", "engine": {"name": engine, **fields}, "calibration": "none",
        "workload": {"isl": 1000, "osl": 100}}))
    return ci


@pytest.fixture
def gpu_pass(monkeypatch):
    """A pass of 10 ms GPU time and 1,000 kernels."""
    monkeypatch.setattr(it, "forward", lambda ci, par, w: SimpleNamespace(stage_s=np.array(0.010),
                                                                          stage_kernels=np.array(1000.0)))


WORK = decode_work(8, 1000, 1)
ENGINE = dict(host_cpu_s=2e-3, host_cpu_per_request_s=1e-4, host_gap_s=5e-4, kernel_launch_s=2e-5)


def test_graphed_pass_with_the_overlap_scheduler(gpu_pass):
    ci = _ci(overlap_scheduler=True, **ENGINE)
    r = it.iteration(ci, Par.of(1, 1, 1, 1, 1), WORK, graphed=True)
    # One graph launch: 20 us. Host CPU 2 ms + 8 requests x 0.1 ms = 2.8 ms, prepared while the GPU
    # runs: max(10, 0.02 + 2.8) = 10 ms, plus the 0.5 ms gap the scheduler cannot hide = 10.5 ms.
    assert math.isclose(float(r.launch_s), 2e-5)
    assert math.isclose(float(r.host_s), 2.8e-3)
    assert math.isclose(float(r.cycle_s), 0.0105)
    assert math.isclose(float(r.exposed_s), 5e-4)


def test_eager_pass_is_bound_by_its_launches(gpu_pass):
    ci = _ci(overlap_scheduler=True, **ENGINE)
    r = it.iteration(ci, Par.of(1, 1, 1, 1, 1), WORK, graphed=False)
    # 1,000 kernels x 20 us = 20 ms of launching > 10 ms of GPU: the GPU waits on the CPU.
    # busy = max(10, 20) = 20 ms; with the overlap scheduler max(10, 20 + 2.8) + 0.5 = 23.3 ms.
    assert math.isclose(float(r.pass_s), 0.020)
    assert math.isclose(float(r.cycle_s), 0.0233)


def test_without_the_overlap_scheduler_host_time_adds(gpu_pass):
    ci = _ci(overlap_scheduler=False, **ENGINE)
    r = it.iteration(ci, Par.of(1, 1, 1, 1, 1), WORK, graphed=True)
    # max(10, 0.02) + 2.8 + 0.5 = 13.3 ms; all 2.8 ms of host time is exposed, plus the gap.
    assert math.isclose(float(r.cycle_s), 0.0133)
    assert math.isclose(float(r.exposed_s), 3.3e-3)


def test_pipeline_cycle_goes_through_every_stage(gpu_pass):
    # pp 4, and the engine turns the overlap scheduler off under pp: the micro-batch's next pass
    # starts after 4 stage passes of 10 ms and the host's 2.8 ms + 0.5 ms: 43.3 ms.
    ci = _ci(overlap_scheduler=True, overlap_with_pp=False, **ENGINE)
    r = it.iteration(ci, Par.of(1, 1, 1, 1, 4), WORK, graphed=True)
    assert math.isclose(float(r.cycle_s), 4 * 0.010 + 2.8e-3 + 5e-4)
    # With overlap under pp the host CPU hides and only the gap stays: 40.5 ms.
    ci = _ci(overlap_scheduler=True, overlap_with_pp=True, **ENGINE)
    r = it.iteration(ci, Par.of(1, 1, 1, 1, 4), WORK, graphed=True)
    assert math.isclose(float(r.cycle_s), 0.0405)


def test_graph_limit_follows_tp():
    ci = _ci(cuda_graph_max_batch=[{"min_memory_gib": 0, "value": 160}],
             cuda_graph_max_batch_tp4=[{"min_memory_gib": 0, "value": 256}])
    limits = it.graph_limit(ci, Par.of(np.array([1, 2, 4, 8]), 1, 1, 1, 1))
    assert limits.tolist() == [160, 160, 256, 256]


def test_two_batch_overlap_hides_communication_under_the_other_half():
    # Two halves of 3 ms compute and 2 ms all-to-all each: C = 6, M = 4. With 80% overlap,
    # 0.8 x 4 = 3.2 ms hides under compute: 6 + 4 - 3.2 = 6.8 ms (vs 10 ms one after the other).
    half = [OpCost(name="gemm", kind=OpKind.COMPUTE, time_s=0.003), OpCost(name="a2a", kind=OpKind.COMM, time_s=0.002)]
    assert math.isclose(float(layer_time([], half, 0.8)), 0.0068)
    # Communication larger than compute: at most the compute hides it. C = 2, M = 8:
    # min(0.8 x 8, 2) = 2 -> 2 + 8 - 2 = 8 ms.
    half = [OpCost(name="gemm", kind=OpKind.COMPUTE, time_s=0.001), OpCost(name="a2a", kind=OpKind.COMM, time_s=0.004)]
    assert math.isclose(float(layer_time([], half, 0.8)), 0.008)
    # Without TBO the full-size operators simply add.
    full = [OpCost(name="gemm", kind=OpKind.COMPUTE, time_s=0.005), OpCost(name="a2a", kind=OpKind.COMM, time_s=0.004)]
    assert math.isclose(float(layer_time(full, None, 0.8)), 0.009)
