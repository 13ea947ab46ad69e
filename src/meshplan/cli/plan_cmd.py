"""meshplan plan: the plan of the search's best (or of the strategy the problem fixes)."""

from __future__ import annotations

from dataclasses import replace

from meshplan.cli.echo import echo
from meshplan.cli.evaluate_cmd import evaluate_plan
from meshplan.errors import SpecError
from meshplan.plan.document import Plan, PlanNote
from meshplan.plan.plan import build_plan
from meshplan.plan.simulated import simulated_plan
from meshplan.search.objectives import Objective
from meshplan.search.search import search
from meshplan.specs.problem import Problem


def plan_doc(problem: Problem, objective: str, simulated: bool) -> Plan:
    """The plan: evaluated when the problem fixes a strategy, else searched; its best candidates
    simulated with --sim or when p99 targets are given."""
    if objective == "min-gpus" and not problem.requirements.min_output_tok_s:
        raise SpecError("--objective", objective, "needs a total throughput target (requirements.min_output_tok_s)")
    if problem.strategy or problem.prefill_strategy or problem.decode_strategy:
        plan = evaluate_plan(problem, None, None, None, None)
        return replace(plan, notes=plan.notes + (PlanNote(field="strategy", message=(
            "the problem fixes the strategy: plan evaluates it instead of searching (why not: how the "
            "search's best compares)")),))
    result = search(problem, Objective(objective), progress=lambda m: echo(f"  {m}", err=True))
    if simulated or problem.requirements.ttft_p99_s or problem.requirements.tpot_p99_s:
        echo("  simulating the best candidates ...", err=True)
        return simulated_plan(result)
    return build_plan(result)
