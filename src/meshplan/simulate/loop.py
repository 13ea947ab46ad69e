"""The event loop: requests reach an instance, its lockstep groups iterate, clients send again.

An instance has pp micro-batch groups (each cycles through every stage: cost.iteration cycle_s)
of dp attention-dp ranks that run in lockstep: an iteration of a group takes as long as its busiest
rank's (step_table). A request goes to the rank with the fewest waiting and running requests (the
least-loaded balancing of vLLM's DP coordinator; ties to the lowest rank). With the overlap
scheduler the next iteration is formed while the current one runs, so a request that arrives
during iteration k joins iteration k + 2 at the earliest; without it, k + 1.

Events are ordered by (time, kind, sequence number), arrivals before iterations at equal times, so
a run is deterministic. Runs of identical pure-decode iterations (nothing waits that could be
admitted, no prompt in flight) are advanced together up to the next finish or arrival, at the
mean context over the run; each is still counted as its own iteration.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from meshplan.simulate.engine import Plan, Policy, Rank, Requests
from meshplan.simulate.requests import Arrivals, RequestStream
from meshplan.simulate.step_table import StepTable

ARRIVE, READY = 0, 1


@dataclass(frozen=True, kw_only=True, slots=True)
class Span:
    """Iterations of one group, for the trace: ``count`` identical ones from ``start_s``."""

    group: int
    start_s: float
    duration_s: float
    count: int
    decode_seqs: int
    prefill_tokens: int


@dataclass(kw_only=True, slots=True)
class Group:
    ranks: list[Rank]
    busy: bool = False
    last_start_s: float = 0.0


@dataclass(kw_only=True, slots=True)
class Result:
    """A finished simulation: per-request times and what the instance did."""

    requests: Requests
    spans: list[Span] = field(default_factory=list)
    iterations: int = 0
    busy_s: np.ndarray | None = None
    """Seconds each group spent iterating."""
    end_s: float = 0.0
    preemptions: int = 0


def simulate(stream: RequestStream, table: StepTable, policy: Policy, *, dp: int, pp: int, overlap: bool,
             overhead_s: float, keep_spans: bool = False) -> Result:
    """Serve ``stream`` on one instance (dp ranks x pp micro-batch groups) until every request
    has finished. ``overhead_s``: time from a request's send to the engine having it (front end,
    tokenization, the client's own)."""
    r = Requests.of(stream.isl, stream.osl)
    groups = [Group(ranks=[Rank() for _ in range(dp)]) for _ in range(pp)]
    slots = [(g, k) for k in range(dp) for g in range(pp)]
    heap: list[tuple] = []
    seq = 0

    def push(t: float, kind: int, payload: int) -> None:
        nonlocal seq
        heapq.heappush(heap, (t, kind, seq, payload))
        seq += 1

    def send(i: int, t: float) -> None:
        r.send_s[i] = t
        r.arrive_s[i] = t + overhead_s
        push(r.arrive_s[i], ARRIVE, i)

    next_request = 0
    if stream.arrivals is Arrivals.CLOSED_LOOP:
        for i in range(stream.clients):
            r.client[i] = i
            send(i, 0.0)
        next_request = stream.clients
    else:
        for i in range(stream.count):
            send(i, float(stream.send_s[i]))
        next_request = stream.count
    out = Result(requests=r, busy_s=np.zeros(pp))
    while heap:
        t, kind, _, payload = heapq.heappop(heap)
        if kind == ARRIVE:
            g, k = min(slots, key=lambda s: (groups[s[0]].ranks[s[1]].load, s[1], s[0]))
            groups[g].ranks[k].waiting.append(payload)
            if not groups[g].busy:
                groups[g].busy = True
                groups[g].last_start_s = t
                push(t, READY, g)
            continue
        grp = groups[payload]
        cutoff = grp.last_start_s if overlap else t
        plans = [rank.plan(r, policy, cutoff) for rank in grp.ranks]
        out.preemptions += sum(p.preempted for p in plans)
        if not any(p.decoding.size or p.chunks for p in plans):
            pending = [r.arrive_s[rank.waiting[0]] for rank in grp.ranks if rank.waiting]
            later = [a for a in pending if a > cutoff]
            if later:  # waiting for the overlap scheduler to take them in
                grp.last_start_s = t
                push(max(min(later), t), READY, payload)
            else:
                grp.busy = False
            continue
        steps = _steps(r, grp, plans, policy, cutoff, heap[0][0] if heap else math.inf, t, table)
        dt = max(_time(r, table, p, steps) for p in plans)
        end = t + dt * steps
        out.iterations += steps
        out.busy_s[payload] += dt * steps
        if keep_spans:
            out.spans.append(Span(group=payload, start_s=t, duration_s=dt, count=steps,
                                  decode_seqs=sum(int(p.decoding.size) for p in plans),
                                  prefill_tokens=sum(p.prefill_tokens for p in plans)))
        for rank, p in zip(grp.ranks, plans):
            for i in rank.finish(r, p, policy, end, steps):
                if stream.arrivals is Arrivals.CLOSED_LOOP and next_request < stream.count:
                    r.client[next_request] = r.client[i]
                    send(next_request, end)
                    next_request += 1
        grp.last_start_s = t
        push(end, READY, payload)
    out.end_s = float(np.nanmax(r.finish_s)) if r.finish_s.size else 0.0
    return out


def _time(r: Requests, table: StepTable, p: Plan, steps: int) -> float:
    n = int(p.decoding.size)
    ctx = float(np.mean(r.isl[p.decoding] + r.generated[p.decoding])) + (steps - 1) / 2.0 if n else 1.0
    return table.time_s(n, p.prefill_tokens, ctx)


def _steps(r: Requests, grp: Group, plans: list[Plan], policy: Policy, cutoff: float, next_event_s: float,
           t: float, table: StepTable) -> int:
    """How many identical pure-decode iterations can run from ``t`` before anything changes."""
    if any(p.chunks or p.admitted or p.preempted for p in plans):
        return 1
    if any(rank.waiting and r.arrive_s[rank.waiting[0]] > cutoff for rank in grp.ranks):
        return 1  # a request the overlap scheduler has not taken in yet
    left = min(int(np.min(r.osl[p.decoding] - r.generated[p.decoding])) for p in plans if p.decoding.size)
    if not policy.reserve_full:  # each step holds one more token per decoding request
        left = min([left] + [(policy.kv_tokens - rank.kv_used) // int(p.decoding.size)
                             for rank, p in zip(grp.ranks, plans) if p.decoding.size])
    dt = max(_time(r, table, p, 1) for p in plans)
    if math.isfinite(next_event_s):
        left = min(left, max(1, math.ceil((next_event_s - t) / max(dt, 1e-12))))
    return max(1, left)
