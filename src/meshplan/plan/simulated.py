"""The best candidates re-scored by simulation: percentiles, goodput, and p99 targets.

The closed form gives mean TTFT and TPOT in steady state; a p99 target needs the spread of a real
run. ``simulate_ranked`` serves each of the search's best candidates (at its operating
point: the concurrency it was scored at, or the problem's request rate) request by request
(meshplan.simulate) and reports what the simulation shows beside the closed form. ``choose``
picks the first candidate in the search's order whose simulated p99 meets the p99 targets.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from meshplan.cost.inputs import CostInputs
from meshplan.plan.build import par_of
from meshplan.plan.candidates import ClosedForm, Percentiles, SimulatedCandidate
from meshplan.plan.document import Plan, PlanNote, Status, Unmet, Verdict
from meshplan.plan.plan import build_plan
from meshplan.search.candidate import Candidate, problem_of
from meshplan.search.objectives import Mode
from meshplan.simulate.instance import simulate_disaggregated, simulate_instance
from meshplan.simulate.requests import workload_stream
from meshplan.simulate.summary import summarise
from meshplan.specs.problem import Problem
from meshplan.strategy.rules import Rule

CANDIDATES = 10
"""Candidates re-scored (the search's best first)."""
REQUESTS_PER_CLIENT = 5
"""Requests each client of a closed loop sends (the first wave, which arrives all at once, is left
out of the percentiles)."""
REQUESTS = (1_000, 20_000)
"""Fewest and most requests per simulation."""
SEED = 0


def _requests(clients: int) -> int:
    return int(min(max(REQUESTS[0], REQUESTS_PER_CLIENT * clients), REQUESTS[1]))


def run_candidate(problem: Problem, c: Candidate, stream_for, keep_spans: bool = False, progress=None):
    """Simulate candidate ``c``: one instance of an aggregated layout (``stream_for(instances)``
    gives its share of the requests and how they arrive), or a disaggregated deployment whole
    (``stream_for(1)``). Returns the result, the GPUs simulated, how many copies of them the plan
    has, how the requests arrive (words) and the request stream."""
    problem = problem_of(problem, c)
    ci = CostInputs.from_problem(problem)
    if c.mode is Mode.DISAGGREGATED:
        stream, arrivals = stream_for(1)
        ci_p = CostInputs.from_problem(problem.for_pool("prefill")) if problem.pools_differ else None
        res = simulate_disaggregated(ci, par_of(c.prefill), c.prefill.instances, par_of(c.decode), c.decode.instances,
                                     stream, keep_spans, progress, ci_prefill=ci_p)
        return res, c.gpus_total, 1, arrivals, stream
    lay = c.decode
    stream, arrivals = stream_for(lay.instances)
    res = simulate_instance(ci, par_of(lay), stream, keep_spans, progress)
    return res, lay.gpus_per_instance, lay.instances, arrivals, stream


def run_at_operating_point(problem: Problem, c: Candidate, keep_spans: bool = False):
    """Candidate ``c`` simulated at its operating point (its concurrency, or the problem's request
    rate), as run_candidate returns it (with every iteration's span when ``keep_spans``)."""
    w = problem.workload
    if not w.request_rate_per_s:
        w = w.model_copy(update={"concurrency": max(int(round(c.concurrency)), 1)})

    def stream_for(instances: int):
        clients = max(1, round((w.concurrency or 1) / instances))
        return workload_stream(w, instances, _requests(clients), np.random.default_rng(SEED))

    return run_candidate(problem, c, stream_for, keep_spans)


def simulate_candidate(problem: Problem, c: Candidate) -> SimulatedCandidate:
    """What the simulation shows for one candidate at its operating point."""
    res, gpus, _, arrivals, stream = run_at_operating_point(problem, c)
    r = problem.requirements
    # Goodput: requests within the per-request bounds (the p99 targets where given, else the means').
    # The closed loop's first wave (every client at once) is a benchmark's start, not service: left out.
    s = summarise(res, r.ttft_p99_s or r.ttft_s, r.tpot_p99_s or r.tpot_s, warmup=stream.clients)
    meets = None
    if r.ttft_p99_s or r.tpot_p99_s:
        meets = (not r.ttft_p99_s or s.ttft_s.p99 <= r.ttft_p99_s) and (not r.tpot_p99_s or s.tpot_s.p99 <= r.tpot_p99_s)
    return SimulatedCandidate(
        label=c.label, gpus_total=c.gpus_total, arrivals=arrivals, requests=s.requests,
        closed_form=ClosedForm(ttft_s=c.ttft_s, tpot_s=c.tpot_s, output_tok_s_per_gpu=c.output_tok_s_per_gpu),
        ttft_s=Percentiles(mean=s.ttft_s.mean, p50=s.ttft_s.p50, p99=s.ttft_s.p99),
        tpot_s=Percentiles(mean=s.tpot_s.mean, p50=s.tpot_s.p50, p99=s.tpot_s.p99),
        output_tok_s_per_gpu=s.output_tok_s / gpus, goodput=s.goodput, preemptions=s.preemptions, meets_p99=meets)


def simulate_ranked(problem: Problem, ranked: tuple[Candidate, ...]) -> list[tuple[Candidate, SimulatedCandidate]]:
    """The best candidates that serve both phases, each with its simulation."""
    picked = [c for c in ranked if c.decode is not None and (c.mode is Mode.AGGREGATED or c.prefill is not None)]
    picked = picked[:CANDIDATES]
    return [(c, simulate_candidate(problem, c)) for c in picked]


def choose(result, simulated: list[tuple[Candidate, SimulatedCandidate]]):
    """The search result with the first simulated candidate that meets the p99 targets ranked
    first (unchanged without p99 targets or when none meets them), and that candidate or None."""
    r = result.problem.requirements
    if not (r.ttft_p99_s or r.tpot_p99_s):
        return result, None
    ok = next((c for c, s in simulated if s.meets_p99), None)
    if ok is None or ok is result.best:
        return result, ok
    return replace(result, ranked=(ok,) + tuple(c for c in result.ranked if c is not ok)), ok


def simulated_plan(result) -> Plan:
    """The plan with its best candidates simulated (``simulation``), the p99 targets checked on
    them and the plan's choice the first that meets them."""
    simulated = simulate_ranked(result.problem, result.ranked)
    result, ok = choose(result, simulated)
    plan = build_plan(result)
    notes, verdict = list(plan.notes), plan.verdict
    if not simulated:
        notes.append(PlanNote(field="simulation", message="no candidate serving both phases to simulate"))
    line = p99_verdict(result.problem, simulated, ok)
    if line is not None:
        notes.append(PlanNote(field="requirements.p99", message=line))
        if ok is None and verdict.status is Status.FEASIBLE:
            verdict = Verdict(status=Status.REQUIREMENTS_UNMET, figures=True, unmet=(Unmet(rule=Rule.P99, message=line),),
                              message="no candidate simulated meets the p99 targets; the search's best is shown")
    return replace(plan, notes=tuple(notes), verdict=verdict,
                   simulation=tuple(s for _, s in simulated))


def p99_verdict(problem: Problem, simulated: list[tuple[Candidate, SimulatedCandidate]],
                chosen: Candidate | None) -> str | None:
    """One line on the p99 targets: which simulated candidate meets them, or that none does."""
    r = problem.requirements
    if not (r.ttft_p99_s or r.tpot_p99_s):
        return None
    targets = ", ".join(f"{n} p99 <= {v:g} s" for n, v in (("TTFT", r.ttft_p99_s), ("TPOT", r.tpot_p99_s)) if v)
    if chosen is None:
        return (f"none of the {len(simulated)} candidates simulated meets {targets}; the plan shown misses it "
                "(see the simulated percentiles)")
    return f"{chosen.label} is the search's best candidate that meets {targets} in simulation"
