"""Predicted against measured for a silicon CSV: per-run errors, partitions, totals, targets."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from meshplan.fidelity.predict import Prediction, group_cases, predict_groups
from meshplan.fidelity.ranking import Ranking, rank
from meshplan.fidelity.simulated import simulate_groups
from meshplan.fidelity.silicon import SiliconCase, Skip, read_silicon
from meshplan.io.calibration import DEFAULT_PROFILE
from meshplan.io.catalog import load_gpu, load_model

SCHEMA = "meshplan.validation/1"

TARGETS = {"rows_predicted_share": 0.95, "median_abs_tpot": 0.12, "median_abs_ttft": 0.25,
           "partition_tpot_max": 0.25, "partition_min_rows": 20, "moe_signed_abs": 0.10,
           "simulated_median_abs_ttft": 0.20}
"""The fidelity issue's targets, and the simulation issue's for runs predicted by simulation,
reported beside the results (not asserted)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Row:
    case: SiliconCase
    prediction: Prediction
    suspect: bool
    """The row puts a tensor-parallel group on more GPUs than the system's NVLink domain holds (tp
    16 or 64 on 8-GPU HGX systems); such rows often repeat another layout's measurement."""
    method: str = "closed form"
    """How it was predicted: the closed form (cost.closed_loop) or a simulation (fidelity.simulated)."""
    closed_form: Prediction | None = None
    """The closed form's prediction, when the row was simulated."""

    @property
    def ttft_error(self) -> float:
        return self.prediction.ttft_ms / self.case.ttft_ms - 1.0

    @property
    def tpot_error(self) -> float:
        return self.prediction.tpot_ms / self.case.tpot_ms - 1.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Stats:
    """Medians over a set of predicted runs (relative errors; signed is predicted/measured - 1)."""

    rows: int
    """Runs of this set: in the file (predicted or skipped) for the whole file and its partitions;
    for the MoE and without-suspect sets, which select among predicted runs, the runs predicted."""
    predicted: int
    ttft_abs: float
    ttft_signed: float
    tpot_abs: float
    tpot_signed: float

    @staticmethod
    def of(rows: list[Row], total: int) -> "Stats":
        def med(xs: list[float]) -> float:
            return statistics.median(xs) if xs else float("nan")
        t = [r.ttft_error for r in rows]
        p = [r.tpot_error for r in rows]
        return Stats(rows=total, predicted=len(rows), ttft_abs=med([abs(x) for x in t]), ttft_signed=med(t),
                     tpot_abs=med([abs(x) for x in p]), tpot_signed=med(p))


@dataclass(frozen=True, kw_only=True, slots=True)
class Validation:
    rows: tuple[Row, ...]
    skips: tuple[Skip, ...]
    calibration: str
    """The profile the predictions used ('' for the sourced defaults)."""
    simulated: bool = False
    """Aggregated runs predicted by simulation (each row says how it was predicted)."""

    def compared(self) -> dict[str, tuple[Stats, Stats]]:
        """Simulated runs: (closed form, simulation) stats per set, over the same runs."""
        sim = [r for r in self.rows if r.closed_form is not None]
        closed = lambda rs: Stats.of([replace(r, prediction=r.closed_form) for r in rs], len(rs))  # noqa: E731
        sets = {"simulated runs": sim, "MoE models": [r for r in sim if load_model(r.case.model).is_moe]}
        for engine in sorted({r.case.engine for r in sim}):
            sets[engine.value] = [r for r in sim if r.case.engine is engine]
        return {k: (closed(rs), Stats.of(rs, len(rs))) for k, rs in sets.items() if rs}

    def method_counts(self) -> dict[str, int]:
        return dict(Counter(r.method for r in self.rows).most_common())

    def partitions(self) -> dict[tuple[str, str, str, str], Stats]:
        """(backend, GPU, model, mode) -> stats, in sorted order."""
        by: dict[tuple, list[Row]] = defaultdict(list)
        for r in self.rows:
            by[r.case.partition].append(r)
        counts = Counter(r.case.partition for r in self.rows) + Counter(s.partition for s in self.skips)
        return {k: Stats.of(by.get(k, []), counts[k]) for k in sorted(counts)}

    def by_backend_gpu(self) -> dict[tuple[str, str], Stats]:
        by: dict[tuple, list[Row]] = defaultdict(list)
        for r in self.rows:
            by[r.case.partition[:2]].append(r)
        counts = Counter(r.case.partition[:2] for r in self.rows) + Counter(s.partition[:2] for s in self.skips)
        return {k: Stats.of(by.get(k, []), counts[k]) for k in sorted(counts)}

    def total(self) -> Stats:
        return Stats.of(list(self.rows), len(self.rows) + len(self.skips))

    def moe(self) -> Stats:
        rows = [r for r in self.rows if load_model(r.case.model).is_moe]
        return Stats.of(rows, len(rows))

    def trusted(self) -> Stats:
        rows = [r for r in self.rows if not r.suspect]
        return Stats.of(rows, len(rows))

    def skip_counts(self) -> dict[str, int]:
        return dict(Counter(s.reason.value for s in self.skips).most_common())

    def targets(self) -> dict[str, Any]:
        """Each target of the fidelity issue with the value reached."""
        complete = len(self.rows) + sum(1 for s in self.skips if s.reason.name in ("LAYOUT", "STRUCTURE"))
        total, moe = self.total(), self.moe()
        worst = [(f"{k[0]} {k[1]}", s.tpot_abs) for k, s in self.by_backend_gpu().items()
                 if s.predicted >= TARGETS["partition_min_rows"] and s.tpot_abs > TARGETS["partition_tpot_max"]]
        return {
            "rows_predicted": {"value": len(self.rows), "of_complete_layouts": complete,
                               "met": len(self.rows) >= TARGETS["rows_predicted_share"] * complete},
            "median_abs_tpot": {"value": total.tpot_abs, "target": TARGETS["median_abs_tpot"],
                                "met": total.tpot_abs <= TARGETS["median_abs_tpot"]},
            "median_abs_ttft": {"value": total.ttft_abs, "target": TARGETS["median_abs_ttft"],
                                "met": total.ttft_abs <= TARGETS["median_abs_ttft"]},
            "backend_gpu_partitions_over_tpot_bound": {"value": worst, "met": not worst},
            "moe_median_signed_tpot": {"value": moe.tpot_signed, "met": abs(moe.tpot_signed) <= TARGETS["moe_signed_abs"]},
            "moe_median_signed_ttft": {"value": moe.ttft_signed, "met": abs(moe.ttft_signed) <= TARGETS["moe_signed_abs"]},
        } | ({"simulated_median_abs_ttft": {"value": total.ttft_abs, "target": TARGETS["simulated_median_abs_ttft"],
                                            "met": total.ttft_abs <= TARGETS["simulated_median_abs_ttft"]}}
             if self.simulated else {})

    def ranking(self) -> Ranking:
        """Rank agreement of the layouts measured side by side (fidelity.ranking)."""
        return rank([(r.case, r.prediction.ttft_ms, r.prediction.tpot_ms) for r in self.rows])

    def to_json(self) -> dict[str, Any]:
        def stats(s: Stats) -> dict[str, Any]:
            return {"rows": s.rows, "predicted": s.predicted, "ttft_median_abs": s.ttft_abs,
                    "ttft_median_signed": s.ttft_signed, "tpot_median_abs": s.tpot_abs, "tpot_median_signed": s.tpot_signed}
        rows = []
        for r in self.rows:
            extra = lambda v: {} if not self.simulated else {  # noqa: E731
                "method": r.method, "closed_form_predicted": None if r.closed_form is None else v}
            rows.append({"id": r.case.id, "metric": "ttft_ms", "predicted": r.prediction.ttft_ms,
                         "measured": r.case.ttft_ms, "error": r.ttft_error,
                         **extra(r.closed_form and r.closed_form.ttft_ms)})
            rows.append({"id": r.case.id, "metric": "tpot_ms", "predicted": r.prediction.tpot_ms,
                         "measured": r.case.tpot_ms, "error": r.tpot_error,
                         **extra(r.closed_form and r.closed_form.tpot_ms)})
        return {
            "schema": SCHEMA, "calibration": self.calibration or "none",
            "method": "simulation" if self.simulated else "closed form",
            "rows": rows,
            "skipped": [{"id": s.id, "reason": s.reason.value, "detail": s.detail} for s in self.skips],
            "summary": {
                "total": stats(self.total()), "moe": stats(self.moe()),
                "without_suspect_tp": stats(self.trusted()),
                "suspect_rows": sum(1 for r in self.rows if r.suspect),
                "partitions": [{"backend": k[0], "gpu": k[1], "model": k[2], "mode": k[3], **stats(v)}
                               for k, v in self.partitions().items()],
                "backend_gpu": [{"backend": k[0], "gpu": k[1], **stats(v)} for k, v in self.by_backend_gpu().items()],
                "skipped_by_reason": self.skip_counts(),
                "targets": self.targets(),
            },
        }


def _suspect(case: SiliconCase) -> bool:
    domain = load_gpu(case.gpu).nvlink_domain_gpus
    return any(lay is not None and lay.tp > domain for lay in (case.layout, case.prefill, case.decode))


def validate_silicon(path: str | Path, calibration: str | None = DEFAULT_PROFILE, simulated: bool = False,
                     progress=None, jobs: int = 1) -> Validation:
    """Every run of a silicon CSV predicted (or skipped with its reason); with ``simulated`` the
    runs by simulation in ``jobs`` processes (``progress(done, total)`` is called as they go), the
    closed form's prediction kept beside each."""
    cases, skips = read_silicon(path)
    groups = group_cases(cases, calibration)
    preds = {p.id: p for p in predict_groups(groups)}
    sims = simulate_groups(groups, progress, jobs) if simulated else {}

    def row(c: SiliconCase) -> Row:
        sim = sims.get(c.id)
        if isinstance(sim, Prediction):
            return Row(case=c, prediction=sim, suspect=_suspect(c), method="simulation", closed_form=preds[c.id])
        method = "closed form" if sim is None else f"closed form (not simulated: {sim})"
        return Row(case=c, prediction=preds[c.id], suspect=_suspect(c), method=method)

    rows = tuple(row(c) for c in cases)
    name = "" if calibration in (None, "none") else str(calibration)
    return Validation(rows=rows, skips=tuple(skips), calibration=name, simulated=simulated)
