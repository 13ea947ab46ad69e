"""The one owner of queueing (cost.queueing): the open M/D/1 wait, its closed-loop cap, and the
search reading it from there."""

import math
import re
from pathlib import Path

import pytest

import meshplan
from meshplan.cost.queueing import RHO_MAX, loop_rate, md1_rho_for_latency, md1_wait_capped_s, md1_wait_s
from meshplan.io.problem_file import problem_from_raw
from meshplan.search import pairs, single
from meshplan.search.search import search


def test_open_md1_wait_by_hand():
    # Pollaczek-Khinchine with deterministic service: rho s / (2 (1 - rho)).
    # rho 0.8, s 0.2 s: 0.8 x 0.2 / (2 x 0.2) = 0.4 s; rho 0.25, s 2 s: 0.5 / 1.5 = 1/3 s.
    assert math.isclose(md1_wait_s(0.8, 0.2), 0.4)
    assert math.isclose(md1_wait_s(0.25, 2.0), 1.0 / 3.0)
    assert md1_wait_s(0.0, 5.0) == 0.0


def test_utilisation_for_a_latency_target_by_hand():
    # Worked by hand from W = rho s / (2 (1 - rho)): s + W <= T <=> rho / (2 (1 - rho)) <= x, x = T/s - 1,
    # <=> rho <= 2x / (1 + 2x).
    # s 1 s, T 2 s: x = 1, rho = 2/3; there W = (2/3) / (2 x 1/3) = 1 s and s + W = 2 s = T.
    assert math.isclose(md1_rho_for_latency(2.0, 1.0), 2.0 / 3.0)
    assert math.isclose(1.0 + md1_wait_s(2.0 / 3.0, 1.0), 2.0)
    # s 0.2 s, T 0.5 s: x = 1.5, rho = 3 / 4; there W = 0.75 x 0.2 / (2 x 0.25) = 0.3 s and s + W = 0.5 s.
    assert math.isclose(md1_rho_for_latency(0.5, 0.2), 0.75)
    assert math.isclose(0.2 + md1_wait_s(0.75, 0.2), 0.5)
    # The search's prefill sizing (search.pairs): 10 req/s on instances of 3 req/s each at rho 2/3
    # need 10 / (3 x 2/3) = 5 instances.
    assert math.ceil(10.0 / (3.0 * md1_rho_for_latency(2.0, 1.0)) - 1e-9) == 5
    # A target no longer than the service itself: no utilisation meets it.
    assert md1_rho_for_latency(1.0, 1.0) == 0.0 and md1_rho_for_latency(0.5, 1.0) == 0.0


def test_open_wait_diverges_where_arrivals_outrun_service():
    assert md1_wait_s(1.0, 0.1) == math.inf and md1_wait_s(1.5, 0.1) == math.inf


def test_closed_loop_wait_is_capped_at_rho_max():
    # rho 0.5, s 1 s: 0.5 / 1 = 0.5 s. Above RHO_MAX (0.95) the closed loop reads 0.95 / (2 x 0.05) =
    # 9.5 service times.
    assert float(md1_wait_capped_s(0.5, 1.0)) == 0.5 and float(md1_wait_capped_s(0.0, 1.0)) == 0.0
    assert RHO_MAX == 0.95
    assert math.isclose(float(md1_wait_capped_s(3.0, 1.0)), 9.5)
    assert math.isclose(float(md1_wait_capped_s(0.8, 0.2)), md1_wait_s(0.8, 0.2))


def test_loop_rate_is_littles_law_with_the_prefill_queue():
    # 2 requests, life 1 s, service 0.1 s, capacity 10/s: rate x (1 + 0.1 rho / (2 (1 - rho))) = 2 with
    # rho = rate / 10 gives 0.19 r^2 - 2.4 r + 4 = 0 after clearing (1 - r/10): r = (2.4 - sqrt(2.72)) / 0.38.
    assert math.isclose(float(loop_rate(2.0, 1.0, 0.1, 10.0)), (2.4 - math.sqrt(2.72)) / 0.38, rel_tol=1e-9)
    # 100 requests of 0.1 s want 1000/s: the queue caps the loop at RHO_MAX of the 10/s capacity.
    assert math.isclose(float(loop_rate(100.0, 0.1, 0.1, 10.0)), RHO_MAX * 10.0, rel_tol=1e-9)


@pytest.mark.parametrize("serving", ["aggregated", "disaggregated"])
def test_the_search_takes_its_queue_wait_from_the_owner(monkeypatch, serving):
    # At a stated arrival rate a plan's TTFT adds the prefill queue's wait; a stand-in owner that
    # waits 7 s more must move the plan's TTFT by exactly 7 s (the search keeps no formula of its own).
    problem = problem_from_raw({"model": "qwen3-30b-a3b", "gpu": "h100", "gpus": 8, "serving": serving,
                                "workload": {"isl": 2000, "osl": 500, "request_rate_per_s": 2.0}})
    before = search(problem).best
    for module in (single, pairs):
        monkeypatch.setattr(module, "md1_wait_s", lambda rho, s: md1_wait_s(rho, s) + 7.0)
    after = search(problem).best
    assert (after.prefill, after.decode) == (before.prefill, before.decode)
    assert after.ttft_s == pytest.approx(before.ttft_s + 7.0, abs=1e-9)


def test_the_cost_model_and_simulator_read_the_workload_not_the_problem():
    # Issue 16 point 2: the cost model takes what it needs (CostInputs.workload and its figures),
    # not the whole Problem; only CostInputs.from_problem reads a Problem.
    root = Path(meshplan.__file__).parent
    for package in ("cost", "simulate"):
        for path in (root / package).glob("*.py"):
            text = path.read_text(encoding="utf-8")
            if path.name == "inputs.py":
                text = text.split("def from_problem", 1)[0]
            code = "\n".join(line for line in text.splitlines() if not line.startswith(("from ", "import ")))
            assert not re.search(r"\.problem\b", code), path
