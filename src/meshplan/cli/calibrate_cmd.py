"""meshplan calibrate: fit the named factors on measured runs and write a calibration profile, or
time the kernels on this machine's GPUs and write a hardware profile (--microbench)."""

from __future__ import annotations

import time
from pathlib import Path

import click
import yaml

from meshplan.cli.echo import echo
from meshplan.cli.microbench_cmd import run_microbench
from meshplan.cli.problem_flags import wrap_errors
from meshplan.errors import SpecError
from meshplan.fidelity.calibrate import (BY_KEYS, cross_validate, default_value, factors_for, few_runs_factors, fit,
                                         fit_partition, has_default, held_from, informative, partitions, profile_of,
                                         evaluated, value_in)
from meshplan.fidelity.factors import FACTORS
from meshplan.fidelity.predict import group_cases
from meshplan.fidelity.simfit import FIT_REPLICAS, NOT_SIM_FITTED, SIM_FITTED, SimFitResult, fit_by_simulation
from meshplan.fidelity.silicon import read_silicon
from meshplan.io.calibration import load_profile
from meshplan.report.tables import table
from meshplan.specs.calibration import FitError, SimulationFit


@click.command()
@click.argument("cases", required=False, type=click.Path(dir_okay=False))
@click.option("--out", required=True, help="Profile YAML to write.")
@click.option("--fit", "fit_names", help="Comma-separated factors to fit (default: every named factor the data reaches except "
              "expert_load_cv, which keeps its measured source unless named).")
@click.option("--folds", help="Cross-validation folds of model x GPU groups (0: none; 'groups': one per group, "
              "leave-one-group-out; default 5).")
@click.option("--sim-fit", "sim_names", help="Comma-separated factors to fit by simulating the runs they reach, from "
              "--base's values: the benchmark factors (requests_per_client, client_overhead_s; the runs whose client "
              "leaves them unstated), an engine's kernel_launch_s (e.g. trtllm.kernel_launch_s; that engine's runs) or its "
              "fp8_fused_moe_share (e.g. sglang.fp8_fused_moe_share; that engine's runs with FP8 experts). "
              "Every other factor keeps --base's value unless --fit names it, which the closed form then refits with "
              "these held.")
@click.option("--jobs", type=int, help="Processes fitting the cross-validation folds, or simulating the runs "
              "(--sim-fit), side by side (default 1).")
@click.option("--name", help="Name recorded in the profile (default: the --out file's name without .yaml).")
@click.option("--base", help="Profile whose values the factors not fitted here keep (default silicon-dev; none: their "
              "sourced defaults).")
@click.option("--by", "by", help="Also refit the assumption factors per gpu, per engine or per gpu,engine, on top "
              "of the pooled fit (each partition cross-validated over its models with --folds).")
@click.option("--microbench", is_flag=True, help="Instead of fitting runs: time dense and expert GEMMs, attention decode, "
              "all-reduce and all-to-all on this machine and write a hardware profile (needs torch).")
@click.option("--device", type=click.Choice(["cuda", "cpu"]), default="cuda", show_default=True,
              help="--microbench: the GPUs (cuda) or, to try the method, the CPU at small sizes.")
@click.option("--dtype", default="bfloat16", show_default=True, help="--microbench: torch dtype of the GEMMs and attention.")
@click.option("--gpu", help="--microbench: the catalog GPU these are, to print the achieved share of its figures.")
@wrap_errors
def calibrate(cases, out, fit_names, sim_names, folds, jobs, name, base, by, microbench, device, dtype, gpu) -> None:
    """Fit the named factors of the step model on measured runs (a silicon CSV) and write a
    calibration profile; plan, evaluate, simulate, validate, check and export use it with --profile FILE.
    With --microbench, time the kernels here and write a hardware profile instead."""
    if microbench:
        given = [flag for flag, v in (("CASES", cases), ("--fit", fit_names), ("--folds", folds), ("--base", base),
                                      ("--by", by), ("--name", name), ("--jobs", jobs), ("--sim-fit", sim_names))
                 if v is not None]
        if given:
            raise SpecError(given[0], "given", "fits measured runs; --microbench times kernels and takes none")
        run_microbench(out, device, dtype, gpu)
        return
    if cases is None:
        raise SpecError("CASES", None, "missing: a silicon CSV of measured runs (or --microbench)")
    for flag, v in (("--device", device != "cuda"), ("--dtype", dtype != "bfloat16"), ("--gpu", gpu)):
        if v:
            raise SpecError(flag, "given", "applies to --microbench only")
    sim_only = sim_names is not None and fit_names is None
    if sim_only and folds not in (None, "0"):
        raise SpecError("--folds", folds, "cross-validates the closed form's fit; with --sim-fit it fits only what --fit "
                        "names (none here)")
    if sim_only and by:
        raise SpecError("--by", by, "refits the closed form's factors per partition; with --sim-fit it fits only what "
                        "--fit names (none here)")
    run_calibrate(cases, out, _names(fit_names), 0 if sim_only else _folds(folds), name or Path(out).stem,
                  base or "silicon-dev", _by(by), _jobs(jobs), None if sim_names is None else (_names(sim_names) or []))


def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def _jobs(n: int | None) -> int:
    if n is None:
        return 1
    if not 1 <= n <= 64:
        raise SpecError("--jobs", n, "from 1 to 64 processes")
    return n


def _folds(text: str | None) -> int | str:
    if text is None:
        return 5
    if text == "groups":
        return text
    try:
        return int(text)
    except ValueError:
        raise SpecError("--folds", text, "0 (no cross-validation), at least 2, or groups (leave one group out)") from None


def _partitioned(profile, groups, factors, pooled, held, by, folds, say, logo=False):
    """The profile with the assumption factors refitted per partition, and a table of them."""
    fits, rows = [], []
    for part in partitions(groups, by):
        label = ", ".join(part.key.values())
        say(f"refitting on {label} ...")
        pf, why = fit_partition(part, factors, pooled, held, folds, logo)
        if pf is None:
            rows.append([label, str(sum(len(g.cases) for g in part.groups)), f"not refitted: {why}", "", "", ""])
            continue
        fits.append(pf)
        cv = pf.cross_validated
        rows.append([label, str(pf.rows), ", ".join(f"{k} {f.value:.3g}" for k, f in pf.assumptions.items()),
                     f"{pf.pooled.ttft:.1%} / {pf.pooled.tpot:.1%}", f"{pf.in_sample.ttft:.1%} / {pf.in_sample.tpot:.1%}",
                     f"{cv.ttft:.1%} / {cv.tpot:.1%}" if cv else "none (--folds 0)" if not folds else "one group: none"])
    echo(f"\nRefitted per {' and '.join(by)} (assumption factors; the rest at the pooled values):")
    echo(table(["partition", "runs", "values", "pooled TTFT / TPOT", "refit TTFT / TPOT",
                "refit cross-validated"], rows))
    return profile.model_copy(update={"partitions": fits})


def _check_sim_names(sim_names: list[str], names: list[str] | None) -> None:
    if not sim_names:
        raise SpecError("--sim-fit", "", "names the factors to fit by simulation: " + ", ".join(SIM_FITTED))
    for n in sim_names:
        if n not in SIM_FITTED:
            raise SpecError("--sim-fit", n, NOT_SIM_FITTED)
        if n in (names or ()):
            raise SpecError("--fit", n, "also named in --sim-fit: a factor is fitted one way")
    if len(set(sim_names)) < len(sim_names):
        raise SpecError("--sim-fit", ",".join(sim_names), "names a factor twice")


def _fit_by_simulation(groups, sim_names, base, jobs, say):
    """The --sim-fit factors fitted by simulation, every other factor at ``base``'s value (or its
    sourced default), starting from ``base``'s values; (result, factors)."""
    factors = [f for f in FACTORS if f.name in sim_names]
    start = [v if (v := value_in(base, f)) is not None else default_value(f) for f in factors]
    t0 = time.perf_counter()
    say(f"fitting {', '.join(sim_names)} by simulation from {', '.join(f'{v:.4g}' for v in start)}"
        f"{f' (profile {base.name})' if base is not None else ''}, one pass per trial ...")
    result = fit_by_simulation(groups, factors, start, held_from(base, factors), jobs, progress=lambda n, vals, loss, med: say(
        f"  pass {n}: {', '.join(f'{f.name} {v:.4g}' for f, v in zip(factors, vals))}: loss {loss:.1f}, "
        f"median |TTFT error| {med:.1%} ({time.perf_counter() - t0:.0f} s)"))
    say(f"  fitted by simulation: {', '.join(f'{f.name} {v:.4g}' for f, v in zip(factors, result.values))}")
    return result, factors


def _record(result: SimFitResult, factors) -> SimulationFit:
    return SimulationFit(factors=[f.name for f in factors], rows=result.rows, rows_hash=result.rows_hash,
                         replicas=FIT_REPLICAS, passes=result.passes,
                         error=FitError(ttft=result.median_abs_ttft, tpot=result.median_abs_tpot))


def _by(text: str | None) -> list[str]:
    keys = [k.strip() for k in (text or "").split(",") if k.strip()]
    for k in keys:
        if k not in BY_KEYS:
            raise SpecError("--by", text, f"partitions by {', '.join(BY_KEYS)} or both (gpu,engine)")
    if len(set(keys)) < len(keys):
        raise SpecError("--by", text, "names a key twice")
    return keys


def run_calibrate(cases_path: str, out: str, names: list[str] | None, folds: int | str, name: str,
                  base_name: str = "none", by: list[str] | None = None, jobs: int = 1,
                  sim_names: list[str] | None = None) -> None:
    if sim_names is not None:
        _check_sim_names(sim_names, names)
    logo = folds == "groups"
    if not logo and (folds == 1 or folds < 0):
        raise SpecError("--folds", folds, "0 (no cross-validation), at least 2, or groups (leave one group out)")
    target = Path(out)
    if target.is_dir():
        raise SpecError("--out", out, "is a folder; give a file path")
    if not target.parent.is_dir():
        raise SpecError("--out", out, "its folder does not exist")
    cases, skips = read_silicon(cases_path)
    if not cases:
        raise SpecError("cases", cases_path, "no run in the file can be predicted (see meshplan validate)")
    groups = group_cases(cases, "none")
    base = load_profile(base_name)
    factors = factors_for(groups, names)
    model_gpu = {(g.cases[0].model, g.cases[0].gpu) for g in groups}
    if logo:
        folds = len(model_gpu)
    if folds and len(model_gpu) < 2:
        raise SpecError("--folds", folds, f"cross-validation holds out model x GPU groups; the file has "
                        f"{len(model_gpu)} (use --folds 0)")
    say = lambda m: echo(m, err=True)  # noqa: E731
    if sim_names and not names:
        _write_simulated(groups, cases_path, out, name, base, base_name, sim_names, jobs, target, say)
        return
    moves = informative(groups, factors, [default_value(f) for f in factors], held_from(base, factors))
    idle = [f.name for f, m in zip(factors, moves) if not m]
    if idle and names:
        raise SpecError("--fit", idle[0], "no run in the file depends on it (nothing to fit it on)")
    if idle:
        say(f"not fitted, no run here depends on them: {', '.join(idle)}")
        factors = [f for f, m in zip(factors, moves) if m]
    if not names and len(factors) > len(cases):
        factors = few_runs_factors(factors, len(cases))
        say(f"{len(cases)} runs give {2 * len(cases)} residuals, too few for every factor: fitting "
            f"{', '.join(f.name for f in factors)} (name others with --fit)")
    if not factors:
        raise SpecError("cases", cases_path, "no factor can be fitted on these runs")
    simulated = _fit_by_simulation(groups, sim_names, base, jobs, say) if sim_names else None
    held = held_from(base, factors)
    if simulated:
        fit_sim, sim_factors = simulated
        held = tuple((f, v) for f, v in held if f.name not in sim_names) + tuple(zip(sim_factors, fit_sim.values))
    if held:
        say(f"{len(held)} factors not fitted here keep the values of profile {base.name}"
            + (" or of the fit by simulation" if simulated else ""))
    start = [default_value(f) for f in factors]
    say(f"fitting {len(factors)} factors on {len(cases):,} runs ({len(skips):,} skipped) ...")
    t0 = time.perf_counter()
    result = fit(groups, factors, start, held=held)
    say(f"  fitted in {time.perf_counter() - t0:.0f} s")
    cv = None
    if folds:
        how = f"leaving out each of {folds} model x GPU groups" if logo else f"{folds} folds of model x GPU groups"
        say(f"cross-validating, {how} (one fit per fold) ...")
        t1 = time.perf_counter()
        cv = cross_validate(groups, factors, list(result.values), folds, held=held, leave_one_out=logo, jobs=jobs,
                            progress=lambda n, total, label: say(
                                f"  {n} of {total} folds fitted ({label} left out), {time.perf_counter() - t1:.0f} s"))
    profile = profile_of(result, factors, name=name, fitted_on=f"{Path(cases_path).name} ({result.rows} runs)",
                         command=f"meshplan calibrate {cases_path} --out {out}" + (" --folds groups" if logo else f" --folds {folds}" if folds else "")
                         + (f" --fit {','.join(names)}" if names else "")
                         + (f" --sim-fit {','.join(sim_names)}" if sim_names else "")
                         + (f" --name {name}" if name != Path(out).stem else "")
                         + (f" --base {base_name}" if held else "") + (f" --by {','.join(by)}" if by else ""),
                         cv=cv, folds=folds, base=base, held=held,
                         simulated=(_record(simulated[0], sim_factors), sim_factors) if simulated else None)
    if logo:
        profile = profile.model_copy(update={"leave_one_group_out": True})
    rows = [[f.name, f"{v:.4g}", f"{u:.2g}" if u <= f.upper - f.lower and not f.bound_reached(v) else "undetermined",
             f"[{f.lower:g}, {f.upper:g}]" + (f" (at {f.bound_reached(v)})" if f.bound_reached(v) else ""),
             f"{d:.4g}" if has_default(f) else f"none (start {d:.3g})"]
            for f, v, u, d in zip(factors, result.values, result.uncertainty, start)]
    if simulated:
        rows += [[f.name, f"{v:.4g}", "not estimated", f"[{f.lower:g}, {f.upper:g}]"
                  + (f" (at {f.bound_reached(v)})" if f.bound_reached(v) else ""), "by simulation"]
                 for f, v in zip(sim_factors, fit_sim.values)]
    echo(table(["factor", "fitted", "+-", "bounds", "sourced default"], rows))
    if simulated:
        echo(f"\nby simulation ({', '.join(sim_names)}; {fit_sim.rows:,} runs they reach, "
             f"{fit_sim.passes} passes): median |error| TTFT {fit_sim.median_abs_ttft:.1%}, "
             f"TPOT {fit_sim.median_abs_tpot:.1%}")
    pinned = [f"{f.name} ({f.bound_reached(v)} {getattr(f, f.bound_reached(v)):g})"
              for f, v in zip(factors, result.values) if f.bound_reached(v)]
    if pinned:
        echo(f"\nOn a bound: {', '.join(pinned)}. The fit stopped there: the runs would move "
             f"{'it' if len(pinned) == 1 else 'them'} past the physical range, so they ask for something the step "
             "model lacks, unless the bound is the true value (a time of 0).")
    echo(f"\nin-sample median |error|: TTFT {result.median_abs_ttft:.1%}, TPOT {result.median_abs_tpot:.1%}")
    if profile.cross_validated:
        how = "leaving out one of {} model x GPU groups at a time".format(folds) if logo else f"{folds} folds of model x GPU groups"
        echo(f"cross-validated ({how}): TTFT {profile.cross_validated.ttft:.1%}, "
                   f"TPOT {profile.cross_validated.tpot:.1%}")
    if by:
        profile = _partitioned(profile, groups, factors, list(result.values), held, by, folds, say, logo)
    _write(profile, target, out)


def _write(profile, target: Path, out: str) -> None:
    text = ("# meshplan calibration profile: fitted values of named step-model factors (fidelity/calibrate.py).\n"
            "# Produced by the command below; do not edit by hand.\n"
            + yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False))
    target.write_text(text)
    echo(f"wrote {out}", err=True)


def _write_simulated(groups, cases_path, out, name, base, base_name, sim_names, jobs, target, say) -> None:
    """--sim-fit alone: its factors fitted by simulation, every other factor at ``base``'s
    value; the profile records the closed form's errors with them (over every run)."""
    fit_sim, sim_factors = _fit_by_simulation(groups, sim_names, base, jobs, say)
    held = held_from(base, sim_factors) + tuple(zip(sim_factors, fit_sim.values))
    result = evaluated(groups, held)
    profile = profile_of(result, [], name=name, fitted_on=f"{Path(cases_path).name} ({result.rows} runs)",
                         command=f"meshplan calibrate {cases_path} --out {out} --sim-fit {','.join(sim_names)}"
                         + (f" --name {name}" if name != Path(out).stem else "") + f" --base {base_name}",
                         base=base, held=held, simulated=(_record(fit_sim, sim_factors), sim_factors))
    echo(table(["factor", "fitted by simulation", "bounds"],
               [[f.name, f"{v:.4g}", f"[{f.lower:g}, {f.upper:g}]" + (f" (at {f.bound_reached(v)})" if f.bound_reached(v) else "")]
                for f, v in zip(sim_factors, fit_sim.values)]))
    echo(f"\nsimulated ({fit_sim.rows:,} runs they reach, {fit_sim.passes} passes): median |error| "
         f"TTFT {fit_sim.median_abs_ttft:.1%}, TPOT {fit_sim.median_abs_tpot:.1%}")
    echo(f"closed form with them, every other factor at profile {base.name if base else 'none'}'s value "
         f"({result.rows:,} runs): median |error| TTFT {result.median_abs_ttft:.1%}, TPOT {result.median_abs_tpot:.1%}")
    _write(profile, target, out)
