"""No latency target: the plan says it sits at the memory limit and names the frontier's knee."""

import math
from types import SimpleNamespace

from meshplan.io.problem_file import problem_from_raw
from meshplan.plan.plan import pareto_knee, plan_document
from meshplan.search.search import search


def _pt(tok_s_per_user, tok_s_per_gpu):
    return SimpleNamespace(tpot_s=1.0 / tok_s_per_user, output_tok_s_per_gpu=tok_s_per_gpu)


def test_the_knee_is_the_point_farthest_from_the_chord_on_log_axes():
    # Ends at (ln x, ln y) = (1, 0) and (0, 1); the middle point at (0.8, 0.8) scores 1.6 against
    # 1 for either end, and a point at (0.3, 0.3) scores 0.6.
    e = math.e
    ends = [_pt(e, 1.0), _pt(1.0, e)]
    middle, low = _pt(e ** 0.8, e ** 0.8), _pt(e ** 0.3, e ** 0.3)
    assert pareto_knee(ends + [middle, low]) is middle
    assert pareto_knee(ends) is None  # two points have no knee


def _plan(**requirements):
    return plan_document(search(problem_from_raw({
        "model": "qwen3-30b-a3b", "gpu": "h100", "gpus": 8, "workload": {"isl": 4000, "osl": 500},
        "requirements": requirements})))


def test_without_a_latency_target_the_plan_says_it_runs_at_the_memory_limit():
    doc = _plan()
    note = next(n["message"] for n in doc["notes"] if n["field"] == "requirements.tpot_s")
    assert note.startswith(f"no latency target: the plan runs at the memory limit ({doc['concurrency']:,.0f} of")
    assert "the knee of the throughput/latency frontier is" in note
    assert not any(n["field"] == "requirements.tpot_s" for n in _plan(tpot_s=0.05)["notes"])
