"""Fit factors by simulation: the measured runs' closed loops served request by request.

Three kinds of factor are fitted so: those in which the simulation is sharp and the closed form is
not, and one the two ask different values of. The benchmark factors (requests_per_client,
client_overhead_s: what a client whose protocol no source states sends, and adds to each TTFT)
describe the measurement, not the step model, and both predictors use them. The closed form hardly tells them apart: on silicon-dev (2026-12-02) its
median |TTFT error| was 20.5% at (7.1 requests, 43 ms), 20.2% at (9.5, 32 ms), 20.1% at (8.3, 38 ms),
its soft-L1 loss moving by 0.1-0.5%. The simulation runs the protocol itself (every client's first
request at once, then the closed loop) and is sharp in both. An engine's CPU time per eager kernel
(kernel_launch_s) sets the cost of every iteration that runs outside a CUDA graph, which is every
iteration with a prompt in it: the simulation runs one such iteration per prompt batch as prompts
arrive, where the closed form clumps prompts (clump_coherence) into fewer and trades the launch cost
against its other factors. On silicon-dev (2026-12-03) TensorRT-LLM's 1,016 simulated runs (one draw)
had 590 off by more than 20% at the closed form's 49.5 us and 550 at 40 us, while the closed form
over every run had 1,388 and 1,386. An engine's FP8 fused-MoE share (fp8_fused_moe_share)
sets how fast its MoE layers without the all-to-all run with FP8 experts, so how fast prompts
pass, so how long the queue of prompts that arrive together grows; the simulation serves that
queue, the closed form replaces it by a steady-state mean that on silicon-dev already predicts
SGLang's TTFTs higher than the simulation does (signed median +0.7% against -10.3% over its 784
runs, 2026-12-03), so the two ask for different values: the closed form's SGLang runs had 493 off
by more than 20% at 1, 527 at 0.6 and 526 at 0.4, while the simulation's loss over SGLang's 411
simulated FP8 runs fell from 2,579 at 1 to 2,338 at 0.55 (one draw); the simulation, which
serves the queue, is the one fitted. A factor fitted by simulation is kept, one value, for both
predictors: one step model, whose other factors calibrate --sim-fit keeps at its base profile's
values, or refits by the closed form, with these held, those its --fit names.

A fit moves one factor at a time (coordinate descent, one round per entry of SPANS) to minimize the
soft-L1 loss of log errors of TTFT and TPOT (fidelity.calibrate.fit's loss, the same scale) over the
runs the factors reach (those whose client leaves them unstated, fidelity.harness), each run
simulated FIT_REPLICAS times. The loss is rough at small steps: moving a factor a little moves every
simulated event, so each run's error jitters by a few percent around its trend (on four runs, 1-5%
between 12 and 12.1 requests per client). A search that follows single evaluations (Brent's) stops in
that jitter; so each factor's loss is evaluated at GRID points spaced evenly in ratio between value /
span and value x span (within its bounds) and the factor set to the lowest point of the parabola
fitted to them (least squares), the jitter averaged out; where the points show no such minimum, to
the lowest point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from meshplan.errors import SpecError
from meshplan.fidelity.calibrate import LOSS_SCALE, Held, adjust_for, ids_hash
from meshplan.fidelity.factors import FACTORS, Factor
from meshplan.fidelity.predict import Group, Prediction
from meshplan.fidelity.simulated import simulate_groups


BENCHMARK_FACTORS = ("requests_per_client", "client_overhead_s")
"""The benchmark protocol's factors, which are not step time; runs whose client states them have none."""
ENGINE_SIM_FITTED = ("kernel_launch_s", "fp8_fused_moe_share")
"""The engine factors a fit by simulation may move (the module's docstring)."""
SIM_FITTED = BENCHMARK_FACTORS + tuple(f.name for f in FACTORS if f.engine is not None and f.key in ENGINE_SIM_FITTED)
"""The factors a fit by simulation may move: the benchmark protocol's and each engine's CPU time per
eager kernel and FP8 fused-MoE share (the module's docstring)."""
NOT_SIM_FITTED = ("fits by simulation only the benchmark factors (" + ", ".join(BENCHMARK_FACTORS)
                  + ") and an engine's " + " or ".join(ENGINE_SIM_FITTED)
                  + "; the step model's others are fitted by the closed form")
"""Why a fit by simulation refuses any other factor."""
FIT_REPLICAS = 1
"""Simulations per run in a fit's loss. The loss sums hundreds of runs, over which one draw's noise
per run averages out; validate averages simulation.REPLICAS per run because it reports each run's
error. With one, a pass over silicon-dev's 731 runs that leave the protocol unstated took 11-37 s
with two processes (longer as requests per client grow) and the bundled fit's 29 passes 11 minutes
(2026-12-02, 2 cores); three would triple that."""
SPANS = (2.0, 1.3)
"""Rounds over the factors and the span of each: first between half and twice the starting value,
then within 1.3x of the first round's. The two factors both raise TTFT, so one's optimum moves with
the other's value; the second round refines both."""
GRID = 7
"""Simulation passes per factor and round (the parabola's points)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SimFitResult:
    values: tuple[float, ...]
    rows: int
    """Runs simulated in each pass (those the factors reach and the simulator takes)."""
    rows_hash: str
    median_abs_ttft: float
    median_abs_tpot: float
    """The simulation's median |error| over those runs at the fitted values."""
    passes: int


def reached(groups: list[Group], factors: list[Factor]) -> list[Group]:
    """The groups whose runs any of ``factors`` moves (a benchmark factor: runs whose client leaves it
    unstated; an engine's factor: that engine's runs, and for an FP8 fused-MoE share those with FP8
    experts)."""
    return [g for g in groups if any(f.apply(g.ci, (f.lower + f.upper) / 2, g.cases[0].harness) for f in factors)]


def simulated_errors(groups: list[Group], factors: list[Factor], values, held: Held = (), jobs: int = 1,
                     ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """log(simulated / measured) of TTFT and TPOT over the runs of ``groups`` the simulator takes,
    with ``factors`` at ``values`` (and ``held``), and those runs' ids."""
    adjust = adjust_for(factors, values, held)
    sims = simulate_groups([replace(g, ci=adjust(g)) for g in groups], jobs=jobs, replicas=FIT_REPLICAS)
    t, p, ids = [], [], []
    for g in groups:
        for c in g.cases:
            s = sims.get(c.id)
            if isinstance(s, Prediction):
                t.append(np.log(max(s.ttft_ms, 1e-6) / c.ttft_ms))
                p.append(np.log(max(s.tpot_ms, 1e-6) / c.tpot_ms))
                ids.append(c.id)
    return np.array(t), np.array(p), ids


def soft_l1(t: np.ndarray, p: np.ndarray, scale: float = LOSS_SCALE) -> float:
    """sum of 2 (sqrt(1 + (r / scale)^2) - 1) over the log errors r: scipy's soft_l1 loss, which
    fidelity.calibrate.fit minimizes (quadratic near 0, linear beyond ``scale``)."""
    z = np.concatenate([t, p]) / scale
    return float(np.sum(2.0 * (np.sqrt(1.0 + z * z) - 1.0)))


def _grid(f: Factor, value: float, span: float) -> np.ndarray:
    """GRID values from value / span to value x span, evenly in ratio, within the factor's bounds (a
    factor at 0: evenly over its range's lowest tenth)."""
    if value <= f.lower:
        return np.linspace(f.lower, f.lower + 0.1 * (f.upper - f.lower), GRID)
    return np.clip(value * np.geomspace(1.0 / span, span, GRID), f.lower, f.upper)


def lowest(x: np.ndarray, y: np.ndarray) -> float:
    """Where the parabola fitted to (x, y) is lowest, when it opens upward and that lies within x's
    range; else the x of the lowest y."""
    a, b, _ = np.polyfit(x, y, 2)
    if a > 0 and x.min() <= -b / (2 * a) <= x.max():
        return float(-b / (2 * a))
    return float(x[int(np.argmin(y))])


def fit_by_simulation(groups: list[Group], factors: list[Factor], start: list[float], held: Held = (),
                      jobs: int = 1, progress: Callable[[int, tuple[float, ...], float, float], None] | None = None,
                      ) -> SimFitResult:
    """``factors`` (of SIM_FITTED) fitted by simulating the runs they reach, from ``start``;
    ``progress(passes, values, loss, median |TTFT error|)`` after each simulation pass."""
    for f in factors:
        if f.name not in SIM_FITTED:
            raise SpecError("--sim-fit", f.name, NOT_SIM_FITTED)
    runs = reached(groups, factors)
    if not runs:
        raise SpecError("--sim-fit", ",".join(f.name for f in factors),
                        "no run depends on them (a benchmark factor: every run's client states it, "
                        "fidelity.harness; an engine's: no run of that engine, or none with FP8 experts): no run to fit them on")
    seen: dict[tuple[float, ...], tuple[float, np.ndarray, np.ndarray, list[str]]] = {}

    def loss(values: tuple[float, ...]) -> float:
        if values not in seen:
            t, p, ids = simulated_errors(runs, factors, values, held, jobs)
            if not ids:
                raise SpecError("--sim-fit", ",".join(f.name for f in factors),
                                "the simulator takes none of the runs they reach")
            seen[values] = (soft_l1(t, p), t, p, ids)
            if progress is not None:
                progress(len(seen), values, seen[values][0], float(np.median(np.abs(np.expm1(t)))))
        return seen[values][0]

    values = tuple(float(np.clip(v, f.lower, f.upper)) for f, v in zip(factors, start))
    for span in SPANS:
        for i, f in enumerate(factors):
            xs = _grid(f, values[i], span)
            ys = np.array([loss(values[:i] + (float(x),) + values[i + 1:]) for x in xs])
            values = values[:i] + (lowest(xs, ys),) + values[i + 1:]
    loss(values)  # the errors at the fitted values
    _, t, p, ids = seen[values]
    return SimFitResult(values=values, rows=len(ids), rows_hash=ids_hash(ids),
                        median_abs_ttft=float(np.median(np.abs(np.expm1(t)))),
                        median_abs_tpot=float(np.median(np.abs(np.expm1(p)))), passes=len(seen))
