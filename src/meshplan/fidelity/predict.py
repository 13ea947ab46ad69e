"""Predict measured runs: the step model in each run's closed loop, at its exact layout.

Runs that share a problem (model, formats, GPU, engine release, ISL, OSL, mode) are predicted
together, their layouts and concurrencies as arrays, so the whole dev set takes a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from meshplan.cost.closed_loop import solve_aggregated, solve_disaggregated
from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.fidelity.problems import case_problem, launch_of
from meshplan.io.calibration import DEFAULT_PROFILE
from meshplan.fidelity.silicon import SiliconCase
from meshplan.specs.problem import Problem
from meshplan.strategy.layout import Layout

Adjust = Callable[["Group"], CostInputs]
"""A group's step-model inputs under a change (a calibration profile applied to it)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Prediction:
    """meshplan's TTFT and TPOT for one run, in the CSV's units (milliseconds)."""

    id: str
    ttft_ms: float
    tpot_ms: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Group:
    """Runs that share one problem; ``ci`` is built once."""

    problem: Problem
    ci: CostInputs
    cases: tuple[SiliconCase, ...]


def _key(case: SiliconCase) -> tuple:
    """What makes two runs one problem: everything but the layout and the concurrency, except the
    launch settings that change with the concurrency (each run's own, never its group's first)."""
    return (case.engine, case.engine_version, case.model, case.gpu, case.gemm_format, case.moe_format,
            case.disaggregated, case.isl, case.osl, case.harness.name, case.prefix_hit_rate,
            *_launch_key(case))


def _launch_key(case: SiliconCase) -> tuple:
    settings, kv = launch_of(case)
    # A setting may be a list of tiers (token_budget); its repr keys it as well as its value.
    return tuple(sorted((k, repr(v)) for k, v in settings.items())), kv


def group_cases(cases: list[SiliconCase], calibration: str | None = DEFAULT_PROFILE) -> list[Group]:
    """Runs grouped by problem, in first-seen order, under a calibration profile."""
    by: dict[tuple, list[SiliconCase]] = {}
    for c in cases:
        by.setdefault(_key(c), []).append(c)
    groups = []
    for members in by.values():
        problem = case_problem(members[0], calibration)
        groups.append(Group(problem=problem, ci=CostInputs.from_problem(problem), cases=tuple(members)))
    return groups


def _par(lays: list[Layout]) -> Par:
    a = lambda attr: np.array([getattr(x, attr) for x in lays], dtype=float)  # noqa: E731
    return Par.of(a("tp"), a("dp"), a("ep"), a("etp"), a("pp"))


def predict_group(group: Group, adjust: Adjust | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(TTFT, TPOT) in seconds for every run of ``group``, in its order."""
    ci = adjust(group) if adjust else group.ci
    n = len(group.cases)
    ttft, tpot = np.zeros(n), np.zeros(n)
    agg = [i for i, c in enumerate(group.cases) if not c.disaggregated]
    if agg:
        lays = [group.cases[i].layout for i in agg]
        par = _par(lays)
        B = np.array([group.cases[i].concurrency / (x.instances * x.dp * x.pp) for i, x in zip(agg, lays)])
        out = solve_aggregated(ci, par, B)
        ttft[agg] = np.broadcast_to(out.ttft_s, B.shape)
        tpot[agg] = np.broadcast_to(out.tpot_s, B.shape)
    for i, c in enumerate(group.cases):
        if c.disaggregated:
            out = solve_disaggregated(ci, _par([c.prefill]), c.prefill.instances, _par([c.decode]), c.decode.instances,
                                      float(c.concurrency))
            ttft[i], tpot[i] = float(np.ravel(out.ttft_s)[0]), float(np.ravel(out.tpot_s)[0])
    return ttft, tpot


def predict_groups(groups: list[Group], adjust: Adjust | None = None) -> list[Prediction]:
    """Predictions for every run of every group."""
    out = []
    for g in groups:
        ttft, tpot = predict_group(g, adjust)
        out += [Prediction(id=c.id, ttft_ms=float(a) * 1e3, tpot_ms=float(b) * 1e3)
                for c, a, b in zip(g.cases, ttft, tpot)]
    return out

