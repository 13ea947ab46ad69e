"""meshplan validate --sim: runs predicted by simulation, the closed form kept beside."""

import csv
import json

import pytest
from click.testing import CliRunner

from meshplan.cli.main import main
from meshplan.fidelity import simulated
from meshplan.fidelity.predict import group_cases
from meshplan.fidelity.silicon import read_silicon
from meshplan.fidelity.validation import validate_silicon

from tests.fidelity.test_validation import SAMPLE


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The sample's runs of at most 200 requests in flight (both kinds, a few seconds to simulate)."""
    with open(SAMPLE, newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if "silicon_concurrency=" in r["silicon_data_source"]
            and int(r["silicon_data_source"].split("silicon_concurrency=")[1].split(";")[0]) <= 200]
    path = tmp_path_factory.mktemp("sim") / "small.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    return path


def test_runs_are_simulated_and_the_closed_form_is_kept_beside_them(small):
    closed = {r.case.id: r.prediction for r in validate_silicon(small).rows}
    sim = validate_silicon(small, simulated=True)
    assert any(r.case.disaggregated for r in sim.rows) and any(not r.case.disaggregated for r in sim.rows)
    for r in sim.rows:
        assert r.method == "simulation" and r.closed_form == closed[r.case.id]
        assert r.prediction.ttft_ms > 0 and r.prediction.tpot_ms > 0
    assert sim.compared()["simulated runs"][1].predicted == len(sim.rows)
    # The simulation is its own prediction, not the closed form's under another name.
    assert any(abs(r.prediction.ttft_ms / r.closed_form.ttft_ms - 1) > 0.05 for r in sim.rows)


def test_the_json_says_how_each_run_was_predicted(small, tmp_path):
    out = tmp_path / "v.json"
    r = CliRunner().invoke(main, ["validate", str(small), "--sim", "--json", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["method"] == "simulation"
    assert {row["method"] for row in doc["rows"]} == {"simulation"}
    assert all(row["closed_form_predicted"] > 0 for row in doc["rows"])
    # The simulation issue's target (median |TTFT error| at most 20%) is reported with the results.
    target = doc["summary"]["targets"]["simulated_median_abs_ttft"]
    assert target["target"] == 0.20 and target["value"] == doc["summary"]["total"]["ttft_median_abs"]
    assert target["met"] == (target["value"] <= 0.20)
    assert f"simulated_median_abs_ttft: {target['value']:.1%} (target 20%)" in r.output


def test_sim_refuses_the_published_cases():
    r = CliRunner().invoke(main, ["validate", "--sim"])
    assert r.exit_code == 2 and "--sim" in r.output


def test_a_run_is_predicted_by_the_mean_of_its_replicas(small):
    cases, _ = read_silicon(small)
    group = next(g for g in group_cases(cases) if not g.cases[0].disaggregated)
    case = group.cases[0]
    once = [simulated._simulate_once(group, case, 10.0, simulated.SEED + k) for k in range(simulated.REPLICAS)]
    # Each replica draws its own overheads (and lengths), so they differ; the prediction is their mean.
    assert simulated.REPLICAS >= 2 and len({t for t, _ in once}) > 1
    ttft, tpot = simulated.simulate_case(group, case, 10.0)
    assert ttft == pytest.approx(sum(t for t, _ in once) / len(once), rel=1e-12)
    assert tpot == pytest.approx(sum(p for _, p in once) / len(once), rel=1e-12)


def test_runs_simulated_in_two_processes_are_predicted_the_same(small):
    # Each run's draws are seeded by the run itself, so which process simulates it, and in which
    # order, cannot change its figures: the two validations must agree to the bit, run by run.
    one = validate_silicon(small, simulated=True)
    seen = []
    two = validate_silicon(small, simulated=True, progress=lambda done, total: seen.append((done, total)), jobs=2)
    assert [r.case.id for r in two.rows] == [r.case.id for r in one.rows]
    assert [(r.prediction, r.method) for r in two.rows] == [(r.prediction, r.method) for r in one.rows]
    assert seen == [(k, len(one.rows)) for k in range(1, len(one.rows) + 1)]


@pytest.mark.parametrize("args", [["--jobs", "2"], ["--sim", "--jobs", "0"], ["--sim", "--jobs", "65"]])
def test_bad_jobs_exit_2(small, args):
    r = CliRunner().invoke(main, ["validate", str(small), *args])
    assert r.exit_code == 2 and "--jobs" in r.output, r.output
