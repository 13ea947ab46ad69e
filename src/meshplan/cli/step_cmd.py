"""meshplan simulate --step: one iteration of a plan on every GPU (dag.schedule)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from meshplan.cli.echo import echo, write_json
from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.serving import decode_cost, prefill_cost
from meshplan.dag.build import build_dag
from meshplan.dag.schedule import chrome_trace, routing_for, schedule
from meshplan.errors import SpecError
from meshplan.plan.plan import candidate_plan
from meshplan.plan.pools import pools_of
from meshplan.search.candidate import problem_of
from meshplan.specs.workload import Phase
from meshplan.units import fmt_seconds


def run_step(problem, cand, phase: str, seed: int, trace_out: str | None, json_path: str | None) -> None:
    """One iteration of ``cand``'s ``phase`` pool on every GPU."""
    pools = pools_of(candidate_plan(problem, cand))
    pool = next((p for p in pools if phase in p.phases), None)
    if pool is None:
        raise SpecError("--step-phase", phase, f"the plan has no {phase} pool")
    lay, B = pool.layout, pool.B[phase]
    problem = problem_of(problem, cand).for_pool(phase)  # the pool's own GPU, and speculation as planned
    ci = CostInputs.from_problem(problem)
    t0 = time.perf_counter()
    halves = 2 if ci.two_batch_overlap else 1
    dags = [build_dag(problem, lay, phase, B / halves, offset=pool.offset, expand=True) for _ in range(halves)]
    t1 = time.perf_counter()
    routing = routing_for(problem, lay, phase, B / halves, np.random.default_rng(seed), pool.offset)
    sched = schedule(dags, routing=routing)
    t2 = time.perf_counter()
    par = Par.of(lay.tp, lay.dp, lay.ep, lay.etp, lay.pp)
    pc = decode_cost(ci, par, B) if phase == Phase.DECODE else prefill_cost(ci, par, B)
    closed = float(np.ravel(pc.forward.stage_s)[0])
    busiest = max(sched.busy_s, key=lambda g: sum(sched.busy_s[g]))
    comp, comm = sched.busy_s[busiest]
    doc = {"schema": "meshplan.step/1", "plan": cand.label, "phase": phase, "pool": lay.short,
           "batch_per_attention_dp_rank": B, "micro_batches": halves, "gpus": lay.gpus,
           "nodes": sum(len(d.nodes) for d in dags), "step_s": sched.makespan_s,
           "closed_form_pass_s": closed, "pipeline_stages": lay.pp,
           "routing": None if routing is None else {
               "seed": seed, "closed_form_busiest_load": routing.closed_form_factor,
               "sampled_busiest_load": max(routing.load_over_mean.values()),
               "sampled_lightest_load": min(routing.load_over_mean.values())},
           "busiest_gpu": {"gpu": busiest, "compute_s": comp, "communication_s": comm},
           "build_s": t1 - t0, "schedule_s": t2 - t1}
    lines = [f"step of {cand.label}, {phase} pool {lay.short} ({lay.gpus:,} GPUs), batch {B:g} per attention-dp rank"
             + (" in 2 micro-batches (two-batch overlap)" if halves == 2 else ""),
             f"  expanded DAG: {doc['nodes']:,} nodes, built in {t1 - t0:.2f} s, scheduled in {t2 - t1:.2f} s",
             f"  step (one pass, every GPU): {fmt_seconds(sched.makespan_s)}; closed form's pass: {fmt_seconds(closed)}"
             + (f" per stage x {lay.pp} stages for one micro-batch" if lay.pp > 1 else "")
             + f" ({sched.makespan_s / closed - 1:+.1%})"]
    if routing is not None:
        r = doc["routing"]
        lines.append(f"  sampled routing (seed {seed}): busiest GPU's experts get {r['sampled_busiest_load']:.2f}x the "
                     f"mean tokens, the lightest {r['sampled_lightest_load']:.2f}x; the closed form charges "
                     f"{r['closed_form_busiest_load']:.2f}x everywhere")
    lines.append(f"  busiest GPU {busiest}: compute {fmt_seconds(comp)}, communication {fmt_seconds(comm)}")
    if trace_out:
        Path(trace_out).write_text(json.dumps(chrome_trace(sched)), encoding="utf-8")
        lines.append(f"wrote {trace_out} (open it in https://ui.perfetto.dev)")
    if json_path:
        if write_json(doc, json_path):
            return
        lines.append(f"wrote {json_path}")
    echo("\n".join(lines))
