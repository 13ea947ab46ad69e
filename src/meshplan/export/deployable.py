"""Whether a pool can run as exported: it breaks no rule of strategy.rules and one request of the
longest context fits each GPU's usable memory beside the weights. Export refuses a pool that
cannot (``meshplan export --force`` writes it with a warning at the top of every file)."""

from __future__ import annotations

import numpy as np

from meshplan.cost.capacity import decode_capacity
from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.phase import max_sequences_per_rank
from meshplan.export.common import context_tokens
from meshplan.plan.pools import Pool
from meshplan.specs.problem import Problem
from meshplan.specs.workload import PoolRole
from meshplan.strategy.rules import UNUSUAL, Rule, Violation, layout_violations


def blockers(problem: Problem, pool: Pool) -> list[Violation]:
    """What stops ``pool`` from running: broken rules (unusual placements aside) and memory."""
    lay = pool.layout
    found = [v for v in layout_violations(problem, lay) if v.rule not in UNUSUAL]
    ci = CostInputs.from_problem(problem)
    par = Par.of(lay.tp, lay.dp, lay.ep, lay.etp, lay.pp)
    w = problem.workload
    if pool.role is PoolRole.PREFILL:
        room = float(np.asarray(max_sequences_per_rank(ci, par, w.isl_max_tokens, tokens_per_seq=w.isl_max_tokens)))
        what = f"one prompt of {w.isl_max_tokens:,.0f} tokens"
    else:
        room = float(np.asarray(decode_capacity(ci, par)))
        what = f"one request of {w.max_context_tokens:,.0f} tokens"
    if room < 1:
        found.append(Violation(rule=Rule.MEMORY, message=(
            f"{lay.short}: the weights and {what} do not fit the usable "
            f"{problem.requirements.memory_headroom:.0%} of a {problem.gpu.name}'s memory"
            + (" left free once the model is loaded" if ci.kv_of_free else ""))))
        return found
    launch = context_tokens(problem)
    if launch > w.max_context_tokens and float(np.asarray(max_sequences_per_rank(ci, par, launch))) < 1:
        # Engines refuse to start when one sequence of the launch context does not fit (vLLM's
        # check of max_model_len against the KV cache at start-up).
        found.append(Violation(rule=Rule.MEMORY, message=(
            f"{lay.short}: one sequence of the model's {launch:,} tokens (max_position_embeddings, the launch "
            "context when the workload states no maximum) does not fit beside the weights; give the workload's "
            "longest request (isl_max / osl_max, or [min, max] ranges)")))
    return found
