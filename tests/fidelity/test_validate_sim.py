"""meshplan validate --sim: aggregated runs predicted by simulation, the closed form kept beside."""

import json

from click.testing import CliRunner

from meshplan.cli.main import main
from meshplan.fidelity.validation import validate_silicon

from tests.fidelity.test_validation import SAMPLE


def test_aggregated_runs_are_simulated_and_the_closed_form_is_kept_beside_them():
    closed = {r.case.id: r.prediction for r in validate_silicon(SAMPLE).rows}
    sim = validate_silicon(SAMPLE, simulated=True)
    for r in sim.rows:
        if r.case.disaggregated:
            assert r.method == "closed form" and r.closed_form is None and r.prediction == closed[r.case.id]
        else:
            assert r.method == "simulation" and r.closed_form == closed[r.case.id]
            assert r.prediction.ttft_ms > 0 and r.prediction.tpot_ms > 0
    simulated = [r for r in sim.rows if r.method == "simulation"]
    assert simulated and sim.compared()["simulated runs"][1].predicted == len(simulated)
    # The simulation is its own prediction, not the closed form's under another name.
    assert any(abs(r.prediction.ttft_ms / r.closed_form.ttft_ms - 1) > 0.05 for r in simulated)


def test_the_json_says_how_each_run_was_predicted(tmp_path):
    out = tmp_path / "v.json"
    r = CliRunner().invoke(main, ["validate", str(SAMPLE), "--sim", "--json", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["method"] == "simulation for aggregated runs"
    methods = {row["method"] for row in doc["rows"]}
    assert methods == {"simulation", "closed form"}
    assert all(row["closed_form_predicted"] > 0 for row in doc["rows"] if row["method"] == "simulation")


def test_sim_refuses_the_published_cases():
    r = CliRunner().invoke(main, ["validate", "--sim"])
    assert r.exit_code == 2 and "--sim" in r.output
