"""Iteration times for the simulator, from the step model evaluated once over a grid.

One call of cost.iteration.iteration over every grid point (it takes arrays) gives the time of an
iteration with n decoding sequences of mean context c and p prompt tokens on one attention-dp rank,
with and without a CUDA graph; the simulator interpolates between grid points (trilinear in n, p
and c: the step model is piecewise smooth in each). The other ranks of a lockstep group are taken to
carry the same work (cost.attention.Work.moe_tokens = dp x tokens), as the closed form does; the
simulator times a lockstep iteration by its busiest rank.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from meshplan.cost.attention import Work
from meshplan.cost.inputs import CostInputs
from meshplan.cost.iteration import graph_limit, iteration
from meshplan.cost.layer import Par
from meshplan.specs.workload import computed_prompt_tokens, prefill_attended_tokens

DECODE_POINTS = 24
"""Grid points over the decoding sequences (geometric from 1, plus 0)."""
PREFILL_POINTS = 16
CONTEXT_POINTS = 5


def _grid(top: float, points: int) -> np.ndarray:
    """0, then ``points`` - 1 geometrically spaced integers from 1 to ``top`` (deduplicated)."""
    top = max(float(top), 1.0)
    g = np.unique(np.round(np.geomspace(1.0, top, max(points - 1, 2))))
    return np.concatenate([[0.0], g])


def _bracket(grid: list[float], x: float) -> tuple[int, float]:
    """(i, w): x lies between grid[i] and grid[i + 1] at weight w (extrapolated linearly past the ends)."""
    i = min(max(bisect.bisect_right(grid, x) - 1, 0), len(grid) - 2)
    lo, hi = grid[i], grid[i + 1]
    return i, (x - lo) / (hi - lo)


@dataclass(frozen=True, kw_only=True)
class StepTable:
    """Iteration time (seconds, cost.iteration.Iteration.cycle_s) of one rank by its batch shape."""

    n_grid: list[float]
    p_grid: list[float]
    c_grid: list[float]
    eager: list
    """[n][p][c] seconds outside a CUDA graph."""
    graphed: list
    """The same, replayed from a CUDA graph."""
    graph_max: float
    """Largest batch (tokens) replayed from a CUDA graph."""
    graph_mixed: bool
    """Iterations with prompt tokens are graphed too (EngineProfile.cuda_graph_mixed)."""

    def time_s(self, decode_seqs: float, prefill_tokens: float, context: float) -> float:
        """Time of an iteration with these per-rank counts: trilinear between grid points."""
        graphed = decode_seqs + prefill_tokens <= self.graph_max and (prefill_tokens == 0 or self.graph_mixed)
        v = self.graphed if graphed else self.eager
        i, a = _bracket(self.n_grid, decode_seqs)
        j, b = _bracket(self.p_grid, prefill_tokens)
        k, c = _bracket(self.c_grid, context)
        out = 0.0
        for di, wi in ((0, 1.0 - a), (1, a)):
            for dj, wj in ((0, 1.0 - b), (1, b)):
                row = v[i + di][j + dj]
                out += wi * wj * ((1.0 - c) * row[k] + c * row[k + 1])
        return out

    @staticmethod
    def build(ci: CostInputs, par: Par, *, max_decode: float, max_prefill: float, min_context: float,
              max_context: float, isl: float, hit_rate: float = 0.0) -> "StepTable":
        """The table over [0, max_decode] sequences, [0, max_prefill] prompt tokens and contexts
        [min_context, max_context]; prompts of ``isl`` tokens, ``hit_rate`` of them in the prefix
        cache, compute the rest, whose tokens attend to the cached part and half of their own."""
        computed = computed_prompt_tokens(isl, hit_rate)
        n = _grid(max_decode, DECODE_POINTS)
        p = _grid(max_prefill, PREFILL_POINTS)
        c = np.linspace(max(min_context, 1.0), max(max_context, min_context + 1.0), CONTEXT_POINTS)
        N, P, C = np.meshgrid(n, p, c, indexing="ij")
        work = Work(decode_seqs=N, decode_context=C, prefill_tokens=P, prefill_seqs=P / computed,
                    prefill_attended=prefill_attended_tokens(max(isl, 1.0), computed), moe_tokens=par.dp * (N + P))
        values = lambda graphed: np.broadcast_to(iteration(ci, par, work, graphed).cycle_s, N.shape).tolist()  # noqa: E731
        return StepTable(n_grid=n.tolist(), p_grid=p.tolist(), c_grid=c.tolist(), eager=values(False),
                         graphed=values(True), graph_max=float(graph_limit(ci, par)),
                         graph_mixed=bool(ci.engine.cuda_graph_mixed))
