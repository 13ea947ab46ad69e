"""What a simulation shows: latency percentiles, throughput, goodput and utilisation.

Per request (as serving benchmarks report them, e.g. vLLM's benchmark_serving.py): TTFT from send
to first token; TPOT = (latency - TTFT) / (output tokens - 1), for requests of two tokens or more;
latency from send to last token. Throughput counts output tokens from the first send to the last
finish. Goodput is the share of requests that meet both the TTFT and TPOT targets given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meshplan.simulate.loop import Result

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True, kw_only=True, slots=True)
class Stats:
    mean: float
    p50: float
    p90: float
    p99: float

    @staticmethod
    def of(x: np.ndarray) -> "Stats":
        x = x[np.isfinite(x)]
        if not x.size:
            return Stats(mean=float("nan"), p50=float("nan"), p90=float("nan"), p99=float("nan"))
        p = np.percentile(x, PERCENTILES)
        return Stats(mean=float(x.mean()), p50=float(p[0]), p90=float(p[1]), p99=float(p[2]))


@dataclass(frozen=True, kw_only=True, slots=True)
class Summary:
    requests: int
    ttft_s: Stats
    tpot_s: Stats
    latency_s: Stats
    output_tok_s: float
    """Output tokens per second of the instance over the run."""
    duration_s: float
    goodput: float | None
    """Share of requests meeting every latency target given; None without targets."""
    utilisation: tuple[float, ...]
    """Share of the run each micro-batch group spent iterating."""
    iterations: int
    preemptions: int


def per_request(res: Result) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(TTFT, TPOT, latency) of every request, seconds (TPOT NaN for one-token outputs)."""
    r = res.requests
    ttft = r.first_s - r.send_s
    latency = r.finish_s - r.send_s
    steps = r.osl - 1
    tpot = np.where(steps > 0, (r.finish_s - r.first_s) / np.maximum(steps, 1), np.nan)
    return ttft, tpot, latency


def summarise(res: Result, ttft_target_s: float | None = None, tpot_target_s: float | None = None,
              warmup: int = 0) -> Summary:
    """The run's figures; latency statistics and goodput leave out the first ``warmup`` requests
    (a closed loop's first wave, which all arrive at once: a benchmark counts them, a deployment
    in service does not see them). Throughput counts the whole run."""
    ttft, tpot, latency = (x[warmup:] for x in per_request(res))
    r = res.requests
    start = float(np.nanmin(r.send_s)) if r.send_s.size else 0.0
    duration = max(res.end_s - start, 1e-12)
    goodput = None
    if ttft_target_s is not None or tpot_target_s is not None:
        ok = np.ones(ttft.size, dtype=bool)
        if ttft_target_s is not None:
            ok &= ttft <= ttft_target_s
        if tpot_target_s is not None:
            ok &= ~(tpot > tpot_target_s)  # one-token requests have no TPOT to miss
        goodput = float(ok.mean())
    return Summary(requests=int(ttft.size), ttft_s=Stats.of(ttft), tpot_s=Stats.of(tpot), latency_s=Stats.of(latency),
                   output_tok_s=float(r.generated.sum()) / duration, duration_s=duration, goodput=goodput,
                   utilisation=tuple(float(b) / duration for b in res.busy_s), iterations=res.iterations,
                   preemptions=res.preemptions)


def timeline(res: Result, bins: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin middles s, output tokens/s, requests waiting for a first token) over the run: each
    request's tokens spread evenly from its first token to its last, so saturation (a queue that
    keeps growing) shows as the waiting count climbing while the rate stays flat."""
    r = res.requests
    end = max(float(np.nanmax(r.finish_s)), 1e-9)
    edges = np.linspace(0.0, end, bins + 1)
    width = edges[1] - edges[0]
    tokens = np.zeros(bins)
    for first, last, n in zip(r.first_s, r.finish_s, r.generated):
        if not (np.isfinite(first) and np.isfinite(last)):
            continue
        span = max(last - first, width)
        lo, hi = np.searchsorted(edges, [first, first + span])
        lo, hi = max(lo - 1, 0), min(max(hi, lo + 1), bins)
        tokens[lo:hi] += n / span * width
    mid = (edges[:-1] + edges[1:]) / 2
    waiting = np.array([np.sum((r.send_s <= t) & ~(r.first_s <= t)) for t in mid])
    return mid, tokens / width, waiting
