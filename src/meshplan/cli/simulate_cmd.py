"""meshplan simulate: serve a plan's requests one by one and report percentiles, goodput, a trace."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click
import numpy as np

from meshplan.cli.dag_cmd import fixed_candidate, plan_json_at
from meshplan.cli.echo import echo, write_json
from meshplan.cli.problem_flags import load, problem_options, refuse_problem_flags, wrap_errors
from meshplan.cli.step_cmd import run_step
from meshplan.errors import SpecError
from meshplan.io.user_file import output_target, read_text
from meshplan.plan.plan_json import from_json
from meshplan.plan.pools import pools_of
from meshplan.plan.simulated import run_candidate
from meshplan.report.pyplot import pyplot
from meshplan.report.simulation_plot import plot_simulation
from meshplan.search.search import search
from meshplan.simulate.chrome_trace import trace_events
from meshplan.simulate.requests import LengthDist, read_trace, workload_stream
from meshplan.simulate.summary import summarise
from meshplan.specs.workload import Phase
from meshplan.strategy.layout import STRATEGY_HELP
from meshplan.strategy.rules import REQUIREMENT_RULES
from meshplan.units import fmt_seconds, plural


@click.command()
@problem_options
@click.option("--strategy", help=STRATEGY_HELP + " (default: the plan meshplan chooses)")
@click.option("--requests", type=int, help="Requests to serve (default 1000).")
@click.option("--trace", "trace_in", help="Requests from a file instead: CSV with columns arrival_s, input_tokens, "
              "output_tokens, or JSON Lines with those keys (nothing else).")
@click.option("--lengths", type=click.Choice(["fixed", "uniform", "lognormal"]),
              help="How prompt and output lengths are drawn (default: uniform over the workload's range when it "
                   "gives one, else fixed at its mean).")
@click.option("--length-cv", type=float, default=0.5, show_default=True,
              help="Lognormal lengths: standard deviation over mean.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of arrivals, lengths and each request's overhead.")
@click.option("--trace-out", help="Write a Chrome trace (Perfetto, chrome://tracing) to FILE.json.")
@click.option("--plot", "plot_path", help="Draw TTFT and TPOT CDFs and throughput over time to FILE (.png, .svg or "
              ".pdf; needs the plot extra: pip install 'meshplan[plot]').")
@click.option("--json", "json_path", help="Write the summary as JSON to FILE ('-': stdout).")
@click.option("--step", is_flag=True, help="Instead: one iteration on every GPU, the expanded DAG scheduled on each "
              "GPU's compute and communication streams (collectives start when all their GPUs are ready), with "
              "sampled expert routing (--seed) and two micro-batches under two-batch overlap.")
@click.option("--step-phase", type=click.Choice(["decode", "prefill"]), default="decode", show_default=True,
              help="--step: which pool's iteration.")
@wrap_errors
def simulate(strategy, requests, trace_in, lengths, length_cv, seed, trace_out, plot_path, json_path, step, step_phase,
             **kw) -> None:
    """Simulate serving request by request (PROBLEM, flags or the bundled seed; --strategy, else the
    plan meshplan chooses; or a PLAN.json from meshplan plan --json, its layout as planned): one
    instance of an aggregated plan, or a disaggregated plan whole (its KV caches moving from
    prefill to decode instances). The engine's scheduler (token budget,
    chunked prefill, batch limit, KV-cache admission and preemption, attention-dp ranks in
    lockstep, pipeline micro-batches) with every iteration timed by meshplan's step model.

    \b
    Arrivals: a closed loop of --concurrency clients (spread over the plan's instances), Poisson
    at --request-rate per second (likewise), or --trace FILE (served by one instance). Figures
    cover every request, a closed loop's first wave included, as a benchmark's do.
    Exit codes: 0 the simulation is printed; 2 bad input."""
    for path, field in ((trace_out, "--trace-out"), (json_path, "--json"), (plot_path, "--plot")):
        if path:
            output_target(path, field)
    if plot_path:
        if Path(plot_path).suffix.lower() not in (".png", ".svg", ".pdf"):
            raise SpecError("--plot", plot_path, "must end in .png, .svg or .pdf")
        pyplot()  # refuse before simulating when matplotlib is missing
    if not 0 <= seed < 2**32:
        raise SpecError("--seed", seed, "must be from 0 to 2**32 - 1")
    if not (length_cv > 0 and np.isfinite(length_cv) and length_cv <= 10):
        raise SpecError("--length-cv", length_cv, "must be above 0 and at most 10")
    problem = _from_plan(kw, strategy) or load(kw)
    if step:
        for flag, v in (("--requests", requests), ("--trace", trace_in), ("--lengths", lengths), ("--plot", plot_path)):
            if v is not None:
                raise SpecError(flag, v, "serves requests; --step simulates one iteration")
        run_step(problem, _layout(problem, strategy), step_phase, seed, trace_out, json_path)
        return
    doc, res = run_simulation(problem, strategy, 1000 if requests is None else requests, trace_in, lengths, length_cv,
                              seed)
    if plot_path:
        r = problem.requirements
        plot_simulation(res, f"{doc['problem']}: {doc['plan']} ({doc['engine']}), {doc['arrivals']}", plot_path,
                        r.ttft_s, r.tpot_s)
    if trace_out:
        Path(trace_out).write_text(json.dumps(trace_events(res)), encoding="utf-8")
    if json_path and write_json(doc, json_path):
        return
    echo(render(doc))
    if trace_out:
        echo(f"wrote {trace_out} (open it in https://ui.perfetto.dev or chrome://tracing)")
    if plot_path:
        echo(f"wrote {plot_path}")
    if json_path:
        echo(f"wrote {json_path}")


def _from_plan(kw: dict, strategy: str | None):
    """A plan JSON given as PROBLEM: its problem with the plan's pools as the fixed strategy and,
    when the problem stated no load, the plan's operating point (its concurrency) as the closed
    loop's clients (None when PROBLEM is not a plan JSON)."""
    doc = plan_json_at(kw.get("problem"))
    if doc is None:
        return None
    if strategy:
        raise SpecError("--strategy", strategy, "a plan JSON already fixes the strategy")
    refuse_problem_flags(kw)
    plan = from_json(doc)
    problem, pools = plan.problem_spec, pools_of(plan)
    if len(pools) == 2:
        fixed = {"strategy": None, "prefill_strategy": str(pools[0].layout), "decode_strategy": str(pools[1].layout)}
    else:
        fixed = {"strategy": str(pools[0].layout), "prefill_strategy": None, "decode_strategy": None}
    w = problem.workload
    planned = plan.concurrency
    if w.concurrency is None and w.request_rate_per_s is None and planned is not None and planned >= 1:
        fixed["workload"] = w.model_copy(update={"concurrency": int(round(planned))})
    return problem.model_copy(update=fixed)


def _layout(problem, strategy):
    """The candidate to simulate: the strategy given, else the search's best."""
    if problem.phase is not Phase.BOTH:
        raise SpecError("phase", problem.phase.value, "simulate serves requests end to end: plan both phases")
    cand = fixed_candidate(problem, strategy)
    if cand is None:
        cand = search(problem).best
        if cand is None:
            raise SpecError("problem", problem.name, "no layout holds the model and one request within the GPU budget")
    structural = [v for v in cand.violations if v.rule not in REQUIREMENT_RULES]
    if structural:
        raise SpecError("strategy", cand.label, "; ".join(f"[{v.rule.value}] {v.message}" for v in structural))
    return cand


def _stream(problem, instances, requests, trace_in, lengths, cv, rng, seed):
    """(the requests, how they arrive in words); ``seed`` also seeds each request's overhead."""
    if trace_in:
        stream, words = read_trace(read_text(trace_in, "--trace"), Path(trace_in).name), "trace"
    else:
        stream, words = workload_stream(problem.workload, instances, requests, rng,
                                        LengthDist(lengths) if lengths else None, cv)
    return replace(stream, seed=seed), words


def _progress(finished: int, total: int) -> None:
    """Long runs say how far they are, on stderr (runs of under 20,000 requests take seconds)."""
    if total >= 20_000:
        echo(f"  {finished:,} of {total:,} requests finished", err=True)


def run_simulation(problem, strategy, requests, trace_in, lengths, cv, seed):
    """(summary document, simulation result): one instance of an aggregated plan, or a
    disaggregated plan's whole deployment."""
    cand = _layout(problem, strategy)
    rng = np.random.default_rng(seed)
    res, gpus, copies, arrivals, _ = run_candidate(
        problem, cand, lambda instances: _stream(problem, instances, requests, trace_in, lengths, cv, rng, seed), True,
        _progress)
    r = problem.requirements
    s = summarise(res, r.ttft_s, r.tpot_s)
    stats = lambda x: {"mean": x.mean, "p50": x.p50, "p90": x.p90, "p99": x.p99}  # noqa: E731
    doc = {
        "schema": "meshplan.simulation/1", "problem": problem.name, "engine": problem.engine.engine.value,
        "plan": cand.label, "gpus_simulated": gpus, "copies": copies,
        "scope": "the whole deployment" if copies == 1 else f"one of {copies:,} instances",
        "arrivals": arrivals, "requests": s.requests, "seed": seed,
        "ttft_s": stats(s.ttft_s), "tpot_s": stats(s.tpot_s), "latency_s": stats(s.latency_s),
        "output_tok_s_simulated": s.output_tok_s, "output_tok_s_per_gpu": s.output_tok_s / gpus,
        "output_tok_s_total": s.output_tok_s * copies, "duration_s": s.duration_s,
        "goodput": s.goodput, "targets": {"ttft_s": r.ttft_s, "tpot_s": r.tpot_s},
        "groups": [{"role": role, "busy": u} for role, u in zip(res.roles, s.utilisation)],
        "iterations": s.iterations, "preemptions": s.preemptions,
        "closed_form": {"ttft_s": cand.ttft_s, "tpot_s": cand.tpot_s, "output_tok_s_per_gpu": cand.output_tok_s_per_gpu,
                        "concurrency": cand.concurrency},
    }
    return doc, res


def render(doc: dict) -> str:
    """The summary as text."""
    ms = lambda v: fmt_seconds(v) if v == v else "-"  # noqa: E731
    lines = [f"simulated: {doc['problem']}, {doc['plan']} ({doc['engine']}): {doc['scope']} "
             f"({plural(doc['gpus_simulated'], 'GPU')}), {plural(doc['requests'], 'request')}, {doc['arrivals']}, "
             f"seed {doc['seed']}",
             f"{'':10}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}"]
    for key, name in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("latency_s", "latency")):
        x = doc[key]
        lines.append(f"{name:10}" + "".join(f"{ms(x[p]):>10}" for p in ("mean", "p50", "p90", "p99")))
    total = "" if doc["copies"] == 1 else f", {doc['output_tok_s_total']:,.0f} over all {doc['copies']:,} instances"
    lines.append(f"output: {doc['output_tok_s_simulated']:,.0f} tok/s ({doc['output_tok_s_per_gpu']:,.0f} per GPU)"
                 f"{total}; {doc['duration_s']:,.1f} s simulated")
    if doc["goodput"] is not None:
        t = doc["targets"]
        bounds = ", ".join(f"{n} <= {fmt_seconds(v)}" for n, v in (("TTFT", t["ttft_s"]), ("TPOT", t["tpot_s"])) if v)
        lines.append(f"goodput: {doc['goodput']:.1%} of requests meet {bounds}")
    by_role: dict[str, list[float]] = {}
    for g in doc["groups"]:
        by_role.setdefault(g["role"], []).append(g["busy"])
    busy = "; ".join(f"{role} {min(u):.0%}-{max(u):.0%}" if len(u) > 1 else f"{role} {u[0]:.0%}"
                     for role, u in by_role.items())
    lines.append(f"busy (share of the run iterating, per micro-batch group): {busy}; {doc['iterations']:,} "
                 f"iterations, {plural(doc['preemptions'], 'preemption')}")
    cf = doc["closed_form"]
    if cf["ttft_s"] is not None:
        lines.append(f"closed form (meshplan plan, steady state at {cf['concurrency']:,.0f} requests in flight): "
                     f"TTFT {fmt_seconds(cf['ttft_s'])}, TPOT {fmt_seconds(cf['tpot_s'])}")
    return "\n".join(lines)
