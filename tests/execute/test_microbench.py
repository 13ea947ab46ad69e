"""meshplan calibrate --microbench: the hardware profile's format (on the CPU, small sizes) and, on a
GPU machine, a real run."""

import subprocess
import sys

import pytest
import yaml

torch = pytest.importorskip("torch")

from meshplan.execute.microbench import CPU_SWEEP, SCHEMA, Sweep, measure, summary  # noqa: E402
from meshplan.io.catalog import load_gpu  # noqa: E402

TINY = Sweep(gemm_m=(1, 4), gemm_nk=64, experts=2, tokens_per_expert=(1, 4), expert_n=32, expert_k=64,
             decode_batch=(1, 2), decode_context=(32,), heads=4, kv_heads=2, head_dim=16,
             message_bytes=(1024,), repeats=2)


def run(*args):
    return subprocess.run([sys.executable, "-m", "meshplan.cli.main", *args], capture_output=True, text=True)


def test_cpu_profile_tables_and_their_arithmetic():
    doc = measure("cpu", "float32", devices=2, sweep=TINY)
    assert doc["schema"] == SCHEMA and doc["device_kind"] == "cpu" and doc["devices"] == 2
    assert [r["m"] for r in doc["gemm"]] == [1, 4]
    for r in doc["gemm"]:
        # 2 M N K FLOPs and (M K + K N + M N) x 4 bytes (fp32) in the measured time.
        assert r["flops_per_s"] == pytest.approx(2 * r["m"] * 64 * 64 / r["seconds"])
        assert r["bytes_per_s"] == pytest.approx((r["m"] * 64 + 64 * 64 + r["m"] * 64) * 4 / r["seconds"])
    for r in doc["expert_gemm"]:
        assert r["flops_per_s"] == pytest.approx(2 * 2 * r["tokens_per_expert"] * 32 * 64 / r["seconds"])
    assert len(doc["attention_decode"]) == 2  # batch 1 and 2 at context 32
    for r in doc["attention_decode"]:
        # K and V of the batch's contexts: 2 x B x 2 KV heads x 32 tokens x 16 dims x 4 bytes.
        assert r["bytes_per_s"] == pytest.approx(2 * r["batch"] * 2 * 32 * 16 * 4 / r["seconds"])
    (c,) = doc["collectives"]  # two gloo processes, one 1 KiB message
    assert c["devices"] == 2 and c["bytes"] == 1024
    # nccl-tests' bus bandwidth: all-reduce 2(n-1)/n = 1 x bytes / time at n = 2; all-to-all 1/2.
    assert c["all_reduce_bus_bytes_per_s"] == pytest.approx(1024 / c["all_reduce_seconds"])
    assert c["all_to_all_bus_bytes_per_s"] == pytest.approx(512 / c["all_to_all_seconds"])
    s = doc["summary"]
    assert s == summary(doc)
    assert s["gemm_flops_per_s"] == max(r["flops_per_s"] for r in doc["gemm"])
    assert s["gemm_small_m_bytes_per_s"] == doc["gemm"][0]["bytes_per_s"]


def test_cli_writes_the_profile_and_compares_with_the_catalog(tmp_path):
    out = tmp_path / "hw.yaml"
    r = run("calibrate", "--microbench", "--device", "cpu", "--dtype", "float32", "--gpu", "h100", "--out", str(out))
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(out.read_text())
    assert doc["schema"] == SCHEMA and len(doc["gemm"]) == len(CPU_SWEEP.gemm_m)
    # A share is a measured rate over the catalog H100's figure: decode attention's bytes/s over its
    # HBM bandwidth, recomputed here from the profile's own summary.
    assert doc["catalog"]["decode_attention_of_hbm"] == pytest.approx(
        doc["summary"]["decode_attention_bytes_per_s"] / load_gpu("h100").hbm_bw_bytes_per_s)
    assert "Against the catalog's h100-sxm" in r.stdout


@pytest.mark.parametrize("args, field", [
    (["--microbench", "--out", "{d}/x.yaml", "--dtype", "int8", "--device", "cpu"], "--dtype"),
    (["--microbench", "--out", "{d}/x.yaml", "--gpu", "tpu9", "--device", "cpu"], "gpu"),
    (["--microbench", "--out", "{d}/nothere/x.yaml", "--device", "cpu"], "--out"),
    (["--microbench", "--out", "{d}/x.yaml", "--folds", "3", "--device", "cpu"], "--folds"),
    (["--microbench", "--out", "{d}/x.yaml", "--name", "n", "--device", "cpu"], "--name"),
    (["{d}/runs.csv", "--out", "{d}/x.yaml", "--device", "cpu"], "--device"),
])
def test_bad_microbench_flags_exit_2(tmp_path, args, field):
    r = run("calibrate", *[a.format(d=tmp_path) for a in args])
    assert r.returncode == 2, r.stderr
    assert field in r.stderr and "Traceback" not in r.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_microbench_reaches_a_gpu_rate(tmp_path):
    out = tmp_path / "hw.yaml"
    r = run("calibrate", "--microbench", "--out", str(out), "--gpu", "h200")
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(out.read_text())
    # A GPU's BF16 GEMM at M = 8192 runs above 100 TFLOP/s on any data-centre part since A100.
    assert doc["summary"]["gemm_flops_per_s"] > 100e12
    assert 0.05 < doc["catalog"]["gemm_of_peak"] <= 1.0
    # The profile then costs a plan on that GPU, and the plan's notes say so.
    r = run("evaluate", "--model", "llama-3.1-8b", "--gpu", "h200", "--gpus", "1", "--weights", "bf16", "--isl", "1000",
            "--osl", "100", "--strategy", "tp=1", "--hardware-profile", str(out))
    assert r.returncode == 0, r.stderr
    assert "note (hardware_profile)" in r.stdout
