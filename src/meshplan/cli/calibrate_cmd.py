"""meshplan calibrate: fit the named factors on measured runs and write a calibration profile."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from meshplan.cli.echo import echo
from meshplan.errors import SpecError
from meshplan.fidelity.calibrate import (cross_validate, default_value, factors_for, few_runs_factors, fit, has_default,
                                         held_from, informative, profile_of)
from meshplan.fidelity.predict import group_cases
from meshplan.fidelity.silicon import read_silicon
from meshplan.io.calibration import load_profile
from meshplan.report.tables import table


def run_calibrate(cases_path: str, out: str, names: list[str] | None, folds: int, name: str,
                  base_name: str = "none") -> None:
    if folds == 1 or folds < 0:
        raise SpecError("--folds", folds, "0 (no cross-validation) or at least 2")
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
        say(f"cross-validating over {folds} folds of model x GPU groups (one fit per fold) ...")
        cv = cross_validate(groups, factors, list(result.values), folds, held=held)
    profile = profile_of(result, factors, name=name, fitted_on=f"{Path(cases_path).name} ({result.rows} runs)",
                         command=f"meshplan calibrate {cases_path} --out {out}" + (f" --folds {folds}" if folds else "")
                         + (f" --fit {','.join(names)}" if names else "")
                         + (f" --name {name}" if name != Path(out).stem else "")
                         + (f" --base {base_name}" if held else ""),
                         cv=cv, folds=folds, base=base, held=held)
    rows = [[f.name, f"{v:.4g}", f"{u:.2g}" if u <= f.upper - f.lower else "undetermined", f"[{f.lower:g}, {f.upper:g}]",
             f"{d:.4g}" if has_default(f) else f"none (start {d:.3g})"]
            for f, v, u, d in zip(factors, result.values, result.uncertainty, start)]
    echo(table(["factor", "fitted", "+-", "bounds", "sourced default"], rows))
    echo(f"\nin-sample median |error|: TTFT {result.median_abs_ttft:.1%}, TPOT {result.median_abs_tpot:.1%}")
    if profile.cross_validated:
        echo(f"cross-validated ({folds} folds of model x GPU groups): TTFT {profile.cross_validated.ttft:.1%}, "
                   f"TPOT {profile.cross_validated.tpot:.1%}")
    text = ("# meshplan calibration profile: fitted values of named step-model factors (fidelity/calibrate.py).\n"
            "# Produced by the command below; do not edit by hand.\n"
            + yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False))
    target.write_text(text)
    echo(f"wrote {out}", err=True)
