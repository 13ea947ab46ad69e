"""A disaggregated decode pool runs the engine's decode-server loop, with its own exposed host time
(EngineProfile.decode_pool_host_gap_s); unset, it is the engine's host_gap_s."""

from types import SimpleNamespace

import numpy as np
import pytest

from meshplan.cost import iteration as it
from meshplan.cost.attention import decode_work
from meshplan.cost.closed_loop import solve_disaggregated
from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.fidelity.factors import FACTORS
from meshplan.io.problem_file import problem_from_raw

ONE = Par.of(1, 1, 1, 1, 1)


def _ci(**engine):
    return CostInputs.from_problem(problem_from_raw({
        "model": "llama-3.1-8b", "gpu": "h100-sxm", "engine": {"name": "sglang", "host_gap_s": 5e-4, **engine},
        "calibration": "none", "workload": {"isl": 1000, "osl": 100}}))


def test_an_unset_decode_pool_gap_is_the_engines_gap():
    ci = _ci()
    assert ci.decode_pool_host_gap_s == 5e-4 and ci.for_decode_pool().host_gap_s == 5e-4


def test_a_decode_pool_iteration_pays_its_own_gap(monkeypatch):
    # A stand-in pass of 10 ms GPU time under CUDA graphs: with SGLang's overlap scheduler the cycle
    # is max(GPU, launch + host CPU) + the exposed gap, so the pool's cycle differs from the
    # aggregated one by exactly 0.1 ms - 0.5 ms = -0.4 ms.
    monkeypatch.setattr(it, "forward", lambda ci, par, w: SimpleNamespace(stage_s=np.array(0.010),
                                                                          stage_kernels=np.array(1000.0)))
    ci = _ci(decode_pool_host_gap_s=1e-4)
    work = decode_work(8, 1000, 1)
    aggregated = float(it.iteration(ci, ONE, work, True).cycle_s)
    pool = float(it.iteration(ci.for_decode_pool(), ONE, work, True).cycle_s)
    assert pool - aggregated == pytest.approx(-4e-4, abs=1e-12)


def test_the_disaggregated_closed_loop_costs_its_decode_pool_with_the_pools_gap():
    # 8 clients over 2 prefill and 1 decode instance of Llama-3.1-8B on one H100 each: a 2 ms larger
    # gap per decode iteration adds 2 ms to each decode step, so to TPOT; the batch the loop keeps
    # decoding moves a little with it (under 1% of the 2 ms here).
    low, high = (solve_disaggregated(_ci(decode_pool_host_gap_s=g), ONE, 2, ONE, 1, 8.0) for g in (0.0, 2e-3))
    assert float(high.tpot_s - low.tpot_s) == pytest.approx(2e-3, rel=0.01)


def test_fitting_the_host_gap_moves_a_decode_pool_that_has_none_of_its_own():
    host_gap = next(f for f in FACTORS if f.name == "sglang.host_gap_s")
    assert host_gap.apply(_ci(), 1e-3) == {"host_gap_s": 1e-3, "decode_pool_host_gap_s": 1e-3}
    assert host_gap.apply(_ci(decode_pool_host_gap_s=2e-4), 1e-3) == {"host_gap_s": 1e-3}
