"""meshplan command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from meshplan.cli.calibrate_cmd import calibrate
from meshplan.cli.check_cmd import build_report, emit
from meshplan.cli.dag_cmd import resolve, run_dag, run_lint
from meshplan.cli.evaluate_cmd import evaluate_plan
from meshplan.cli.plan_cmd import plan_doc
from meshplan.cli.report_cmd import report, write_files
from meshplan.cli.catalog_cmd import gpus, models
from meshplan.cli.run_cmd import execute, need_torch
from meshplan.cli.simulate_cmd import simulate
from meshplan.cli.echo import echo
from meshplan.cli.problem_flags import load, problem_options, wrap_errors
from meshplan.cli.summary import summary
from meshplan.cli.validate_cmd import run_validate
from meshplan.errors import SpecError, finite_number
from meshplan.export.common import ExportTarget
from meshplan.export.export import export, write
from meshplan.io.problem_file import DEFAULT_PROBLEM, load_problem
from meshplan.io.user_file import output_target
from meshplan.plan.document import Plan, Status
from meshplan.plan.plan_json import to_json
from meshplan.plan.pools import Pool
from meshplan.report.markdown import render
from meshplan.specs.workload import Phase
from meshplan.strategy.layout import STRATEGY_HELP, parse_strategy
from meshplan.strategy.notation import from_seed


DAG_PHASES = [Phase.PREFILL.value, Phase.DECODE.value]
"""What --dag-phase names: one pool's phase (read back as a Phase where the flag is read)."""


class OneLineGroup(click.Group):
    """click's own usage errors (a bad choice or number, an unknown option or command, a folder
    where a file is wanted) printed as every other user error is: one line, exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as err:
            echo(f"error: {_one_line(err)}", err=True, one_line=True)
            sys.exit(err.exit_code)
        except click.Abort:
            echo("aborted", err=True)
            sys.exit(1)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


def _one_line(err: click.ClickException) -> str:
    """FIELD: RULE for a click error (the field is the option or argument it is about)."""
    message = err.format_message().rstrip(".")
    if isinstance(err, click.NoSuchOption):
        return f"{err.option_name}: no such option" + (f"; did you mean {', '.join(err.possibilities)}?"
                                                        if err.possibilities else "")
    if isinstance(err, click.BadParameter):
        hint = err.param_hint or (err.param.get_error_hint(err.ctx) if err.param is not None and err.ctx else None)
        if isinstance(hint, (list, tuple)):
            hint = " / ".join(hint)
        hint = str(hint or "argument").replace("'", "").replace('"', "")
        return f"{hint}: {err.message.rstrip('.')}"
    where = err.ctx.command_path if getattr(err, "ctx", None) is not None else "meshplan"
    return f"{where}: {message}"


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="meshplan")
def main() -> None:
    """Plan how to serve a large language model (MoE first) on a GPU cluster.

    With no PROBLEM file, commands use the bundled seed problem (seed-10b-moe.md).
    """


def _write(plan: Plan, json_path: str | None, md_path: str | None) -> None:
    if json_path:
        text = json.dumps(to_json(plan), indent=2, default=float)
        if json_path == "-":
            echo(text)
        else:
            Path(json_path).write_text(text + "\n")
            echo(f"wrote {json_path}", err=True)
    if md_path:
        if md_path == "-":
            echo(render(plan))
        else:
            Path(md_path).write_text(render(plan))
            echo(f"wrote {md_path}", err=True)


def _targets(json_path: str | None, md_path: str | None) -> None:
    """Refuse output files that cannot be written before any work is done."""
    if json_path:
        output_target(json_path, "--json")
    if md_path:
        output_target(md_path, "--markdown")


@main.command()
@problem_options
@click.option("--json", "json_path", help="Write the plan as JSON to FILE ('-' for stdout).")
@click.option("--markdown", "md_path", help="Write the plan as Markdown to FILE ('-' for stdout).")
@click.option("--objective", type=click.Choice(["max-per-gpu", "min-gpus", "pareto"]), default="max-per-gpu",
              show_default=True, help="What the search optimises.")
@click.option("--strict", is_flag=True, help="Exit 1 also when the plan misses a requirement.")
@click.option("--sim", "simulated", is_flag=True, help="Re-score the 10 best candidates by simulation "
              "(percentiles, goodput); on by itself with --ttft-p99 or --tpot-p99.")
@click.option("--html", "html_path", help="Write the plan as one self-contained HTML page to FILE (meshplan report).")
@click.option("--csv", "csv_dir", help="Write candidates.csv and pareto.csv to folder DIR.")
@click.option("--plot", "plot_dir", help="Write pareto.png and memory.png to folder DIR.")
@wrap_errors
def plan(json_path, md_path, objective, strict, simulated, html_path, csv_dir, plot_dir, **kw) -> None:
    """Search every legal strategy and print the best plan with its runner-ups.

    Exit codes: 0 a plan is printed (its verdict, feasible or which requirement it misses, is in the
    output); 1 nothing holds the model and one request within the GPU budget (the output names the
    smallest GPU count that would), or with --strict a requirement is missed; 2 bad input."""
    _targets(json_path, md_path)
    files = write_files(html_path, csv_dir, plot_dir)  # checks the targets before the search
    doc = plan_doc(load(kw), objective, simulated)
    if json_path != "-" and md_path != "-":
        echo(summary(doc))
    _write(doc, json_path, md_path)
    files(doc, simulated)
    raise SystemExit(_exit_code(doc, strict))


def _exit_code(plan: Plan, strict: bool) -> int:
    """1 when nothing fits the budget (or, with --strict, a requirement is missed), else 0."""
    status = plan.verdict.status
    return 1 if status is Status.DOES_NOT_FIT or (strict and status is not Status.FEASIBLE) else 0


@main.command()
@problem_options
@click.option("--strategy", help=STRATEGY_HELP)
@click.option("--prefill", "prefill_s", help="Prefill-pool strategy (disaggregated serving).")
@click.option("--decode", "decode_s", help="Decode-pool strategy (disaggregated serving).")
@click.option("--json", "json_path", is_flag=False, flag_value="-", help="Write JSON to FILE ('-' or bare flag: stdout).")
@click.option("--markdown", "md_path", help="Write Markdown to FILE ('-' for stdout).")
@click.option("--strict", is_flag=True, help="Exit 1 also when the strategy misses a requirement.")
@wrap_errors
def evaluate(strategy, prefill_s, decode_s, json_path, md_path, strict, **kw) -> None:
    """Evaluate one strategy, and say why the search would not pick it.

    Exit codes: 0 the evaluation is printed; 1 the strategy cannot hold the model and one request
    (or, with --strict, it misses a requirement); 2 bad input."""
    _targets(json_path, md_path)
    doc = evaluate_plan(load(kw, gpus_is_budget=False), strategy, prefill_s, decode_s, kw.get("gpus"))
    if json_path != "-" and md_path != "-":
        echo(summary(doc))
    _write(doc, json_path, md_path)
    raise SystemExit(_exit_code(doc, strict))


@main.command()
@problem_options
@click.option("--strategy", help=STRATEGY_HELP + " (default: the search's best plan)")
@click.option("--out", "out_dir", default="dag", show_default=True, help="Folder for the files.")
@click.option("--format", "formats", default="dot,svg,json", show_default=True,
              help="Comma-separated: dot, svg, png, json (svg/png need Graphviz's dot and are drawn up to "
                   "5,000 nodes; dot and json at any size).")
@click.option("--expand", is_flag=True, help="Every GPU and every layer as its own node (default: collapsed).")
@click.option("--dag-phase", type=click.Choice(DAG_PHASES), help="Only this phase's DAG.")
@wrap_errors
def dag(strategy, out_dir, formats, expand, dag_phase, **kw) -> None:
    """The deployment DAG of a plan (PROBLEM or PLAN.json): every operator and transfer on named GPUs.

    Each DAG's nodes and edges are counted from the layout and printed before it is built. SVG and
    PNG are drawn only up to 5,000 nodes (Graphviz's layout time grows faster than the DAG): a larger
    DAG's pictures are skipped, named on one line on stderr, and its DOT and JSON still written.
    No DAG past 1,000,000 nodes is built (--expand of a very large deployment).

    \b
    Exit codes: 0 every DAG written in the formats asked, less any pictures skipped for size;
    2 bad input, a DAG past 1,000,000 nodes, or a DAG too big to draw when only svg/png were
    asked (nothing is written then)."""
    chosen = [f.strip() for f in formats.split(",") if f.strip()]
    if not chosen:
        raise SpecError("--format", formats, "names no format; give dot, svg, png or json, comma-separated")
    problem, pools = resolve(kw.get("problem"), strategy, lambda: load(kw), flags=kw)
    run_dag(problem, pools, Path(out_dir), chosen, expand, Phase(dag_phase) if dag_phase else None)


@main.command("lint-dag")
@click.argument("dot_file", type=click.Path(dir_okay=False))
@click.option("--plan", "plan_file", help="A meshplan plan JSON, or a seed-format plan (.md), to lint against.")
@click.option("--problem", "problem_file", help="The problem, with --strategy (default: the bundled seed problem).")
@click.option("--strategy", help=STRATEGY_HELP)
@click.option("--dag-phase", type=click.Choice(DAG_PHASES), help="Which pool of a disaggregated plan.")
@click.option("--json", "as_json", is_flag=True, help="Findings as JSON.")
@wrap_errors
def lint_dag(dot_file, plan_file, problem_file, strategy, dag_phase, as_json) -> None:
    """Check a DOT file written elsewhere against a plan: structure, GPU labels, placement,
    transfers, missing operators. Exit 1 when anything is found, 0 when clean."""
    if plan_file and plan_file.endswith(".md"):
        problem = load_problem(plan_file)
        if problem.seed_strategy is None:
            raise SpecError("--plan", plan_file, "states no layout (a problem, not a plan); give a plan, or "
                            "--problem with --strategy")
        reading = from_seed(problem.seed_strategy, problem.model)
        # A seed DAG draws one instance (the others are copies), so lint against one.
        pools = [Pool(phases=(Phase.PREFILL, Phase.DECODE), layout=reading.layout.with_instances(1), B={}, offset=0)]
    elif plan_file:
        problem, pools = resolve(plan_file, None, None, "--plan")
    else:
        if not strategy:
            raise SpecError("--strategy", None, "missing; lint against --plan PLAN or a problem with --strategy S")
        problem = load_problem(problem_file)
        pools = [Pool(phases=(Phase.PREFILL, Phase.DECODE), layout=parse_strategy(strategy, is_moe=problem.model.is_moe),
                      B={}, offset=0)]
    raise SystemExit(run_lint(dot_file, problem, pools, Phase(dag_phase) if dag_phase else None, as_json))


@main.command()
@click.argument("plan", required=False, type=click.Path(dir_okay=False))
@click.option("--problem", "problem_path", help="The problem a Markdown plan answers (default: the bundled seed problem).")
@click.option("--vllm", help='A vLLM command to check, e.g. "vllm serve deepseek-ai/DeepSeek-V3 -tp 8 -dp 2 --enable-expert-parallel".')
@click.option("--sglang", help='An SGLang command, e.g. "python -m sglang.launch_server --model-path M --tp 16 --dp 16 --enable-dp-attention".')
@click.option("--trtllm", help="A TensorRT-LLM LLM-API YAML config to check (with --model).")
@click.option("--model", "engine_model", help="The model a --trtllm config serves (trtllm-serve's positional MODEL).")
@click.option("--gpu", help="GPU an engine command runs on (catalog name).")
@click.option("--weights", help="Weight format for an engine command (fp8, bf16, fp4, ...).")
@click.option("--isl", type=float, help="Mean input length for an engine command's predictions.")
@click.option("--osl", type=float, help="Mean output length for an engine command's predictions.")
@click.option("--tolerance", type=float, default=0.25, show_default=True,
              help="Relative difference under which a claimed figure counts as confirmed.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@click.option("--calibration", "--profile", "calibration", help="Calibration profile meshplan's figures use (default "
              "silicon-dev; a plan JSON keeps the one it was made with).")
@wrap_errors
def check(plan, problem_path, vllm, sglang, trtllm, engine_model, gpu, weights, isl, osl, tolerance, as_json,
          calibration) -> None:
    """Check a plan written elsewhere (Markdown, meshplan JSON/YAML, or an engine command):
    every claim confirmed, wrong (with meshplan's value and the rule) or unverifiable.
    Exit 1 when any claim is wrong."""
    if not (finite_number(tolerance) and tolerance > 0):
        raise SpecError("--tolerance", tolerance, "must be a positive, finite number")
    report = build_report(plan, problem_path, vllm, sglang, trtllm, gpu, weights, isl, osl, tolerance, engine_model,
                          calibration)
    emit(report, as_json)
    raise SystemExit(1 if report.any_wrong else 0)


@main.command("export")
@problem_options(engine_flag=False)
@click.option("--strategy", help=STRATEGY_HELP + " (default: the search's best plan)")
@click.option("--engine", type=click.Choice([t.value for t in ExportTarget]), required=True,
              help="vLLM 0.11, SGLang 0.5, TensorRT-LLM 1.0, or a torch DeviceMesh (torch 2.13); the plan is "
                   "made for this engine (a DeviceMesh for the problem's engine, default vllm).")
@click.option("--out", "out_dir", default="launch", show_default=True, help="Folder for the files.")
@click.option("--force", is_flag=True, help="Write a layout that cannot run (a broken rule, or the weights and one "
              "request do not fit), with a warning at the top of every file.")
@wrap_errors
def export_cmd(strategy, engine, out_dir, force, **kw) -> None:
    """Launch commands or configs for every instance and node of a plan (PROBLEM or PLAN.json).

    Exit codes: 0 written; 1 the plan cannot run as exported (a broken rule, or the weights and one
    request do not fit): nothing is written unless --force; 2 bad input."""
    flags = dict(kw)  # what the user typed: with a plan JSON, any of them would be ignored
    target = ExportTarget(engine)  # click.Choice has refused any other name
    if target.engine is not None:
        kw["engine"] = target.engine  # the plan is made (and costed) for the engine it is exported to
    problem, pools = resolve(kw.get("problem"), strategy, lambda: load(kw), flags=flags)
    result = export(problem, pools, target)
    for sub in result.substitutions:
        echo(f"{target} cannot express the {sub.role} pool {sub.layout}: {sub.reason}")
        if sub.nearest:
            echo(f"  nearest layout it can express: {sub.nearest} "
                       f"({sub.nearest_tok_s_per_gpu or 0:,.0f} vs {sub.planned_tok_s_per_gpu or 0:,.0f} tokens/s per "
                       "GPU planned); exported instead")
        else:
            echo("  no expressible layout with the same GPUs; nothing exported for this pool")
    for reason in result.blocked:
        echo(f"cannot run: {reason}", err=True)
    if result.blocked and not force:
        echo("refused: nothing written (--force writes it with a warning in every file)", err=True)
        raise SystemExit(1)
    for path in write(result, Path(out_dir), force):
        echo(f"wrote {path}")
    for note in result.notes:
        echo(f"note: {note}")


@main.command("run")
@problem_options
@click.option("--strategy", help=STRATEGY_HELP + " (default: the plan meshplan chooses)")
@click.option("--scale", type=click.Choice(["tiny", "full"]), default="tiny", show_default=True,
              help="tiny keeps layers, heads, KV heads, experts and top-k and shrinks widths; full needs GPUs.")
@click.option("--requests", type=int, default=8, show_default=True, help="Requests to generate.")
@click.option("--run-isl", "run_isl", type=int, default=16, show_default=True, help="Prompt tokens per request.")
@click.option("--run-osl", "run_osl", type=int, default=8, show_default=True, help="Tokens generated per request.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the weights and prompts.")
@click.option("--timeout", "timeout_s", type=float, default=60.0, show_default=True,
              help="A rank that makes no progress for this long ends the run.")
@click.option("--max-processes", "max_processes", type=int, default=32, show_default=True,
              help="Processes one run may start (each holds its own torch, about 0.25 GB on a CPU); a plan "
                   "with more instances runs as many whole instances as fit.")
@wrap_errors
def run_cmd(strategy, scale, requests, run_isl, run_osl, dtype, seed, timeout_s, max_processes, **kw) -> None:
    """Run the plan for real on torch.distributed: one process per GPU rank (CPU processes with
    gloo when there is no GPU). With no problem: the seed problem under meshplan's plan and under
    the layout the seed's own plan claims (attention dp 16 folded with ep 16)."""
    need_torch()
    for name, value, top in _run_limits(requests, run_isl, run_osl, timeout_s, max_processes):
        if not (finite_number(value) and 0 < value <= top):
            raise SpecError(name, value, f"must be a positive number up to {top:,}")
    if not 0 <= seed < 2**32:
        raise SpecError("--seed", seed, "must be from 0 to 2**32 - 1 (numpy's and torch's seed range)")
    problem, pools = resolve(kw.get("problem"), strategy, lambda: load(kw), flags=kw)
    # Every pool of the plan (prefill and decode pools of a disaggregated plan each run their
    # own layout end to end; the KV hand-off between pools is not executed).
    source = "the given strategy" if strategy else "meshplan plan"
    runs = [(f"{problem.name}: {source} ({pool.role} pool)", pool.layout) for pool in pools]
    if kw.get("problem") is None and not strategy and not kw.get("model"):
        seed_plan = load_problem(str(DEFAULT_PROBLEM.parent / "seed-plan.md"))
        runs.append(("the layout the seed's own plan claims (one instance)",
                     from_seed(seed_plan.seed_strategy, seed_plan.model).layout.with_instances(1)))
    for title, lay in runs:
        execute(problem, lay, scale=scale, requests=requests, isl=run_isl, osl=run_osl, dtype=dtype, seed=seed,
                timeout_s=timeout_s, title=title, max_processes=max_processes)


def _run_limits(requests, run_isl, run_osl, timeout_s, max_processes):
    """(flag, value, largest accepted) of meshplan run: a run exercises a plan on made-up prompts,
    so requests and lengths stay small; a timeout past a day is a typo."""
    return (("--requests", requests, 100_000), ("--run-isl", run_isl, 1_000_000), ("--run-osl", run_osl, 1_000_000),
            ("--timeout", timeout_s, 86_400), ("--max-processes", max_processes, 4_096))




@main.command()
@click.argument("cases", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "json_path", help="Write every prediction as JSON to FILE, with the summary for a silicon CSV ('-': stdout, "
              "without the tables).")
@click.option("--calibration", "--profile", "calibration", default="silicon-dev", show_default=True,
              help="Calibration profile: a bundled name, a YAML path, or none for the sourced defaults.")
@click.option("--sim", "simulated", is_flag=True, help="Silicon CSV: predict the runs by simulating each "
              "run's closed loop request by request (meshplan simulate), beside the closed form.")
@click.option("--ranking", is_flag=True, help="Silicon CSV: also compare meshplan's ordering of the layouts measured "
              "side by side with the measured one (Kendall's tau per group, measured best in the top two).")
@click.option("--jobs", type=int, help="With --sim: processes simulating the runs side by side (default 1; the "
              "figures are the same with any number).")
@wrap_errors
def validate(cases, json_path, calibration, simulated, ranking, jobs) -> None:
    """Predict measured runs and print predicted against measured.

    CASES is a silicon CSV (the format of shared/cases/silicon-dev.csv: per backend x GPU x model x
    mode, the runs, how many are predicted, median |error| and median signed error of TTFT and TPOT)
    or a published-cases YAML (default: the bundled published.yaml)."""
    run_validate(cases, json_path, calibration, simulated, ranking, jobs)


main.add_command(calibrate)
main.add_command(report)
main.add_command(models)
main.add_command(simulate)
main.add_command(gpus)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
