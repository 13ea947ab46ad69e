"""calibrate --by: the assumption factors refitted per GPU and/or engine, on top of the pooled fit,
and applied to the problems on that GPU (and engine)."""

import subprocess
import sys
from pathlib import Path

import pytest

from meshplan.cost.inputs import CostInputs
from meshplan.io.calibration import load_profile, partition_for
from meshplan.io.problem_file import problem_from_raw
from meshplan.specs.calibration import CalibrationProfile, FitError, FittedFactor, PartitionFit

SAMPLE = Path(__file__).parent / "fixtures" / "silicon-sample.csv"


def run(*args):
    return subprocess.run([sys.executable, "-m", "meshplan.cli.main", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def by_gpu(tmp_path_factory):
    out = tmp_path_factory.mktemp("by") / "by.yaml"
    r = run("calibrate", str(SAMPLE), "--out", str(out), "--folds", "0", "--by", "gpu",
            "--fit", "kernel_floor_scale,vllm.request_overhead_s")
    assert r.returncode == 0, r.stderr
    return out, r.stdout


def test_partitions_with_enough_runs_are_refitted(by_gpu):
    out, stdout = by_gpu
    profile = load_profile(str(out))
    # The sample has 10 B200 runs, 8 on GB200 and on H100, 6 on H200, 4 on B300 and GB300: one
    # factor needs 5 runs, so the last two keep the pooled value.
    assert sorted(p.gpu for p in profile.partitions) == ["b200", "gb200", "h100-sxm", "h200"]
    assert "b300       4     not refitted: 4 runs, fewer than 5 per factor (1)" in stdout
    assert all(set(p.assumptions) == {"kernel_floor_scale"} and p.engine is None for p in profile.partitions)
    assert "--by gpu" in profile.command


def test_a_problem_on_a_refitted_gpu_takes_its_partition_value(by_gpu):
    out, _ = by_gpu
    profile = load_profile(str(out))
    b200 = next(p for p in profile.partitions if p.gpu == "b200").assumptions["kernel_floor_scale"].value
    pooled = profile.assumptions["kernel_floor_scale"].value
    assert b200 != pooled

    def problem(gpu):
        return problem_from_raw({"model": "llama-3.1-8b", "gpu": gpu, "calibration": str(out),
                                 "workload": {"isl": 1000, "osl": 100}})

    # The per-kernel floor is the GPU's floor x kernel_floor_scale (cost/inputs.py kernel_floor_s).
    on_b200, on_b300 = problem("b200"), problem("b300")
    assert CostInputs.from_problem(on_b200).kernel_floor_s == pytest.approx(on_b200.gpu.kernel_floor_s * b200)
    assert CostInputs.from_problem(on_b300).kernel_floor_s == pytest.approx(on_b300.gpu.kernel_floor_s * pooled)
    note = next(n.message for n in on_b200.notes if n.field == "calibration")
    assert "refitted on its b200 runs" in note


def test_the_most_specific_partition_applies():
    err = FitError(ttft=0.1, tpot=0.1)

    def part(gpu, engine, v):
        return PartitionFit(gpu=gpu, engine=engine, rows=10, in_sample=err, pooled=err,
                            assumptions={"kernel_floor_scale": FittedFactor(value=v, uncertainty=0, lower=0.2, upper=2.5)})

    profile = CalibrationProfile(name="p", fitted_on="x", rows=1, rows_hash="0", command="c", in_sample=err,
                                 partitions=[part("h100-sxm", None, 1.0), part(None, "vllm", 2.0),
                                             part("h100-sxm", "vllm", 3.0)])
    value = lambda gpu, eng: partition_for(profile, gpu, eng).assumptions["kernel_floor_scale"].value  # noqa: E731
    assert value("h100-sxm", "vllm") == 3.0  # GPU and engine
    assert value("h100-sxm", "sglang") == 1.0  # GPU only
    assert value("b200", "vllm") == 2.0  # engine only
    assert partition_for(profile, "b200", "sglang") is None


@pytest.mark.parametrize("by", ["model", "gpu,gpu", "gpu;engine"])
def test_bad_by_exits_2(tmp_path, by):
    r = run("calibrate", str(SAMPLE), "--out", str(tmp_path / "x.yaml"), "--folds", "0", "--by", by)
    assert r.returncode == 2 and "--by" in r.stderr and "Traceback" not in r.stderr
