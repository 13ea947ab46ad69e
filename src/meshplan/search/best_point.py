"""The operating point kept per layout: the best feasible one of each row of a table, latency
breaking near-ties in throughput."""

from __future__ import annotations

import numpy as np

from meshplan.search.table import PointTable
from meshplan.specs.workload import Requirements
from meshplan.strategy.rules import Rule

SATURATION = 0.02
"""Operating points within 2% of a layout's best tokens/s per GPU count as equal, and the one
with the lowest latency (TPOT, or TTFT for prefill) is kept: throughput saturates with batch
size, and the last percent is not worth a latency several times longer."""


def _ok(t: PointTable, req: Requirements) -> dict[Rule, np.ndarray]:
    shape = t.B.shape
    ok = {Rule.MEMORY: t.fits}
    ok[Rule.TTFT] = (np.broadcast_to(t.ttft <= req.ttft_s, shape) if (req.ttft_s and t.ttft is not None)
                     else np.ones(shape, bool))
    ok[Rule.TPOT] = (np.broadcast_to(t.tpot <= req.tpot_s, shape) if (req.tpot_s and t.tpot is not None)
                     else np.ones(shape, bool))
    return ok


def best_per_row(t: PointTable, req: Requirements):
    """Column index of the best feasible point per row (or -1), and the feasibility mask, under the
    latency targets of ``req``."""
    ok = _ok(t, req)
    feasible = ok[Rule.MEMORY] & ok[Rule.TTFT] & ok[Rule.TPOT] & ~t.invalid
    score = np.where(feasible, t.metric, -np.inf)
    top = np.max(score, axis=1, keepdims=True)
    latency = np.broadcast_to(t.tpot if t.tpot is not None else t.ttft, t.B.shape)
    near = feasible & (score >= top * (1 - SATURATION))
    col = np.argmin(np.where(near, latency, np.inf), axis=1)
    has = np.isfinite(top[:, 0])
    return np.where(has, col, -1), feasible, ok
