"""meshplan check: claims confirmed or shown wrong, on the shared plans and fixtures of our own."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meshplan.check.claims import ClaimKind, extract_claims
from meshplan.check.engines import parse_sglang, parse_trtllm, parse_vllm
from meshplan.cli.check_cmd import build_report
from meshplan.io.catalog import CATALOG

PROBLEMS = Path(str(CATALOG / "problems"))
FIX = Path(__file__).parent / "fixtures"


def _report(plan, problem=None, **kw):
    args = dict(plan=str(plan) if plan else None, problem_path=str(problem) if problem else None, vllm=None,
                sglang=None, trtllm=None, gpu=None, weights=None, isl=None, osl=None, tolerance=0.25)
    args.update(kw)
    return build_report(**args)


def _by(report, subject, verdict=None):
    return [c for c in report.checks if c.subject == subject and (verdict is None or c.verdict.value == verdict)]


def test_claims_are_read_with_their_lines():
    claims = extract_claims((PROBLEMS / "seed-plan.md").read_text())
    kinds = {(c.kind, c.line) for c in claims}
    assert (ClaimKind.GPUS_TOTAL, 4) in kinds and (ClaimKind.GPUS_TOTAL, 71) in kinds
    assert (ClaimKind.WEIGHTS_PER_GPU, 37) in kinds and (ClaimKind.TTFT, 76) in kinds
    # "Target Requirement: 12,800 tokens/ms" states a requirement, not a capability: no claim.
    assert not any(c.line == 53 for c in claims)


def test_seed_plan_findings():
    r = _report(PROBLEMS / "seed-plan.md")
    assert r.any_wrong
    # GPU totals: 16 (line 4) and 128 (lines 60, 61, 71, 83) contradict; 128 = DP 8 x EP 16.
    contradiction = [c for c in _by(r, "gpus_total", "wrong") if "contradicting" in c.message]
    assert contradiction and 4 in contradiction[0].lines and 71 in contradiction[0].lines
    assert any("multiplies EP" in c.message for c in _by(r, "gpus_total", "wrong"))
    # Memory undercounted: weights divided by EP ignore replicated attention and embeddings, and
    # the KV cache is missing: 128 sequences x 11,264 tokens x 32,768 B = 47.2 GB in total.
    w = _by(r, "weights_per_gpu", "wrong")[0]
    assert "replicated" in w.rule and w.meshplan > 0
    kv = _by(r, "kv_cache_per_gpu", "wrong")[0]
    assert kv.meshplan > 0 and "47.24 GB" in kv.message
    assert _by(r, "memory_per_gpu", "wrong")
    # Throughput restates the requirement: 12,800 tokens/ms = 100 tokens/ms x 128 GPUs.
    t = [c for c in _by(r, "output_tok_s", "wrong") if c.claimed == 12_800_000.0][0]
    assert "restates the requirement" in t.message and t.meshplan < t.claimed
    # TTFT: claimed 2.5 s against the prediction.
    ttft = _by(r, "ttft_s", "wrong")[0]
    assert ttft.claimed == 2.5 and ttft.meshplan < 2.5
    # Declared 10B against the structural 0.45B; the missing top-k and the assumption used.
    assert _by(r, "params", "wrong") and _by(r, "declared_params", "wrong")
    assert "top-k = 2" in _by(r, "model.top_k", "noted")[0].message


def test_qwen3_fixed_strategy_gpu_count_and_reading():
    r = _report(PROBLEMS / "qwen3-235b-fixed-strategy.md")
    wrong = _by(r, "gpus_total", "wrong")
    assert any("256, not the 128 GPUs stated" in c.message for c in wrong)
    assert r.reading["layout"] == "instances=1,pp=4,tp=16,dp=2,ep=32,etp=1"


@pytest.mark.parametrize("plan, problem, subject, needle", [
    ("kv-replicated-plan.md", "qwen30b-h100.yaml", "kv_cache_per_gpu", "replicated 2 times"),
    ("experts-not-divisible-plan.md", "mixtral-h100.yaml", "layout", "8 experts % ep 3"),
    ("tp-across-nodes-plan.md", "llama405b-h100.yaml", "layout", "tp 16 on nodes of 8 GPUs"),
    ("uneven-pp-plan.md", "deepseek-h800.yaml", "layers_per_stage", "[16, 15, 15, 15]"),
])
def test_fixture_mistakes(plan, problem, subject, needle):
    r = _report(FIX / plan, FIX / problem)
    hits = [c for c in _by(r, subject, "wrong") if needle in c.message or needle in c.rule]
    assert hits, [c.to_dict() for c in r.checks if c.verdict.value == "wrong"]


def test_kv_replication_value_by_hand():
    # Qwen3-30B-A3B: 2 x 48 layers x 128 x 2 bytes per KV head per token; tp 8 > 4 KV heads, so one
    # head per GPU: 256 sequences x 5,000 tokens x 2 x 48 x 1 x 128 x 2 = 31,457,280,000 bytes.
    r = _report(FIX / "kv-replicated-plan.md", FIX / "qwen30b-h100.yaml")
    kv = _by(r, "kv_cache_per_gpu", "wrong")[0]
    assert kv.meshplan == 256 * 5000 * 2 * 48 * 128 * 2


def test_engine_flags_through_the_notation_layer():
    v = parse_vllm("vllm serve deepseek-ai/DeepSeek-V3 -tp 8 -dp 2 --enable-expert-parallel --max-num-seqs 64")
    assert (v.layout.tp, v.layout.dp, v.layout.ep, v.concurrency) == (8, 2, 16, 128)
    s = parse_sglang("python -m sglang.launch_server --model-path M --tp 16 --dp 16 --enable-dp-attention --ep-size 16")
    assert (s.layout.tp, s.layout.dp, s.layout.ep, s.refusals) == (1, 16, 16, ())
    bad = parse_sglang("python -m sglang.launch_server --model-path M --tp-size 16 --dp-size 3 --enable-dp-attention")
    assert bad.refusals and "does not divide" in bad.refusals[0]
    assert parse_trtllm(str(FIX / "trtllm-bad.yaml")).refusals
    good = parse_trtllm(str(FIX / "trtllm-good.yaml"))
    assert (good.layout.dp, good.layout.ep, good.memory_fraction) == (8, 8, 0.85)


def test_engine_fit_and_largest_concurrency():
    r = _report(None, vllm="vllm serve deepseek-ai/DeepSeek-V3 -tp 8 -dp 2 --enable-expert-parallel "
                           "--max-model-len 8192 --max-num-seqs 256", gpu="h200", weights="fp8")
    # --max-num-seqs caps running requests; it reserves no memory (issue 12): the engine starts if one request
    # of 8192 tokens fits. MLA under tp 8 keeps the whole latent on every tp rank: 8192 x 70,272 B = 0.58 GB.
    assert _by(r, "fits")[0].verdict.value == "confirmed" and not r.any_wrong
    conc = _by(r, "concurrency")[0]
    # The cap: 256 per attention-dp rank x 2 ranks. What runs: 256 x 2 x (4096 + 2048) tokens x 70,272 B would be
    # 221 GB per rank's GPUs, more than the ~89 GB left beside the weights, so fewer than 512 run at once.
    assert conc.verdict.value == "noted" and conc.claimed == 512 and 0 < conc.meshplan < 512
    assert r.evaluation["concurrency"] == conc.meshplan
    ok = _report(None, trtllm=str(FIX / "trtllm-good.yaml"), gpu="b200", weights="fp4", isl=1024.0, osl=1024.0)
    assert _by(ok, "fits")[0].verdict.value == "confirmed" and not ok.any_wrong
    assert ok.evaluation["tpot_s"] > 0


def test_plan_json_round_trip_and_edit(tmp_path):
    out = tmp_path / "plan.json"
    subprocess.run([sys.executable, "-m", "meshplan.cli.main", "plan", "--model", "llama-3.1-8b", "--gpu", "h100",
                    "--isl", "1000", "--osl", "200", "--gpus", "8", "--json", str(out)], check=True, capture_output=True)
    clean = subprocess.run([sys.executable, "-m", "meshplan.cli.main", "check", str(out)], capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout
    doc = json.loads(out.read_text())
    doc["ttft_s"] = doc["ttft_s"] / 10
    doc["gpus_total"] = doc["gpus_total"] + 8
    out.write_text(json.dumps(doc))
    edited = subprocess.run([sys.executable, "-m", "meshplan.cli.main", "check", str(out), "--json"],
                            capture_output=True, text=True)
    assert edited.returncode == 1
    wrong = {c["subject"] for c in json.loads(edited.stdout)["checks"] if c["verdict"] == "wrong"}
    assert wrong == {"ttft_s", "gpus_total"}


def test_cli_exit_codes_and_bad_input():
    seed = subprocess.run([sys.executable, "-m", "meshplan.cli.main", "check", str(PROBLEMS / "seed-plan.md")],
                          capture_output=True, text=True)
    assert seed.returncode == 1 and "[WRONG]" in seed.stdout
    none = subprocess.run([sys.executable, "-m", "meshplan.cli.main", "check"], capture_output=True, text=True)
    assert none.returncode == 2 and "Traceback" not in none.stderr
    nogpu = subprocess.run([sys.executable, "-m", "meshplan.cli.main", "check", "--vllm", "vllm serve deepseek-v3 -tp 8"],
                           capture_output=True, text=True)
    assert nogpu.returncode == 2 and "--gpu" in nogpu.stderr


def test_problem_yaml_with_an_illegal_strategy(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("model: deepseek-v3\ngpu: h800\nprecision: {weights: fp8}\n"
                 "workload: {isl: 2000, osl: 500, concurrency: 1024}\nstrategy: 'tp=4,dp=8,ep=16'\n")
    r = _report(f)
    # tp 4 x dp 8 = 32 GPUs but ep 16 x etp 1 = 16: the folding rule.
    assert [c.rule for c in r.checks if c.verdict.value == "wrong"] == ["folding"]
