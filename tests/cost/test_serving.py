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


def test_aggregated_fuses_chunks_with_decode():
    ci, par = _ci(), Par.of(1, 1, 1, 1, 1)
    dec = SimpleNamespace(step_s=10e-3, B=32.0)
    one = SimpleNamespace(step_s=8e-3)
    chunk = SimpleNamespace(step_s=20e-3, B=8.192)  # 8,192 tokens of 1,000-token prompts
    s = aggregated(ci, par, dec, chunk, one)
    # Decode marginal m = max(10 - 8 ms, 20 ms x 32/8192 = 0.078 ms) = 2 ms; a chunk pass 22 ms.
    # Per request: 1000/8192 chunk passes x 22 ms = 2.6855 ms, plus pure decode passes
    # (100/32 - 1000/8192) x 10 ms = 30.029 ms -> x = 1 / 32.715 ms = 30.567 requests/s.
    x = 1 / (1000 / 8192 * 22e-3 + (100 / 32 - 1000 / 8192) * 10e-3)
    assert math.isclose(float(s.output_tok_s_per_gpu), x * 100)
    # TPOT: every pass moves all 32 sequences one token: 32 / (x * 100) = 10.47 ms.
    assert math.isclose(float(s.tpot_s), 32 / (x * 100))
    # TTFT: one chunk pass (the prompt fits in a chunk, pp = 1) plus the pass in flight.
    assert math.isclose(float(s.ttft_s), 22e-3 + 10e-3)


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
