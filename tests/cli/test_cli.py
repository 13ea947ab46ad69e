"""The command line: plan, evaluate, catalogs, bad input (exit code 2, no traceback)."""

import json
import os
import re
import subprocess
import sys

import pytest

from meshplan.cli.run_cmd import fit_instances
from meshplan.errors import SpecError
from meshplan.io.catalog import CATALOG
from meshplan.strategy.layout import parse_strategy

REQUIRED = ["gpus_total", "feasible", "violations", "ttft_s", "tpot_s", "output_tok_s", "output_tok_s_per_gpu",
            "input_tok_s_per_gpu", "max_concurrency", "memory_per_gpu_bytes", "kv_cache_bytes_per_token", "phases"]


def run(*args):
    return subprocess.run([sys.executable, "-m", "meshplan.cli.main", *args], capture_output=True, text=True)


def test_plan_seed_json_has_every_key(tmp_path):
    out = tmp_path / "plan.json"
    r = run("plan", "--json", str(out), "--markdown", str(tmp_path / "plan.md"))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"].startswith("meshplan.plan/")
    for key in REQUIRED:
        assert key in doc
    assert set(doc["memory_per_gpu_bytes"]) >= {"weights", "kv_cache", "activations", "total", "capacity"}
    for phase in doc["phases"].values():
        if phase is not None:
            assert "strategy" in phase and "ttft_s" in phase
    # The seed's mistakes, not repeated: the throughput requirement is reported as not met, with
    # the bound; the KV cache is counted; the declared 10B is flagged.
    check = {c["requirement"]: c for c in doc["requirements_check"]}
    assert check["min_output_tok_s_per_gpu"]["met"] is False
    assert check["min_output_tok_s_per_gpu"]["bound"]["value"] < 100_000
    assert doc["memory_per_gpu_bytes"]["kv_cache"] > 10 * 2**30
    assert any(n["field"] == "model.declared_params" for n in doc["notes"])
    assert "cannot be met" in (tmp_path / "plan.md").read_text()


def test_evaluate_json():
    r = run("evaluate", "--model", "deepseek-v3", "--gpu", "h800", "--weights", "fp8", "--isl", "4000", "--osl",
            "500", "--strategy", "tp=1,dp=32,ep=32", "--json", "-")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["gpus_total"] == 32 and doc["kv_cache_bytes_per_token"] == 70272
    assert doc["phases"]["decode"]["strategy"]["ep"] == 32
    assert doc["why_not"]


@pytest.mark.parametrize("args", [
    ["plan", "--model", "deepseek-v9", "--gpu", "h800", "--isl", "1", "--osl", "1"],
    ["plan", "--model", "deepseek-v3", "--gpu", "h900", "--isl", "1", "--osl", "1"],
    ["plan", "--model", "deepseek-v3", "--gpu", "h800", "--isl", "0", "--osl", "1"],
    ["plan", "--ttft", "0"],
    ["evaluate", "--model", "deepseek-v3", "--gpu", "h800", "--isl", "10", "--osl", "1", "--strategy", "tp=3"],
    ["evaluate", "--model", "deepseek-v3", "--gpu", "h800", "--isl", "10", "--osl", "1", "--strategy", "tp=4,dp=8,ep=16"],
    ["evaluate", "--model", "deepseek-v3", "--gpu", "h800", "--isl", "10", "--osl", "1", "--strategy", "dp=6,ep=6"],
    ["evaluate", "--model", "deepseek-v3", "--gpu", "h800", "--isl", "10", "--osl", "1", "--strategy", "dp=32",
     "--gpus", "16"],
])
def test_bad_input_exits_2_without_traceback(args):
    r = run(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip()


def test_devicemesh_is_not_a_serving_engine():
    r = run("plan", "--model", "llama-3.1-8b", "--gpu", "h100", "--isl", "100", "--osl", "100", "--engine", "devicemesh")
    assert r.returncode == 2 and "engine" in r.stderr and "Traceback" not in r.stderr


def test_catalog_commands():
    assert "deepseek-v3" in run("models").stdout
    assert "h100-sxm" in run("gpus").stdout


def test_validate_prints_median():
    r = run("validate")
    assert r.returncode == 0, r.stderr
    assert "median absolute error" in r.stdout


def test_evaluate_the_seed_plan():
    r = run("evaluate", str(CATALOG / "problems" / "seed-plan.md"), "--json", "-")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["gpus_total"] == 128 and doc["seed_reading"]["layout"].startswith("instances=8")
    assert "fewer tokens/s per GPU" in doc["why_not"]


def test_min_gpus_objective_needs_a_target():
    r = run("plan", "--model", "llama-3.1-8b", "--gpu", "h100", "--isl", "100", "--osl", "100",
            "--objective", "min-gpus")
    assert r.returncode == 2 and "min_output_tok_s" in r.stderr


def test_yaml_key_typo_exits_2(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("model: deepseek-v3\ngpu: h800\nworkload: {isl: 100, osl: 100}\nrequirments: {ttft_s: 1}\n")
    r = run("plan", str(f))
    assert r.returncode == 2 and "requirments" in r.stderr and "did you mean requirements" in r.stderr
    assert "Traceback" not in r.stderr


def test_run_with_no_problem_runs_the_seed_plan_and_the_seeds_own_layout():
    pytest.importorskip("torch")
    r = run("run", "--requests", "4", "--run-isl", "4", "--run-osl", "3")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    # meshplan's plan for the seed (1 GPU) and the seed plan's claim: attention dp 16 x ep 16.
    assert "meshplan plan" in out and "dp=16,ep=16" in out
    assert out.count("generated tokens equal a single-process run: yes") == 2
    assert "of it in collectives" in out and "predicted with the device profile" in out
    # 16 processes on fewer cores: the prediction says what share of a core each had.
    assert ("CPU share per process" in out) == (len(os.sched_getaffinity(0)) < 16)


def test_run_refuses_an_illegal_layout_before_starting():
    pytest.importorskip("torch")
    r = run("run", "--strategy", "tp=3")
    assert r.returncode != 0
    assert "strategy" in r.stderr and "Traceback" not in r.stderr


def test_run_keeps_whole_instances_within_the_process_limit():
    lay = parse_strategy("instances=4,dp=4,ep=4")  # 4 instances x 4 GPUs = 16 processes
    assert fit_instances(lay, 32) == (lay, None)
    fitted, note = fit_instances(lay, 9)  # two whole instances (8 processes) fit in 9
    assert fitted.instances == 2 and fitted.gpus == 8 and "2 of the plan's 4 instances" in note
    with pytest.raises(SpecError) as err:
        fit_instances(lay, 3)
    assert "needs 4 processes" in str(err.value)


CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def test_user_strings_reach_the_terminal_without_control_characters(tmp_path):
    f = tmp_path / "p.yaml"  # YAML escapes: ESC [2J (clear), an OSC window title, CR, and a newline
    f.write_text('name: "evil\\e[2J\\e]0;owned\\a\\rname\\nplan: fake"\nmodel: llama-3.1-8b\ngpu: h100-sxm\n'
                 "workload: {isl: 100, osl: 100}\n")
    r = run("evaluate", str(f), "--strategy", "tp=1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("evilname plan: fake: llama-3.1-8b on h100-sxm")
    assert not CONTROL.search(r.stdout)


def test_an_error_line_stays_one_printable_line(tmp_path):
    f = tmp_path / "p.yaml"  # a mistyped key that carries a colour, a CR and a second line
    f.write_text('model: deepseek-v3\ngpu: h800\nworkload: {isl: 100, osl: 100}\n'
                 '"requirments\\e[31m\\r\\nerror: all good": 1\n')
    r = run("plan", str(f))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and not CONTROL.search(r.stderr.rstrip("\n"))
    assert r.stderr.startswith("error: requirments error: all good = 1: unknown key")


def test_a_model_that_fits_nowhere_in_the_budget_exits_1_and_names_the_smallest_count(tmp_path):
    out = tmp_path / "plan.json"
    r = run("plan", "--model", "deepseek-v3", "--gpu", "h100", "--gpus", "2", "--isl", "4000", "--osl", "500",
            "--json", str(out))
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1].startswith("NO PLAN MEETS THE PROBLEM: nothing fits in 2")
    doc = json.loads(out.read_text())
    assert doc["verdict"]["status"] == "does_not_fit" and doc["feasible"] is False
    # No figures for a layout that cannot load its weights.
    assert doc["ttft_s"] is None and doc["output_tok_s_per_gpu"] is None
    # Hand bound: DeepSeek-V3 in FP8 is about 671e9 bytes of weights (plus BF16 embeddings), and an
    # H100 offers 0.9 x 80e9 = 72e9 usable bytes: at least 671 / 72 = 9.3, so 10 GPUs or more; a
    # 16-GPU instance (2 x 8-GPU nodes) holds it with room to spare.
    assert 10 <= doc["verdict"]["smallest_fit"]["gpus"] <= 16


def test_missed_requirements_are_said_first_and_exit_0_unless_strict():
    args = ("plan", "--model", "qwen3-30b-a3b", "--gpu", "h100", "--gpus", "8", "--isl", "4000", "--osl", "500",
            "--ttft", "0.01")
    r = run(*args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].startswith("NO PLAN MEETS THE PROBLEM: no layout meets every requirement (ttft_s)")
    assert "violation [ttft]" in r.stdout and "> target 10.00 ms" in r.stdout
    assert run(*args, "--strict").returncode == 1


def test_catalogs_as_json():
    models = json.loads(run("models", "--json").stdout)
    ds = next(m for m in models if m["name"] == "deepseek-v3")
    # DeepSeek-V3's published count: 671B parameters, 37B activated per token (arXiv:2412.19437).
    assert abs(ds["params_total"] / 671e9 - 1) < 0.02 and abs(ds["params_active"] / 37e9 - 1) < 0.05
    assert ds["checkpoints"]["deepseek-ai/DeepSeek-V3"]["experts"] == "fp8"
    # config.json: DeepSeek-V3 num_nextn_predict_layers 1, MiniMax-M2.5 num_mtp_modules 3, Llama none.
    mtp = {m["name"]: m["mtp_modules"] for m in models}
    assert mtp["deepseek-v3"] == 1 and mtp["minimax-m2.5"] == 3 and mtp["llama-3.1-8b"] == 0
    gpus = json.loads(run("gpus", "--json").stdout)
    h100 = next(g for g in gpus if g["name"] == "h100-sxm")
    assert h100["nvlink_domain_gpus"] == 8 and h100["memory_bytes"] > 79e9


def test_tp_across_nodes_is_evaluated_over_the_inter_node_link_and_flagged():
    r = run("evaluate", "--model", "deepseek-v3", "--gpu", "h200", "--weights", "fp8", "--isl", "4000", "--osl", "500",
            "--strategy", "tp=16,ep=16", "--json", "-")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert any("tp 16 spans 2 nodes of 8 GPUs" in n["message"] for n in doc["notes"])
    # The TP all-reduce of a 2-node group is costed on the inter-node link: slower than tp 8 inside a node.
    r8 = json.loads(run("evaluate", "--model", "deepseek-v3", "--gpu", "h200", "--weights", "fp8", "--isl", "4000",
                        "--osl", "500", "--strategy", "instances=2,tp=8,ep=8", "--json", "-").stdout)
    ar16 = next(o for o in doc["phases"]["decode"]["operators"]["moe_layer"] if o["op"] == "tp_all_reduce_attn")
    ar8 = next(o for o in r8["phases"]["decode"]["operators"]["moe_layer"] if o["op"] == "tp_all_reduce_attn")
    assert ar16["time_s"] > ar8["time_s"]


def test_experts_that_do_not_divide_suggest_the_redundant_count():
    args = ("evaluate", "--model", "deepseek-v3", "--gpu", "gb200", "--weights", "fp8", "--isl", "4000", "--osl", "500",
            "--strategy", "dp=72,ep=72")
    r = run(*args)
    # 256 experts over 72 ranks: 256 + 32 = 288 = 4 x 72.
    assert r.returncode == 2 and "with --redundant-experts 32 they divide (288 over ep 72)" in r.stderr
    assert run(*args, "--redundant-experts", "32").returncode == 0


def test_why_not_compares_with_the_search_under_the_same_budget():
    r = run("evaluate", "--model", "deepseek-v3", "--gpu", "h200", "--weights", "fp8", "--isl", "4000", "--osl", "500",
            "--strategy", "tp=8,ep=8", "--json", "-")
    doc = json.loads(r.stdout)
    assert doc["search_best"]["gpus_total"] <= 8  # the 8 GPUs the evaluated plan uses, not 1,024
    m = re.search(r"([\d.]+)% fewer tokens/s per GPU than the search's best within 8 GPUs", doc["why_not"])
    a, b = doc["output_tok_s_per_gpu"], doc["search_best"]["output_tok_s_per_gpu"]
    assert m and abs(float(m.group(1)) - (1 - a / b) * 100) <= 0.051


def test_a_files_strategy_is_honoured_by_plan_dag_and_export(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text('model: qwen3-30b-a3b\ngpu: h100\ngpus: 8\nworkload: {isl: 2000, osl: 500}\nstrategy: "tp=2,dp=2,ep=4"\n')
    r = run("plan", str(p))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].startswith("plan: aggregated: tp2 dp2 ep4")
    r = run("dag", str(p), "--out", str(tmp_path / "d"), "--format", "dot")
    assert r.returncode == 0 and r.stdout.startswith("prefill: tp2 dp2 ep4"), r.stdout + r.stderr
    r = run("export", str(p), "--engine", "vllm", "--out", str(tmp_path / "e"))
    assert r.returncode == 0, r.stderr
    script = (tmp_path / "e" / "aggregated-instance0-node0.sh").read_text()
    assert "--tensor-parallel-size 2" in script and "--data-parallel-size 2" in script


def test_a_long_engine_command_is_shortened_at_a_word_not_mid_word():
    cmd = "vllm serve meta-llama/Llama-3.3-70B-Instruct -tp 8 --max-num-seqs 64 --gpu-memory-utilization 0.9"
    r = run("check", "--vllm", cmd, "--gpu", "h100", "--isl", "2000", "--osl", "500")
    # 60 characters at most with " ...": the first 6 words are 50 characters; the 7th would make 69.
    assert r.stdout.splitlines()[0] == "check of vllm serve meta-llama/Llama-3.3-70B-Instruct -tp 8 ... (vllm command)"


def test_profile_flag_on_every_predicting_command(tmp_path):
    # --profile (alias --calibration) reaches plan, evaluate, simulate, export, check and validate:
    # 'none' turns the bundled fit off, so a figure must differ from the default run's, and a
    # missing profile is refused with exit 2 naming the field.
    flags = ["--model", "llama-3.1-70b", "--gpu", "h100", "--gpus", "8", "--isl", "1000", "--osl", "200"]
    a = json.loads(run("evaluate", *flags, "--strategy", "tp=8", "--json", "-").stdout)
    b = json.loads(run("evaluate", *flags, "--strategy", "tp=8", "--json", "-", "--profile", "none").stdout)
    assert a["ttft_s"] != b["ttft_s"]
    notes = json.loads(run("plan", *flags, "--json", "-", "--profile", "none").stdout)["notes"]
    assert not any(n["field"] == "calibration" and "silicon-dev" in n["message"] for n in notes)
    notes = json.loads(run("plan", *flags, "--json", "-").stdout)["notes"]
    assert any(n["field"] == "calibration" and "silicon-dev" in n["message"] for n in notes)
    for cmd in (["simulate", *flags, "--requests", "20", "--concurrency", "4"],
                ["export", *flags, "--engine", "vllm", "--strategy", "tp=8", "--out", str(tmp_path / "x")],
                ["check", "--vllm", "vllm serve meta-llama/Llama-3.1-70B -tp 8", "--gpu", "h100", "--isl", "1000",
                 "--osl", "200"]):
        bad = run(*cmd, "--profile", str(tmp_path / "missing.yaml"))
        assert bad.returncode == 2, (cmd, bad.stderr)
        assert "calibration" in bad.stderr and "Traceback" not in bad.stderr
    ok = run("check", "--vllm", "vllm serve meta-llama/Llama-3.1-70B -tp 8", "--gpu", "h100", "--isl", "1000",
             "--osl", "200", "--profile", "none")
    assert ok.returncode in (0, 1) and "prediction" in ok.stdout
