"""Simulate one instance of a layout: its scheduler settings, step table and a request stream.

Everything here comes from owners elsewhere: the token budget, batch limit and overlap scheduler
from the engine profile (cost.iteration.prefill_budget, overlapped), the requests a rank can hold
from the memory model (cost.phase.max_sequences_per_rank, as cost.capacity reads it), iteration
times from the step model (step_table), overheads from the engine profile and the workload.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from meshplan.cost.capacity import kv_context
from meshplan.cost.inputs import CostInputs
from meshplan.cost.iteration import overlapped, prefill_budget
from meshplan.cost.kv_transfer import kv_link_bw
from meshplan.cost.layer import Par
from meshplan.cost.memory import kv_bytes_of_sequence
from meshplan.cost.phase import max_sequences_per_rank
from meshplan.errors import SpecError
from meshplan.simulate.engine import Policy
from meshplan.simulate.loop import Pool, Result, simulate_pools
from meshplan.simulate.requests import Arrivals, RequestStream
from meshplan.simulate.step_table import StepTable
from meshplan.specs.workload import PoolRole


def policy_for(ci: CostInputs, par: Par) -> Policy:
    """The scheduler of one attention-dp rank of one micro-batch."""
    ctx, extra = kv_context(ci)
    seqs = float(np.asarray(max_sequences_per_rank(ci, par, ctx, extra_context=extra)).max())
    if seqs < 1:
        layout = f"tp{int(np.max(par.tp))} dp{int(np.max(par.dp))} ep{int(np.max(par.ep))} pp{int(np.max(par.pp))}"
        raise SpecError("layout", layout, "cannot hold the model and one request in memory")
    running = int(max(np.floor(ci.max_batch / float(np.asarray(par.pp).max())), 1))
    timeout, batching = ci.engine.adp_balance or (0, 0)
    return Policy(recv_interval=ci.engine.recv_interval_iters, adp_timeout_iters=timeout, adp_batching_iters=batching,
                  mixed=bool(ci.mixed), chunked=bool(ci.engine.chunked_prefill),
                  budget=int(float(np.asarray(prefill_budget(ci, par)).max())), max_running=running,
                  kv_tokens=int(seqs * ctx + extra), reserve_full=bool(ci.kv_reserve_full),
                  acceptance=ci.spec_rates if ci.spec_k else ())


def _check_fits(pol: Policy, stream: RequestStream) -> None:
    field = "--trace" if stream.arrivals is Arrivals.TRACE else "workload"  # where the lengths came from
    longest = int(np.max(stream.isl + stream.osl))
    if pol.reserve_full and longest > pol.kv_tokens:
        raise SpecError(field, longest, f"a request of {longest:,} tokens does not fit the {pol.kv_tokens:,} "
                        "KV-cache tokens of one rank")
    if not pol.reserve_full and int(np.max(stream.isl)) + 1 > pol.kv_tokens:
        raise SpecError(field, int(np.max(stream.isl)), f"a prompt does not fit the {pol.kv_tokens:,} "
                        "KV-cache tokens of one rank")


def _pool(ci: CostInputs, par: Par, pol: Policy, stream: RequestStream, role: PoolRole, instances: int = 1) -> Pool:
    longest = int(np.max(stream.isl + stream.osl))
    top_prefill = pol.budget if pol.chunked else max(pol.budget, longest)
    table = StepTable.build(ci, par, max_decode=1 if role is PoolRole.PREFILL else pol.max_running,
                            max_prefill=top_prefill, min_context=float(np.min(stream.isl)),
                            max_context=float(longest), isl=float(np.mean(stream.isl)),
                            hit_rate=ci.workload.prefix_hit_rate)
    return Pool(role=role, table=table, policy=pol, dp=int(np.asarray(par.dp).max()),
                pp=int(np.asarray(par.pp).max()), instances=instances,
                overlap=bool(np.asarray(overlapped(ci, par)).max()))


def simulate_instance(ci: CostInputs, par: Par, stream: RequestStream, keep_spans: bool = False,
                      progress=None) -> Result:
    """Serve ``stream`` on one instance of layout ``par`` (scalar degrees)."""
    pol = policy_for(ci, par)
    _check_fits(pol, stream)
    return simulate_pools(stream, [_pool(ci, par, pol, stream, PoolRole.AGGREGATED)],
                          overhead_s=ci.request_overhead_s + ci.client_overhead_s, overhead_cv=ci.overhead_cv,
                          keep_spans=keep_spans, progress=progress, hit_rate=ci.workload.prefix_hit_rate)


def simulate_disaggregated(ci: CostInputs, prefill: Par, n_prefill: int, decode: Par, n_decode: int,
                           stream: RequestStream, keep_spans: bool = False, progress=None,
                           ci_prefill: CostInputs | None = None) -> Result:
    """Serve ``stream`` on n_prefill prefill instances and n_decode decode instances: a prompt's KV
    cache moves over the prefill instance's NICs (its tp x pp GPUs, as cost.kv_transfer times it).
    ``ci_prefill``: the prefill pool's inputs when it runs on another GPU (Problem.prefill_gpu); the
    transfer then runs at the slower side's NIC bandwidth."""
    ci_p = ci if ci_prefill is None else ci_prefill
    ci = ci.for_decode_pool()
    pol_p = replace(policy_for(ci_p, prefill), handoff=True)
    pol_d = policy_for(ci, decode)
    _check_fits(pol_d, stream)
    nics = float(np.asarray(prefill.tp).max() * np.asarray(prefill.pp).max())
    nic = kv_link_bw(ci_p, ci)

    def transfer_s(i: int) -> float:
        return float(kv_bytes_of_sequence(ci, float(stream.isl[i]))) / (nic * nics) + ci_p.inter_node_latency_s

    pools = [_pool(ci_p, prefill, pol_p, stream, PoolRole.PREFILL, n_prefill),
             _pool(ci, decode, pol_d, stream, PoolRole.DECODE, n_decode)]
    return simulate_pools(stream, pools, overhead_s=ci.request_overhead_s + ci.client_overhead_s,
                          overhead_cv=ci.overhead_cv, transfer_s=transfer_s, keep_spans=keep_spans, progress=progress,
                          hit_rate=ci.workload.prefix_hit_rate)
