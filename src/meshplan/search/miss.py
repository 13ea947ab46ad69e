"""Why a layout has no feasible operating point, with the numbers of its nearest miss."""

from __future__ import annotations

import numpy as np

from meshplan.cost.inputs import CostInputs
from meshplan.search.table import PointTable
from meshplan.specs.workload import Requirements
from meshplan.strategy.rules import Rule, Violation
from meshplan.units import GIB, fmt_seconds


def _share(ci: CostInputs, req: Requirements) -> str:
    """What the memory fraction is a fraction of, for messages."""
    of = "of the memory free once the model is loaded" if ci.kv_of_free else "of capacity"
    return f"{req.memory_headroom:.0%} {of}"


def miss_reason(t: PointTable, ci: CostInputs, req: Requirements, i: int,
                ok: dict[Rule, np.ndarray]) -> list[Violation]:
    """Why row i has no feasible point under ``req``, with the numbers of its nearest miss."""
    if not ok[Rule.MEMORY][i].any():
        j = int(np.argmin(t.B[i]))
        need = float(np.broadcast_to(t.mem_total, t.B.shape)[i, j])
        fit = int(t.max_b[i])
        if fit >= 1:
            return [Violation(rule=Rule.MEMORY, message=(
                f"{t.B[i, j]:,.0f} sequences per attention-dp rank need {need / GIB:.1f} GiB per GPU > usable "
                f"{t.usable[i] / GIB:.1f} GiB ({_share(ci, req)}); at most {fit:,} fit per rank"))]
        return [Violation(rule=Rule.MEMORY, message=(
            f"even one sequence per rank needs more than the usable {t.usable[i] / GIB:.1f} GiB per GPU "
            f"({_share(ci, req)}): {need / GIB:.1f} GiB at the smallest point tried"))]
    if t.invalid[i].all():
        slots = int(t.la.dp[i] * t.la.pp[i])
        return [Violation(rule=Rule.CONCURRENCY, message=(
            f"{ci.workload.concurrency} requests in flight < {slots} decode slots of one instance "
            f"(attention dp {int(t.la.dp[i])} x pp {int(t.la.pp[i])}): ranks would sit idle"))]
    mem = ok[Rule.MEMORY][i] & ~t.invalid[i]
    found = []
    if t.ttft is not None and req.ttft_s and not (ok[Rule.TTFT][i] & mem).any():
        best = float(np.min(np.broadcast_to(t.ttft, t.B.shape)[i][mem]))
        found.append(Violation(rule=Rule.TTFT, message=f"TTFT at best {fmt_seconds(best)} > target {fmt_seconds(req.ttft_s)}"))
    if t.tpot is not None and req.tpot_s and not (ok[Rule.TPOT][i] & mem).any():
        best = float(np.min(np.broadcast_to(t.tpot, t.B.shape)[i][mem]))
        found.append(Violation(rule=Rule.TPOT, message=f"TPOT at best {fmt_seconds(best)} > target {fmt_seconds(req.tpot_s)}"))
    if not found:
        found.append(Violation(rule=Rule.MEMORY, message=(
            "no operating point meets memory and the latency targets at once (the concurrency leaves too "
            "many sequences per rank)")))
    return found
