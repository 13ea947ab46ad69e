"""The requests a simulation serves: how they arrive and how long they are.

Arrivals: a closed loop of C clients (how serving benchmarks run: a client sends its next request
when the last one finishes), Poisson arrivals at a rate, or a trace (arrival time, input and output
tokens per request). Lengths: fixed, uniform over [min, max] (a problem's "isl: [a, b]"; InferenceX
draws [0.8 len, len]), or lognormal with the workload's mean and a coefficient of variation.
Every draw comes from one seeded generator, so a seed gives the same stream.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from meshplan.errors import SpecError, finite_number

MAX_REQUESTS = 1_000_000
"""Most requests one simulation takes (about a minute of simulated serving per 10,000 requests on
this machine; beyond a million the arrays alone pass a gigabyte)."""


class Arrivals(StrEnum):
    CLOSED_LOOP = "closed-loop"
    POISSON = "poisson"
    TRACE = "trace"


class LengthDist(StrEnum):
    FIXED = "fixed"
    UNIFORM = "uniform"
    LOGNORMAL = "lognormal"


@dataclass(frozen=True, kw_only=True)
class RequestStream:
    """Requests in the order they are sent. ``send_s`` holds open-loop send times (Poisson or
    trace); a closed loop fills them in as clients' earlier requests finish."""

    arrivals: Arrivals
    isl: np.ndarray
    """Prompt tokens per request (integers)."""
    osl: np.ndarray
    """Output tokens per request (integers, at least 1)."""
    send_s: np.ndarray | None = None
    clients: int = 0
    """Closed loop: requests in flight (each client sends its next one when the last finishes)."""
    first_send_s: np.ndarray | None = None
    """Closed loop: when each client sends its first request (None: every client at time 0)."""
    seed: int = 0
    """Seed of the draws made as the requests are served (each one's overhead: simulate.loop)."""

    @property
    def count(self) -> int:
        return int(self.isl.size)


def draw_lengths(dist: LengthDist, mean: float, lo: float, hi: float, n: int, rng: np.random.Generator,
                 cv: float = 0.5) -> np.ndarray:
    """``n`` lengths in tokens: fixed at ``mean``; uniform on the integers [lo, hi] (as
    benchmark_serving.py's sample_random_requests draws them); lognormal with this mean and
    coefficient of variation (sigma^2 = ln(1 + cv^2), mu = ln(mean) - sigma^2 / 2), cut to [1, hi]."""
    if dist is LengthDist.FIXED:
        return np.full(n, max(round(mean), 1), dtype=np.int64)
    if dist is LengthDist.UNIFORM:
        return rng.integers(max(int(lo), 1), max(int(hi), int(lo), 1) + 1, size=n)
    sigma2 = np.log1p(cv * cv)
    x = rng.lognormal(np.log(mean) - sigma2 / 2.0, np.sqrt(sigma2), size=n)
    return np.clip(np.round(x), 1, max(hi, 1)).astype(np.int64)


def _count(requests: int) -> int:
    if not 1 <= requests <= MAX_REQUESTS:
        raise SpecError("--requests", requests, f"must be between 1 and {MAX_REQUESTS:,}")
    return requests


def closed_loop(clients: int, requests: int, isl: np.ndarray, osl: np.ndarray,
                start_spread_s: float = 0.0, seed: int = 0) -> RequestStream:
    """``requests`` requests from ``clients`` clients in a closed loop; the clients' first requests
    go out evenly over ``start_spread_s`` seconds (client i at i / clients of it), all at once at 0;
    ``seed`` as RequestStream.seed."""
    if clients < 1:
        raise SpecError("--concurrency", clients, "must be at least 1")
    _count(requests)
    n = min(clients, requests)
    first = np.arange(n) / n * start_spread_s if start_spread_s > 0 else None
    return RequestStream(arrivals=Arrivals.CLOSED_LOOP, isl=isl, osl=osl, clients=n, first_send_s=first, seed=seed)


def poisson(rate_per_s: float, requests: int, isl: np.ndarray, osl: np.ndarray,
            rng: np.random.Generator) -> RequestStream:
    """Requests sent at exponential gaps of mean 1 / rate, the first at time 0."""
    if not rate_per_s > 0:
        raise SpecError("--request-rate", rate_per_s, "must be above 0 requests per second")
    _count(requests)
    gaps = rng.exponential(1.0 / rate_per_s, size=requests)
    gaps[0] = 0.0
    return RequestStream(arrivals=Arrivals.POISSON, isl=isl, osl=osl, send_s=np.cumsum(gaps))


def workload_stream(workload, instances: int, requests: int, rng: np.random.Generator,
                    lengths: LengthDist | None = None, cv: float = 0.5) -> tuple[RequestStream, str]:
    """The requests one of ``instances`` instances serves under a problem's workload
    (specs.workload.WorkloadSpec), and how they arrive in words: a closed loop of its share of the
    concurrency, or Poisson arrivals at its share of the request rate. Lengths: uniform over the
    workload's range when it gives one ([2 mean - max, max]), else fixed at the mean, unless
    ``lengths`` says otherwise."""
    if not 1 <= requests <= MAX_REQUESTS:
        raise SpecError("--requests", requests, f"must be between 1 and {MAX_REQUESTS:,}")
    w = workload
    ranged = w.isl_max_tokens > w.isl_tokens or w.osl_max_tokens > w.osl_tokens
    dist = lengths or (LengthDist.UNIFORM if ranged else LengthDist.FIXED)
    isl = draw_lengths(dist, w.isl_tokens, 2 * w.isl_tokens - w.isl_max_tokens, w.isl_max_tokens, requests, rng, cv)
    osl = draw_lengths(dist, w.osl_tokens, 2 * w.osl_tokens - w.osl_max_tokens, w.osl_max_tokens, requests, rng, cv)
    if w.concurrency:
        clients = max(1, round(w.concurrency / instances))
        each = " per instance" if instances > 1 else ""
        return closed_loop(clients, requests, isl, osl), f"closed loop of {clients:,} clients{each}"
    if w.request_rate_per_s:
        rate = w.request_rate_per_s / instances
        each = " per instance" if instances > 1 else ""
        return poisson(rate, requests, isl, osl, rng), f"Poisson arrivals, {rate:g} requests/s{each}"
    raise SpecError("--concurrency", None, "missing; a simulation needs --concurrency C, --request-rate R or --trace FILE")


TRACE_FIELDS = ("arrival_s", "input_tokens", "output_tokens")


def _number(value: object, field: str) -> float:
    """A trace field's number (CSV gives text, JSON numbers)."""
    v = value
    if isinstance(value, str):
        try:
            v = float(value) if value.strip() else None
        except ValueError:
            v = None
    if not finite_number(v):
        raise SpecError(field, value, "must be a finite number")
    return float(v)


def read_trace(text: str, name: str) -> RequestStream:
    """A trace: CSV with a header naming arrival_s, input_tokens, output_tokens, or JSON Lines
    with those keys, one request per line (sorted by arrival on reading). Nothing else is read, so
    a column or key beyond those, or a CSV row with more or fewer values than its header, is refused."""
    rows: list[dict] = []
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SpecError(f"--trace {name} line {i}", line, f"is not JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise SpecError(f"--trace {name} line {i}", line, "must be a JSON object with " + ", ".join(TRACE_FIELDS))
            rows.append(row)
    else:
        reader = csv.DictReader(io.StringIO(text))
        missing = [f for f in TRACE_FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise SpecError(f"--trace {name}", ",".join(reader.fieldnames or []),
                            "the CSV header must name " + ", ".join(TRACE_FIELDS))
        other = [f for f in reader.fieldnames if f not in TRACE_FIELDS]
        if other:
            raise SpecError(f"--trace {name}", ",".join(other),
                            "not a trace column (a trace holds " + ", ".join(TRACE_FIELDS) + " only)")
        rows = list(reader)
        width = len(reader.fieldnames)
        for i, row in enumerate(rows, 1):
            # csv.DictReader files a row's values beyond the header under None and fills the
            # columns a short row lacks with None.
            if None in row or any(v is None for v in row.values()):
                raise SpecError(f"--trace {name} request {i}", ",".join(str(v) for k, v in row.items() if k),
                                f"must hold one value per header column ({width})")
    if not rows:
        raise SpecError(f"--trace {name}", "", "holds no requests")
    _count(len(rows))
    send, isl, osl = [], [], []
    for i, row in enumerate(rows, 1):
        for key in TRACE_FIELDS:
            if key not in row:
                raise SpecError(f"--trace {name} request {i}", row, f"has no {key}")
        other = sorted(str(k) for k in row if k not in TRACE_FIELDS)
        if other:
            raise SpecError(f"--trace {name} request {i}", ", ".join(other),
                            "not a trace field (a trace holds " + ", ".join(TRACE_FIELDS) + " only)")
        t = _number(row["arrival_s"], f"--trace {name} request {i} arrival_s")
        if t < 0:
            raise SpecError(f"--trace {name} request {i} arrival_s", row["arrival_s"], "must be 0 or later")
        send.append(t)
        for key, out, low in (("input_tokens", isl, 1), ("output_tokens", osl, 1)):
            v = _number(row[key], f"--trace {name} request {i} {key}")
            if v != int(v) or v < low:
                raise SpecError(f"--trace {name} request {i} {key}", row[key], f"must be a whole number of at least {low}")
            out.append(int(v))
    order = np.argsort(np.asarray(send), kind="stable")
    return RequestStream(arrivals=Arrivals.TRACE, isl=np.asarray(isl, dtype=np.int64)[order],
                         osl=np.asarray(osl, dtype=np.int64)[order], send_s=np.asarray(send)[order])
