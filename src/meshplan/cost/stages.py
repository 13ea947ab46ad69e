"""Pipeline stages: which layers each stage holds, and the slowest (or fullest) stage."""

from __future__ import annotations

from functools import cache

import numpy as np

from meshplan.specs.model import LayerKind
from meshplan.strategy.mesh import stage_layers


@cache
def stage_table(layer_kinds: tuple[LayerKind, ...], pp: int) -> np.ndarray:
    """Distinct stage compositions for ``pp`` stages as rows (dense layers, MoE layers, holds
    embedding, holds LM head); identical rows are merged since only the maximum matters."""
    rows = set()
    stages = stage_layers(len(layer_kinds), pp)
    for s, layers in enumerate(stages):
        kinds = [layer_kinds[i] for i in layers]
        n_moe = sum(1 for k in kinds if k is LayerKind.MOE)
        rows.add((len(kinds) - n_moe, n_moe, 1 if s == 0 else 0, 1 if s == pp - 1 else 0))
    return np.array(sorted(rows), dtype=float)


def max_over_stages(layer_kinds, pp, fn):
    """max over the stages of ``fn(n_dense, n_moe, first, last)``, where ``pp`` is an int or an
    array (one pp per leading-axis row; ``fn`` returns arrays of that shape)."""
    pp_arr = np.asarray(pp)
    if pp_arr.ndim == 0:
        table = stage_table(layer_kinds, int(pp_arr))
        return np.max(np.stack([fn(*row) for row in table]), axis=0)
    out = None
    for p in np.unique(pp_arr):
        table = stage_table(layer_kinds, int(p))
        value = np.max(np.stack([fn(*row) for row in table]), axis=0)
        if out is None:
            out = np.zeros(np.broadcast(value, pp_arr).shape)
        mask = np.broadcast_to(pp_arr == p, out.shape)
        out = np.where(mask, value, out)
    return out
