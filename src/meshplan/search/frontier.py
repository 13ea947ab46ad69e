"""The throughput/latency frontier: what nothing beats on both tokens/s per GPU and tokens/s per
user (1 / TPOT)."""

from __future__ import annotations

import numpy as np

from meshplan.search.candidate import Candidate


def frontier_indices(per_gpu, per_user) -> list[int]:
    """Indices of the points no other beats on both axes, fastest per user first (ties: more per
    GPU first). Hand check: (per user, per GPU) = (10, 100), (20, 50), (15, 40) keeps (20, 50)
    and (10, 100), indices [1, 0]; (15, 40) is beaten by (20, 50) on both."""
    x, y = np.asarray(per_gpu, dtype=float), np.asarray(per_user, dtype=float)
    out, best = [], -np.inf
    for i in np.lexsort((-x, -y)):
        if x[i] > best * (1 + 1e-9):
            out.append(int(i))
            best = x[i]
    return out


def non_dominated(cands: list[Candidate]) -> list[Candidate]:
    """The candidates on the frontier (frontier_indices), fastest per user first."""
    pts = [c for c in cands if c.tpot_s and c.output_tok_s_per_gpu]
    idx = frontier_indices([c.output_tok_s_per_gpu for c in pts], [1.0 / c.tpot_s for c in pts])
    return [pts[i] for i in idx]
