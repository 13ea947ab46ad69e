"""The event loop: requests reach an instance, its lockstep groups iterate, clients send again.

Disaggregated (``simulate_pools`` with a prefill and a decode pool): prompts go to the prefill
pool's ranks; a prefilled prompt leaves with its first token and its KV cache, which reaches the
least-loaded decode rank after the transfer time; there it waits for KV room and decodes. Its
first token reaches the client when that rank takes it in, at the start of the first iteration
that carries it: SGLang's decode server streams it from the batch it builds of the requests whose
KV cache has arrived (disaggregation/decode.py, process_batch_result_prebuilt), and vLLM's proxy
returns the decode instance's stream; the closed form likewise counts the transfer and a decode
iteration (cost.closed_loop.solve_disaggregated). TensorRT-LLM's disaggregated server
(serve/openai_disagg_server.py, merge_streaming_responses) has done both: earlier versions sent
the context server's first token on before the transfer, later ones stream only the generation
server's, as here.

An instance has pp micro-batch groups (each cycles through every stage: cost.iteration cycle_s)
of dp attention-dp ranks that run in lockstep: an iteration of a group takes as long as its busiest
rank's (step_table). A request goes to the rank with the fewest waiting and running requests (the
least-loaded balancing of vLLM's DP coordinator; ties to the lowest rank). With the overlap
scheduler the next iteration is formed while the current one runs, so a request that arrives
during iteration k joins iteration k + 2 at the earliest; without it, k + 1. With TensorRT-LLM's
attention-dp balancing (Policy.adp_timeout_iters) an aggregated group holds its new prompts until
every rank has one, or until the timeout's iterations since the last release have passed, then
batching-wait iterations more while every rank decodes (``_balance``). With SGLang's receive
interval (Policy.recv_interval) a group takes in new requests only every that many decode
iterations, at once after an iteration with prefill or when it has nothing to decode (``_receive``).

A request reaches the engine its overhead after its send (front end, tokenization, the client's
own): the mean the engine profile and workload give, drawn per request from a gamma law whose
coefficient of variation is CostAssumptions.overhead_cv (0: the mean for every request), from a
generator of its own seeded with the stream's seed (RequestStream.seed) and OVERHEAD_SEED.

Events are ordered by (time, kind, sequence number), arrivals before iterations at equal times, so
a run is deterministic. Runs of identical pure-decode iterations (nothing waits that could be
admitted, no prompt in flight) are advanced together up to the next finish, at the mean context
over the run, and applied when they end; a request that reaches the group meanwhile cuts the run
at the first iteration boundary after it (the later part is dropped and formed afresh). Each
iteration is still counted as its own.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from meshplan.simulate.engine import Plan, Policy, Rank, Requests
from meshplan.simulate.requests import Arrivals, RequestStream
from meshplan.simulate.step_table import StepTable
from meshplan.specs.workload import PoolRole

ARRIVE, HANDOFF, READY = 0, 1, 2
UNCAPPED = 1 << 30
"""No limit on a run of identical iterations (``_balance``, ``_receive``)."""
OVERHEAD_SEED = 1
"""Seeds the overhead draws with the stream's seed (their own generator: the request stream's
draws and the speculative acceptance draws do not depend on them, and a run is deterministic)."""


@dataclass(frozen=True, kw_only=True)
class Pool:
    """Instances of one layout with one role."""

    role: PoolRole
    table: object
    """Iteration times (step_table.StepTable, or a stand-in with its time_s)."""
    policy: Policy
    dp: int
    pp: int
    instances: int = 1
    overlap: bool = False


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
    pool: Pool
    ranks: list[Rank]
    busy: bool = False
    last_start_s: float = 0.0
    inflight: tuple | None = None
    """The iterations running now: (plans, start, seconds each, count, how attention-dp balancing
    held them: "wait", "batch" or ""); applied when they end."""
    version: int = 0
    """Bumped when a run of iterations is cut short: READY events of an older version are stale."""
    adp_wait: int = 0
    """Attention-dp balancing: iterations since the group last released its held prompts."""
    adp_batch: int = 0
    """Attention-dp balancing: iterations held since every rank had a prompt."""
    recv_count: int = 0
    """Receive interval: decode iterations since the group last took in new requests."""
    recv_s: float = 0.0
    """Receive interval: requests that reached the engine up to this time have been taken in."""
    took_prefill: bool = False
    """The last iteration carried prefill: the next one takes in new requests (SchedulerRecvSkipper)."""


@dataclass(kw_only=True, slots=True)
class Result:
    """A finished simulation: per-request times and what the instances did."""

    requests: Requests
    spans: list[Span] = field(default_factory=list)
    iterations: int = 0
    busy_s: np.ndarray | None = None
    """Seconds each group spent iterating."""
    roles: tuple[str, ...] = ()
    """Each group's pool role."""
    end_s: float = 0.0
    preemptions: int = 0


def simulate(stream: RequestStream, table, policy: Policy, *, dp: int, pp: int, overlap: bool,
             overhead_s: float, keep_spans: bool = False, hit_rate: float = 0.0, overhead_cv: float = 0.0) -> Result:
    """Serve ``stream`` on one aggregated instance (dp ranks x pp micro-batch groups) until every
    request has finished. ``overhead_s``: mean time from a request's send to the engine having it
    (front end, tokenization, the client's own), varying by ``overhead_cv`` (see the module doc);
    ``hit_rate``: share of each prompt in the prefix cache."""
    pool = Pool(role=PoolRole.AGGREGATED, table=table, policy=policy, dp=dp, pp=pp, overlap=overlap)
    return simulate_pools(stream, [pool], overhead_s=overhead_s, keep_spans=keep_spans, hit_rate=hit_rate,
                          overhead_cv=overhead_cv)


def overhead_draw(mean_s: float, cv: float, seed: int = 0) -> Callable[[], float]:
    """Each request's overhead in seconds: ``mean_s`` when ``cv`` is 0 (or the mean is), else a
    gamma draw with that mean and coefficient of variation (shape 1 / cv^2, scale mean x cv^2:
    mean shape x scale, variance shape x scale^2 = (cv x mean)^2), seeded with ``seed``."""
    if cv <= 0.0 or mean_s <= 0.0:
        return lambda: mean_s
    rng = np.random.default_rng([seed, OVERHEAD_SEED])
    shape, scale = 1.0 / (cv * cv), mean_s * cv * cv
    return lambda: float(rng.gamma(shape, scale))


def simulate_pools(stream: RequestStream, pools: list[Pool], *, overhead_s: float,
                   transfer_s: Callable[[int], float] | None = None, keep_spans: bool = False,
                   progress: Callable[[int, int], None] | None = None, hit_rate: float = 0.0,
                   overhead_cv: float = 0.0) -> Result:
    """Serve ``stream`` on pools of instances: one aggregated pool, or a prefill pool whose
    prompts, once prefilled, move their KV cache to the decode pool in ``transfer_s(request)``
    seconds (the first token arrives with it). ``progress(finished, total)`` is called each time
    another tenth of the requests has finished; ``hit_rate`` of every prompt is in the prefix cache;
    ``overhead_s`` and ``overhead_cv`` as in ``simulate``."""
    r = Requests.of(stream.isl, stream.osl, hit_rate)
    overhead = overhead_draw(overhead_s, overhead_cv, stream.seed)
    groups = [Group(pool=p, ranks=[Rank() for _ in range(p.dp)]) for p in pools
              for _ in range(p.instances * p.pp)]
    entry = [(g, k) for g, grp in enumerate(groups) if grp.pool.role is not PoolRole.DECODE for k in range(grp.pool.dp)]
    decode = [(g, k) for g, grp in enumerate(groups) if grp.pool.role is PoolRole.DECODE for k in range(grp.pool.dp)]
    heap: list[tuple] = []
    seq = 0

    def push(t: float, kind: int, payload: int) -> None:
        nonlocal seq
        heapq.heappush(heap, (t, kind, seq, payload))
        seq += 1

    def send(i: int, t: float) -> None:
        r.send_s[i] = t
        r.arrive_s[i] = t + overhead()
        push(r.arrive_s[i], ARRIVE, i)

    def enqueue(i: int, t: float, slots) -> None:
        g, k = min(slots, key=lambda s: (groups[s[0]].ranks[s[1]].load, s[1], s[0]))
        grp = groups[g]
        grp.ranks[k].waiting.append(i)
        if not grp.busy:
            grp.busy = True
            grp.last_start_s = t
            push(t, READY, (g, grp.version))
        elif grp.inflight is not None:  # a run of identical iterations stops at the first boundary after t
            plans, start, dt, steps, held = grp.inflight
            cut = max(1, math.ceil((t - start) / dt - 1e-9)) if dt > 0 else 1
            if cut < steps:
                grp.inflight = (plans, start, dt, cut, held)
                grp.version += 1
                push(start + dt * cut, READY, (g, grp.version))

    next_request = 0

    finished = 0
    tenth = max(stream.count // 10, 1)

    def done(i: int, end: float) -> None:
        nonlocal next_request, finished
        finished += 1
        if progress is not None and (finished % tenth == 0 or finished == stream.count):
            progress(finished, stream.count)
        if stream.arrivals is Arrivals.CLOSED_LOOP and next_request < stream.count:
            r.client[next_request] = r.client[i]
            send(next_request, end)
            next_request += 1

    if stream.arrivals is Arrivals.CLOSED_LOOP:
        for i in range(stream.clients):
            r.client[i] = i
            send(i, 0.0 if stream.first_send_s is None else float(stream.first_send_s[i]))
        next_request = stream.clients
    else:
        for i in range(stream.count):
            send(i, float(stream.send_s[i]))
        next_request = stream.count
    out = Result(requests=r, busy_s=np.zeros(len(groups)), roles=tuple(g.pool.role.value for g in groups))
    while heap:
        t, kind, _, payload = heapq.heappop(heap)
        if kind == ARRIVE:
            enqueue(payload, t, entry)
            continue
        if kind == HANDOFF:  # the KV cache and first token are at a decode instance, to be taken in
            r.arrive_s[payload] = t
            enqueue(payload, t, decode)
            continue
        g, version = payload
        grp = groups[g]
        if version != grp.version:
            continue  # superseded: the run of iterations was cut short
        pool = grp.pool
        if grp.inflight is not None:  # the iterations that end now
            plans, start, dt, steps, held = grp.inflight
            grp.inflight = None
            if held == "wait":
                grp.adp_wait += steps
            elif held == "batch":
                grp.adp_batch += steps
            grp.took_prefill = any(p.chunks for p in plans)
            if not grp.took_prefill:
                grp.recv_count += steps
            out.iterations += steps
            out.busy_s[g] += dt * steps
            if keep_spans:
                out.spans.append(Span(group=g, start_s=start, duration_s=dt, count=steps,
                                      decode_seqs=sum(int(p.decoding.size) for p in plans),
                                      prefill_tokens=sum(p.prefill_tokens for p in plans)))
            for rank, p in zip(grp.ranks, plans):
                for i in rank.finish(r, p, pool.policy, t, steps):
                    done(i, t)
                for i in rank.handed:
                    if r.generated[i] >= r.osl[i]:  # a one-token answer ends with its prefill
                        r.first_s[i] = r.finish_s[i] = t
                        done(i, t)
                    else:
                        push(t + transfer_s(i), HANDOFF, i)
                rank.handed.clear()
            grp.last_start_s = start + dt * (steps - 1)
        cutoff = grp.last_start_s if pool.overlap else t
        cutoff, gated, until_recv = _receive(grp, cutoff)
        held, most = _balance(r, grp, cutoff)
        plans = [rank.plan(r, pool.policy, -math.inf if held else cutoff) for rank in grp.ranks]
        if pool.role is PoolRole.DECODE:  # handed-off requests taken in: their first token goes out
            for p in plans:
                new = p.decoding[np.isnan(r.first_s[p.decoding])]
                r.first_s[new] = t
        out.preemptions += sum(p.preempted for p in plans)
        if not any(p.decoding.size or p.chunks for p in plans):
            pending = [r.arrive_s[rank.waiting[0]] for rank in grp.ranks if rank.waiting]
            later = [a for a in pending if a > cutoff]
            if later:  # waiting for the overlap scheduler to take them in
                grp.last_start_s = t
                push(max(min(later), t), READY, (g, grp.version))
            else:
                grp.busy = False
            continue
        steps = min(_steps(r, grp, plans, pool.policy, math.inf if gated else cutoff), most, until_recv)
        dt = max(_time(r, pool.table, p, steps) for p in plans)
        grp.inflight = (plans, t, dt, steps, held)
        push(t + dt * steps, READY, (g, grp.version))
    out.end_s = float(np.nanmax(r.finish_s)) if r.finish_s.size else 0.0
    return out


def _receive(grp: Group, cutoff: float) -> tuple[float, bool, int]:
    """(the latest arrival the group may take in now, whether its receive interval holds newer ones
    back, iterations until its next read). SGLang's SchedulerRecvSkipper: requests are read after an
    iteration with prefill, when nothing decodes, or once the decode iterations since the last read
    reach the interval, whether or not any came. The decode pool of a disaggregated deployment takes
    in handed-off requests as they come."""
    pol = grp.pool.policy
    if pol.recv_interval <= 1 or grp.pool.role is PoolRole.DECODE:
        return cutoff, False, UNCAPPED
    if grp.took_prefill or grp.recv_count >= pol.recv_interval or not any(rank.decoding for rank in grp.ranks):
        grp.recv_s, grp.recv_count = max(grp.recv_s, cutoff), 0
        return cutoff, False, pol.recv_interval
    return min(cutoff, grp.recv_s), True, pol.recv_interval - grp.recv_count


def _balance(r: Requests, grp: Group, cutoff: float) -> tuple[str, int]:
    """Whether TensorRT-LLM's attention-dp balancing holds the group's new prompts this iteration
    ("wait": not every rank has one it could schedule; "batch": every rank has one and waits for
    more; "": released) and for at most how many iterations; as pyexecutor _balance_adp_requests
    counts them, one per iteration, the wait counter running whether or not a prompt waits.
    Aggregated groups only: a rank with nothing to decode releases at once. Not modelled: the hold
    also pauses the later chunks of a prompt being prefilled in chunks (TensorRT-LLM's chunked
    prefill is off by default), and the batching counter is reset on every release."""
    pol = grp.pool.policy
    if not pol.adp_timeout_iters or grp.pool.role is not PoolRole.AGGREGATED or len(grp.ranks) < 2:
        return "", UNCAPPED
    has_prompt = [rank.has_prompt(r, pol, cutoff) for rank in grp.ranks]
    all_decode = all(rank.decoding for rank in grp.ranks)
    if all(has_prompt):  # released, after batching-wait iterations while every rank decodes
        grp.adp_wait = 0
        if all_decode and grp.adp_batch < pol.adp_batching_iters:
            return "batch", pol.adp_batching_iters - grp.adp_batch
        grp.adp_batch = 0
        return "", 1
    if not all_decode:  # a rank with nothing to decode: released at once
        grp.adp_wait = 0
        return "", UNCAPPED
    if grp.adp_wait + 1 >= pol.adp_timeout_iters:  # the timeout's iteration releases, and counting restarts
        grp.adp_wait = 0
        return "", 1
    return "wait", pol.adp_timeout_iters - 1 - grp.adp_wait


def _time(r: Requests, table: StepTable, p: Plan, steps: int) -> float:
    n = int(p.decoding.size)
    ctx = float(np.mean(r.isl[p.decoding] + r.generated[p.decoding])) + (steps - 1) / 2.0 if n else 1.0
    return table.time_s(n, p.prefill_tokens, ctx)


def _steps(r: Requests, grp: Group, plans: list[Plan], policy: Policy, cutoff: float) -> int:
    """How many identical pure-decode iterations can run before anything changes (a finish, or
    the KV cache filling); an arrival cuts the run later (see the module doc)."""
    if any(p.chunks or p.admitted or p.preempted for p in plans):
        return 1
    if any(rank.waiting and r.arrive_s[rank.waiting[0]] > cutoff for rank in grp.ranks):
        return 1  # a request the overlap scheduler has not taken in yet
    most = policy.most_tokens_per_step  # tokens a step may add per request (1 + K with speculation)
    left = min(int(np.min(r.osl[p.decoding] - r.generated[p.decoding])) for p in plans if p.decoding.size) // most
    if not policy.reserve_full:  # each step holds up to ``most`` more tokens per decoding request
        left = min([left] + [(policy.kv_tokens - rank.kv_used) // (most * int(p.decoding.size))
                             for rank, p in zip(grp.ranks, plans) if p.decoding.size])
    return max(1, left)
