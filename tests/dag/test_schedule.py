"""One iteration on every GPU (dag.schedule, meshplan simulate --step): hand-built DAGs, the
closed form where nothing overlaps, sampled routing."""

import json
import subprocess
import sys

import numpy as np
import pytest

from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.serving import decode_cost, prefill_cost
from meshplan.dag.build import build_dag
from meshplan.dag.nodes import Dag, Node, NodeKind
from meshplan.dag.schedule import Routing, chrome_trace, routing_for, sample_counts, schedule, slot_loads
from meshplan.io.problem_file import problem_from_raw
from meshplan.strategy.layout import parse_strategy


def _dag(nodes, edges):
    d = Dag(phase="decode", layout="hand", num_gpus=2, expanded=True)
    for n in nodes:
        d.add(n)
    for a, b in edges:
        d.link(a, b)
    return d


def test_a_collective_starts_when_its_last_gpu_is_ready():
    # GPU 0 computes for 2 ms, GPU 1 for 5 ms; their all-reduce (1 ms) starts at 5 ms: 6 ms in all.
    d = _dag([Node(id="a", op="a", kind=NodeKind.COMPUTE, gpus=(0,), time_s=0.002),
              Node(id="b", op="b", kind=NodeKind.COMPUTE, gpus=(1,), time_s=0.005),
              Node(id="c", op="all_reduce", kind=NodeKind.COMM, gpus=(0, 1), time_s=0.001)],
             [("a", "c"), ("b", "c")])
    s = schedule([d])
    ev = {e.node: e for e in s.events}
    assert ev["c"].start_s == pytest.approx(0.005) and s.makespan_s == pytest.approx(0.006)
    assert s.busy_s[0] == pytest.approx((0.002, 0.001)) and s.busy_s[1] == pytest.approx((0.005, 0.001))


def test_two_micro_batches_overlap_communication_with_compute():
    # Each micro-batch: 2 ms compute then 2 ms communication on one GPU. With a communication stream
    # the second batch computes while the first communicates: 0-2, 2-4 | 2-4, 4-6 -> 6 ms; on one
    # stream everything is serial: 8 ms.
    def one():
        return _dag([Node(id="x", op="x", kind=NodeKind.COMPUTE, gpus=(0,), time_s=0.002),
                     Node(id="y", op="y", kind=NodeKind.COMM, gpus=(0,), time_s=0.002)], [("x", "y")])
    assert schedule([one(), one()]).makespan_s == pytest.approx(0.006)
    assert schedule([one(), one()], streams=1).makespan_s == pytest.approx(0.008)
    trace = chrome_trace(schedule([one(), one()]))
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(spans) == 4 and {e["tid"] for e in spans} == {0, 1}


@pytest.mark.parametrize("model, strategy, phase, B", [
    ("llama-3.1-8b", "tp=2", "decode", 8.0),
    ("deepseek-v3", "tp=1,dp=8,ep=8", "decode", 16.0),
    ("qwen3-235b-a22b", "tp=4,ep=4", "prefill", 1.0),
])
def test_nothing_overlapping_the_step_is_the_closed_form_pass(model, strategy, phase, B):
    # One micro-batch, no sampled routing, one stream: every GPU runs the same chain of operators,
    # so the schedule's length is the closed form's forward pass (cost.phase Forward.stage_s).
    p = problem_from_raw({"model": model, "gpu": "h200", "precision": {"weights": "fp8"},
                          "workload": {"isl": 2000, "osl": 500}})
    lay = parse_strategy(strategy)
    s = schedule([build_dag(p, lay, phase, B, expand=True)], streams=1)
    ci, par = CostInputs.from_problem(p), Par.of(lay.tp, lay.dp, lay.ep, lay.etp, lay.pp)
    pc = decode_cost(ci, par, B) if phase == "decode" else prefill_cost(ci, par, B)
    assert s.makespan_s == pytest.approx(float(np.ravel(pc.forward.stage_s)[0]), rel=1e-9)


def test_sampled_routing_counts_and_replicas():
    rng = np.random.default_rng(1)
    counts = sample_counts(1000, 8, 64, 0.0, rng)
    assert counts.sum() == 8000  # every token picks 8 experts
    # 2 experts, 3 slots: slot 2 replicates expert 0, so expert 0's 6 tokens split 3 / 3.
    loads = slot_loads(np.array([6.0, 2.0]), {0: range(0, 2), 1: range(2, 3)}, 3)
    assert loads == {0: 5.0, 1: 3.0}


def test_an_expert_node_lasts_its_gpus_sampled_load():
    # The DAG's expert time is the closed form's, at the busiest rank's load (2x the mean here):
    # a GPU at 2x keeps it, one at 1x takes half.
    d = _dag([Node(id="e0", op="experts", kind=NodeKind.COMPUTE, gpus=(0,), time_s=0.004),
              Node(id="e1", op="experts", kind=NodeKind.COMPUTE, gpus=(1,), time_s=0.004)], [])
    s = schedule([d], routing=Routing(load_over_mean={0: 2.0, 1: 1.0}, closed_form_factor=2.0))
    ev = {e.node: e for e in s.events}
    assert ev["e0"].end_s == pytest.approx(0.004) and ev["e1"].end_s == pytest.approx(0.002)


def run(*args):
    return subprocess.run([sys.executable, "-m", "meshplan.cli.main", *args], capture_output=True, text=True)


def test_simulate_step_prints_and_traces(tmp_path):
    out = tmp_path / "step.json"
    r = run("simulate", "--model", "qwen3-30b-a3b", "--gpu", "h100", "--gpus", "4", "--isl", "1000", "--osl", "200",
            "--concurrency", "64", "--strategy", "tp=1,dp=4,ep=4", "--step", "--trace-out", str(out),
            "--json", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["schema"] == "meshplan.step/1" and doc["gpus"] == 4 and doc["step_s"] > 0
    assert doc["routing"]["sampled_busiest_load"] >= doc["routing"]["sampled_lightest_load"]
    trace = json.loads(out.read_text())
    assert {e["pid"] for e in trace["traceEvents"] if e["ph"] == "X"} == {0, 1, 2, 3}


def test_step_refuses_request_flags():
    r = run("simulate", "--model", "llama-3.1-8b", "--gpu", "h100", "--isl", "100", "--osl", "10", "--step",
            "--requests", "10")
    assert r.returncode == 2 and "--requests" in r.stderr


def test_routing_covers_every_gpu_of_a_pool_that_starts_past_gpu_0():
    # A disaggregated decode pool's GPUs start after the prefill pool's (offset): every one of its
    # expert-parallel GPUs gets a sampled load, and the loads average 1 (tokens x top-k / ep each).
    p = problem_from_raw({"model": "qwen3-30b-a3b", "gpu": "h100", "workload": {"isl": 1000, "osl": 100}})
    lay = parse_strategy("dp=4,ep=4")
    r = routing_for(p, lay, "decode", 64.0, np.random.default_rng(0), offset=8)
    assert sorted(r.load_over_mean) == [8, 9, 10, 11]
    assert np.mean(list(r.load_over_mean.values())) == pytest.approx(1.0)
