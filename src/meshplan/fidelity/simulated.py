"""Measured runs predicted by simulation: each run's closed loop served request by request.

A run of C clients against an aggregated layout of I instances is simulated on one instance with
C / I clients (the benchmark's router spreads them evenly), each sending the requests its client
sends over a run (fidelity.harness: ten for InferenceX, the calibration profile's benchmark factor
otherwise) with the lengths that client draws (uniform [0.8 len, len] for InferenceX, as stated
otherwise). A disaggregated run is simulated whole: its C clients over its prefill and decode
instances. The run's means are the simulated requests' means, as the clients report them.

Every client's first request goes out at the run's start. Where the harness says the run's engine
dissolves the waves this first wave would leave (fidelity.harness.Harness.steady_spread), the
first wave is simulated on its own and the requests after it by a loop whose clients start
staggered: the first requests' TTFTs are the wave's, the others' the staggered loop's.

A run is simulated REPLICAS times, with other length and overhead draws (seeds SEED + k), and
predicted by the replicas' mean: one draw's result moves by a few percent (over the dev set's runs
by 2-3% at the median, a tenth of them by over 5%), which a single draw would pass off as the model's.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

from meshplan.errors import SpecError
from meshplan.fidelity.predict import Group, Prediction, predict_group
from meshplan.plan.build import par_of
from meshplan.fidelity.silicon import SiliconCase
from meshplan.simulate.instance import simulate_disaggregated, simulate_instance
from meshplan.simulate.requests import LengthDist, closed_loop, draw_lengths
from meshplan.simulate.summary import per_request

SEED = 0
"""Seed of the first replica's length and overhead draws (fixed seeds keep validation deterministic)."""
REPLICAS = 3
"""Simulations per run, averaged. Chosen on the dev set (2026-12-02, the bundled profile): with
one draw the median |TTFT error| over its runs was 22.8%, 21.5%, 22.1% and 21.1% for four
overhead seeds; the mean of the first 2, 3 and 4 of those draws gave 22.3%, 22.2% and 21.9%; with
three replicas (this module's seeds 0-2) it is 21.8%. The four single draws spread by 0.7 of a
point (standard deviation); a mean of three, by about 0.4 (0.7 / sqrt 3), at three times a single
draw's time."""
MAX_CLIENTS = 2_048
"""Runs with more requests in flight keep the closed form: a run of 8,192 clients sending ten
requests each is about 80,000 iterations of 32 lockstep ranks, minutes of simulation for one row."""
MAX_REQUESTS = 20_000
"""Most requests simulated per run: past it each client sends fewer (at least two), which weighs
the run's first wave a little more than the benchmark did."""


def simulate_case(group: Group, case: SiliconCase, life_s: float = 0.0, replicas: int = REPLICAS) -> tuple[float, float]:
    """(mean TTFT, mean TPOT) in seconds of a run, simulated ``replicas`` times and averaged;
    ``life_s`` is a request's lifetime by the closed form, the unit of the harness's steady_spread."""
    runs = [_simulate_once(group, case, life_s, SEED + k) for k in range(replicas)]
    return float(np.mean([a for a, _ in runs])), float(np.mean([b for _, b in runs]))


def _simulate_once(group: Group, case: SiliconCase, life_s: float, seed: int) -> tuple[float, float]:
    """(mean TTFT, mean TPOT) of one simulation of a run, its draws seeded with ``seed``."""
    ci = group.ci
    lay = case.layout
    clients = case.concurrency if case.disaggregated else max(1, round(case.concurrency / lay.instances))
    if clients > MAX_CLIENTS:
        raise SpecError("concurrency", clients, f"more than {MAX_CLIENTS:,} requests in flight per simulation")
    per_client = ci.requests_per_client if np.isfinite(ci.requests_per_client) else 1.0
    n = max(clients, min(round(clients * per_client), max(MAX_REQUESTS, 2 * clients)))
    rng = np.random.default_rng(seed)
    ratio = case.harness.length_range_ratio
    dist = LengthDist.FIXED if ratio >= 1.0 else LengthDist.UNIFORM
    isl = draw_lengths(dist, case.isl, int(case.isl * ratio), case.isl, n, rng)
    osl = draw_lengths(dist, case.osl, int(case.osl * ratio), case.osl, n, rng)
    spread_s = case.harness.steady_spread_for(case.engine) * life_s
    ttft, tpot, _ = per_request(_serve(group, case, closed_loop(clients, n, isl, osl, spread_s, seed)))
    if spread_s > 0:
        # The first wave, every client's first request at once, alone: the staggered loop's first
        # requests never met it (requests 0 .. clients - 1 are the clients' first).
        wave, _, _ = per_request(_serve(group, case, closed_loop(clients, clients, isl[:clients], osl[:clients],
                                                                 seed=seed)))
        ttft = np.concatenate([wave, ttft[clients:]])
    return float(np.nanmean(ttft)), float(np.nanmean(tpot))


def _serve(group: Group, case: SiliconCase, stream):
    """The simulated run of ``stream`` on the case's layout."""
    if case.disaggregated:
        p, d = case.prefill, case.decode
        return simulate_disaggregated(group.ci, par_of(p), p.instances, par_of(d), d.instances, stream)
    return simulate_instance(group.ci, par_of(case.layout), stream)


def _lifetimes(group: Group) -> list[float]:
    """Each run's request lifetime by the closed form: TTFT + (OSL - 1) x TPOT, seconds."""
    ttft, tpot = predict_group(group)
    return [float(a + (c.osl - 1) * b) for c, a, b in zip(group.cases, ttft, tpot)]


def _predict(g: Group, c: SiliconCase, life_s: float, replicas: int = REPLICAS) -> Prediction | str:
    """One run simulated, or why the simulator refused it."""
    try:
        ttft, tpot = simulate_case(g, c, life_s, replicas)
        return Prediction(id=c.id, ttft_ms=ttft * 1e3, tpot_ms=tpot * 1e3)
    except SpecError as err:
        return f"{err.field}: {err.rule}"


_RUNS: list = []
"""A worker process's runs (set once by _hold, so each task sends only an index)."""


def _hold(runs: list) -> None:
    _RUNS[:] = runs


def _predict_held(k: int, replicas: int) -> tuple[int, Prediction | str]:
    return k, _predict(*_RUNS[k], replicas)


def simulate_groups(groups: list[Group], progress=None, jobs: int = 1,
                    replicas: int = REPLICAS) -> dict[str, Prediction | str]:
    """Every run of ``groups`` simulated ``replicas`` times, by id (or why the simulator refused it:
    the run then keeps the closed form); ``progress(done, total)`` after each. ``jobs`` processes
    simulate the runs side by side: each run's draws are seeded by itself (SEED + replica), so the
    figures are the same as with one."""
    runs = [(g, c, life) for g in groups for c, life in zip(g.cases, _lifetimes(g))]
    done: list[Prediction | str | None] = [None] * len(runs)
    if jobs > 1 and len(runs) > 1:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_hold, initargs=(runs,)) as pool:
            futures = [pool.submit(_predict_held, k, replicas) for k in range(len(runs))]
            for n, future in enumerate(as_completed(futures), 1):
                k, done[k] = future.result()
                if progress is not None:
                    progress(n, len(runs))
    else:
        for k, run in enumerate(runs):
            done[k] = _predict(*run, replicas)
            if progress is not None:
                progress(k + 1, len(runs))
    return {c.id: p for (_, c, _), p in zip(runs, done)}
