"""One iteration of an engine: a forward pass and the host work around it.

Kernels are launched one by one unless the pass is replayed from a CUDA graph (pure decode up to
the captured batch; passes with prefill too where the engine graphs them), and the CPU's
scheduling work per iteration overlaps the GPU only under an overlap scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meshplan.cost.attention import Work
from meshplan.cost.floats import Floats
from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.phase import Forward, forward
from meshplan.cost.speculative import draft_cost, verify_work

@dataclass(frozen=True, kw_only=True, slots=True)
class Iteration:
    """One iteration of one micro-batch (arrays over candidates)."""

    gpu_s: Floats
    """Slowest pipeline stage's GPU time for the pass."""
    launch_s: Floats
    """CPU time launching its kernels (one graph launch when replayed from a CUDA graph)."""
    host_s: Floats
    """CPU scheduling time per iteration."""
    pass_s: Floats
    """GPU busy time of one stage for the pass: max(gpu, launches)."""
    exposed_s: Floats
    """Host time per iteration that the GPU waits for (all of the CPU time without the overlap
    scheduler, plus the gap it cannot hide)."""
    cycle_s: Floats
    """Time between two iterations of the same micro-batch: with pp stages the pass goes through
    every stage and back to the host before the next one starts."""
    forward: Forward
    draft_s: Floats = 0.0
    """Speculative decoding: GPU time of the draft's passes, in gpu_s and pass_s, which run once
    per pass on the last stage (0 without speculation)."""


def overlapped(ci: CostInputs, par: Par):
    """Whether the overlap scheduler runs for this layout (some engines turn it off under pp)."""
    e = ci.engine
    return e.overlap_scheduler & ((par.pp <= 1) | e.overlap_with_pp)


def graph_limit(ci: CostInputs, par: Par):
    """Largest batch per rank the engine replays from a CUDA graph, for this tp."""
    return np.where(par.tp >= 4, ci.graph_max_batch_tp4, ci.graph_max_batch)


def iteration(ci: CostInputs, par: Par, w: Work, graphed) -> Iteration:
    """GPU time of the pass and the host around it.

    Kernels outside a graph cost the CPU kernel_launch_s each, and the GPU cannot run ahead of
    their launch: max(gpu, launches). Under the overlap scheduler the CPU prepares iteration n+1
    while the GPU runs n: max(gpu, launches + host CPU); without it the host CPU time adds. Either
    way host_gap_s stays. With pp stages a micro-batch's next pass starts after all stages and its
    host work: cycle = pp x stage time (+ host CPU when pp disables the overlap scheduler).

    With speculative decoding the pass verifies K draft tokens per decoding sequence and the draft's
    K passes follow it (cost.speculative); one iteration then yields tau tokens per sequence. The draft
    runs once per cycle, on the last stage."""
    w = verify_work(ci, par, w)
    fwd = forward(ci, par, w)
    draft_s, draft_kernels = draft_cost(ci, par, w)
    gpu = fwd.stage_s + draft_s
    launch = np.where(graphed, ci.kernel_launch_s, (fwd.stage_kernels + draft_kernels) * ci.kernel_launch_s)
    host = ci.host_cpu_s + ci.host_cpu_per_request_s * (np.asarray(w.decode_seqs) + np.asarray(w.prefill_seqs))
    overlap = overlapped(ci, par)
    busy = np.maximum(gpu, launch)
    exposed = np.where(overlap, 0.0, host) + ci.host_gap_s
    single = np.where(overlap, np.maximum(gpu, launch + host), busy + host) + ci.host_gap_s
    # The draft runs once per cycle, on the last stage only.
    cycle = np.where(par.pp > 1, par.pp * busy - (par.pp - 1) * draft_s + exposed, single)
    return Iteration(gpu_s=gpu, launch_s=launch, host_s=host, pass_s=busy, exposed_s=exposed, cycle_s=cycle,
                     forward=fwd, draft_s=draft_s)


def prefill_budget(ci: CostInputs, par: Par):
    """Prompt tokens one prefill iteration may carry per attention-dp rank."""
    e = ci.engine
    budget = ci.token_budget / np.where(e.budget_split_over_attention_dp, par.dp, 1.0)
    if not ci.mixed and e.prefill_batch_tokens:
        budget = np.minimum(budget, e.prefill_batch_tokens)
    return np.maximum(budget, 1.0)
