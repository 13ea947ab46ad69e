"""meshplan validate: predict each published case, print predicted, measured and error."""

from __future__ import annotations

import json
from pathlib import Path

import click

from meshplan.fidelity.cases import predict_cases, skipped_cases
from meshplan.report.tables import table


def run_validate(path: str | None, json_path: str | None) -> None:
    rows = predict_cases(path)
    out = [[r.case, r.figure, f"{r.predicted:,.1f}", f"{r.measured:,.1f}", f"{r.error:+.0%}"] for r in rows]
    click.echo(table(["case", "figure", "predicted", "measured", "error"], out))
    errors = sorted(abs(r.error) for r in rows)
    if errors:
        mid = len(errors) // 2
        median = errors[mid] if len(errors) % 2 else (errors[mid - 1] + errors[mid]) / 2
        click.echo(f"\n{len(rows)} figures; median absolute error {median:.0%}")
    for case, reason in skipped_cases(path):
        click.echo(f"not predicted: {case}: {reason}")
    if json_path:
        Path(json_path).write_text(json.dumps([r.__dict__ for r in rows], indent=2) + "\n")
