"""plan --sim and p99 targets: the best candidates simulated, the first meeting the p99 targets chosen."""

import json

from click.testing import CliRunner

from meshplan.cli.main import main
from meshplan.io.problem_file import problem_from_raw
from meshplan.plan.candidates import ClosedForm, Percentiles, SimulatedCandidate
from meshplan.plan.simulated import choose
from meshplan.search.search import search

FLAGS = ["--model", "qwen3-30b-a3b", "--gpu", "h200", "--gpus", "8", "--isl", "2000", "--osl", "500",
         "--concurrency", "64"]


def _result(**requirements):
    return search(problem_from_raw({"model": "qwen3-30b-a3b", "gpu": "h200", "gpus": 8,
                                    "workload": {"isl": 2000, "osl": 500, "concurrency": 64},
                                    "requirements": requirements}))


def _sim(meets):
    """A simulated record that only says whether it meets the p99 targets (choose reads no more)."""
    p = Percentiles(mean=0.1, p50=0.1, p99=0.2)
    return SimulatedCandidate(label="x", gpus_total=8, arrivals="closed loop", requests=10,
                              closed_form=ClosedForm(ttft_s=0.1, tpot_s=0.01, output_tok_s_per_gpu=1.0),
                              ttft_s=p, tpot_s=p, output_tok_s_per_gpu=1.0, goodput=1.0, preemptions=0, meets_p99=meets)


def test_the_first_candidate_in_search_order_that_meets_the_p99_targets_is_chosen():
    result = _result(ttft_p99_s=1.0)
    first, second, third = result.ranked[:3]
    sims = [(first, _sim(False)), (second, _sim(True)), (third, _sim(True))]
    chosen_result, ok = choose(result, sims)
    assert ok is second and chosen_result.best is second
    assert set(chosen_result.ranked) == set(result.ranked)  # reordered, nothing lost
    # Without p99 targets the search's order stands.
    plain = _result()
    assert choose(plain, [(plain.ranked[0], _sim(None))]) == (plain, None)


def test_a_p99_target_no_candidate_meets_is_a_requirement_unmet():
    r = CliRunner().invoke(main, ["plan", *FLAGS, "--tpot-p99", "0.000001", "--json", "-"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output[r.output.index("{"):])
    assert doc["verdict"]["status"] == "requirements_unmet"
    assert [u["rule"] for u in doc["verdict"]["unmet"]] == ["p99"]
    sims = doc["simulation"]
    assert sims and all(s["meets_p99"] is False for s in sims)
    # Each simulated TPOT p99 is the spread's top: at least its median.
    assert all(s["tpot_s"]["p99"] >= s["tpot_s"]["p50"] for s in sims)
    strict = CliRunner().invoke(main, ["plan", *FLAGS, "--tpot-p99", "0.000001", "--strict"])
    assert strict.exit_code == 1


def test_plan_sim_prints_the_simulated_percentiles_beside_the_closed_form():
    r = CliRunner().invoke(main, ["plan", *FLAGS, "--sim"])
    assert r.exit_code == 0, r.output
    assert "simulated request by request" in r.output and "TTFT p99" in r.output
