"""Validation and calibration on a small sample of the dev set.

fixtures/silicon-sample.csv holds 44 rows of shared/cases/silicon-dev.csv: sorted by id, the first
two predictable rows of every (backend, system, mode) group, and the first row of each skip reason.
The error bounds below are far wider than the dev-set medians (TPOT ~12%, TTFT ~28%): they catch a
broken step model, not a drift of a few points; `meshplan validate` on the whole file reports those.
"""

import dataclasses
import hashlib
import math
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import meshplan.fidelity.calibrate as calibrate
from meshplan.cli.calibrate_cmd import run_calibrate
from meshplan.errors import SpecError
from meshplan.fidelity.calibrate import FACTORS, adjust_for, cross_validate, fit, log_errors
from meshplan.fidelity.predict import group_cases
from meshplan.fidelity.silicon import SkipReason, read_silicon
from meshplan.fidelity.simulated import MAX_CLIENTS, simulate_groups
from meshplan.fidelity.validation import SCHEMA, validate_silicon
from meshplan.io.calibration import load_profile
from meshplan.specs.engine import Engine

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
    # --base none: the factors not fitted keep their sourced defaults (the bundled profile's otherwise).
    r = run("calibrate", str(SAMPLE), "--out", str(out), "--fit", "vllm.request_overhead_s", "--folds", "0",
            "--name", "sample", "--base", "none")
    assert r.returncode == 0, r.stderr
    profile = load_profile(str(out))
    fitted = profile.engines[next(iter(profile.engines))]["request_overhead_s"]
    assert (fitted.lower, fitted.upper) == (0.0, 0.3)
    assert "--fit vllm.request_overhead_s" in profile.command and profile.rows == 40
    # The profile is usable by validate, and moves only what it fitted: the front end's time per
    # request adds to every vLLM run's TTFT (cost.closed_loop: after the loop's rate is solved) and
    # to nothing else.
    fitted_v, plain = validate_silicon(SAMPLE, str(out)), validate_silicon(SAMPLE, "none")
    assert fitted_v.calibration == str(out) and len(fitted_v.rows) == 40
    for a, b in zip(fitted_v.rows, plain.rows):
        shift = fitted.value * 1e3 if a.case.engine.value == "vllm" else 0.0
        assert a.prediction.ttft_ms == pytest.approx(b.prediction.ttft_ms + shift, rel=1e-9, abs=1e-9)
        assert a.prediction.tpot_ms == pytest.approx(b.prediction.tpot_ms, rel=1e-9)


@pytest.mark.parametrize("args, text", [
    (["--folds", "1"], "--folds"),
    (["--fit", "gemm_speed"], "--fit"),
    (["--fit", "trtllm.host_gap_s", "--folds", "0"], "--fit"),  # known, but checked on its engine's runs
])
def test_calibrate_bad_flags_exit_2(tmp_path, args, text):
    cases = SAMPLE
    if "trtllm.host_gap_s" in args:  # a file of vLLM runs only
        rows = SAMPLE.read_text().splitlines()
        cases = tmp_path / "vllm.csv"
        cases.write_text("\n".join([rows[0]] + [r for r in rows[1:] if ",vllm," in r]) + "\n")
    r = run("calibrate", str(cases), "--out", str(tmp_path / "p.yaml"), *args)
    assert r.returncode == 2 and text in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("content, field", [
    ("- a list\n", "calibration"),
    ("name: x\nfitted_on: y\nrows: 1\nrows_hash: z\ncommand: c\n", "calibration.in_sample"),
    ("name: x\nfitted_on: y\nrows: 1\nrows_hash: z\ncommand: c\nin_sample: {ttft: 0.1, tpot: 0.1}\nassumptions: {gemm_speed: {value: 1, uncertainty: 0,"
     " lower: 0, upper: 2}}\n", "calibration.assumptions.gemm_speed"),
    ("name: x\nfitted_on: y\nrows: 1\nrows_hash: z\ncommand: c\nin_sample: {ttft: 0.1, tpot: 0.1}\nengines: {tgi: {}}\n", "calibration.engines"),
    # Outside the bounds it records, or a value its field does not take:
    ("name: x\nfitted_on: y\nrows: 1\nrows_hash: z\ncommand: c\nin_sample: {ttft: 0.1, tpot: 0.1}\nassumptions: {clump_coherence: {value: 7, uncertainty: 0, lower: 0, upper: 1}}\n",
     "calibration.assumptions.clump_coherence"),
    ("name: x\nfitted_on: y\nrows: 1\nrows_hash: z\ncommand: c\nin_sample: {ttft: 0.1, tpot: 0.1}\nassumptions: {kv_sizing: {value: 1, uncertainty: 0, lower: 0, upper: 2}}\n",
     "calibration.assumptions.kv_sizing"),
    ("name: x\nfitted_on: y\nrows: 1\nrows_hash: z\ncommand: c\nin_sample: {ttft: 0.1, tpot: 0.1}\nbenchmark: {clients: {value: 1, uncertainty: 0, lower: 0, upper: 2}}\n", "calibration.benchmark.clients"),
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
    assert p.fitted_on.startswith("silicon-dev.csv")
    # It was fitted on exactly the runs the dev set's reader predicts today: their count, and the
    # first 16 hex digits of the sha256 of their sorted ids (fidelity.calibrate.rows_hash).
    dev = Path(__file__).resolve().parents[2].parent / "shared" / "cases" / "silicon-dev.csv"
    cases, _ = read_silicon(dev)
    ids = "\n".join(sorted(c.id for c in cases))
    assert p.rows == len(cases) and p.rows_hash == hashlib.sha256(ids.encode()).hexdigest()[:16]
    raw = yaml.safe_load(Path(str(Path(__file__).parents[2] / "src/meshplan/catalog/calibration/silicon-dev.yaml")).read_text())
    assert raw["command"].startswith("meshplan calibrate")


def _simulated(c) -> bool:
    """Whether a run's simulation would hold at most MAX_CLIENTS requests in flight (a disaggregated
    run's clients, an aggregated one's per instance): the others keep the closed form."""
    return (c.concurrency if c.disaggregated else round(c.concurrency / c.layout.instances)) <= MAX_CLIENTS


def test_the_bundled_profile_fitted_by_simulation_the_benchmark_factors_then_two_engine_factors():
    top = load_profile()
    p = load_profile(top.base)
    bench = load_profile(p.base)
    assert top.simulated.factors == ["sglang.fp8_fused_moe_share"] and top.base == "silicon-dev-trtllm-launch"
    assert p.simulated.factors == ["trtllm.kernel_launch_s"] and p.base == "silicon-dev-benchmark"
    assert bench.simulated.factors == ["requests_per_client", "client_overhead_s"]
    # The first fit by simulation held the closed form's fit, which is bundled too and loads.
    assert bench.base == "silicon-dev-closed-form" and load_profile(bench.base).simulated is None
    dev = Path(__file__).resolve().parents[2].parent / "shared" / "cases" / "silicon-dev.csv"
    cases, _ = read_silicon(dev)
    unstated = [c.id for c in cases if c.harness.requests_per_client is None]
    # aiconfigurator's own runs, every one of which the simulator takes.
    assert bench.simulated.rows == len(unstated) and bench.simulated.rows_hash == calibrate.ids_hash(unstated)
    assert "--sim-fit requests_per_client,client_overhead_s" in bench.command
    # TensorRT-LLM's runs, whatever their client, but for those whose simulation would hold more than
    # MAX_CLIENTS requests in flight (a disaggregated run's clients, an aggregated one's per
    # instance), which keep the closed form.
    trt = [c.id for c in cases if c.engine is Engine.TRTLLM and _simulated(c)]
    assert len(trt) < sum(c.engine is Engine.TRTLLM for c in cases)
    assert p.simulated.rows == len(trt) and p.simulated.rows_hash == calibrate.ids_hash(trt)
    assert "--sim-fit trtllm.kernel_launch_s --base silicon-dev-benchmark" in p.command
    # It moved that factor alone: every other is the first fit by simulation's.
    assert p.engines["trtllm"]["kernel_launch_s"].value != bench.engines["trtllm"]["kernel_launch_s"].value
    assert p.assumptions == bench.assumptions and p.benchmark == bench.benchmark
    assert {e: v for e, v in p.engines.items() if e != "trtllm"} == {e: v for e, v in bench.engines.items() if e != "trtllm"}
    # Then SGLang's fused-MoE share with FP8 experts, on its runs with FP8 experts that the simulator
    # takes; the factor was not in the profiles before, and nothing else moved.
    groups = [g for g in group_cases([c for c in cases if c.engine is Engine.SGLANG], "none")
              if g.ci.expert_dtype.value == "fp8"]
    # The simulator refuses one layout, whose runs keep the closed form: DeepSeek-R1 disaggregated
    # on GB200 (cfg227), which cannot hold the model and one request (validate --sim says so).
    refused = [g for g in groups if any(c.id.endswith("_cfg227") for c in g.cases)]
    assert len(refused) == 1 and all(isinstance(s, str) for s in simulate_groups(refused, replicas=1).values())
    fp8 = [c.id for g in groups if g not in refused for c in g.cases if _simulated(c)]
    assert 0 < len(fp8) < sum(c.engine is Engine.SGLANG for c in cases)
    assert top.simulated.rows == len(fp8) and top.simulated.rows_hash == calibrate.ids_hash(fp8)
    assert "--sim-fit sglang.fp8_fused_moe_share --base silicon-dev-trtllm-launch" in top.command
    assert 0.25 < top.engines["sglang"]["fp8_fused_moe_share"].value < 1.0
    assert "fp8_fused_moe_share" not in p.engines["sglang"]
    assert top.assumptions == p.assumptions and top.benchmark == p.benchmark and top.engines["trtllm"] == p.engines["trtllm"]
    assert {k: v for k, v in top.engines["sglang"].items() if k != "fp8_fused_moe_share"} == p.engines["sglang"]


def test_cross_validation_needs_several_model_gpu_groups(tmp_path):
    rows = SAMPLE.read_text().splitlines()
    one = tmp_path / "one.csv"
    one.write_text("\n".join([rows[0]] + [r for r in rows[1:] if ",vllm," in r and ",h200_sxm," in r][:2]) + "\n")
    r = run("calibrate", str(one), "--out", str(tmp_path / "p.yaml"), "--fit", "vllm.host_gap_s")
    assert r.returncode == 2 and "--folds" in r.stderr and "Traceback" not in r.stderr


def test_output_paths_that_are_folders_exit_2(tmp_path):
    r = run("calibrate", str(SAMPLE), "--out", str(tmp_path), "--folds", "0")
    assert r.returncode == 2 and "--out" in r.stderr and "Traceback" not in r.stderr
    r = run("validate", str(SAMPLE), "--json", str(tmp_path))
    assert r.returncode == 2 and "--json" in r.stderr and "Traceback" not in r.stderr


def test_json_to_stdout_is_the_json_alone(tmp_path):
    r = run("validate", str(SAMPLE), "--json", "-")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["schema"] == SCHEMA
    # The published cases too: one object per figure, with its error.
    r = run("validate", "--json", "-")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert rows and all(abs(x["error"] - (x["predicted"] / x["measured"] - 1)) < 1e-12 for x in rows)


def test_validate_says_whether_its_errors_are_in_sample(tmp_path):
    # The bundled profile was fitted on the dev set, not on this sample: out of sample here, with
    # the cross-validated error the profile recorded; a profile fitted on the sample itself says
    # its medians are in-sample.
    out = run("validate", str(SAMPLE))
    assert "was fitted on other runs" in out.stdout and "cross-validated TTFT" in out.stdout
    # The bundled profile's benchmark factors were fitted by simulation: its closed-form factors'
    # cross-validation is its base's, and the output says which is which.
    # Three fits by simulation, each on the runs its factors reach, stand between it and that base.
    assert "kept from profile silicon-dev-closed-form" in out.stdout
    assert ("fitted by simulation and not cross-validated: sglang.fp8_fused_moe_share on 411 runs; "
            "trtllm.kernel_launch_s on 1,016 runs; requests_per_client, client_overhead_s on 731 runs") in out.stdout
    p = tmp_path / "s.yaml"
    assert run("calibrate", str(SAMPLE), "--out", str(p), "--fit", "vllm.request_overhead_s", "--folds", "0").returncode == 0
    out = run("validate", str(SAMPLE), "--profile", str(p))
    assert "was fitted on these 40 runs: the medians above are in-sample" in out.stdout
    assert "no cross-validation recorded" in out.stdout
    assert "No calibration profile" in run("validate", str(SAMPLE), "--profile", "none").stdout


def test_leave_one_group_out_predicts_each_group_by_a_fit_without_it():
    # With one fold per model x GPU group, a group's cross-validated errors are those of a fit on
    # every other group: check one group against a fit made here without it.
    cases, _ = read_silicon(SAMPLE)
    groups = group_cases(cases, "none")
    factor = [f for f in FACTORS if f.name == "vllm.request_overhead_s"]
    labels = []
    t_cv, p_cv = cross_validate(groups, factor, [0.05], leave_one_out=True, progress=lambda *a: labels.append(a[2]))
    keys = sorted({(g.cases[0].model, g.cases[0].gpu) for g in groups})
    assert labels == [f"{model} x {gpu}" for model, gpu in keys]  # one fold per group, named by it
    held_out = keys[0]
    train = [g for g in groups if (g.cases[0].model, g.cases[0].gpu) != held_out]
    test = [g for g in groups if (g.cases[0].model, g.cases[0].gpu) == held_out]
    result = fit(train, factor, [0.05])
    t, p = log_errors(test, adjust_for(factor, result.values))
    # cross_validate returns the folds in key order, so the first group's runs come first.
    n = len(t)
    assert np.allclose(t_cv[:n], np.expm1(t)) and np.allclose(p_cv[:n], np.expm1(p))
    assert len(t_cv) == sum(len(g.cases) for g in groups)


def test_calibrate_folds_groups_is_recorded(tmp_path):
    out = tmp_path / "logo.yaml"
    r = run("calibrate", str(SAMPLE), "--out", str(out), "--fit", "vllm.request_overhead_s", "--folds", "groups")
    assert r.returncode == 0, r.stderr
    profile = load_profile(str(out))
    assert profile.leave_one_group_out and profile.folds == 15 and "--folds groups" in profile.command
    assert "leaving out one of 15 model x GPU groups" in r.stdout
    assert "15 of 15 folds fitted" in r.stderr  # a fit that runs long says how far it is
    bad = run("calibrate", str(SAMPLE), "--out", str(out), "--folds", "some")
    assert bad.returncode == 2 and "--folds" in bad.stderr


def test_folds_fitted_side_by_side_give_the_same_figures():
    cases, _ = read_silicon(SAMPLE)
    groups = group_cases(cases, "none")
    factor = [f for f in FACTORS if f.name == "vllm.request_overhead_s"]
    one = cross_validate(groups, factor, [0.05], folds=3)
    seen = []
    two = cross_validate(groups, factor, [0.05], folds=3, jobs=2, progress=lambda *a: seen.append(a))
    assert np.array_equal(one[0], two[0]) and np.array_equal(one[1], two[1])
    # Each fold is reported once as its fit ends, in whatever order the processes finish.
    assert [n for n, _, _ in seen] == [1, 2, 3] and {t for _, t, _ in seen} == {3}
    assert sorted(label for _, _, label in seen) == ["fold 1", "fold 2", "fold 3"]


def test_a_factor_on_its_bound_is_reported_so():
    floor = next(f for f in FACTORS if f.name == "kernel_floor_scale")  # bounds [0.2, 2.5]
    # BOUND_SHARE is 1e-3 of the range 2.3: within 0.0023 of a bound counts as on it.
    assert floor.bound_reached(0.2) == "lower" and floor.bound_reached(0.2022) == "lower"
    assert floor.bound_reached(0.2024) == "" and floor.bound_reached(1.46) == ""
    assert floor.bound_reached(2.4978) == "upper" and floor.bound_reached(2.5) == "upper"


def test_calibrate_says_which_factors_stopped_on_a_bound(tmp_path, monkeypatch, capsys):
    # The sample's runs pull the kernel floor scale to about 1.9 (fitted alone from the sourced
    # defaults); with its upper bound lowered to 1.0 the fit must stop there and say so.
    narrowed = tuple(dataclasses.replace(f, upper=1.0) if f.name == "kernel_floor_scale" else f
                     for f in calibrate.FACTORS)
    monkeypatch.setattr(calibrate, "FACTORS", narrowed)
    out = tmp_path / "bound.yaml"
    run_calibrate(str(SAMPLE), str(out), ["kernel_floor_scale"], 0, "bound", "none")
    text = capsys.readouterr().out
    assert "[0.2, 1] (at upper)" in text and "undetermined" in text
    assert "On a bound: kernel_floor_scale (upper 1)." in text
    assert load_profile(str(out)).assumptions["kernel_floor_scale"].value == pytest.approx(1.0, abs=1e-3)


def test_factors_that_scale_one_rate_compose():
    groups = group_cases(read_silicon(SAMPLE)[0], "none")  # sourced defaults: grouped 0.6, sustained 1
    share = next(f for f in FACTORS if f.name == "sustained_gemm_share")
    grouped = next(f for f in FACTORS if f.name == "grouped_gemm_efficiency")
    g = groups[0]
    ci = adjust_for([share, grouped], [0.8, 0.3])(g)
    # Both scale the experts' rate: by 0.8 and by 0.3 / 0.6 (the grouped efficiency relative to its
    # default), so 0.4 of the default's; the sustained share alone scales the other rates.
    assert math.isclose(ci.expert_flop_per_s, 0.4 * g.ci.expert_flop_per_s)
    for name in ("attn_flop_per_s", "attn_out_flop_per_s", "shared_flop_per_s", "other_flop_per_s", "core_flop_per_s"):
        assert math.isclose(getattr(ci, name), 0.8 * getattr(g.ci, name)), name
    assert ci.hbm_bytes_per_s == g.ci.hbm_bytes_per_s
