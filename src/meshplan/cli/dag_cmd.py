"""meshplan dag / lint-dag: where the plan comes from, and what gets written or reported."""

from __future__ import annotations

import json
import time
from pathlib import Path

from meshplan.cli.echo import echo
from meshplan.cli.problem_flags import refuse_problem_flags
from meshplan.dag.build import build_dag, dag_size
from meshplan.dag.export import PICTURES, check_formats, picture_rule, too_big_to_draw, write
from meshplan.dag.lint import lint_dot
from meshplan.dag.size import check_buildable
from meshplan.errors import SpecError
from meshplan.io.user_file import load_json, read_text
from meshplan.plan.plan import build_plan, candidate_plan
from meshplan.plan.plan_json import from_json
from meshplan.plan.pools import Pool, pools_of
from meshplan.search.evaluate import evaluate_aggregated, evaluate_disaggregated, one_layout_allowed
from meshplan.search.search import search
from meshplan.specs.problem import Problem
from meshplan.specs.workload import Phase
from meshplan.strategy.layout import parse_strategy


def plan_json_at(source: str | None, field: str = "problem") -> dict | None:
    """The meshplan plan JSON (schema meshplan.plan/...) at ``source``, as read (the caller refuses
    conflicting flags, then reads it with plan.plan_json.from_json), or None when the file is not
    one (a problem file, or no file)."""
    if not (source and str(source).endswith(".json")):
        return None
    doc = load_json(read_text(source, field), field, Path(source).name)
    return doc if isinstance(doc, dict) and str(doc.get("schema", "")).startswith("meshplan.plan/") else None


def resolve(source: str | None, strategy: str | None, load_problem_kw, field: str = "problem",
            flags: dict | None = None) -> tuple[Problem, list[Pool]]:
    """A plan JSON, or a problem (file, flags or the bundled seed) with --strategy or the search's
    best. Without ``load_problem_kw`` (lint-dag --plan) the source must be a plan JSON; problem
    ``flags`` given with a plan JSON are refused (they would be ignored)."""
    doc = plan_json_at(source, field)
    if doc is not None:
        if strategy:
            raise SpecError("--strategy", strategy, "a plan JSON already fixes the strategy")
        refuse_problem_flags(flags or {})
        plan = from_json(doc)
        return plan.problem_spec, pools_of(plan)
    if load_problem_kw is None:
        raise SpecError(field, source, "is not a meshplan plan JSON (schema meshplan.plan/1, from meshplan plan --json)")
    problem = load_problem_kw()
    fixed = fixed_candidate(problem, strategy)
    plan = candidate_plan(problem, fixed) if fixed is not None else build_plan(search(problem))
    return plan.problem_spec, pools_of(plan)


def fixed_candidate(problem: Problem, strategy: str | None):
    """The candidate of the strategy the user fixed (--strategy, else the problem file's strategy,
    or its prefill_strategy and decode_strategy), or None when the search is to choose."""
    moe = problem.model.is_moe
    strategy = strategy or problem.strategy
    if strategy:
        one_layout_allowed(problem, strategy)
        return evaluate_aggregated(problem, parse_strategy(strategy, is_moe=moe))
    if problem.prefill_strategy or problem.decode_strategy:
        if not (problem.prefill_strategy and problem.decode_strategy):
            raise SpecError("prefill_strategy" if not problem.prefill_strategy else "decode_strategy", None,
                            "missing; a disaggregated strategy needs both prefill_strategy and decode_strategy")
        return evaluate_disaggregated(problem, parse_strategy(problem.prefill_strategy, is_moe=moe,
                                                             field="prefill_strategy"),
                                      parse_strategy(problem.decode_strategy, is_moe=moe, field="decode_strategy"))
    return None


def run_dag(problem: Problem, pools: list[Pool], out: Path, formats: list[str], expand: bool,
            phase: Phase | None) -> None:
    """Count every asked DAG from its layout first (printed), refuse before building anything a
    DAG past size.MAX_BUILD_NODES or one whose asked formats are all pictures too big to draw,
    then build and write each; pictures too big to draw are skipped and named on one line."""
    check_formats(formats)
    planned = {ph for pool in pools for ph in pool.phases}
    if phase and phase not in planned:
        raise SpecError("--dag-phase", phase, f"the plan has no {phase} phase (it plans {', '.join(sorted(planned))})")
    todo = [(pool, ph, dag_size(problem.for_pool(ph), pool.layout, ph, pool.B[ph], expand=expand))
            for pool in pools for ph in pool.phases if phase is None or ph is phase]
    for pool, ph, size in todo:
        check_buildable(size, f"{ph} {pool.layout.short}", expand)
        if too_big_to_draw(size.nodes) and all(f in PICTURES for f in formats):
            raise SpecError("--format", ",".join(formats), f"the {ph} DAG ({pool.layout.short}) has {size.nodes:,} "
                            f"nodes; {picture_rule()}; add dot or json" + (", or leave out --expand" if expand else ""))
    skipped = []
    for pool, ph, size in todo:
        stem = f"{ph}{'_expanded' if expand else ''}"
        echo(f"{ph}: {pool.layout.short}, {size.nodes:,} nodes, {size.edges:,} edges (counted from the layout)")
        drawn = [f for f in formats if f not in PICTURES or not too_big_to_draw(size.nodes)]
        if len(drawn) < len(formats):
            names = ", ".join(f"{stem}.{f}" for f in formats if f not in drawn)
            skipped.append(f"{names} ({size.nodes:,} nodes)")
        t0 = time.perf_counter()
        dag = build_dag(problem.for_pool(ph), pool.layout, ph, pool.B[ph], offset=pool.offset, expand=expand)
        t1 = time.perf_counter()
        paths = write(dag, out, drawn, stem)
        echo(f"  built in {t1 - t0:.2f} s, written in {time.perf_counter() - t1:.2f} s")
        for p in paths:
            echo(f"  {p}")
    if skipped:
        echo(f"skipped {'; '.join(skipped)}: {picture_rule()}", err=True)
    if problem.speculative is not None and any(Phase.DECODE in pool.phases for pool, _, _ in todo):
        echo(f"speculative decoding ({problem.speculative.describe()}): the decode DAG's operator costs are "
             f"the verify pass's ({problem.speculative.draft_tokens + 1} positions per sequence); the draft's passes "
             "are not drawn as nodes, their time is in the step (cost.speculative)", err=True)


def run_lint(dot_file: str, problem: Problem, pools: list[Pool], phase: Phase | None, as_json: bool) -> int:
    path = Path(dot_file)
    text = read_text(path, "DOT_FILE")
    pool = next((p for p in pools if phase is None or phase in p.phases), pools[-1])
    findings = lint_dot(text, path.name, problem.model, pool.layout, pool.offset,
                        redundant=problem.assumptions.redundant_experts)
    if as_json:
        echo(json.dumps({"file": str(path), "layout": str(pool.layout), "gpu_offset": pool.offset,
                               "clean": not findings, "findings": [f.to_dict() for f in findings]}, indent=2))
    else:
        echo(f"{path.name} against {pool.layout} (GPUs {pool.offset}-{pool.offset + pool.layout.gpus - 1}):")
        for f in findings:
            echo(f"  {f.line()}")
        echo("  clean" if not findings else f"  {len(findings)} finding(s)")
    return 1 if findings else 0
