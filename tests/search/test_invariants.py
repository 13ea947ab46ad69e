"""Search invariants over catalog models: GPU accounting and folding hold for every candidate."""

import pytest

from meshplan.io.catalog import model_keys
from meshplan.io.problem_file import problem_from_raw
from meshplan.search.search import search


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
