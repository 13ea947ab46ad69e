"""Regression: the plans for the shared problems match the reviewed golden JSON in tests/golden/.

The golden files were produced by meshplan and reviewed by hand (see the issue note); this test
catches unintended changes. Correctness of the figures is covered by the formula tests.
A deliberate model change regenerates them: python3 tests/search/test_golden.py --update.
"""

import json
import math
import sys
from pathlib import Path

import pytest

from meshplan.io.catalog import CATALOG
from meshplan.io.problem_file import load_problem
from meshplan.plan.plan import plan_document
from meshplan.search.search import search

GOLDEN = Path(__file__).parent.parent / "golden"
NAMES = ["seed-10b-moe", "qwen3-235b-prefill-decode", "qwen3-235b-fixed-strategy", "seed-plan"]


def _doc(name):
    """The plan meshplan makes for a problem; for seed-plan.md (a plan, not a problem) the
    evaluation of the layout it claims, as `meshplan evaluate` gives it."""
    problem = load_problem(Path(str(CATALOG / "problems")) / f"{name}.md")
    if name == "seed-plan":
        from meshplan.cli.evaluate_cmd import run_evaluate
        return run_evaluate(problem, None, None, None, None)
    return plan_document(search(problem))


def _close(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-6)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("name", NAMES)
def test_plan_matches_golden(name):
    golden = json.loads((GOLDEN / f"{name}.json").read_text())
    doc = _doc(name)
    for key, value in golden.items():
        assert _close(doc[key], value), (name, key, doc[key], value)


KEYS = ["schema", "label", "gpus_total", "feasible", "violations", "ttft_s", "tpot_s", "output_tok_s_per_gpu",
        "input_tok_s_per_gpu", "max_concurrency", "memory_per_gpu_bytes", "kv_cache_bytes_per_token"]

if __name__ == "__main__" and "--update" in sys.argv:
    for n in NAMES:
        d = _doc(n)
        (GOLDEN / f"{n}.json").write_text(json.dumps({k: d[k] for k in KEYS}, indent=1, default=float) + "\n")
