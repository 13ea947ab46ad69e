"""A hardware profile (calibrate --microbench) in place of the catalog GPU's fractions, by hand."""

import math
import re
import subprocess
import sys

import pytest
import yaml

from meshplan.cost.inputs import CostInputs
from meshplan.errors import SpecError
from meshplan.io.catalog import load_gpu
from meshplan.io.hardware_profile import load_hardware_profile, measured_gpu
from meshplan.io.problem_file import problem_from_raw
from meshplan.specs.dtypes import DType

# An H100's bf16 tables, numbers chosen to be followed by hand (the shape calibrate --microbench writes).
PROFILE = {
    "schema": "meshplan.hardware-profile/1", "device": "NVIDIA H100 80GB HBM3", "device_kind": "cuda", "devices": 8,
    "dtype": "bfloat16", "torch": "2.13.0",
    "gemm": [{"m": 1, "n": 8192, "k": 8192, "seconds": 5.0e-05, "flops_per_s": 2.68e12, "bytes_per_s": 2.68e12},
             {"m": 8192, "n": 8192, "k": 8192, "seconds": 1.57e-3, "flops_per_s": 7.0e14, "bytes_per_s": 2.56e11}],
    "expert_gemm": [{"experts": 32, "tokens_per_expert": 1, "n": 4096, "k": 7168, "seconds": 7.5e-4,
                     "flops_per_s": 2.5e12, "bytes_per_s": 2.5e12},
                    {"experts": 32, "tokens_per_expert": 256, "n": 4096, "k": 7168, "seconds": 5e-4,
                     "flops_per_s": 4.8e14, "bytes_per_s": 2.0e12}],
    "attention_decode": [{"batch": 32, "context": 4096, "heads": 64, "kv_heads": 8, "head_dim": 128,
                          "seconds": 1e-4, "bytes_per_s": 2.7e12}],
    "collectives": [{"bytes": 65536, "devices": 8, "all_reduce_seconds": 2e-5, "all_reduce_bus_bytes_per_s": 5.7e9,
                     "all_to_all_seconds": 2e-5, "all_to_all_bus_bytes_per_s": 2.9e9},
                    {"bytes": 268435456, "devices": 8, "all_reduce_seconds": 1.47e-3,
                     "all_reduce_bus_bytes_per_s": 3.2e11, "all_to_all_seconds": 1.5e-3,
                     "all_to_all_bus_bytes_per_s": 1.6e11}],
    "summary": {"gemm_flops_per_s": 7.0e14}, "catalog": {"gpu": "h100-sxm"},
}


def _write(tmp_path, doc, name="hw.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_the_measured_rates_replace_the_catalogs_fractions_in_the_timed_format(tmp_path):
    path = _write(tmp_path, PROFILE)
    h100 = load_gpu("h100")
    gpu, note = measured_gpu(h100, load_hardware_profile(path), 0.8, path)
    # Largest GEMM 700 TFLOP/s of the H100's 989.4 bf16 peak; the M = 1 GEMM streams 2.68 TB/s of its
    # 3.35: 0.80; expert weights at one token per expert 2.5 / 3.35 = 0.746.
    assert math.isclose(gpu.gemm_efficiency[DType.BF16], 700 / 989.4)
    assert math.isclose(gpu.hbm_efficiency[DType.BF16], 2.68 / 3.35)
    assert math.isclose(gpu.moe_hbm_efficiency, 2.5 / 3.35)
    # The 256 MiB all-reduce's 320 GB/s bus bandwidth is what the model should use: the link it
    # multiplies by comm_efficiency 0.8 becomes 320 / 0.8 = 400 GB/s (catalog 450).
    assert math.isclose(gpu.intra_node_bw_bytes_per_s, 400e9)
    # FP8 was not timed: the catalog's 0.58 and 0.81 stay; so do the latencies.
    assert gpu.gemm_efficiency[DType.FP8] == h100.gemm_efficiency[DType.FP8]
    assert gpu.hbm_efficiency[DType.FP8] == h100.hbm_efficiency[DType.FP8]
    assert gpu.intra_node_latency_s == h100.intra_node_latency_s
    assert "bf16 GEMM efficiency 0.71 (catalog 0.78" in note and "NVLink 320 GB/s" in note


def test_a_plan_costs_with_them_and_its_notes_say_so(tmp_path):
    path = _write(tmp_path, PROFILE)
    raw = {"model": "llama-3.1-70b", "gpu": "h100", "precision": {"weights": "bf16"}, "workload": {"isl": 2000, "osl": 500},
           "calibration": None}
    base, measured = problem_from_raw(raw), problem_from_raw({**raw, "hardware_profile": path})
    # BF16 weights stream at 3.35 TB/s x 0.80 instead of x 0.82.
    assert math.isclose(CostInputs.from_problem(base).hbm_bytes_per_s, 3.35e12 * 0.82)
    assert math.isclose(CostInputs.from_problem(measured).hbm_bytes_per_s, 3.35e12 * 2.68 / 3.35)
    assert any(n.field == "hardware_profile" and path in n.message for n in measured.notes)


def test_a_rate_above_the_datasheet_is_capped_and_said(tmp_path):
    doc = {**PROFILE, "dtype": "float32"}  # 700 TFLOP/s against the fp32 (TF32) peak of 494.7
    path = _write(tmp_path, doc)
    gpu, note = measured_gpu(load_gpu("h100"), load_hardware_profile(path), 0.8, path)
    assert gpu.gemm_efficiency[DType.FP32] == 1.0
    assert "GEMM measured above the catalog's peak, capped at 1" in note


@pytest.mark.parametrize("change, rule", [
    ({"device_kind": "cpu"}, "was timed on the cpu"),
    ({"catalog": {"gpu": "h200"}}, "was measured as h200; the problem's GPU is h100-sxm"),
    ({"schema": "other/1"}, "is not a hardware profile"),
    ({"dtype": "int8"}, "profile.dtype = 'int8'"),
    ({"gemm": []}, "profile.gemm"),
    ({"extra": 1}, "profile.extra = 1: unknown key"),
])
def test_profiles_that_cannot_apply_are_refused_naming_why(tmp_path, change, rule):
    path = _write(tmp_path, {**PROFILE, **change})
    with pytest.raises(SpecError, match=re.escape(rule)):
        measured_gpu(load_gpu("h100"), load_hardware_profile(path), 0.8, path)


def test_the_flag_refuses_a_missing_file_with_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "meshplan.cli.main", "evaluate", "--model", "llama-3.1-8b", "--gpu", "h100",
                        "--gpus", "1", "--isl", "100", "--osl", "10", "--strategy", "tp=1", "--hardware-profile",
                        str(tmp_path / "none.yaml")], capture_output=True, text=True)
    assert r.returncode == 2 and "--hardware-profile" in r.stderr and "no such file" in r.stderr
    assert "Traceback" not in r.stderr


def test_what_the_microbenchmarks_write_is_what_a_plan_reads(tmp_path):
    pytest.importorskip("torch")
    from meshplan.execute.microbench import Sweep, measure  # imports torch: only past the guard above
    tiny = Sweep(gemm_m=(1, 4), gemm_nk=64, experts=2, tokens_per_expert=(1, 4), expert_n=32, expert_k=64,
                 decode_batch=(1,), decode_context=(32,), heads=4, kv_heads=2, head_dim=16, message_bytes=(1024,),
                 repeats=2)
    doc = measure("cpu", "float32", devices=1, sweep=tiny)
    path = _write(tmp_path, doc)
    profile = load_hardware_profile(path)  # the writer's format is the reader's
    assert profile.device_kind == "cpu" and len(profile.gemm) == 2 and profile.collectives == ()
    with pytest.raises(SpecError, match="was timed on the cpu"):
        measured_gpu(load_gpu("h100"), profile, 0.8, path)
