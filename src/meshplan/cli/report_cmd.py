"""meshplan report (and plan --html / --csv / --plot): a plan as one HTML page, CSV files and PNGs."""

from __future__ import annotations

import csv
import shutil
import tempfile
from pathlib import Path
from typing import Any

import click

from meshplan.cli.echo import echo
from meshplan.cli.dag_cmd import fixed_candidate, plan_json_at
from meshplan.cli.problem_flags import load, problem_options, refuse_problem_flags, wrap_errors
from meshplan.dag.build import build_dag, dag_size
from meshplan.dag.export import picture_rule, render, to_dot, too_big_to_draw
from meshplan.errors import SpecError
from meshplan.io.catalog import CATALOG, load_gpu, load_model
from meshplan.io.user_file import load_json, read_text
from meshplan.plan.candidates import CandidateSummary
from meshplan.plan.document import Plan
from meshplan.plan.plan import build_plan, candidate_plan
from meshplan.plan.plan_json import from_json
from meshplan.plan.pools import pools_of
from meshplan.plan.simulated import run_at_operating_point
from meshplan.report.html import render_html, why_set_aside
from meshplan.report.html_parts import plotly_modules
from meshplan.report.html_simulation import Simulated
from meshplan.report.plan_plot import plot_memory, plot_pareto
from meshplan.report.pyplot import pyplot
from meshplan.search.evaluate import evaluate_aggregated, evaluate_disaggregated
from meshplan.search.search import search
from meshplan.simulate.summary import per_request, timeline
from meshplan.specs.workload import PoolRole

VALIDATION = CATALOG / "cases" / "silicon-dev-validation.json"
"""The dev set's validation summary (meshplan validate ../shared/cases/silicon-dev.csv --json F,
rows left out): where the report finds how close meshplan has been for a model and a GPU."""

MAX_SPANS = 5_000
"""Iteration spans drawn at most on the page (a long run's are thinned evenly)."""

CSV_FIELDS = ("label", "mode", "gpus_total", "feasible", "ttft_s", "tpot_s", "output_tok_s_per_gpu",
              "input_tok_s_per_gpu", "concurrency", "why")


def _out_file(path: str, flag: str) -> Path:
    p = Path(path)
    if p.is_dir() or not p.parent.is_dir():
        raise SpecError(flag, path, "must be a file path in an existing folder")
    return p


def _out_dir(path: str, flag: str) -> Path:
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise SpecError(flag, path, "is a file; give a folder")
    if not p.parent.is_dir():
        raise SpecError(flag, path, "its parent folder does not exist")
    return p


def closeness(problem, validation_path: Path = VALIDATION) -> list[dict]:
    """Validation medians of the partitions on this model or this GPU (same model first)."""
    doc = load_json(read_text(str(validation_path), "--validation"), "--validation", validation_path.name)
    parts = (doc.get("summary") or {}).get("partitions") if isinstance(doc, dict) else None
    if not isinstance(parts, list):
        raise SpecError("--validation", str(validation_path), "holds no summary.partitions (write it with meshplan "
                        "validate CASES.csv --json FILE)")
    out = []
    for p in parts:
        try:
            model, gpu = load_model(p["model"]).name, load_gpu(p["gpu"]).name
        except (SpecError, KeyError, TypeError):
            continue
        same_model, same_gpu = model == problem.model.name, gpu == problem.gpu.name
        if (same_model or same_gpu) and p.get("predicted") and p.get("ttft_median_abs") is not None:
            out.append({"what": "model and GPU" if same_model and same_gpu else "model" if same_model else "GPU",
                        "backend": p["backend"], "gpu": p["gpu"], "model": p["model"], "mode": p["mode"],
                        "predicted": p["predicted"], "ttft_abs": p["ttft_median_abs"],
                        "tpot_abs": p["tpot_median_abs"]})
    order = {"model and GPU": 0, "model": 1, "GPU": 2}
    return sorted(out, key=lambda r: (order[r["what"]], r["backend"], r["gpu"], r["model"]))


def _dags(problem, pools) -> tuple[list[tuple[str, str]], str]:
    """Collapsed DAG pictures (SVG) of every pool and phase, or why there are none."""
    if shutil.which("dot") is None:
        return [], "Graphviz's dot is not installed (apt-get install graphviz): no DAG picture."
    out, skipped = [], []
    for pool in pools:
        for ph in pool.phases:
            size = dag_size(problem.for_pool(ph), pool.layout, ph, pool.B[ph])
            if too_big_to_draw(size.nodes):
                skipped.append(f"{ph} ({size.nodes:,} nodes)")
                continue
            dag = build_dag(problem.for_pool(ph), pool.layout, ph, pool.B[ph], offset=pool.offset)
            with tempfile.TemporaryDirectory() as d:
                path = Path(d) / "dag.svg"
                render(to_dot(dag), "svg", path)
                svg = path.read_text(encoding="utf-8")
            svg = svg[svg.find("<svg"):]  # drop the XML prolog and DOCTYPE: inline SVG in HTML
            out.append((f"{ph}: {pool.layout.short}, {size.nodes:,} nodes", svg))
    note = f"not drawn: {', '.join(skipped)}; {picture_rule()}" if skipped else ""
    return out, note


def _simulated(plan: Plan):
    """The chosen plan simulated request by request, as the page draws it."""
    problem = plan.problem_spec
    res, gpus, copies, arrivals, _ = run_at_operating_point(problem, _candidate(plan), keep_spans=True)
    step = max(1, len(res.spans) // MAX_SPANS)  # a long run's iterations, evenly thinned
    spans = [(s.start_s, s.duration_s, s.count, s.decode_seqs, s.prefill_tokens, res.roles[s.group]
              if s.group < len(res.roles) else "aggregated") for s in res.spans[::step]]
    ttft, tpot, _ = per_request(res)
    mid, rate, waiting = timeline(res)
    r = problem.requirements
    return Simulated(ttft_s=[float(x) for x in ttft], tpot_s=[float(x) for x in tpot], time_s=[float(x) for x in mid],
                     output_tok_s=[float(x) for x in rate], waiting=[float(x) for x in waiting],
                     ttft_target_s=r.ttft_p99_s or r.ttft_s, tpot_target_s=r.tpot_p99_s or r.tpot_s, iterations=spans,
                     caption=(f"{len(ttft):,} requests ({arrivals}) on {gpus} GPUs"
                              + (f", one of {copies} identical instances" if copies > 1 else "")
                              + "; latency CDFs per request, and the run's throughput and queue over time."))


def _candidate(plan: Plan):
    problem = plan.problem_spec
    by = {p.role: p.layout for p in pools_of(plan)}
    if PoolRole.AGGREGATED in by:
        return evaluate_aggregated(problem, by[PoolRole.AGGREGATED])
    if PoolRole.PREFILL in by and PoolRole.DECODE in by:
        return evaluate_disaggregated(problem, by[PoolRole.PREFILL], by[PoolRole.DECODE])
    raise SpecError("--sim", "on", "the plan serves one phase only; a simulation needs both")


def write_html(plan: Plan, path: Path, simulated: bool, validation: Path = VALIDATION) -> None:
    problem, pools = plan.problem_spec, pools_of(plan)
    sim = _simulated(plan) if simulated else None
    svgs, note = _dags(problem, pools)
    page = render_html(plan, pools, sim=sim, dag_svgs=svgs, dag_note=note, closeness=closeness(problem, validation))
    path.write_text(page, encoding="utf-8")
    echo(f"wrote {path} ({len(page) / 1e6:.1f} MB, opens offline)", err=True)


def _rows(items: tuple[CandidateSummary, ...]) -> list[dict[str, Any]]:
    return [{k: why_set_aside(c) if k == "why" else getattr(c, k) for k in CSV_FIELDS} for c in items]


def write_csv(plan: Plan, folder: Path) -> list[Path]:
    """candidates.csv (the chosen plan, runner-ups and examples of what was set aside) and
    pareto.csv (the frontier of tokens/s per GPU against tokens/s per user)."""
    folder.mkdir(exist_ok=True)
    chosen = {k: getattr(plan, k) for k in CSV_FIELDS if k != "why"} | {"why": "chosen"}
    tables = {"candidates.csv": [chosen] + _rows(plan.runner_ups) + _rows(plan.pruned.examples),
              "pareto.csv": _rows(plan.pareto)}
    paths = []
    for name, rows in tables.items():
        p = folder / name
        with p.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            w.writeheader()
            w.writerows(rows)
        paths.append(p)
    return paths


def write_png(plan: Plan, folder: Path) -> list[Path]:
    """pareto.png and memory.png (matplotlib)."""
    folder.mkdir(exist_ok=True)
    return [plot_pareto(plan, folder / "pareto.png"), plot_memory(plan, folder / "memory.png")]


def write_files(html_path: str | None, csv_dir: str | None, plot_dir: str | None):
    """plan --html / --csv / --plot: the targets checked now, and a function that writes them for a
    plan (with the chosen plan simulated on the page when the plan was)."""
    html_file = _out_file(html_path, "--html") if html_path else None
    csv_folder = _out_dir(csv_dir, "--csv") if csv_dir else None
    plot_folder = _out_dir(plot_dir, "--plot") if plot_dir else None
    if html_file:
        plotly_modules()  # refuse now (exit 2) rather than after the search when plotly is missing
    if plot_folder:
        pyplot()

    def write(plan: Plan, simulated: bool) -> None:
        if html_file:
            write_html(plan, html_file, simulated)
        for p in (write_csv(plan, csv_folder) if csv_folder else []) + (write_png(plan, plot_folder) if plot_folder else []):
            echo(f"wrote {p}", err=True)
    return write


@click.command()
@problem_options
@click.option("--html", "html_path", required=True, help="Write the page to FILE (one self-contained HTML file).")
@click.option("--strategy", help="Report this strategy instead of the search's best.")
@click.option("--sim", "simulated", is_flag=True, help="Simulate the chosen plan request by request and draw its "
              "latency CDFs and timeline.")
@click.option("--validation", "validation_path", help="A meshplan validate --json file for the 'how close' table "
              "(default: the dev set's, bundled).")
@wrap_errors
def report(html_path, strategy, simulated, validation_path, **kw) -> None:
    """One HTML page for a plan (PLAN.json from meshplan plan --json, or a PROBLEM, flags or the
    bundled seed, searched): verdict, GPU map, Pareto frontier, memory, DAG, every candidate,
    assumptions, and how close meshplan has been on this model and GPU."""
    target = _out_file(html_path, "--html")
    validation = Path(validation_path) if validation_path else VALIDATION
    source = kw.get("problem")
    if source and source.endswith(".json"):
        doc = plan_json_at(source, "PLAN")
        if doc is None:
            raise SpecError("PLAN", source, "is not a meshplan plan JSON (meshplan plan --json FILE)")
        if strategy:
            raise SpecError("--strategy", strategy, "a plan JSON already fixes the strategy")
        refuse_problem_flags(kw)
        plan = from_json(doc)
    else:
        problem = load(kw)
        fixed = fixed_candidate(problem, strategy)
        plan = candidate_plan(problem, fixed) if fixed is not None else build_plan(search(problem))
    write_html(plan, target, simulated, validation)
