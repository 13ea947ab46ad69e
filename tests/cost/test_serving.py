"""Serving formulas by hand: the closed loop's steady state on a stand-in step model.

The step model (cost.iteration) is replaced by a linear stand-in so that every figure below can
be followed with a pencil: a decode iteration takes 10 ms and prefill adds 5 us per prompt token.
"""

import math
from types import SimpleNamespace

import numpy as np

from meshplan.cost.capacity import decode_capacity
from meshplan.cost.queueing import RHO_MAX, md1_wait_capped_s
from meshplan.cost.closed_loop import (adp_balance_wait_s, harmonic, secant_fixed_point,
                                       solve_aggregated, solve_disaggregated)
from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.serving import disaggregated, kv_transfer_s
from meshplan.io.problem_file import problem_from_raw


def _ci(engine="trtllm", osl=101, isl=1000, model="llama-3.1-8b", coherence=1.0, **workload):
    return CostInputs.from_problem(problem_from_raw({
        "model": model, "gpu": "h100-sxm", "engine": engine, "calibration": "none",
        "workload": {"isl": isl, "osl": osl, **workload}, "assumptions": {"clump_coherence": coherence}}))


def _step(ci, par, work, graphed):
    t = 0.010 + 5e-6 * np.asarray(work.prefill_tokens, dtype=float)
    return SimpleNamespace(cycle_s=t, pass_s=t, exposed_s=0.0, gpu_s=t, launch_s=0.0, draft_s=0.0)


PAR = Par.of(1, 1, 1, 1, 1)


def test_mixed_policy_prefills_clumps_beside_the_decodes():
    s = solve_aggregated(_ci(), PAR, np.array(32.0), step=_step)
    # TensorRT-LLM: budget 8192 tokens, 32 decoding -> room 8160 -> a clump of 8 prompts (8000
    # tokens) per mixed iteration, 32 / 8 = 4 mixed iterations in every cycle of 100 + 1.
    # Mixed iteration 10 + 8000 x 0.005 = 50 ms. TPOT = 97/101 x 10 + 4/101 x 50 = 11.584 ms.
    tpot = (97 * 0.010 + 4 * 0.050) / 101
    assert math.isclose(float(s.tpot_s), tpot)
    # TTFT: 1.5 decode iterations of waiting (the overlap scheduler has formed the next one) and
    # the clump's own iteration: 15 + 50 = 65 ms.
    assert math.isclose(float(s.ttft_s), 0.065)
    # Little: 32 requests / (65 ms + 100 x TPOT) per second, 101 output tokens each, one GPU.
    assert math.isclose(float(s.output_tok_s_per_gpu), 32 / (0.065 + 100 * tpot) * 101)


def test_the_runs_first_burst_adds_its_queue_once_per_run():
    steady = solve_aggregated(_ci(), PAR, np.array(32.0), step=_step)
    run = solve_aggregated(_ci(requests_per_client=4), PAR, np.array(32.0), step=_step)
    # The first 32 prompts arrive together: 4 clumps in a row, the mean one waits (4 - 1)/2
    # mixed iterations = 75 ms; one request in 4 per client is in that first burst: 18.75 ms.
    assert math.isclose(float(run.ttft_s - steady.ttft_s), 1.5 * 0.050 / 4)


def test_a_benchmark_clients_own_time_adds_to_every_ttft_and_nothing_else():
    base = solve_aggregated(_ci(), PAR, np.array(32.0), step=_step)
    slow = solve_aggregated(_ci(client_overhead_s=0.04), PAR, np.array(32.0), step=_step)
    # The client's 40 ms is added once to each request's TTFT (65 ms -> 105 ms); the engine's
    # iterations, so TPOT, do not change.
    assert math.isclose(float(slow.ttft_s), 0.065 + 0.040)
    assert math.isclose(float(slow.tpot_s), float(base.tpot_s))


def test_the_first_wave_arrives_whole_even_when_later_clumps_break_up():
    steady = solve_aggregated(_ci(coherence=0.5), PAR, np.array(32.0), step=_step)
    run = solve_aggregated(_ci(coherence=0.5, requests_per_client=4), PAR, np.array(32.0), step=_step)
    # Later clumps keep half their size: 1 + 0.5 x (8 - 1) = 4.5 prompts (4,500 tokens, 32.5 ms):
    # TTFT = 1.5 x 10 + 32.5 = 47.5 ms.
    assert math.isclose(float(steady.ttft_s), 0.0475)
    # The first 32 arrive at once and go in whole clumps of 8 (50 ms): 4 in a row, the mean one
    # waits (4 - 1)/2 x 50 = 75 ms beyond its own, once in 4 requests per client: 18.75 ms.
    assert math.isclose(float(run.ttft_s - steady.ttft_s), 1.5 * 0.050 / 4)


def test_separate_policy_prefills_whole_waves_first():
    s = solve_aggregated(_ci(engine="sglang"), PAR, np.array(32.0), step=_step)
    # SGLang on an 80 GB GPU: prefill batches of 8,192 tokens; a wave of 32 x 1000 tokens is 4
    # batches of 8,000 (50 ms each). The j-th batch waits j batches: TTFT = 1.5 x 10 + (4 + 1)/2 x 50
    # = 140 ms; decoding resumes after all 4, so TPOT = 10 + (4 - 1)/2 x 50 / 100 = 10.75 ms.
    assert math.isclose(float(s.ttft_s), 0.140)
    assert math.isclose(float(s.tpot_s), 0.01075)


def test_sglangs_receive_interval_makes_a_prompt_wait_half_of_it():
    s = solve_aggregated(_ci(engine={"name": "sglang", "recv_interval_iters": 30}), PAR, np.array(32.0), step=_step)
    # As above, but new requests are read once every 30 decode iterations: the mean prompt waits 15
    # of them, and one more for the overlap scheduler's formed iteration, 160 ms, then its wave's
    # (4 + 1)/2 prefill batches of 50 ms: TTFT = 160 + 125 = 285 ms. TPOT does not change.
    assert math.isclose(float(s.ttft_s), 0.285)
    assert math.isclose(float(s.tpot_s), 0.01075)


def _spread(coherence, **workload):
    return CostInputs.from_problem(problem_from_raw({
        "model": "llama-3.1-8b", "gpu": "h100-sxm", "engine": {"name": "sglang", "recv_interval_iters": 30},
        "calibration": "none", "workload": {"isl": 1000, "osl": [81, 121], **workload},
        "assumptions": {"wave_coherence": coherence}}))


def test_output_lengths_that_differ_break_sglangs_waves_into_groups():
    s = solve_aggregated(_spread(0.0), PAR, np.array(32.0), step=_step)
    # Outputs of 81-121 tokens (mean 101): a wave's 32 requests end over 2 x (121 - 101) = 40
    # decode iterations, and the engine reads new requests every 30: 32 x 30 / 40 = 24 prompts
    # arrive together, 24,000 tokens in 3 batches of 8,000 (50 ms each). TTFT = 160 ms of waiting
    # (as in the test above) + (3 + 1)/2 x 50 = 260 ms.
    assert math.isclose(float(s.ttft_s), 0.260)
    # A lifetime holds 32 / 24 groups of 3 batches, 200 ms of prefill; a request waits 100 ms of it
    # before its first token and the rest pauses its decoding: TPOT = 10 + (200 - 100) / 100 = 11 ms.
    assert math.isclose(float(s.tpot_s), 0.011)
    # Half the wave's coherence: 24 + 0.5 x (32 - 24) = 28 prompts, 28,000 tokens in 4 batches of
    # 7,000 (45 ms): TTFT = 160 + (4 + 1)/2 x 45 = 272.5 ms.
    half = solve_aggregated(_spread(0.5), PAR, np.array(32.0), step=_step)
    assert math.isclose(float(half.ttft_s), 0.2725)
    # Whole waves (coherence 1) are the fixed-length figures: 285 ms, 10.75 ms.
    whole = solve_aggregated(_spread(1.0), PAR, np.array(32.0), step=_step)
    assert math.isclose(float(whole.ttft_s), 0.285) and math.isclose(float(whole.tpot_s), 0.01075)


def test_a_runs_first_wave_reaches_sglang_whole_even_when_its_lengths_differ():
    steady = solve_aggregated(_spread(0.0), PAR, np.array(32.0), step=_step)
    run = solve_aggregated(_spread(0.0, requests_per_client=4), PAR, np.array(32.0), step=_step)
    # The first 32 prompts arrive at once: 4 batches, (4 + 1)/2 x 50 = 125 ms behind the wait where
    # a group of 24 has 100 ms; one request in 4 per client is in that wave: + 25 / 4 = 6.25 ms.
    assert math.isclose(float(run.ttft_s - steady.ttft_s), 0.025 / 4)


def test_a_prefix_cache_leaves_prefill_only_the_uncached_tokens():
    ci = _ci(prefix_hit_rate=0.5)
    s = solve_aggregated(ci, PAR, np.array(32.0), step=_step)
    # Half of each 1,000-token prompt is cached: 500 computed. Room 8,160 holds 16 of them (8,000
    # tokens, 50 ms), so 32 / 16 = 2 mixed iterations per cycle of 101:
    # TPOT = (99 x 10 + 2 x 50) / 101 = 10.792 ms (11.584 without the cache); TTFT = 15 + 50 = 65 ms.
    tpot = (99 * 0.010 + 2 * 0.050) / 101
    assert math.isclose(float(s.tpot_s), tpot) and math.isclose(float(s.ttft_s), 0.065)
    # Input tokens served count whole prompts, cached or not: 1,000 per request.
    assert math.isclose(float(s.input_tok_s_per_gpu), 32 / (0.065 + 100 * tpot) * 1000)
    # The computed tokens attend to the 500 cached and, causally, half their own: 750 keys each.
    assert ci.workload.computed_prompt_tokens == 500
    assert ci.workload.prefill_attended_tokens == 750


def test_requests_beyond_the_kv_capacity_wait_for_a_slot():
    ci = _ci(isl=60000, osl=2001)
    cap = float(decode_capacity(ci, PAR))
    at, over = (solve_aggregated(ci, PAR, np.array(b), step=_step) for b in (cap, cap + 10))
    # Ten more requests than fit wait for slots freed at the loop's completion rate (Little):
    # 10 / (cap / (TTFT + 2000 x TPOT)).
    rate = cap / (float(at.ttft_s) + 2000 * float(at.tpot_s))
    assert math.isclose(float(over.ttft_s - at.ttft_s), 10 / rate)
    assert math.isclose(float(over.tpot_s), float(at.tpot_s))


BALANCED = {"name": "trtllm", "attention_dp_balance": True, "adp_balance_timeout_iters": 60,
            "adp_balance_batching_wait_iters": 10}


def test_harmonic_numbers():
    # H(1) = 1, H(2) = 1.5, H(8) = 761/280 = 2.717857...; the series is within 1/(120 n^4).
    assert math.isclose(float(harmonic(1)), 1.0, abs_tol=1e-2)
    assert math.isclose(float(harmonic(2)), 1.5, abs_tol=1e-3)
    assert math.isclose(float(harmonic(8)), 761 / 280, abs_tol=1e-5)


def test_attention_dp_balancing_holds_a_prompt_until_every_rank_has_one_or_the_timeout():
    ci = _ci(engine=BALANCED)
    # dp 2, 4 requests per rank sending 4 prompts/s per rank: 8/s reach the instance; both ranks
    # have one after 2 x H(2) = 3 arrivals (0.375 s), under the 60 x 20 ms = 1.2 s timeout, then 10
    # iterations (0.2 s) of batching wait: a 0.575 s cycle, half of it waited: 0.2875 s.
    two = Par.of(1, 2, 1, 1, 1)
    assert math.isclose(float(adp_balance_wait_s(ci, two, 4.0, 4.0, 0.020)), 0.2875, rel_tol=1e-3)
    # dp 8 at 1 prompt/s per rank (8/s): 8 x H(8) = 21.7 arrivals take 2.72 s, past the
    # timeout: the cycle is the timeout's 1.2 s and the mean wait 0.6 s.
    eight = Par.of(1, 8, 1, 1, 1)
    assert math.isclose(float(adp_balance_wait_s(ci, eight, 4.0, 1.0, 0.020)), 0.6)
    # A single request per rank has nothing to decode while its next prompt waits: released at once.
    assert float(adp_balance_wait_s(ci, eight, 1.0, 1.0, 0.020)) == 0.0
    # No attention dp, or the engine's default (balancing off): no wait.
    assert float(adp_balance_wait_s(ci, PAR, 4.0, 4.0, 0.020)) == 0.0
    assert float(adp_balance_wait_s(_ci(), eight, 4.0, 1.0, 0.020)) == 0.0


def test_attention_dp_balancing_adds_its_wait_to_ttft_alone():
    eight = Par.of(1, 8, 1, 1, 1)
    base = solve_aggregated(_ci(), eight, np.array(32.0), step=_step)
    held = solve_aggregated(_ci(engine=dict(BALANCED, adp_balance_batching_wait_iters=0)), eight,
                            np.array(32.0), step=_step)
    # As in the first test: TTFT 65 ms, TPOT 11.584 ms, so a request lives 65 + 100 x 11.584 =
    # 1,223.4 ms and each rank sends 32 / 1.2234 = 26.156 prompts/s, 209.25/s over 8 ranks. Every rank
    # has one after 8 x H(8) = 21.74 arrivals, 103.9 ms, under the 60-iteration timeout (695 ms):
    # the mean prompt waits half of it, 51.96 ms, and TTFT is 116.96 ms; TPOT does not change.
    assert math.isclose(float(base.ttft_s), 0.065)
    assert math.isclose(float(held.ttft_s), 0.065 + 0.05196, rel_tol=1e-3)
    assert math.isclose(float(held.tpot_s), float(base.tpot_s))


def test_disaggregated_loop_queues_prompts_at_the_prefill_pool():
    ci = _ci(osl=101)
    out = solve_disaggregated(ci, PAR, 1, PAR, 2, 8.0, step=_step)
    # Decode: 10 ms per token (the stand-in's decode iteration does not depend on the batch).
    assert math.isclose(float(out.tpot_s), 0.010)
    # Prefill alone: 10 + 1000 x 0.005 = 15 ms; a full 8192-token iteration 50.96 ms, so the pool
    # serves 8192 / 0.05096 / 1000 = 160.75 prompts/s. TTFT = 15 ms + 1.5 x 15 ms of waiting + the KV
    # transfer + one decode iteration + the M/D/1 wait at the loop's rate.
    single, transfer = 0.015, float(kv_transfer_s(ci, PAR))
    capacity = 8192 / (0.010 + 5e-6 * 8192) / 1000
    rate = float(out.output_tok_s) / 101
    expected = single + 1.5 * single + transfer + 0.010 + float(md1_wait_capped_s(rate / capacity, single))
    assert math.isclose(float(out.ttft_s), expected)
    # Little's law closes the loop: 8 requests = rate x (TTFT + 100 x TPOT).
    assert math.isclose(rate * (float(out.ttft_s) + 100 * 0.010), 8.0, rel_tol=1e-3)


def test_secant_fixed_point():
    # x = 1 + x / 2 from 4: the plain step gives 3, the secant through (4, -1) and (3, -0.5) gives 2.
    x, twice = secant_fixed_point(lambda x: (1.0 + x / 2.0, 2.0 * x), 4.0, 0.0, 10.0)
    assert math.isclose(float(x), 2.0) and math.isclose(float(twice), 4.0)
    # Elementwise over arrays, within the bounds: x = 1 + x / 2 and x = 3 + x / 2 (fixed point 6,
    # clipped to the upper bound 5).
    x, _ = secant_fixed_point(lambda x: (np.array([1.0, 3.0]) + x / 2.0, x), np.array([4.0, 4.0]), 0.0, 5.0)
    assert np.allclose(x, [2.0, 5.0])


def _busier_step(ci, par, work, graphed):
    # As _step, and each decoding sequence adds 0.1 ms to the iteration.
    t = 0.010 + 5e-6 * np.asarray(work.prefill_tokens, dtype=float) + 1e-4 * np.asarray(work.decode_seqs, dtype=float)
    return SimpleNamespace(cycle_s=t, pass_s=t, exposed_s=0.0, gpu_s=t, launch_s=0.0, draft_s=0.0)


def test_a_prefill_bound_loop_decodes_what_its_rate_sends():
    ci = _ci(osl=101)
    assert float(decode_capacity(ci, PAR)) >= 200  # 4000 requests over 20 decode instances fit
    out = solve_disaggregated(ci, PAR, 1, PAR, 20, 4000.0, step=_busier_step)
    # One prefill instance serves 8192 / (10 ms + 8192 x 5 us) / 1000 = 160.75 prompts/s and the loop
    # runs at RHO_MAX of that, 152.716/s. Little's law on the 20 decode ranks: run = 152.716 x 100
    # iterations x TPOT / 20 with TPOT = 10 ms + 0.1 ms x run, so run = 7.6358 / (1 - 0.076358) =
    # 8.2670 and TPOT = 10.827 ms (not the 30 ms of 200 requests per rank).
    rate = RHO_MAX * 8192 / (0.010 + 5e-6 * 8192) / 1000
    run = rate * 100 * 0.010 / 20 / (1 - rate * 100 * 1e-4 / 20)
    assert math.isclose(float(out.tpot_s), 0.010 + 1e-4 * run, rel_tol=1e-6)
    assert math.isclose(float(out.output_tok_s), rate * 101, rel_tol=1e-9)
    # The rest of the 4000 wait for their prompt: TTFT = 4000 / rate - 100 x TPOT (26.19 - 1.08 s).
    expected = 4000 / rate - 100 * float(out.tpot_s) + ci.request_overhead_s + ci.client_overhead_s
    assert math.isclose(float(out.ttft_s), expected, rel_tol=1e-6)


def test_disaggregated_gpu_seconds_add_up():
    ci = _ci()
    pre_par, dec_par = Par.of(1, 1, 1, 1, 1), Par.of(2, 1, 1, 1, 1)
    pre = SimpleNamespace(requests_per_s=10.0, latency_s=0.1)
    dec = SimpleNamespace(requests_per_s=5.0, latency_s=0.02, B=16.0)
    s = disaggregated(ci, pre_par, pre, dec_par, dec)
    # GPU-seconds per request: prefill 1/10 + decode 2/5 = 0.5 -> 2 requests/s per GPU, x 101 output
    # tokens (_ci's OSL) -> 202 tok/s.
    assert math.isclose(float(s.output_tok_s_per_gpu), 202.0)
    assert math.isclose(float(s.ttft_s), 0.1 + float(kv_transfer_s(ci, pre_par)))
    # KV transfer: 1000 tokens x 131,072 B/token (2 x 32 x 8 x 128 x 2) / (50 GB/s x 0.8) + 30 us.
    assert math.isclose(float(kv_transfer_s(ci, pre_par)), 1000 * 131072 / 40e9 + 30e-6)
