"""The whole budget: a plan that leaves GPUs idle says how many and why, with the numbers."""

import math

from meshplan.io.problem_file import problem_from_raw
from meshplan.plan.plan import plan_document
from meshplan.search.evaluate import evaluate_aggregated
from meshplan.search.search import search
from meshplan.strategy.layout import parse_strategy


def _problem(serving="auto", **workload):
    return problem_from_raw({"model": "qwen3-30b-a3b", "gpu": "h200", "gpus": 8, "serving": serving,
                             "workload": {"isl": 2000, "osl": 500, **workload},
                             "requirements": {"ttft_s": 1.0, "tpot_s": 0.05}})


def test_a_fixed_concurrency_on_fewer_gpus_says_what_replicas_would_give():
    # Aggregated serving: the alternative quoted is the plan's own layout replicated (a
    # disaggregated plan's budget note is about the pools' balance instead).
    problem = _problem(serving="aggregated", concurrency=256)
    doc = plan_document(search(problem))
    use = doc["budget_use"]
    assert use is not None and use["budget"] == 8 and use["idle"] == 8 - doc["gpus_total"]
    # Per GPU of the budget: the plan's total output over all 8 budgeted GPUs.
    assert math.isclose(use["output_tok_s_per_budget_gpu"], doc["output_tok_s"] / 8)
    # The alternative quoted is the same layout on every budgeted GPU at the same 256 requests,
    # as evaluate scores it.
    lay = parse_strategy(doc["label"].split(": ", 1)[1], is_moe=True)
    alt = evaluate_aggregated(problem, lay.with_instances(8 // lay.gpus_per_instance))
    assert f"{alt.output_tok_s:,.0f} output tok/s in total" in use["why"]
    assert f"spread over {8 // lay.gpus_per_instance} instances" in use["why"]


def test_a_request_rate_served_with_fewer_gpus_says_more_would_only_lower_latency():
    doc = plan_document(search(_problem(request_rate_per_s=2.0)))
    use = doc["budget_use"]
    # 2 requests/s of 2,000 + 500 tokens are far below one H200's capacity: one GPU serves them.
    assert doc["gpus_total"] == 1 and use["idle"] == 7
    assert "2 requests/s are served with 1 GPU" in use["why"] and "lower the latencies" in use["why"]
    # 2 requests/s x 500 output tokens = 1,000 tok/s over the 8 budgeted GPUs: 125 per GPU.
    assert math.isclose(use["output_tok_s_per_budget_gpu"], 125.0, rel_tol=1e-6)
    # And what the 8 GPUs would give as 8 instances sharing the 2 requests/s, as evaluate scores it.
    problem = _problem(request_rate_per_s=2.0)
    alt = evaluate_aggregated(problem, parse_strategy(doc["label"].split(": ", 1)[1], is_moe=True).with_instances(8))
    assert "spread over 8 instances on 8 GPUs the 2 requests/s would give TTFT" in use["why"]
    assert f"({alt.output_tok_s_per_gpu:,.0f} per GPU)" in use["why"]
