"""Operating points tried per layout."""

from __future__ import annotations

import numpy as np

from meshplan.cost.capacity import decode_capacity
from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.strategy.space import LayoutArrays

B_GRID = np.array([2.0**i for i in range(0, 13)])
"""Sequences per attention-dp rank per micro-batch for decode: 1, 2, 4, ... 4096. The best point
usually sits at the memory limit, which is added per layout (max_B)."""

PREFILL_B_GRID = np.array([2.0**i for i in range(0, 8)])
"""Prompts per attention-dp rank in one prefill pass: 1 .. 128."""


def with_limit(grid: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Each row: the grid points plus the row's own limit (the largest B that fits memory),
    so the memory-bound optimum is never missed. Shape (rows, len(grid) + 1)."""
    rows = np.broadcast_to(grid, (len(limit), len(grid)))
    return np.concatenate([rows, np.maximum(limit, 1.0)[:, None]], axis=1)


def concurrency_grid(concurrency: int, slots_per_instance: np.ndarray, max_instances: np.ndarray) -> np.ndarray:
    """B values that a fixed concurrency C allows: B = C / (n * slots) for instance counts n in
    1, 2, 4, ... up to max_instances, keeping B >= 1. Shape (rows, k); invalid points are NaN."""
    ns = np.array([2.0**i for i in range(0, 21)])
    n = np.minimum(ns[None, :], max_instances[:, None])
    b = concurrency / (n * slots_per_instance[:, None])
    return np.where(b >= 1.0, b, np.nan)


def layout_par(la: LayoutArrays) -> Par:
    """The parallel degrees of a table's layouts, one row each (shape (rows, 1)), as the cost model
    broadcasts them against the operating points of a row."""
    c = lambda x: x.astype(float)[:, None]  # noqa: E731
    return Par.of(c(la.tp), c(la.dp), c(la.ep), c(la.etp), c(la.pp))


def capacity_grid(ci: CostInputs, par: Par, rows: int, grid: np.ndarray = B_GRID) -> np.ndarray:
    """Decode batch sizes to evaluate per layout row: ``grid`` plus the row's own KV-cache limit
    (cost.capacity.decode_capacity), so the memory-bound optimum is never missed."""
    return with_limit(grid, np.broadcast_to(decode_capacity(ci, par), (rows, 1))[:, 0])
