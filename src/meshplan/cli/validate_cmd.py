"""meshplan validate: predicted against measured for a silicon CSV or the published cases."""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path

from meshplan.cli.echo import echo
from meshplan.errors import SpecError
from meshplan.fidelity.cases import predict_cases, skipped_cases
from meshplan.fidelity.calibrate import ids_hash
from meshplan.fidelity.ranking import TARGETS, TIE_SHARE, Ranking
from meshplan.fidelity.validation import Stats, Validation, validate_silicon
from meshplan.io.calibration import load_profile
from meshplan.report.tables import table
from meshplan.units import plural


def _pct(x: float) -> str:
    return "-" if x != x else f"{x:.0%}"


def _signed(x: float) -> str:
    return "-" if x != x else f"{x:+.0%}"


def _cells(s: Stats) -> list[str]:
    return [str(s.rows), str(s.predicted), _pct(s.ttft_abs), _signed(s.ttft_signed), _pct(s.tpot_abs),
            _signed(s.tpot_signed)]


HEAD = ["runs", "predicted", "TTFT |err|", "TTFT signed", "TPOT |err|", "TPOT signed"]


def print_silicon(v: Validation) -> None:
    how = "; runs simulated request by request" if v.simulated else ""
    echo(f"Predicted against measured, {len(v.rows) + len(v.skips):,} runs; medians of predicted/measured - 1 "
               f"(calibration profile: {v.calibration or 'none'}{how})\n")
    rows = [[k[0], k[1], k[2].split("/")[-1], k[3], *_cells(s)] for k, s in v.partitions().items()]
    echo(table(["backend", "GPU", "model", "mode", *HEAD], rows))
    echo("")
    echo(table(["backend", "GPU", *HEAD], [[k[0], k[1], *_cells(s)] for k, s in v.by_backend_gpu().items()]))
    echo("")
    suspect = sum(1 for r in v.rows if r.suspect)
    echo(table(["set", *HEAD], [["all runs", *_cells(v.total())], ["MoE models", *_cells(v.moe())],
                                      [f"without the {suspect} tp-beyond-node runs", *_cells(v.trusted())]]))
    _honest_error(v)
    if v.simulated:
        echo("\nClosed form against simulation, on the runs simulated:")
        head = ["set", "runs", "TTFT |err| closed", "TTFT |err| sim", "TTFT signed sim", "TPOT |err| closed",
                "TPOT |err| sim", "TPOT signed sim"]
        echo(table(head, [[k, str(s.predicted), _pct(c.ttft_abs), _pct(s.ttft_abs), _signed(s.ttft_signed),
                           _pct(c.tpot_abs), _pct(s.tpot_abs), _signed(s.tpot_signed)]
                          for k, (c, s) in v.compared().items()]))
        echo("Predicted by: " + "; ".join(f"{m} {n:,}" for m, n in v.method_counts().items()))
    echo("\nNot predicted (grouped by reason; nothing is guessed):")
    for reason, n in v.skip_counts().items():
        echo(f"  {n:5d}  {reason}")
    echo("\nTargets of the fidelity issue" + (" and, simulated, of the simulation issue:" if v.simulated else ":"))
    for name, t in v.targets().items():
        value = t["value"]
        shown = (", ".join(f"{a} {b:.0%}" for a, b in value) or "none") if isinstance(value, list) else (
            f"{value:,}" if isinstance(value, int) else f"{value:+.1%}" if "signed" in name else f"{value:.1%}")
        extra = f" of {t['of_complete_layouts']:,} with a complete layout" if "of_complete_layouts" in t else (
            f" (target {t['target']:.0%})" if "target" in t else "")
        echo(f"  {'met    ' if t['met'] else 'not met'}  {name}: {shown}{extra}")


def _progress(start: float):
    """A stderr line at every tenth of the runs simulated."""
    def report(done: int, total: int) -> None:
        if done == total or done % max(total // 10, 1) == 0:
            echo(f"simulated {done:,} of {total:,} runs ({time.perf_counter() - start:.0f} s)", err=True)
    return report


def _honest_error(v: Validation) -> None:
    """In-sample against cross-validated error: whether the profile was fitted on these very runs,
    and the error its own cross-validation measured on runs each fit did not see."""
    profile = load_profile(v.calibration) if v.calibration else None
    if profile is None:
        echo("\nNo calibration profile: every factor at its sourced default, nothing fitted on these runs.")
        return
    ids = ids_hash(r.case.id for r in v.rows)
    cv = profile.cross_validated
    split = (f"leaving out one of {profile.folds} model x GPU groups at a time" if profile.leave_one_group_out
             else f"{profile.folds} folds of model x GPU groups")
    crossed = (f"cross-validated TTFT {cv.ttft:.1%}, TPOT {cv.tpot:.1%} ({split}: "
               "each run predicted by a fit that did not see its group)") if cv else "no cross-validation recorded"
    # A fit by simulation keeps its base's other factors, and that base may be one too: the first
    # base with a cross-validation of its own measured theirs.
    by_sim, base, seen = [], profile, {profile.name}
    while cv is None and base is not None and base.simulated and base.base and base.base not in seen:
        seen.add(base.base)
        by_sim.append(f"{', '.join(base.simulated.factors)} on {base.simulated.rows:,} runs")
        base = load_profile(base.base)
    if by_sim and base is not None and base.cross_validated:
        bcv = base.cross_validated
        bsplit = (f"leaving out one of {base.folds} model x GPU groups at a time" if base.leave_one_group_out
                  else f"{base.folds} folds of model x GPU groups")
        crossed = (f"cross-validated TTFT {bcv.ttft:.1%}, TPOT {bcv.tpot:.1%} for its closed-form factors (kept from "
                   f"profile {base.name}; {bsplit}); fitted by simulation and not cross-validated: "
                   + "; ".join(by_sim))
    if ids == profile.rows_hash:
        echo(f"\nProfile {profile.name} was fitted on these {profile.rows:,} runs: the medians above are in-sample "
             f"(the fit's own: TTFT {profile.in_sample.ttft:.1%}, TPOT {profile.in_sample.tpot:.1%}); {crossed}.")
    else:
        echo(f"\nProfile {profile.name} was fitted on other runs ({profile.fitted_on}): the medians above are out of "
             f"sample where the runs differ; on its own runs it measured {crossed}.")


def print_ranking(r: Ranking) -> None:
    """Kendall's tau per group of layouts measured side by side, and the summary with its targets."""
    echo("\nDoes meshplan order layouts as measured? Output tokens/s per GPU by Little's law, per group "
         "(model, formats, GPU, engine, ISL, OSL, mode, concurrency) with 3 layouts or more:\n")
    rows = [[g.key[0].split("/")[-1], "/".join(x for x in g.key[1:3] if x != "-"), g.key[3], g.key[4],
             f"{g.key[5]}/{g.key[6]}", g.key[7], str(g.key[8]), str(len(g.layouts)), f"{g.tau:+.2f}",
             g.layouts[0], str(g.predicted_rank_of_best)] for g in r.groups]
    echo(table(["model", "formats", "GPU", "engine", "ISL/OSL", "mode", "conc.", "layouts", "tau",
                "measured best", "its predicted rank"], rows))
    met = lambda ok: "met    " if ok else "not met"  # noqa: E731
    echo(f"\n{plural(len(r.groups), 'group')}. Targets of the calibrate issue:")
    echo(f"  {met(r.mean_tau >= TARGETS['mean_tau'])}  mean Kendall's tau: {r.mean_tau:+.2f} "
         f"(target >= {TARGETS['mean_tau']:.1f})")
    echo(f"  {met(r.best_in_top_two >= TARGETS['best_in_top_two'])}  measured best among meshplan's top two: "
         f"{r.best_in_top_two:.0%} of groups (target >= {TARGETS['best_in_top_two']:.0%})")
    wrong = [p for p in r.pairs if not p.agrees]
    echo(f"\nThe harder question, how to lay out the same GPUs: of {len(r.pairs):,} pairs of layouts on equal GPU "
         f"counts (measured more than {TIE_SHARE:.0%} apart), meshplan orders {r.pairs_agree:.0%} as measured."
         + (" Pairs it orders the other way (output tokens/s per GPU, measured and predicted):" if wrong else ""))
    if wrong:
        echo(table(["model", "GPU", "engine", "ISL/OSL", "mode", "conc.", "faster measured", "slower measured",
                    "measured", "predicted"],
                   [[p.key[0].split("/")[-1], p.key[3], p.key[4], f"{p.key[5]}/{p.key[6]}", p.key[7], str(p.key[8]),
                     p.faster, p.slower, f"{p.measured[0]:,.0f} vs {p.measured[1]:,.0f}",
                     f"{p.predicted[0]:,.0f} vs {p.predicted[1]:,.0f}"] for p in wrong]))


def run_validate(path: str | None, json_path: str | None, calibration: str, simulated: bool = False,
                 ranking: bool = False, jobs: int | None = None) -> None:
    if jobs is not None and not simulated:
        raise SpecError("--jobs", jobs, "sets the processes that simulate the runs; it goes with --sim")
    if jobs is not None and not 1 <= jobs <= 64:
        raise SpecError("--jobs", jobs, "from 1 to 64 processes")
    if json_path and json_path != "-":
        _check_target(json_path)
    tables = json_path != "-"  # with --json - stdout carries the JSON alone
    if path and Path(path).suffix.lower() == ".csv":
        start = time.perf_counter()
        v = validate_silicon(path, calibration, simulated, _progress(start) if simulated else None, jobs or 1)
        ranked = v.ranking() if ranking else None
        if tables:
            print_silicon(v)
            if ranked is not None:
                print_ranking(ranked)
        echo(f"\n{len(v.rows):,} runs predicted in {time.perf_counter() - start:.1f} s", err=True)
        if json_path:
            _write(json_path, v.to_json() | ({"ranking": ranked.to_json()} if ranked is not None else {}))
        return
    if ranking:
        raise SpecError("--ranking", "on", "ranks the layouts of a silicon CSV's runs; give one (the published cases "
                        "are single runs)")
    if simulated:
        raise SpecError("--sim", "on", "simulates the runs of a silicon CSV; the published cases are predicted by the "
                        "closed form")
    rows = predict_cases(path, calibration)
    if json_path:
        _write(json_path, [dataclasses.asdict(r) | {"error": r.error} for r in rows])
    if not tables:
        return
    out = [[r.case, r.figure, f"{r.predicted:,.1f}", f"{r.measured:,.1f}", f"{r.error:+.0%}"] for r in rows]
    echo(table(["case", "figure", "predicted", "measured", "error"], out))
    if rows:
        median = statistics.median(abs(r.error) for r in rows)
        echo(f"\n{len(rows)} figures; median absolute error {median:.0%}")
    for case, reason in skipped_cases(path):
        echo(f"not predicted: {case}: {reason}")


def _check_target(json_path: str) -> None:
    target = Path(json_path)
    if target.is_dir():
        raise SpecError("--json", json_path, "is a folder; give a file path")
    if not target.parent.is_dir():
        raise SpecError("--json", json_path, "its folder does not exist")


def _write(json_path: str, doc) -> None:
    text = json.dumps(doc, indent=1, default=float) + "\n"
    if json_path == "-":
        echo(text)
        return
    Path(json_path).write_text(text)
    echo(f"wrote {json_path}", err=True)
