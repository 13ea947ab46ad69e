"""Wall time of meshplan's request-by-request simulation (issue: simulate serving). Goals: 10,000
requests on a 32-GPU DeepSeek-V3 instance in under 5 s on this machine's cores, and plan --sim
re-scoring 10 candidates in under 10 s, and one expanded step of DeepSeek-V3 decode on 320 GPUs in
under 5 s (meshplan simulate --step: DAG build, sampled routing and schedule). Prints the time of each run and what it served, for a
closed loop and for Poisson arrivals at about the instance's capacity, with lengths drawn
uniformly over a range (so clumps of prompts dissolve and almost every iteration is its own
event), then the search and the re-scoring of its best candidates for DeepSeek-V3 on 32 H200."""

import time

import numpy as np

from meshplan.cost.inputs import CostInputs
from meshplan.dag.build import build_dag
from meshplan.dag.schedule import routing_for, schedule
from meshplan.cost.layer import Par
from meshplan.io.problem_file import problem_from_raw
from meshplan.plan.simulated import simulated_plan
from meshplan.search.search import search
from meshplan.simulate.instance import simulate_instance
from meshplan.simulate.requests import LengthDist, closed_loop, draw_lengths, poisson
from meshplan.simulate.summary import summarise
from meshplan.specs.workload import Phase
from meshplan.strategy.layout import parse_strategy

REQUESTS = 10_000


def main() -> None:
    problem = problem_from_raw({"model": "deepseek-v3", "gpu": "h200", "engine": "sglang",
                                "workload": {"isl": [2000, 6000], "osl": [250, 750]}})
    ci = CostInputs.from_problem(problem)
    par = Par.of(1, 32, 32, 1, 1)  # attention dp 32 with ep 32 over 4 nodes of 8 H200
    rng = np.random.default_rng(0)
    isl = draw_lengths(LengthDist.UNIFORM, 4000, 2000, 6000, REQUESTS, rng)
    osl = draw_lengths(LengthDist.UNIFORM, 500, 250, 750, REQUESTS, rng)
    runs = [("closed loop, 1,024 clients", closed_loop(1024, REQUESTS, isl, osl)),
            ("Poisson, 6 requests/s (about its capacity)", poisson(6.0, REQUESTS, isl, osl, rng))]
    for name, stream in runs:
        t0 = time.perf_counter()
        res = simulate_instance(ci, par, stream)
        wall = time.perf_counter() - t0
        s = summarise(res)
        print(f"DeepSeek-V3 on 32 H200 (dp32 ep32, SGLang), {REQUESTS:,} requests, {name}: {wall:.2f} s wall; "
              f"{res.iterations:,} iterations, {s.duration_s:,.0f} s simulated, TTFT p50 {s.ttft_s.p50 * 1e3:,.0f} ms "
              f"p99 {s.ttft_s.p99 * 1e3:,.0f} ms, TPOT mean {s.tpot_s.mean * 1e3:.1f} ms")


def plan_sim() -> None:

    problem = problem_from_raw({"model": "deepseek-v3", "gpu": "h200", "gpus": 32, "engine": "sglang",
                                "workload": {"isl": 4000, "osl": 500},
                                "requirements": {"ttft_s": 1.0, "tpot_s": 0.03, "ttft_p99_s": 2.0}})
    t0 = time.perf_counter()
    result = search(problem)
    t1 = time.perf_counter()
    doc = simulated_plan(result)
    t2 = time.perf_counter()
    print(f"plan --sim, DeepSeek-V3 on 32 H200 (SGLang): search {t1 - t0:.2f} s, re-scoring "
          f"{len(doc.simulation)} candidates {t2 - t1:.2f} s; plan {doc.label}")


def step_320() -> None:

    # As bench/dag.py: tp4 dp80 ep320 with 64 redundant experts (one expert per GPU), batch 64.
    problem = problem_from_raw({"model": "deepseek-v3", "gpu": "h800", "precision": {"weights": "fp8"},
                                "workload": {"isl": 4000, "osl": 500}, "assumptions": {"redundant_experts": 64}})
    lay = parse_strategy("tp=4,dp=80,ep=320")
    t0 = time.perf_counter()
    dag = build_dag(problem, lay, Phase.DECODE, 64.0, expand=True)
    t1 = time.perf_counter()
    s = schedule([dag], routing=routing_for(problem, lay, Phase.DECODE, 64.0, np.random.default_rng(0)))
    t2 = time.perf_counter()
    print(f"simulate --step, DeepSeek-V3 decode on 320 H800 (tp4 dp80 ep320): {len(dag.nodes):,} nodes, build "
          f"{t1 - t0:.2f} s, routing and schedule {t2 - t1:.2f} s, {t2 - t0:.2f} s in all; step "
          f"{s.makespan_s * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
    plan_sim()
    step_320()
