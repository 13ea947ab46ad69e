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
                                         fit_partition, has_default, held_from, informative, partitions, profile_of)
from meshplan.fidelity.predict import group_cases
from meshplan.fidelity.silicon import read_silicon
from meshplan.io.calibration import load_profile
from meshplan.report.tables import table


@click.command()
@click.argument("cases", required=False, type=click.Path(dir_okay=False))
@click.option("--out", required=True, help="Profile YAML to write.")
@click.option("--fit", "fit_names", help="Comma-separated factors to fit (default: every named factor the data reaches except "
              "expert_load_cv, which keeps its measured source unless named).")
@click.option("--folds", help="Cross-validation folds of model x GPU groups (0: none; 'groups': one per group, "
              "leave-one-group-out; default 5).")
@click.option("--jobs", type=int, help="Processes fitting the cross-validation folds side by side (default 1).")
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
def calibrate(cases, out, fit_names, folds, jobs, name, base, by, microbench, device, dtype, gpu) -> None:
    """Fit the named factors of the step model on measured runs (a silicon CSV) and write a
    calibration profile; plan, evaluate, simulate, validate, check and export use it with --profile FILE.
    With --microbench, time the kernels here and write a hardware profile instead."""
    if microbench:
        given = [flag for flag, v in (("CASES", cases), ("--fit", fit_names), ("--folds", folds), ("--base", base),
                                      ("--by", by), ("--name", name), ("--jobs", jobs)) if v is not None]
        if given:
            raise SpecError(given[0], "given", "fits measured runs; --microbench times kernels and takes none")
        run_microbench(out, device, dtype, gpu)
        return
    if cases is None:
        raise SpecError("CASES", None, "missing: a silicon CSV of measured runs (or --microbench)")
    for flag, v in (("--device", device != "cuda"), ("--dtype", dtype != "bfloat16"), ("--gpu", gpu)):
        if v:
            raise SpecError(flag, "given", "applies to --microbench only")
    run_calibrate(cases, out, [n.strip() for n in fit_names.split(",") if n.strip()] if fit_names else None,
                  _folds(folds), name or Path(out).stem, base or "silicon-dev", _by(by), _jobs(jobs))


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


def _by(text: str | None) -> list[str]:
    keys = [k.strip() for k in (text or "").split(",") if k.strip()]
    for k in keys:
        if k not in BY_KEYS:
            raise SpecError("--by", text, f"partitions by {', '.join(BY_KEYS)} or both (gpu,engine)")
    if len(set(keys)) < len(keys):
        raise SpecError("--by", text, "names a key twice")
    return keys


def run_calibrate(cases_path: str, out: str, names: list[str] | None, folds: int | str, name: str,
                  base_name: str = "none", by: list[str] | None = None, jobs: int = 1) -> None:
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
    held = held_from(base, factors)
    if held:
        say(f"{len(held)} factors not fitted here keep the values of profile {base.name}")
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
                         + (f" --name {name}" if name != Path(out).stem else "")
                         + (f" --base {base_name}" if held else "") + (f" --by {','.join(by)}" if by else ""),
                         cv=cv, folds=folds, base=base, held=held)
    if logo:
        profile = profile.model_copy(update={"leave_one_group_out": True})
    rows = [[f.name, f"{v:.4g}", f"{u:.2g}" if u <= f.upper - f.lower and not f.bound_reached(v) else "undetermined",
             f"[{f.lower:g}, {f.upper:g}]" + (f" (at {f.bound_reached(v)})" if f.bound_reached(v) else ""),
             f"{d:.4g}" if has_default(f) else f"none (start {d:.3g})"]
            for f, v, u, d in zip(factors, result.values, result.uncertainty, start)]
    echo(table(["factor", "fitted", "+-", "bounds", "sourced default"], rows))
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
    text = ("# meshplan calibration profile: fitted values of named step-model factors (fidelity/calibrate.py).\n"
            "# Produced by the command below; do not edit by hand.\n"
            + yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False))
    target.write_text(text)
    echo(f"wrote {out}", err=True)
