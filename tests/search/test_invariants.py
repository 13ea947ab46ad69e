"""Search invariants over catalog models: GPU accounting and folding hold for every candidate."""

import pytest

from meshplan.io.catalog import model_keys
from meshplan.io.problem_file import problem_from_raw
from meshplan.search.candidate import Candidate
from meshplan.search.frontier import non_dominated
from meshplan.search.objectives import Mode
from meshplan.search.search import search
from meshplan.strategy.layout import Layout


@pytest.mark.parametrize("key", model_keys())
def test_gpu_accounting_and_folding(key):
    problem = problem_from_raw({"model": key, "gpu": "b200", "gpus": 64, "precision": {"weights": "fp8"},
                                "workload": {"isl": 2000, "osl": 500}})
    result = search(problem)
    assert result.ranked, key
    for c in result.ranked + result.pruned:
        layouts = [lay for lay in {id(x): x for x in (c.prefill, c.decode) if x is not None}.values()]
        assert c.gpus_total == sum(lay.instances * lay.pp * lay.tp * lay.dp for lay in layouts)
        for lay in layouts:
            if problem.model.is_moe:
                assert lay.ep * lay.etp == lay.tp * lay.dp
                assert problem.model.num_experts % lay.ep == 0
            assert problem.model.num_heads % lay.tp == 0
        if c.feasible:
            assert c.gpus_total <= 64


@pytest.mark.parametrize("serving", ["aggregated", "disaggregated"])
def test_serving_mode_restricts_the_search(serving):
    problem = problem_from_raw({"model": "qwen3-30b-a3b", "gpu": "h100", "gpus": 16, "serving": serving,
                                "workload": {"isl": 2000, "osl": 500}})
    modes = {c.mode.value for c in search(problem).ranked}
    assert modes == {serving}


@pytest.mark.parametrize("serving", ["aggregated", "disaggregated"])
def test_feasible_means_every_requirement_is_met_after_queueing(serving):
    # At a request rate, queueing (M/D/1) adds to TTFT after each layout's operating point was
    # chosen; a candidate called feasible must still meet the TTFT and TPOT targets with it.
    problem = problem_from_raw({"model": "deepseek-v3", "gpu": "h200", "gpus": 32, "serving": serving,
                                "precision": {"weights": "fp8"},
                                "workload": {"isl": 4000, "osl": 500, "request_rate_per_s": 20},
                                "requirements": {"ttft_s": 2.0, "tpot_s": 0.05}})
    result = search(problem)
    for c in result.ranked:
        if c.feasible:
            assert c.ttft_s <= 2.0 and c.tpot_s <= 0.05, c.label
        else:
            assert c.violations


def test_the_frontier_keeps_what_nothing_beats_on_both_axes():
    # (tokens/s per user, tokens/s per GPU) = (10, 100), (20, 50), (15, 40): (15, 40) is beaten by
    # (20, 50) on both, so the frontier is (20, 50) then (10, 100), fastest per user first.
    def cand(per_user, per_gpu):
        return Candidate(mode=Mode.AGGREGATED, prefill=Layout(), decode=Layout(), decode_B=1.0, prefill_B=1.0,
                         gpus_total=1, ttft_s=0.1, tpot_s=1.0 / per_user, output_tok_s_per_gpu=per_gpu,
                         input_tok_s_per_gpu=None, output_tok_s=per_gpu, concurrency=1.0, max_concurrency=1.0)

    a, b, c = cand(10, 100), cand(20, 50), cand(15, 40)
    assert non_dominated([a, b, c]) == [b, a]


def test_a_disaggregated_plan_joins_the_frontier():
    # DeepSeek-V3 on 32 H200 with TTFT 1 s and TPOT 30 ms: the search picks a disaggregated pair
    # that serves more tokens per GPU than any aggregated point; the frontier must show it.
    p = problem_from_raw({"model": "deepseek-v3", "gpu": "h200", "gpus": 32, "engine": "sglang",
                          "workload": {"isl": 4000, "osl": 500}, "requirements": {"ttft_s": 1.0, "tpot_s": 0.03}})
    r = search(p)
    assert r.best.mode.value == "disaggregated"
    assert any(c.mode.value == "disaggregated" for c in r.pareto)
    # The chosen plan is on the frontier or behind a point of it on both axes.
    b = r.best
    assert any(c.output_tok_s_per_gpu >= b.output_tok_s_per_gpu * (1 - 1e-9) and c.tpot_s <= b.tpot_s * (1 + 1e-9)
               for c in r.pareto)


def test_a_budget_too_small_for_the_best_decode_point_gets_a_decode_pool_the_prefill_pool_feeds():
    # Llama-3.1-8B on 4 H100, disaggregated, no concurrency stated: at its best point one decode
    # GPU completes more requests than three prefill GPUs prefill (the bundled profile), so the
    # pair at that point needs more than 4 GPUs. The search also pairs fewer prefill instances with
    # the decode pool's best point that completes no more requests than they prefill (Little's
    # law: fewer requests in flight), and that pair fits.
    problem = problem_from_raw({"model": "llama-3.1-8b", "gpu": "h100", "gpus": 4, "serving": "disaggregated",
                                "workload": {"isl": 2000, "osl": 100}})
    best = search(problem).best
    assert best.feasible and best.gpus_total <= 4
    # At its best point the decode pool holds all it can (the KV cache's limit); fed by the smaller
    # prefill pool it holds fewer requests.
    assert best.concurrency < best.max_concurrency


def test_a_stated_concurrency_is_what_every_disaggregated_pair_holds():
    # With a concurrency stated, each decode point's instance count is set by it: no pair may run a
    # decode pool holding fewer requests (those would be left out of the closed loop).
    problem = problem_from_raw({"model": "llama-3.1-8b", "gpu": "h100", "gpus": 3, "serving": "disaggregated",
                                "workload": {"isl": 2000, "osl": 100, "concurrency": 64}})
    pairs = [c for c in search(problem).ranked if c.mode.value == "disaggregated"]
    assert pairs and all(c.concurrency == pytest.approx(64) for c in pairs)
