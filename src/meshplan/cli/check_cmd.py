"""meshplan check: which claims of a plan written elsewhere are right, which are wrong."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from meshplan.check.document import check_document
from meshplan.check.engine_check import check_engine
from meshplan.check.engines import parse_sglang, parse_trtllm, parse_vllm
from meshplan.check.plan_doc import check_plan, check_plan_doc, check_problem_strategy
from meshplan.check.plan_markdown import is_meshplan_markdown, read_plan_markdown
from meshplan.check.verdict import Report, Verdict, fmt
from meshplan.cli.echo import echo
from meshplan.cli.summary import summary
from meshplan.errors import SpecError
from meshplan.io.problem_file import DEFAULT_PROBLEM, problem_from_raw, read_raw
from meshplan.io.seed_plan import looks_like_plan, read_seed_plan
from meshplan.printable import clipped
from meshplan.io.user_file import load_json, load_yaml, read_text


def build_report(plan: str | None, problem_path: str | None, vllm: str | None, sglang: str | None,
                 trtllm: str | None, gpu: str | None, weights: str | None, isl: float | None, osl: float | None,
                 tolerance: float, model: str | None = None, calibration: str | None = None) -> Report:
    def profiled(raw: dict) -> dict:
        return raw if calibration is None else {**raw, "calibration": calibration}

    engines = [x for x in (vllm, sglang, trtllm) if x]
    if len(engines) + (1 if plan else 0) != 1:
        raise SpecError("PLAN", plan, "give exactly one of: a PLAN file, --vllm CMD, --sglang CMD, --trtllm CONFIG")
    if engines:
        reading = parse_vllm(vllm) if vllm else parse_sglang(sglang) if sglang else parse_trtllm(trtllm, model)
        return check_engine(reading, gpu=gpu, weights=weights, isl=isl, osl=osl, source=clipped(engines[0], 60),
                            calibration=calibration)
    path = Path(plan)
    text = read_text(plan, "PLAN")
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        return _structured(plan, text, tolerance, profiled, calibration)
    if is_meshplan_markdown(text):
        problem = problem_from_raw(profiled(read_raw(problem_path or str(DEFAULT_PROBLEM))))
        origin = "--problem" if problem_path else "the bundled seed problem"
        claims = read_plan_markdown(text, path.name, problem, origin)
        return check_plan(claims, path.name, tolerance)
    if looks_like_plan(text):
        raw = read_seed_plan(text, path.name, read_raw(problem_path or str(DEFAULT_PROBLEM)))
    else:
        raw = read_raw(path)
    problem = problem_from_raw(profiled(raw))
    if problem.seed_strategy is None:
        raise SpecError("PLAN", plan, "states no layout (DP/TP/PP/EP); nothing to check against")
    return check_document(problem, text, path.name, tolerance)


def _structured(plan: str, text: str, tolerance: float, profiled, calibration: str | None) -> Report:
    """A meshplan plan JSON/YAML, or a problem file that states a strategy."""
    path = Path(plan)
    doc = load_json(text, "PLAN", plan) if path.suffix.lower() == ".json" else load_yaml(text, "PLAN", plan)
    if not isinstance(doc, dict) or ("problem_spec" not in doc and "model" not in doc):
        raise SpecError("PLAN", plan, "is neither a meshplan plan (no problem_spec; make one with meshplan plan "
                        "--json) nor a problem with a model and a strategy")
    if "problem_spec" not in doc:
        raw = dict(doc)
        raw.setdefault("name", path.stem)
        return check_problem_strategy(problem_from_raw(profiled(raw)), path.name)
    if calibration is not None:
        raise SpecError("--profile", calibration, "a meshplan plan JSON keeps the profile it was made with "
                        "(problem_spec.calibration); make the plan again with --profile to use another")
    return check_plan_doc(doc, path.name, tolerance)


def render(report: Report) -> str:
    order = {Verdict.WRONG: 0, Verdict.UNVERIFIABLE: 1, Verdict.CONFIRMED: 2, Verdict.NOTED: 3}
    lines = [f"check of {report.source} ({report.kind})", ""]
    for c in sorted(report.checks, key=lambda c: order[c.verdict]):
        where = f" (line{'s' if len(c.lines) > 1 else ''} {', '.join(map(str, c.lines))})" if c.lines else ""
        lines.append(f"[{c.verdict.value.upper()}] {c.subject}{where}: {c.message}")
        if c.verdict is Verdict.WRONG and c.rule:
            lines.append(f"    rule: {c.rule}")
        if c.text and c.verdict is not Verdict.NOTED:
            lines.append(f"    text: {clipped(c.text, 110)}")
    wrong = sum(c.verdict is Verdict.WRONG for c in report.checks)
    lines += ["", f"{wrong} wrong, {sum(c.verdict is Verdict.CONFIRMED for c in report.checks)} confirmed, "
                  f"{sum(c.verdict is Verdict.UNVERIFIABLE for c in report.checks)} unverifiable"]
    if report.reading:
        layout = report.reading.get("layout")
        lines += ["", f"consistent reading: {layout}"]
        for note in report.reading.get("notes", []) or []:
            lines.append(f"  note: {note}")
        if report.reading.get("flags_not_used"):
            lines.append(f"  flags not used by the check: {', '.join(map(str, report.reading['flags_not_used']))}")
    if report.plan:
        lines += ["", "its evaluation:", summary(replace(report.plan, runner_ups=(), notes=()))]
    return "\n".join(lines)


def emit(report: Report, as_json: bool) -> None:
    echo(json.dumps(report.to_dict(), indent=2, default=float) if as_json else render(report))


__all__ = ["build_report", "render", "emit", "fmt"]
