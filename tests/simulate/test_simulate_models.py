"""The simulator on real models: it agrees with the closed form where both apply, queues above
capacity, and a seed fixes every byte it writes."""

import json
import subprocess
import sys

import numpy as np
import pytest

from meshplan.cost.closed_loop import solve_aggregated, solve_disaggregated
from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.errors import SpecError
from meshplan.io.catalog import model_keys
from meshplan.io.problem_file import problem_from_raw
from meshplan.simulate.instance import policy_for, simulate_disaggregated, simulate_instance
from meshplan.simulate.requests import closed_loop, poisson
from meshplan.simulate.summary import per_request, summarise


def _ci(model, engine, isl, osl, gpu="b200"):
    return CostInputs.from_problem(problem_from_raw({"model": model, "gpu": gpu, "engine": engine,
                                                     "workload": {"isl": isl, "osl": osl}}))


@pytest.mark.parametrize("engine", ["vllm", "trtllm", "sglang"])
def test_steady_decode_agrees_with_the_closed_form_over_the_catalog(engine):
    # 32 clients with fixed 128-token prompts and 2,000-token outputs on tp8 (experts split 8 ways;
    # pipeline stages where one node cannot hold the model): nearly every iteration is the same
    # decode batch, so the simulated mean TPOT must match the closed form's
    # (cost.closed_loop.solve_aggregated at 32 per rank) within 5% for every model.
    off = {}
    for key in model_keys():
        ci = _ci(key, engine, 128, 2000)
        par = next(p for p in (Par.of(8, 1, 1, 8 if ci.num_experts > 1 else 1, pp) for pp in (1, 2, 4)) if _fits(ci, p))
        closed = float(solve_aggregated(ci, par, np.array(32.0)).tpot_s)
        c = 32 * int(par.pp)  # 32 per micro-batch group, as the closed form's B
        res = simulate_instance(ci, par, closed_loop(c, 3 * c, np.full(3 * c, 128), np.full(3 * c, 2000)))
        sim = summarise(res).tpot_s.mean
        if abs(sim / closed - 1) > 0.05:
            off[key] = (sim, closed)
    assert not off, off


def _fits(ci, par):
    try:
        policy_for(ci, par)
    except SpecError:
        return False
    return True


def _capacity_per_s(ci, par, isl, osl):
    """Requests per second one instance finishes at its largest batch (closed form)."""
    b = float(policy_for(ci, par).max_running)
    s = solve_aggregated(ci, par, np.array(min(b, 256.0)))
    return float(s.output_tok_s_per_gpu) / osl


def test_ttft_grows_with_time_above_capacity_and_holds_below():
    ci, par = _ci("llama-3.1-8b", "trtllm", 512, 128, gpu="h100-sxm"), Par.of(1, 1, 1, 1, 1)
    cap = _capacity_per_s(ci, par, 512, 128)
    n = 3000
    fixed = np.full(n, 512), np.full(n, 128)
    for factor, grows in ((0.5, False), (2.0, True)):
        res = simulate_instance(ci, par, poisson(cap * factor, n, *fixed, np.random.default_rng(1)))
        ttft = per_request(res)[0]
        early, late = ttft[: n // 5].mean(), ttft[-n // 5:].mean()
        if grows:
            assert late > 5 * early  # the queue builds: the last fifth waits far longer
        else:
            assert late < 1.5 * early


def _simulate_cli(tmp_path, tag):
    out, trace = tmp_path / f"{tag}.json", tmp_path / f"{tag}-trace.json"
    problem = tmp_path / "p.yaml"
    problem.write_text("model: llama-3.1-8b\ngpu: h100-sxm\nworkload: {isl: [256, 1024], osl: [64, 256], concurrency: 16}\n")
    r = subprocess.run([sys.executable, "-m", "meshplan.cli.main", "simulate", str(problem),
                        "--strategy", "tp1", "--requests", "200", "--seed", "7", "--json", str(out),
                        "--trace-out", str(trace)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out.read_bytes(), trace.read_bytes(), r.stdout


def test_the_same_seed_writes_the_same_bytes(tmp_path):
    a, b = _simulate_cli(tmp_path, "a"), _simulate_cli(tmp_path, "b")
    assert a[0] == b[0] and a[1] == b[1]
    doc = json.loads(a[0])
    assert doc["schema"] == "meshplan.simulation/1" and doc["requests"] == 200
    assert doc["ttft_s"]["p50"] <= doc["ttft_s"]["p90"] <= doc["ttft_s"]["p99"]
    # Chrome trace: iterations of the micro-batch group and two spans per request.
    events = json.loads(a[1])["traceEvents"]
    assert sum(1 for e in events if e.get("pid") == 1_000_000 and e["ph"] == "X") == 400
    assert "TTFT" in a[2] and "goodput" not in a[2]


def test_plot_draws_the_latency_cdfs_and_throughput_to_a_png(tmp_path):
    pytest.importorskip("matplotlib")  # the plot extra; the test extra installs it
    out = tmp_path / "sim.png"
    r = subprocess.run([sys.executable, "-m", "meshplan.cli.main", "simulate", "--model", "llama-3.1-8b", "--gpu",
                        "h100", "--isl", "500", "--osl", "50", "--concurrency", "8", "--strategy", "tp1",
                        "--requests", "40", "--ttft", "0.5", "--plot", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_a_disaggregated_plan_is_simulated_whole_and_agrees_with_the_closed_form_on_tpot(tmp_path):
    ci = _ci("llama-3.1-8b", "sglang", 128, 2000, gpu="h100-sxm")
    pre, dec = Par.of(1, 1, 1, 1, 1), Par.of(2, 1, 1, 1, 1)
    closed = float(np.ravel(solve_disaggregated(ci, pre, 1, dec, 1, 32.0).tpot_s)[0])
    res = simulate_disaggregated(ci, pre, 1, dec, 1, closed_loop(32, 96, np.full(96, 128), np.full(96, 2000)))
    # 32 requests decoding on one tp2 decode instance nearly all the time: TPOT within 5%.
    assert abs(summarise(res).tpot_s.mean / closed - 1) < 0.05
    problem = tmp_path / "p.yaml"
    problem.write_text("model: llama-3.1-8b\ngpu: h100-sxm\nworkload: {isl: 1000, osl: 100, concurrency: 16}\n"
                       "prefill_strategy: tp1\ndecode_strategy: tp2\n")
    r = subprocess.run([sys.executable, "-m", "meshplan.cli.main", "simulate", str(problem), "--requests", "64"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "the whole deployment (3 GPUs)" in r.stdout and "prefill" in r.stdout and "decode" in r.stdout


def test_a_plan_json_is_simulated_as_planned(tmp_path):
    plan = tmp_path / "plan.json"
    r = subprocess.run([sys.executable, "-m", "meshplan.cli.main", "plan", "--model", "llama-3.1-8b", "--gpu", "h100",
                        "--gpus", "4", "--isl", "2000", "--osl", "100", "--serving", "disaggregated", "--json", str(plan)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(plan.read_text())
    out = tmp_path / "sim.json"
    r = subprocess.run([sys.executable, "-m", "meshplan.cli.main", "simulate", str(plan), "--requests", "60",
                        "--json", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    sim = json.loads(out.read_text())
    # The plan's own pools (its label), at its planned operating point (the problem stated no
    # concurrency, so the plan's concurrency is the closed loop's clients).
    assert doc["feasible"] and sim["plan"] == doc["label"] and sim["requests"] == 60
    assert f"{round(doc['concurrency'])} clients" in sim["arrivals"]
    # A plan fixes its problem and layout: flags that would change them are refused.
    for extra in (["--concurrency", "8"], ["--strategy", "tp1"]):
        r = subprocess.run([sys.executable, "-m", "meshplan.cli.main", "simulate", str(plan), *extra],
                           capture_output=True, text=True)
        assert r.returncode == 2 and extra[0] in r.stderr and "Traceback" not in r.stderr
