"""The simulator's scheduler by hand, on a stand-in step model (a decode iteration takes 10 ms and
each prompt token adds 10 us) so that every time below can be followed with a pencil."""

import math
from dataclasses import replace

import numpy as np

from meshplan.simulate.engine import Policy, Requests, draft_tokens_accepted
from meshplan.simulate.loop import Pool, overhead_draw, simulate, simulate_pools
from meshplan.simulate.requests import Arrivals, RequestStream, closed_loop
from meshplan.simulate.summary import per_request, summarise
from meshplan.specs.workload import PoolRole


class Linear:
    """Stand-in step table: 10 ms + 10 us per prompt token, whatever the batch."""

    def time_s(self, decode_seqs, prefill_tokens, context):
        return 0.010 + 1e-5 * prefill_tokens


def _policy(mixed=True, budget=1000, kv=10**9, reserve=False, running=1000, chunked=True):
    return Policy(mixed=mixed, chunked=chunked, budget=budget, max_running=running, kv_tokens=kv, reserve_full=reserve)


def _trace(send, isl, osl):
    return RequestStream(arrivals=Arrivals.TRACE, isl=np.array(isl), osl=np.array(osl), send_s=np.array(send, float))


def _run(stream, policy, overlap=False, overhead=0.0, dp=1, pp=1):
    return simulate(stream, Linear(), policy, dp=dp, pp=pp, overlap=overlap, overhead_s=overhead, keep_spans=True)


def test_one_client_prefills_then_decodes_then_sends_again():
    res = _run(closed_loop(1, 2, np.array([100, 100]), np.array([3, 3])), _policy())
    ttft, tpot, latency = per_request(res)
    # Prefill of 100 tokens: 10 + 100 x 0.01 = 11 ms, its first token at 11 ms; two decode
    # iterations of 10 ms: finished at 31 ms. TPOT = (31 - 11) / (3 - 1) = 10 ms.
    assert np.allclose(ttft, [0.011, 0.011]) and np.allclose(tpot, [0.010, 0.010])
    # The client's second request is sent at 31 ms and finishes 31 ms later.
    assert np.allclose(res.requests.send_s, [0.0, 0.031]) and math.isclose(res.end_s, 0.062)
    assert res.iterations == 6


def test_mixed_policy_runs_a_prompt_beside_the_decodes_and_chunks_it_by_the_budget():
    # Request 0 (10-token prompt, 5 out) starts at 0; request 1 (1,500 tokens) arrives at 15 ms.
    res = _run(_trace([0.0, 0.015], [10, 1500], [5, 2]), _policy(budget=1000))
    r = res.requests
    # 0: prefill to 10.1 ms (token 1), a decode to 20.1 ms (token 2). 1 arrived during that
    # decode, so the iteration from 20.1 ms carries 0's decode (token 3) and 999 of 1's tokens
    # (budget 1000 less one decode): 10 + 9.99 = 19.99 ms -> 40.09 ms; the next, 0's decode
    # (token 4) with 1's remaining 501 tokens: 15.01 ms -> 55.10 ms, 1's first token. Both
    # finish in the decode after: 65.10 ms.
    assert math.isclose(r.first_s[0], 0.0101) and math.isclose(r.finish_s[0], 0.0651)
    assert math.isclose(r.first_s[1], 0.0551) and math.isclose(r.finish_s[1], 0.0651)


def test_separate_policy_pauses_decoding_for_a_waiting_prompt():
    res = _run(_trace([0.0, 0.015], [10, 500], [5, 2]), _policy(mixed=False, budget=1000))
    r = res.requests
    # 0's prefill to 10.1 ms (token 1), a decode to 20.1 ms (token 2); at 20.1 ms the waiting
    # prompt is prefilled alone (10 + 5 = 15 ms -> 35.1 ms, 1's first token) while 0 waits; then
    # both decode: 1 one more token (45.1 ms), 0 three more (45.1, 55.1, 65.1 ms).
    assert math.isclose(r.first_s[1], 0.0351) and math.isclose(r.finish_s[1], 0.0451)
    assert math.isclose(r.finish_s[0], 0.0651)
    tpot = per_request(res)[1]
    assert math.isclose(tpot[0], (0.0651 - 0.0101) / 4)  # the 15 ms pause shows in request 0's TPOT


def test_the_overlap_scheduler_takes_a_new_request_one_iteration_later():
    stream = _trace([0.0, 0.005], [10, 10], [20, 2])
    plain = _run(stream, _policy()).requests
    ahead = _run(stream, _policy(), overlap=True).requests
    # Request 1 arrives at 5 ms during the first iteration (0's prefill, 0 to 10.1 ms). Without
    # overlap it joins the next (with 0's decode: 10.1 to 20.2 ms); with it, that one was formed
    # already (0's decode alone, 10.1 to 20.1 ms): it joins the third (20.1 to 30.2 ms).
    assert math.isclose(plain.first_s[1], 0.0202) and math.isclose(ahead.first_s[1], 0.0302)


def test_preemption_happens_exactly_when_the_kv_cache_runs_out():
    # Two requests of 10 prompt + 20 output tokens hold 30 tokens each at their last step: 60 in
    # all. With 60 tokens of KV nothing is preempted; with 59 the last step finds no free token.
    stream = _trace([0.0, 0.0], [10, 10], [20, 20])
    assert _run(stream, _policy(kv=60)).preemptions == 0
    short = _run(stream, _policy(kv=59))
    assert short.preemptions == 1 and short.requests.preempted.tolist() == [0, 1]
    # The preempted request recomputes its prompt and tokens and still delivers all 20.
    assert short.requests.generated.tolist() == [20, 20]


def test_an_engine_that_reserves_the_whole_length_admits_only_what_fits_and_never_preempts():
    stream = _trace([0.0, 0.0], [10, 10], [20, 20])
    res = _run(stream, _policy(kv=59, reserve=True))
    r = res.requests
    # 30 tokens reserved each: the second waits until the first finishes, then runs.
    assert res.preemptions == 0 and r.first_s[1] >= r.finish_s[0]


def test_attention_dp_ranks_share_the_requests_and_step_together():
    res = _run(closed_loop(4, 4, np.full(4, 100), np.full(4, 2)), _policy(), dp=2)
    # Four clients over two ranks: two prompts per rank, prefilled together (200 tokens, 12 ms).
    assert np.allclose(res.requests.first_s, 0.012) and res.iterations == 2


def test_a_run_of_identical_decode_iterations_is_advanced_in_one_go_and_counted_one_by_one():
    res = _run(closed_loop(1, 1, np.array([10]), np.array([101])), _policy())
    assert res.iterations == 101 and len(res.spans) == 2 and res.spans[1].count == 100
    s = summarise(res, ttft_target_s=0.02, tpot_target_s=0.005)
    # TTFT 10.1 ms meets 20 ms; TPOT 10 ms misses 5 ms: goodput 0.
    assert s.goodput == 0.0 and math.isclose(s.tpot_s.mean, 0.010)


def test_disaggregated_prompts_move_to_the_decode_pool_with_their_first_token():
    prefill = Pool(role=PoolRole.PREFILL, table=Linear(), policy=_handoff_policy(), dp=1, pp=1)
    decode = Pool(role=PoolRole.DECODE, table=Linear(), policy=_policy(), dp=1, pp=1)
    res = simulate_pools(closed_loop(1, 2, np.array([100, 100]), np.array([3, 3])), [prefill, decode],
                         overhead_s=0.0, transfer_s=lambda i: 0.005, keep_spans=True)
    ttft, tpot, _ = per_request(res)
    # Prefill 100 tokens: 11 ms; the KV cache and first token reach the decode pool 5 ms later
    # (16 ms); two decode iterations of 10 ms: done at 36 ms; the client's next request then.
    assert np.allclose(ttft, [0.016, 0.016]) and np.allclose(tpot, [0.010, 0.010])
    assert np.allclose(res.requests.finish_s, [0.036, 0.072])
    assert res.roles == ("prefill", "decode")
    # The prefill rank holds no KV cache once a prompt has left.
    assert {s.group for s in res.spans} == {0, 1}


def test_a_handed_off_request_sends_its_first_token_when_the_busy_decode_rank_takes_it_in():
    prefill = Pool(role=PoolRole.PREFILL, table=Linear(), policy=_handoff_policy(), dp=1, pp=1)
    decode = Pool(role=PoolRole.DECODE, table=Linear(), policy=_policy(), dp=1, pp=1)
    res = simulate_pools(_trace([0.0, 0.003], [100, 100], [5, 3]), [prefill, decode],
                         overhead_s=0.0, transfer_s=lambda i: 0.005)
    r = res.requests
    # Prefill pool: request 0 from 0 to 11 ms (10 + 100 x 0.01); request 1, sent at 3 ms, waits
    # for that iteration and is prefilled from 11 to 22 ms. Request 0's KV reaches the idle decode
    # rank at 16 ms, which takes it in at once: first token at 16 ms, then four decodes of 10 ms
    # (tokens 2-5), done at 56 ms. Request 1's KV arrives at 27 ms, inside the decode from 26 to
    # 36 ms: the rank takes it in at 36 ms, its first token then (TTFT 33 ms, not the 24 ms of its
    # arrival); two decodes after it, done at 56 ms too.
    assert np.allclose(r.first_s, [0.016, 0.036]) and np.allclose(r.finish_s, [0.056, 0.056])
    ttft, _, _ = per_request(res)
    assert np.allclose(ttft, [0.016, 0.033])


def _handoff_policy():
    return replace(_policy(), handoff=True)


def test_progress_is_reported_at_every_tenth_of_the_requests_finished():
    seen = []
    pool = Pool(role=PoolRole.AGGREGATED, table=Linear(), policy=_policy(), dp=1, pp=1)
    simulate_pools(closed_loop(4, 40, np.full(40, 10), np.full(40, 5)), [pool], overhead_s=0.0,
                   progress=lambda done, total: seen.append((done, total)))
    # 40 requests: a report at 4, 8, ..., 40 finished.
    assert seen == [(k, 40) for k in range(4, 41, 4)]


def test_clients_may_start_spread_and_then_never_form_a_wave():
    # Two clients, prompts of 500 tokens, 3 tokens out, budget 1,000 (mixed policy). All at once:
    # both prompts in one iteration, 10 + 1000 x 0.01 = 20 ms, both first tokens at 20 ms; they
    # decode in lockstep and come back together, so every wave waits for the whole clump.
    # Spread over 40 ms: client 1 starts at 20 ms (1/2 of it), when client 0's prompt has just
    # finished (10 + 5 = 15 ms) and its first decode runs (15 -> 25 ms); client 1's prompt rides
    # the next iteration (25 -> 40 ms), its first token 20 ms after its send.
    together = _run(closed_loop(2, 2, np.full(2, 500), np.full(2, 3)), _policy())
    spread = _run(closed_loop(2, 2, np.full(2, 500), np.full(2, 3), start_spread_s=0.040), _policy())
    assert np.allclose(together.requests.send_s, [0.0, 0.0])
    assert np.allclose(together.requests.first_s, [0.020, 0.020])
    assert np.allclose(spread.requests.send_s, [0.0, 0.020])
    assert np.allclose(spread.requests.first_s, [0.015, 0.040])
    ttft_together, _, _ = per_request(together)
    ttft_spread, _, _ = per_request(spread)
    assert ttft_spread.mean() < ttft_together.mean()


def test_a_cached_prefix_is_held_but_not_computed():
    # Two 100-token prompts at 0 s, half of each in the prefix cache: 50 tokens to compute.
    res = simulate(_trace([0.0, 0.0], [100, 100], [3, 3]), Linear(), _policy(kv=150), dp=1, pp=1, overlap=False,
                   overhead_s=0.0, hit_rate=0.5)
    r = res.requests
    assert list(r.cached) == [50, 50]
    # 0: prefill of its 50 uncached tokens, 10 + 50 x 0.01 = 10.5 ms; two decodes: done at 30.5 ms.
    assert math.isclose(r.first_s[0], 0.0105) and math.isclose(r.finish_s[0], 0.0305)
    # 1 holds its whole prompt's KV (100 tokens, cached or not) once admitted, and 150 KV tokens
    # take only one such request with room for a decode step, so it waits for 0 to finish:
    # 30.5 + 10.5 = 41 ms.
    assert math.isclose(r.first_s[1], 0.041)


def test_every_prompt_computes_at_least_its_last_token():
    r = Requests.of(np.array([1000, 7, 1]), np.array([2, 2, 2]), 0.999)
    # floor(0.999 x 1000) = 999 cached, 1 to compute; floor(6.993) = 6 of 7; a 1-token prompt
    # computes its only token.
    assert list(r.cached) == [999, 6, 0] and list(r.to_prefill) == [1, 1, 1]


def test_accepted_draft_tokens_are_the_run_of_leading_acceptances():
    rng = np.random.default_rng(1)
    # Every draft accepted: K = 3 per iteration, 5 iterations -> 15 each.
    assert draft_tokens_accepted(rng, (1.0, 1.0, 1.0), 4, 5).tolist() == [15] * 4
    # The second position always refused: the run stops at 1 whatever the third would have said.
    assert draft_tokens_accepted(rng, (1.0, 0.0, 1.0), 3, 7).tolist() == [7] * 3
    assert draft_tokens_accepted(rng, (), 3, 7).tolist() == [0] * 3
    # 0.5 each, two positions: 0.5 + 0.25 = 0.75 accepted per iteration on average.
    mean = draft_tokens_accepted(rng, (0.5, 0.5), 1000, 100).mean() / 100
    assert abs(mean - 0.75) < 0.01


def test_speculative_decoding_yields_its_accepted_run_each_iteration():
    # One request, 2-token prompt then 9 tokens out; every draft of 2 accepted: the prefill gives
    # token 1 (10.02 ms), then each 10 ms iteration 3 tokens: 4, 7, 10 -> 3 iterations, and the
    # fourth would pass the length: it stops at 9 after 3 decode iterations (1 + 3 + 3 + 2).
    pol = Policy(mixed=True, chunked=True, budget=1000, max_running=8, kv_tokens=10**6, reserve_full=False,
                 acceptance=(1.0, 1.0))
    res = _run(_trace([0.0], [2], [9]), pol)
    assert res.requests.generated.tolist() == [9]
    assert math.isclose(res.end_s, 0.01002 + 3 * 0.010)


def test_an_unchunked_prompt_over_the_budget_runs_whole_beside_the_decodes():
    # Budget 100, no chunking. Request 0 (10-token prompt, 5 out) starts at 0; request 1 (150
    # tokens, more than the budget) arrives at 15 ms. 0: prefill 10 + 0.1 = 10.1 ms, a decode to
    # 20.1 ms. From 20.1 ms the iteration carries 0's decode and, as its only prompt, all of 1's
    # 150 tokens (the closed form costs it so): 10 + 1.5 = 11.5 ms -> 1's first token at 31.6 ms,
    # not after 0 has finished.
    res = _run(_trace([0.0, 0.015], [10, 150], [5, 2]), _policy(budget=100, chunked=False))
    assert math.isclose(res.requests.first_s[1], 0.0316)


def test_attention_dp_balancing_holds_a_lone_prompt_until_the_timeout():
    balanced = Policy(mixed=True, chunked=True, budget=1000, max_running=1000, kv_tokens=10**9, reserve_full=False,
                      adp_timeout_iters=5)
    # Two ranks: requests 0 and 1 (100-token prompts, 50 out) start together, one on each rank, and
    # are prefilled at once (11 ms). Request 2 (100 tokens) reaches rank 0 at 12 ms; rank 1 has no
    # prompt, so it is held: one decode iteration to 21 ms (the wait counter at 1), three more to
    # 51 ms (at 4), and the fifth iteration since the release carries it: first token at 62 ms.
    trace = _trace([0.0, 0.0, 0.012], [100, 100, 100], [50, 50, 2])
    held = _run(trace, balanced, dp=2).requests
    assert np.allclose(held.first_s, [0.011, 0.011, 0.062])
    # Without balancing it joins the iteration after its arrival: 21 ms + 11 ms = 32 ms.
    assert math.isclose(_run(trace, _policy(), dp=2).requests.first_s[2], 0.032)
    # A second prompt reaching rank 1 at 13 ms gives every rank one: both go in at 21 ms.
    both = _run(_trace([0.0, 0.0, 0.012, 0.013], [100] * 4, [50, 50, 2, 2]), balanced, dp=2).requests
    assert np.allclose(both.first_s[2:], [0.032, 0.032])
    # With a batching wait of 2 they are held two more decode iterations (21-41 ms): in at 41, out at 52.
    batching = Policy(mixed=True, chunked=True, budget=1000, max_running=1000, kv_tokens=10**9, reserve_full=False,
                      adp_timeout_iters=5, adp_batching_iters=2)
    late = _run(_trace([0.0, 0.0, 0.012, 0.013], [100] * 4, [50, 50, 2, 2]), batching, dp=2).requests
    assert np.allclose(late.first_s[2:], [0.052, 0.052])


def test_sglangs_receive_interval_takes_new_requests_in_every_so_many_decode_iterations():
    every3 = Policy(mixed=False, chunked=True, budget=1000, max_running=1000, kv_tokens=10**9, reserve_full=False,
                    recv_interval=3)
    # Request 0 (100-token prompt, 50 out) is prefilled by 11 ms; the next iteration reads the queue
    # (one follows every prefill) and finds nothing. Request 1 (100 tokens) arrives at 12 ms, during
    # the first decode iteration (11-21 ms); the queue is read again after three decode iterations,
    # at 41 ms, and its prefill ends at 52 ms.
    trace = _trace([0.0, 0.012], [100, 100], [50, 2])
    res = _run(trace, every3).requests
    assert np.allclose(res.first_s, [0.011, 0.052])
    # Read at every iteration it joins the next one, at 21 ms: first token at 32 ms.
    assert math.isclose(_run(trace, _policy(mixed=False)).requests.first_s[1], 0.032)


def test_overheads_are_drawn_with_the_mean_and_spread_asked():
    # cv 0: every request's overhead is the mean itself.
    assert {overhead_draw(0.05, 0.0)() for _ in range(10)} == {0.05}
    # cv 1 (exponential) and 0.5, 20,000 draws: the sample mean's standard error is cv x 0.05 /
    # sqrt(20,000) = 0.7% of the mean at cv 1, so 3% is over four of them; the sample standard
    # deviation should be cv x 0.05 (0.05 and 0.025 s) within 5%.
    for cv in (1.0, 0.5):
        draw = overhead_draw(0.05, cv)
        x = np.array([draw() for _ in range(20_000)])
        assert abs(x.mean() / 0.05 - 1.0) < 0.03 and abs(x.std() / (cv * 0.05) - 1.0) < 0.05
        assert x.min() > 0.0


def test_one_overhead_for_all_keeps_a_clump_whole_and_dispersed_overheads_dissolve_it():
    # Four clients with fixed lengths (10-token prompts, 5 out) start together: with the same 20 ms
    # overhead for every request their prompts reach the engine together, are prefilled in one
    # iteration (40 tokens), decode in lockstep, finish together and come back together, every time.
    stream = closed_loop(4, 40, np.full(40, 10), np.full(40, 5))
    whole = simulate(stream, Linear(), _policy(), dp=1, pp=1, overlap=False, overhead_s=0.02, keep_spans=True)
    assert {s.prefill_tokens for s in whole.spans if s.prefill_tokens} == {40}
    # Overheads drawn around the same mean (exponential) spread their arrivals over more than an
    # iteration (10 ms), so some prefill iterations carry fewer than the four prompts.
    apart = simulate(stream, Linear(), _policy(), dp=1, pp=1, overlap=False, overhead_s=0.02, keep_spans=True,
                     overhead_cv=1.0)
    assert min(s.prefill_tokens for s in apart.spans if s.prefill_tokens) < 40
    # Drawn from their own seeded generator: the same run twice is the same run.
    again = simulate(stream, Linear(), _policy(), dp=1, pp=1, overlap=False, overhead_s=0.02, keep_spans=True,
                     overhead_cv=1.0)
    assert np.array_equal(apart.requests.first_s, again.requests.first_s)
