"""Validation and calibration on a small sample of the dev set.

fixtures/silicon-sample.csv holds 44 rows of shared/cases/silicon-dev.csv: sorted by id, the first
two predictable rows of every (backend, system, mode) group, and the first row of each skip reason.
The error bounds below are far wider than the dev-set medians (TPOT ~12%, TTFT ~28%): they catch a
broken step model, not a drift of a few points; `meshplan validate` on the whole file reports those.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from meshplan.errors import SpecError
from meshplan.fidelity.silicon import SkipReason
from meshplan.fidelity.validation import SCHEMA, validate_silicon
from meshplan.io.calibration import load_profile

SAMPLE = Path(__file__).parent / "fixtures" / "silicon-sample.csv"


def run(*args):
    return subprocess.run([sys.executable, "-m", "meshplan.cli.main", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def validation():
    return validate_silicon(SAMPLE)


def test_every_row_is_predicted_or_skipped_with_its_reason(validation):
    assert len(validation.rows) + len(validation.skips) == 44
    assert len(validation.rows) == 40
    # One row of each reason the dev set has was put in the sample.
    assert sorted(s.reason for s in validation.skips) == sorted([SkipReason.NO_WORKERS, SkipReason.STRUCTURE,
                                                                 SkipReason.NO_CONCURRENCY, SkipReason.LAYOUT])


def test_sample_errors_stay_within_a_broken_model_bound(validation):
    total = validation.total()
    assert total.tpot_abs < 0.25 and total.ttft_abs < 0.5
    # Every prediction is a positive time.
    assert all(r.prediction.ttft_ms > 0 and r.prediction.tpot_ms > 0 for r in validation.rows)


def test_calibration_none_uses_the_sourced_defaults(validation):
    plain = validate_silicon(SAMPLE, "none")
    assert plain.calibration == "" and validation.calibration == "silicon-dev"
    assert [r.prediction.tpot_ms for r in plain.rows] != [r.prediction.tpot_ms for r in validation.rows]


def test_validate_json_rows_and_targets(tmp_path):
    out = tmp_path / "v.json"
    r = run("validate", str(SAMPLE), "--json", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == SCHEMA and doc["calibration"] == "silicon-dev"
    assert len(doc["rows"]) == 2 * 40 and len(doc["skipped"]) == 4
    row = doc["rows"][0]
    assert abs(row["error"] - (row["predicted"] / row["measured"] - 1)) < 1e-12
    assert set(doc["summary"]["targets"]) >= {"median_abs_tpot", "median_abs_ttft", "rows_predicted"}
    assert "Targets of the fidelity issue" in r.stdout


def test_calibrate_writes_a_profile_that_loads(tmp_path):
    out = tmp_path / "p.yaml"
    r = run("calibrate", str(SAMPLE), "--out", str(out), "--fit", "vllm.request_overhead_s", "--folds", "0",
            "--name", "sample")
    assert r.returncode == 0, r.stderr
    profile = load_profile(str(out))
    fitted = profile.engines[next(iter(profile.engines))]["request_overhead_s"]
    assert 0.0 <= fitted.value <= 0.3 and (fitted.lower, fitted.upper) == (0.0, 0.3)
    assert "--fit vllm.request_overhead_s" in profile.command and profile.rows == 40
    # The profile is usable by validate.
    v = validate_silicon(SAMPLE, str(out))
    assert v.calibration == str(out) and len(v.rows) == 40


@pytest.mark.parametrize("args, text", [
    (["--folds", "1"], "--folds"),
    (["--fit", "gemm_speed"], "--fit"),
])
def test_calibrate_bad_flags_exit_2(tmp_path, args, text):
    r = run("calibrate", str(SAMPLE), "--out", str(tmp_path / "p.yaml"), *args)
    assert r.returncode == 2 and text in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("content, field", [
    ("- a list\n", "calibration"),
    ("name: x\nfitted_on: y\nrows: 1\nrows_hash: z\ncommand: c\n", "calibration.in_sample"),
    ("name: x\nfitted_on: y\nrows: 1\nrows_hash: z\ncommand: c\nin_sample: {ttft: 0.1, tpot: 0.1}\nassumptions: {gemm_speed: {value: 1, uncertainty: 0,"
     " lower: 0, upper: 2}}\n", "calibration.assumptions.gemm_speed"),
    ("name: x\nfitted_on: y\nrows: 1\nrows_hash: z\ncommand: c\nin_sample: {ttft: 0.1, tpot: 0.1}\nengines: {tgi: {}}\n", "calibration.engines"),
])
def test_bad_profile_names_the_field(tmp_path, content, field):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(SpecError) as err:
        load_profile(str(path))
    assert err.value.field.startswith(field)


def test_missing_profile_is_a_spec_error():
    with pytest.raises(SpecError) as err:
        load_profile("/nonexistent/profile.yaml")
    assert err.value.field == "calibration"


def test_bundled_profile_records_what_it_was_fitted_on():
    p = load_profile()
    assert p.fitted_on.startswith("silicon-dev.csv") and p.rows > 2000
    for f in p.assumptions.values():
        assert f.lower <= f.value <= f.upper
    raw = yaml.safe_load(Path(str(Path(__file__).parents[2] / "src/meshplan/catalog/calibration/silicon-dev.yaml")).read_text())
    assert raw["command"].startswith("meshplan calibrate")
