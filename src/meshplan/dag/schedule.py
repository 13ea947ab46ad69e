"""One iteration on every GPU: the expanded DAG scheduled on per-GPU streams (meshplan simulate --step).

Each GPU has a compute stream and a communication stream. A node starts when its inputs are done
and, on every GPU it runs on, its stream is free, so a collective starts when the last of its GPUs
is ready and holds them all until it ends (list scheduling, nodes taken in the order they become
ready). A node lasts its cost-model time per layer (Node.time_s) with two exceptions:
- Sampled routing (``routing``): the closed form charges every expert GEMM at the busiest
  expert-parallel rank's load (cost.imbalance.busiest_rank_load); here each GPU's expert node lasts
  in proportion to the tokens a sampled routing sends its experts, so GPUs differ and the
  collectives after them wait for the slowest.
- Two-batch overlap (``two_batches``): the batch is split in two DAGs at half the batch each,
  scheduled together, so one micro-batch's communication can run while the other computes.
With one batch, no sampling and one stream the schedule's length is the sum of the node times on
the longest path, which for a symmetric layout is the closed form's forward pass.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from meshplan.cost.imbalance import busiest_rank_load
from meshplan.dag.nodes import Dag, NodeKind
from meshplan.specs.problem import Problem
from meshplan.specs.workload import Phase
from meshplan.strategy.layout import Layout
from meshplan.strategy.mesh import expert_slots_per_rank, experts_of

COMPUTE, COMM = 0, 1
"""Stream ids per GPU (the Chrome trace's thread ids)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Routing:
    """A sampled routing: routed tokens per GPU's experts over their mean, and the closed form's
    busiest-rank factor the DAG's expert times already carry."""

    load_over_mean: dict[int, float]
    closed_form_factor: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    node: str
    op: str
    stream: int
    gpus: tuple[int, ...]
    start_s: float
    end_s: float
    batch: int


@dataclass(frozen=True, kw_only=True, slots=True)
class StepSchedule:
    makespan_s: float
    events: tuple[Event, ...]
    busy_s: dict[int, tuple[float, float]]
    """Per GPU: (compute, communication) seconds busy."""


def sample_counts(tokens: int, top_k: int, num_experts: int, cv: float, rng: np.random.Generator) -> np.ndarray:
    """Assignments per expert when ``tokens`` tokens each pick ``top_k`` distinct experts by
    popularity (lognormal with coefficient of variation ``cv``, the closed form's expert_load_cv;
    uniform at 0)."""
    if cv > 0:
        sigma = np.sqrt(np.log(1.0 + cv * cv))
        pop = rng.lognormal(-sigma * sigma / 2.0, sigma, num_experts)
    else:
        pop = np.ones(num_experts)
    pop = pop / pop.sum()
    counts = np.zeros(num_experts)
    # top_k distinct experts per token: Gumbel top-k over log-popularity.
    for lo in range(0, tokens, 4096):
        n = min(4096, tokens - lo)
        keys = np.log(pop)[None, :] + rng.gumbel(size=(n, num_experts))
        picked = np.argpartition(-keys, top_k - 1, axis=1)[:, :top_k]
        counts += np.bincount(picked.ravel(), minlength=num_experts)
    return counts


def slot_loads(counts: np.ndarray, slots: dict[int, range], num_slots: int) -> dict[int, float]:
    """Assignments per GPU when GPU g hosts expert slots ``slots[g]`` of ``num_slots`` and slot s
    holds logical expert s mod E (redundant slots replicate the first experts), replicas sharing
    their expert's tokens evenly."""
    e = len(counts)
    replicas = np.bincount(np.arange(num_slots) % e, minlength=e)
    per_slot = counts[np.arange(num_slots) % e] / replicas[np.arange(num_slots) % e]
    return {g: float(per_slot[r.start:r.stop].sum()) for g, r in slots.items()}


def routing_for(problem: Problem, lay: Layout, phase: Phase, B: float, rng: np.random.Generator,
                offset: int = 0) -> Routing | None:
    """A sampled routing of a pass of B per attention-dp rank, per instance and stage, or None
    (dense model, or no expert parallelism: every GPU computes every expert). Its closed-form factor
    is the one the cost model charges (cost.layer.moe_ops: busiest_rank_load over the assignments).
    GPU ids start at ``offset`` (a disaggregated plan's decode pool)."""
    m, a = problem.model, problem.assumptions
    if not m.is_moe or lay.ep == 1:
        return None
    per_rank = expert_slots_per_rank(m.num_experts, a.redundant_experts, lay.ep)
    tokens = int(round(B * lay.dp * (1 if Phase(phase) is Phase.DECODE else problem.workload.computed_prompt_tokens)))
    cv = a.expert_load_cv * (a.eplb_residual if a.redundant_experts else 1.0)
    factor = float(busiest_rank_load(tokens * m.top_k, lay.ep, m.num_experts, cv))
    loads: dict[int, float] = {}
    for inst in range(lay.instances):
        for stage in range(lay.pp):
            first = offset + (inst * lay.pp + stage) * lay.gpus_per_stage
            # Slot s of the ep ranks holds logical expert s mod E; replicas share its tokens evenly.
            slots = {g: experts_of(g, lay, m.num_experts, redundant=a.redundant_experts, offset=offset)
                     for g in range(first, first + lay.gpus_per_stage)}
            counts = sample_counts(tokens, m.top_k, m.num_experts, cv, rng)
            mean = tokens * m.top_k / lay.ep
            loads |= {g: v / mean for g, v in slot_loads(counts, slots, per_rank * lay.ep).items()}
    return Routing(load_over_mean=loads, closed_form_factor=factor)


def schedule(dags: list[Dag], *, routing: Routing | None = None, streams: int = 2) -> StepSchedule:
    """Every node of ``dags`` (one per micro-batch, sharing GPUs) on its GPUs' streams; ``streams``
    1 puts communication on the compute stream (nothing overlaps)."""
    duration: list[float] = []
    nodes, preds, succs = [], [], []
    index: dict[tuple[int, str], int] = {}
    for b, dag in enumerate(dags):
        for n in dag.nodes:
            index[(b, n.id)] = len(nodes)
            nodes.append((b, n))
            preds.append(0)
            succs.append([])
        for e in dag.edges:
            s, d = index[(b, e.src)], index[(b, e.dst)]
            succs[s].append(d)
            preds[d] += 1
    for b, n in nodes:
        t = n.time_s
        if routing is not None and n.op == "experts" and len(n.gpus) == 1:
            t = t * routing.load_over_mean.get(n.gpus[0], 1.0) / routing.closed_form_factor
        duration.append(t)
    ready_at = [0.0] * len(nodes)
    free: dict[tuple[int, int], float] = defaultdict(float)
    busy: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    heap = [(0.0, i) for i, p in enumerate(preds) if p == 0]
    heapq.heapify(heap)
    events, end = [], 0.0
    while heap:
        ready, i = heapq.heappop(heap)
        b, n = nodes[i]
        stream = COMM if (n.kind is NodeKind.COMM and streams > 1) else COMPUTE
        start = max([ready] + [free[(g, stream)] for g in n.gpus])
        finish = start + duration[i]
        for g in n.gpus:
            free[(g, stream)] = finish
            busy[g][1 if n.kind is NodeKind.COMM else 0] += duration[i]
        if duration[i] > 0:
            events.append(Event(node=n.id, op=n.op, stream=stream, gpus=n.gpus, start_s=start, end_s=finish, batch=b))
        end = max(end, finish)
        for j in succs[i]:
            ready_at[j] = max(ready_at[j], finish)
            preds[j] -= 1
            if preds[j] == 0:
                heapq.heappush(heap, (ready_at[j], j))
    return StepSchedule(makespan_s=end, events=tuple(events), busy_s={g: (v[0], v[1]) for g, v in busy.items()})


def chrome_trace(s: StepSchedule) -> dict:
    """The schedule as a Chrome trace (Perfetto): a process per GPU, a thread per stream."""
    out = []
    for g in sorted(s.busy_s):
        out.append({"name": "process_name", "ph": "M", "pid": g, "args": {"name": f"GPU {g}"}})
        for tid, name in ((COMPUTE, "compute"), (COMM, "communication")):
            out.append({"name": "thread_name", "ph": "M", "pid": g, "tid": tid, "args": {"name": name}})
    for e in s.events:
        for g in e.gpus:
            out.append({"name": e.op, "ph": "X", "pid": g, "tid": e.stream, "ts": e.start_s * 1e6,
                        "dur": (e.end_s - e.start_s) * 1e6, "args": {"node": e.node, "micro_batch": e.batch}})
    return {"traceEvents": out, "displayTimeUnit": "ms"}
