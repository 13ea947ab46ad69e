"""The search tries each decode pool with speculative decoding and without it."""

from meshplan.io.problem_file import problem_from_raw
from meshplan.plan.plan import plan_document
from meshplan.search.evaluate import evaluate_aggregated
from meshplan.search.search import search
from meshplan.strategy.layout import Layout


def _problem(acceptance, concurrency=1, serving="aggregated"):
    return problem_from_raw({
        "model": "llama-3.1-8b", "gpu": "h100-sxm", "gpus": 2, "engine": "vllm", "calibration": "none",
        "serving": serving, "workload": {"isl": 1000, "osl": 500, "concurrency": concurrency},
        "speculative": {"method": "eagle", "draft_tokens": 3, "acceptance": acceptance}})


def test_drafts_that_are_never_accepted_lose():
    # Acceptance 0: every iteration pays the draft and the wider verify pass for one token.
    result = search(_problem(0.0))
    assert not result.best.speculative
    assert any(c.speculative for c in result.ranked)  # tried, and ranked below
    doc = plan_document(result)
    assert doc["speculative"] is None  # the plan decodes without it, and its problem says so
    assert doc["problem_spec"]["speculative"] is None
    assert any(n["field"] == "speculative" and "without it" in n["message"] for n in doc["notes"])


def test_good_drafts_win_one_user_at_a_time():
    # One request in flight: decode is bound by reading the weights, so verifying 4 positions costs
    # little more than 1, and 0.9 acceptance yields 1 + 0.9 + 0.81 + 0.729 = 3.44 tokens per iteration.
    result = search(_problem(0.9))
    best = result.best
    assert best.speculative and "with speculative decoding" in best.label
    plain = next(c for c in result.ranked if not c.speculative)
    assert best.tpot_s < plain.tpot_s / 2
    doc = plan_document(result)
    assert doc["speculative"]["tokens_per_step"] == 1 + 0.9 + 0.81 + 0.9 ** 3
    assert doc["problem_spec"]["speculative"]["method"] == "eagle"


def test_disaggregated_decode_pools_are_tried_both_ways():
    result = search(_problem(0.9, concurrency=8, serving="disaggregated"))
    assert {c.speculative for c in result.ranked} == {True, False}


def test_a_fixed_strategy_is_evaluated_both_ways_as_the_search_chooses():
    for acceptance, on in ((0.0, False), (0.9, True)):
        problem = _problem(acceptance)
        c = evaluate_aggregated(problem, Layout(tp=1))
        assert c.speculative is on
        best_same_layout = next(x for x in search(problem).ranked if x.label.startswith("aggregated: 1 GPU"))
        assert best_same_layout.speculative is on
