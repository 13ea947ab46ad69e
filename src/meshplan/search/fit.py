"""The smallest instance that can hold the model: what a plan says when nothing fits the budget.

A layout holds the model when every GPU's share of the weights, the runtime reserve, the
activations of a pass and the KV cache of one request at the workload's longest context fit its
usable memory (cost.capacity.decode_capacity >= 1). Among every legal layout up to
assumptions.search_max_gpus_per_instance GPUs, the one with the fewest GPUs (then the fewest
pipeline stages) is the answer; None when even that many GPUs cannot hold it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meshplan.cost.capacity import decode_capacity
from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.specs.problem import Problem
from meshplan.strategy.layout import Layout
from meshplan.strategy.space import enumerate_layouts


@dataclass(frozen=True, kw_only=True, slots=True)
class Fit:
    gpus: int
    """GPUs of the smallest instance that holds the model and one request."""
    layout: Layout
    flat: Layout | None
    """The smallest such instance without pipeline stages (None when none holds it)."""


def smallest_fit(problem: Problem) -> Fit | None:
    """The smallest legal instance that holds the weights and one request of the longest context."""
    ci = CostInputs.from_problem(problem)
    la = enumerate_layouts(problem.model, problem.gpu, problem.assumptions.search_max_gpus_per_instance,
                           redundant_experts=problem.assumptions.redundant_experts)
    if not len(la):
        return None
    par = Par.of(la.tp, la.dp, la.ep, la.etp, la.pp)
    holds = np.broadcast_to(decode_capacity(ci, par), la.tp.shape) >= 1
    if not holds.any():
        return None
    def first(rows) -> Layout | None:
        if not len(rows):
            return None
        i = int(rows[np.lexsort((la.pp[rows], la.gpus_per_instance[rows]))[0]])
        return Layout(tp=int(la.tp[i]), dp=int(la.dp[i]), pp=int(la.pp[i]), ep=int(la.ep[i]), etp=int(la.etp[i]))

    lay = first(np.nonzero(holds)[0])
    return Fit(gpus=lay.gpus, layout=lay, flat=first(np.nonzero(holds & (la.pp == 1))[0]))
