"""Aggregated and disaggregated serving formulas, by hand on synthetic phase figures."""

import math
from types import SimpleNamespace

from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.serving import aggregated, disaggregated, kv_transfer_s
from meshplan.io.problem_file import problem_from_raw


def _ci():
    return CostInputs.from_problem(problem_from_raw({
        "model": "llama-3.1-8b", "gpu": "h100-sxm", "workload": {"isl": 1000, "osl": 100}}))


def test_aggregated_time_sharing():
    ci, par = _ci(), Par.of(1, 1, 1, 1, 1)
    dec = SimpleNamespace(step_s=10e-3, B=32.0)
    chunk = SimpleNamespace(step_s=20e-3, B=8.192)  # 8,192 tokens of 1,000-token prompts
    s = aggregated(ci, par, dec, chunk)
    # Per request: 1000 prefill tokens x 20 ms / 8192 = 2.4414 ms, and 100 steps x 10 ms / 32 = 31.25 ms
    # of the rank's time -> x = 1 / 33.6914 ms = 29.681 requests/s; output 2,968.1 tok/s per GPU.
    x = 1 / (1000 * 20e-3 / 8192 + 100 * 10e-3 / 32)
    assert math.isclose(float(s.output_tok_s_per_gpu), x * 100)
    f = x * 1000 * 20e-3 / 8192  # prefill share 0.07246
    assert math.isclose(float(s.tpot_s), 10e-3 / (1 - f))
    # TTFT: one 8,192-token pass (the prompt fits) plus the decode step it may wait for.
    assert math.isclose(float(s.ttft_s), 20e-3 + 10e-3)


def test_disaggregated_gpu_seconds_add_up():
    ci = _ci()
    pre_par, dec_par = Par.of(1, 1, 1, 1, 1), Par.of(2, 1, 1, 1, 1)
    pre = SimpleNamespace(requests_per_s=10.0, latency_s=0.1)
    dec = SimpleNamespace(requests_per_s=5.0, latency_s=0.02, B=16.0)
    s = disaggregated(ci, pre_par, pre, dec_par, dec)
    # GPU-seconds per request: prefill 1/10 + decode 2/5 = 0.5 -> 2 requests/s per GPU -> 200 tok/s.
    assert math.isclose(float(s.output_tok_s_per_gpu), 200.0)
    assert math.isclose(float(s.ttft_s), 0.1 + float(kv_transfer_s(ci, pre_par)))
    # KV transfer: 1000 tokens x 131,072 B/token (2 x 32 x 8 x 128 x 2) / (50 GB/s x 0.8) + 30 us.
    assert math.isclose(float(kv_transfer_s(ci, pre_par)), 1000 * 131072 / 40e9 + 30e-6)
