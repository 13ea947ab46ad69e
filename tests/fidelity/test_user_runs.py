"""A user's own measurements: three runs in the silicon CSV format (only the columns meshplan
needs) give a calibration profile on top of the bundled one, and a plan that uses it."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

from meshplan.fidelity.silicon import read_silicon

RUNS = Path(__file__).parent / "fixtures" / "user-runs.csv"


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "meshplan.cli.main", *args], capture_output=True, text=True, cwd=cwd)


def test_the_minimal_columns_read_with_a_concurrency_column():
    cases, skips = read_silicon(RUNS)
    assert not skips
    assert [c.concurrency for c in cases] == [8, 32, 64]
    # No known client: fixed lengths and no client time of its own (the reference client).
    assert {c.harness.name for c in cases} == {"as-stated"}
    assert {c.harness.client_overhead_s for c in cases} == {0.0}


def test_three_runs_give_a_profile_and_a_plan_that_uses_it(tmp_path):
    out = tmp_path / "mine.yaml"
    fitted = run("calibrate", str(RUNS), "--out", str(out), "--folds", "0")
    assert fitted.returncode == 0, fitted.stderr
    # A dense model: the MoE factors cannot be fitted on it; 3 runs (6 residuals) fit 3 factors.
    assert "not fitted, no run here depends on them: grouped_gemm_efficiency" in fitted.stderr
    assert "fitting vllm.request_overhead_s, vllm.host_gap_s, kernel_floor_scale" in fitted.stderr
    profile = yaml.safe_load(out.read_text())
    assert profile["base"] == "silicon-dev" and profile["rows"] == 3
    assert set(profile["engines"]["vllm"]) >= {"request_overhead_s", "host_gap_s"}
    # The bundled fit's other engines and factors are kept, so plans for them are unchanged.
    bundled = yaml.safe_load((Path(__file__).parents[2] / "src/meshplan/catalog/calibration/silicon-dev.yaml").read_text())
    assert profile["engines"]["sglang"] == bundled["engines"]["sglang"]
    assert profile["assumptions"]["clump_coherence"] == bundled["assumptions"]["clump_coherence"]

    def median_ttft(*extra):
        out_json = run("validate", str(RUNS), "--json", "-", *extra)
        assert out_json.returncode == 0, out_json.stderr
        return json.loads(out_json.stdout)["summary"]["total"]["ttft_median_abs"]

    # The fit can only lower the error on the runs it saw (it starts from the bundled values).
    assert median_ttft("--profile", str(out)) < median_ttft()

    plan = run("plan", "--model", "llama-3.1-70b", "--gpu", "h100", "--gpus", "8", "--engine", "vllm", "--weights",
               "fp8", "--isl", "1024", "--osl", "8192", "--concurrency", "32", "--profile", str(out), "--json", "-")
    assert plan.returncode in (0, 1), plan.stderr
    notes = [n for n in json.loads(plan.stdout)["notes"] if n["field"] == "calibration"]
    assert notes and "mine" in notes[0]["message"]


def test_a_factor_no_run_depends_on_is_refused(tmp_path):
    bad = run("calibrate", str(RUNS), "--out", str(tmp_path / "x.yaml"), "--folds", "0", "--fit",
              "grouped_gemm_efficiency")
    assert bad.returncode == 2
    assert "--fit" in bad.stderr and "grouped_gemm_efficiency" in bad.stderr and "depends on it" in bad.stderr


def test_a_file_without_any_concurrency_is_refused(tmp_path):
    lines = RUNS.read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, c in enumerate(header) if c != "concurrency"]
    path = tmp_path / "runs.csv"
    path.write_text("\n".join(",".join(x.split(",")[i] for i in keep) for x in lines) + "\n")
    bad = run("validate", str(path))
    assert bad.returncode == 2
    assert "concurrency" in bad.stderr and "Traceback" not in bad.stderr
