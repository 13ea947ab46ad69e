"""Measured runs predicted by simulation: each run's closed loop served request by request.

A run of C clients against an aggregated layout of I instances is simulated on one instance with
C / I clients (the benchmark's router spreads them evenly), each sending the requests its client
sends over a run (fidelity.harness: ten for InferenceX, the calibration profile's benchmark factor
otherwise) with the lengths that client draws (uniform [0.8 len, len] for InferenceX, as stated
otherwise). The run's means are the simulated requests' means, as the clients report them.
Disaggregated runs keep the closed form (the simulator serves aggregated instances).
"""

from __future__ import annotations

import numpy as np

from meshplan.cost.layer import Par
from meshplan.errors import SpecError
from meshplan.fidelity.predict import Group, Prediction
from meshplan.fidelity.silicon import SiliconCase
from meshplan.simulate.instance import simulate_instance
from meshplan.simulate.requests import LengthDist, closed_loop, draw_lengths
from meshplan.simulate.summary import per_request

SEED = 0
"""Seed of the length draws (a fixed seed keeps validation deterministic)."""


def simulate_case(group: Group, case: SiliconCase) -> tuple[float, float]:
    """(mean TTFT, mean TPOT) in seconds of an aggregated run, simulated."""
    ci = group.ci
    lay = case.layout
    clients = max(1, round(case.concurrency / lay.instances))
    per_client = ci.requests_per_client if np.isfinite(ci.requests_per_client) else 1.0
    n = max(clients, round(clients * per_client))
    rng = np.random.default_rng(SEED)
    ratio = case.harness.length_range_ratio
    dist = LengthDist.FIXED if ratio >= 1.0 else LengthDist.UNIFORM
    isl = draw_lengths(dist, case.isl, int(case.isl * ratio), case.isl, n, rng)
    osl = draw_lengths(dist, case.osl, int(case.osl * ratio), case.osl, n, rng)
    par = Par.of(lay.tp, lay.dp, lay.ep, lay.etp, lay.pp)
    res = simulate_instance(ci, par, closed_loop(clients, n, isl, osl))
    ttft, tpot, _ = per_request(res)
    return float(np.nanmean(ttft)), float(np.nanmean(tpot))


def simulate_groups(groups: list[Group], progress=None) -> dict[str, Prediction | str]:
    """Every aggregated run of ``groups`` simulated, by id (or why the simulator refused it: the
    run then keeps the closed form); ``progress(done, total)`` after each."""
    runs = [(g, c) for g in groups for c in g.cases if not c.disaggregated]
    out: dict[str, Prediction | str] = {}
    for k, (g, c) in enumerate(runs, 1):
        try:
            ttft, tpot = simulate_case(g, c)
            out[c.id] = Prediction(id=c.id, ttft_ms=ttft * 1e3, tpot_ms=tpot * 1e3)
        except SpecError as err:
            out[c.id] = f"{err.field}: {err.rule}"
        if progress is not None:
            progress(k, len(runs))
    return out
