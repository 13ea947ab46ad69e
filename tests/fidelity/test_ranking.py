"""Rank agreement (validate --ranking): Little's law, Kendall's tau, the same-GPU pairs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meshplan.fidelity.ranking import TIE_SHARE, output_tok_s_per_gpu, rank
from meshplan.fidelity.silicon import read_silicon

SAMPLE = Path(__file__).parent / "fixtures" / "silicon-sample.csv"
LLAMA_TP1 = "meta_llama_llama_3_1_8b_instruct_meta_llama_llama_3_1_8b_instruct_h100_sxm_trtllm_agg_1024x128_c128_tp1"


def test_littles_law_hand_computed():
    # 64 clients, OSL 1000, TTFT 1 s, TPOT 20 ms, 8 GPUs: 64 x 1000 / (1 + 999 x 0.02) / 8
    # = 64,000 / 20.98 / 8 = 381.3 tokens/s per GPU.
    assert output_tok_s_per_gpu(64, 1000, 1.0, 0.02, 8) == pytest.approx(381.3, abs=0.05)


def _llama_cases(tmp_path, rows):
    """Runs of Llama-3.1-8B on H100 with TensorRT-LLM at concurrency 128, ISL 1024 / OSL 128:
    ``rows`` is (tp, measured TTFT ms, measured TPOT ms[, pp]) per run, from the sample's tp1 row."""
    lines = SAMPLE.read_text().splitlines()
    base = next(x for x in lines if x.startswith(LLAMA_TP1)).split(",")
    out = [lines[0]]
    for i, (tp, ttft, tpot, *pp) in enumerate(rows):
        f = list(base)
        f[0] = f"llama_run_{i}"
        f[13] = str(tp)  # tp_size
        f[14] = str(pp[0] if pp else 1)  # pp_size
        f[-2], f[-1] = str(ttft), str(tpot)
        out.append(",".join(f))
    path = tmp_path / "runs.csv"
    path.write_text("\n".join(out) + "\n")
    cases, skips = read_silicon(path)
    assert not skips and [c.layout.tp for c in cases] == [r[0] for r in rows]
    return cases, path


def test_tau_and_the_rank_of_the_measured_best(tmp_path):
    cases, _ = _llama_cases(tmp_path, [(1, 500.0, 30.0), (2, 500.0, 20.0), (4, 500.0, 15.0)])
    # Measured per GPU (128 x 128 / (0.5 + 127 x TPOT) / GPUs): tp1 16,384 / 4.31 = 3,801,
    # tp2 16,384 / 3.04 / 2 = 2,695, tp4 16,384 / 2.405 / 4 = 1,703.
    same = rank([(c, c.ttft_ms, c.tpot_ms) for c in cases])
    (g,) = same.groups
    assert g.layouts == ("1 GPU", "tp2", "tp4")
    assert g.measured[0] == pytest.approx(128 * 128 / (0.5 + 127 * 0.030))
    assert g.tau == pytest.approx(1.0) and g.predicted_rank_of_best == 1
    # Predictions that reverse the order: tau -1 and the measured best ranked last (third).
    rev = {"1 GPU": (500.0, 100.0), "tp2": (500.0, 20.0), "tp4": (500.0, 2.0)}
    flipped = rank([(c, *rev[c.layout.short]) for c in cases])
    assert flipped.groups[0].tau == pytest.approx(-1.0) and flipped.groups[0].predicted_rank_of_best == 3
    assert flipped.mean_tau == pytest.approx(-1.0) and flipped.best_in_top_two == 0.0
    # No two layouts share a GPU count: no same-GPU pairs.
    assert same.pairs == () and same.pairs_agree != same.pairs_agree


def test_repeated_runs_count_once_and_two_layouts_are_not_a_group(tmp_path):
    cases, _ = _llama_cases(tmp_path, [(1, 500.0, 30.0), (1, 500.0, 34.0), (2, 500.0, 20.0)])
    r = rank([(c, c.ttft_ms, c.tpot_ms) for c in cases])
    assert r.groups == ()  # two distinct layouts, fewer than 3


def test_same_gpu_pairs_and_ties(tmp_path):
    # tp2, pp2 and tp2 pp2 would be 2, 2 and 4 GPUs: one same-GPU pair (tp2, pp2). Measured per GPU:
    # tp2 128 x 128 / (0.5 + 127 x 0.020) / 2 = 2,695; pp2 with TPOT 25 ms: 16,384 / 3.675 / 2 =
    # 2,229 (tp2 faster, by more than 5%). Predictions that swap them: the pair disagrees.
    rows = [(2, 500.0, 20.0), (1, 500.0, 25.0, 2), (2, 500.0, 30.0, 2)]
    cases, _ = _llama_cases(tmp_path, rows)
    swap = {"tp2": (500.0, 25.0), "pp2": (500.0, 20.0), "pp2 tp2": (500.0, 30.0)}
    r = rank([(c, *swap[c.layout.short]) for c in cases])
    (p,) = r.pairs
    assert (p.faster, p.slower, p.gpus) == ("tp2", "pp2", 2)
    assert p.measured[0] == pytest.approx(128 * 128 / (0.5 + 127 * 0.020) / 2)
    assert not p.agrees and r.pairs_agree == 0.0
    # Measured within TIE_SHARE (5%) of each other: a tie, left out. TPOT 20 vs 20.5 ms is 2.4%.
    close = [(2, 500.0, 20.0), (1, 500.0, 20.5, 2), (2, 500.0, 30.0, 2)]
    cases, _ = _llama_cases(tmp_path, close)
    assert rank([(c, c.ttft_ms, c.tpot_ms) for c in cases]).pairs == ()
    assert TIE_SHARE == pytest.approx(0.05)


def run(*args):
    return subprocess.run([sys.executable, "-m", "meshplan.cli.main", *args], capture_output=True, text=True)


def test_validate_ranking_prints_the_groups_and_targets(tmp_path):
    _, path = _llama_cases(tmp_path, [(1, 500.0, 30.0), (2, 500.0, 20.0), (4, 500.0, 15.0)])
    out = run("validate", str(path), "--ranking", "--json", str(tmp_path / "v.json"))
    assert out.returncode == 0, out.stderr
    assert "1 group. Targets of the calibrate issue:" in out.stdout
    assert "mean Kendall's tau" in out.stdout and "1 GPU" in out.stdout
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["ranking"]["groups"][0]["layouts"] == ["1 GPU", "tp2", "tp4"]
    assert doc["ranking"]["targets"] == {"mean_tau": 0.7, "best_in_top_two": 0.8}


def test_ranking_needs_a_silicon_csv():
    out = run("validate", "--ranking")
    assert out.returncode == 2
    assert "--ranking" in out.stderr and "silicon CSV" in out.stderr
