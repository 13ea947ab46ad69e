"""Runner-ups tell the truth: every reason follows from the numbers beside it (catalog-wide)."""

import re

import pytest

from meshplan.io.catalog import model_keys
from meshplan.io.problem_file import problem_from_raw
from meshplan.plan.plan import plan_document
from meshplan.search.objectives import Objective
from meshplan.search.search import search


def _metric(c):
    return c["output_tok_s_per_gpu"] if c["output_tok_s_per_gpu"] is not None else c["input_tok_s_per_gpu"]


def _check(doc):
    best = _metric(doc)
    for c in doc["runner_ups"]:
        why, x = c["why_lost"], _metric(c)
        m = re.match(r"([\d.]+)% (more|fewer) ", why)
        if m:
            pct, word = float(m.group(1)), m.group(2)
            # The percent is |x / best - 1| to one decimal, and its direction is the sign.
            assert abs(pct - abs(x / best - 1) * 100) <= 0.051, (why, x, best)
            assert (x > best) == (word == "more"), (why, x, best)
        w = re.search(r"within (\d+)% of the best", why)
        if w:  # "within N% of the best" holds only when the gap is at most N%
            assert abs(x / best - 1) <= int(w.group(1)) / 100, (why, x, best)
        for a, b in re.findall(r"\((\d+) vs (\d+) GPUs\)", why):
            assert int(a) > int(b), why
        for a, b in re.findall(r"pp (\d+) vs (\d+)", why):
            assert int(a) > int(b), why
        g = re.match(r"needs (\d+) GPUs vs (\d+)", why)
        if g:
            assert int(g.group(1)) == c["gpus_total"] and int(g.group(1)) > int(g.group(2)) == doc["gpus_total"], why


@pytest.mark.parametrize("key", model_keys())
def test_every_reason_follows_from_its_numbers(key):
    problem = problem_from_raw({"model": key, "gpu": "h200", "gpus": 32, "precision": {"weights": "fp8"},
                                "workload": {"isl": 2000, "osl": 500}})
    _check(plan_document(search(problem)))


def test_under_min_gpus_the_reason_is_the_gpu_count():
    problem = problem_from_raw({"model": "qwen3-30b-a3b", "gpu": "h100", "gpus": 64,
                                "workload": {"isl": 2000, "osl": 500}, "requirements": {"min_output_tok_s": 20000}})
    doc = plan_document(search(problem, Objective.MIN_GPUS), runner_ups=200)
    more = [c for c in doc["runner_ups"] if c["feasible"] and c["gpus_total"] > doc["gpus_total"]]
    assert more
    for c in more:
        assert c["why_lost"].startswith(f"needs {c['gpus_total']} GPUs vs {doc['gpus_total']}")
    _check(doc)
