"""Moving a prompt's KV cache from a prefill instance to a decode instance."""

from __future__ import annotations

from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.memory import kv_bytes_of_sequence


def kv_transfer_s(ci: CostInputs, par_prefill: Par, nic_bw: float | None = None):
    """Moving one prompt's KV cache from a prefill to a decode instance over the NICs of the
    GPUs that hold it (its tp ranks in every stage): KV bytes of the prompt / (tp * pp * NIC).
    ``nic_bw``: the NIC bandwidth per GPU the transfer gets when the pools' GPUs differ (the slower
    of the two, kv_link_bw); None: ``ci``'s own."""
    w = ci.workload
    bw = ci.inter_node_bytes_per_s if nic_bw is None else nic_bw
    return kv_bytes_of_sequence(ci, w.isl_tokens) / (bw * par_prefill.tp * par_prefill.pp) + ci.inter_node_latency_s


def kv_link_bw(ci_prefill: CostInputs, ci_decode: CostInputs) -> float:
    """NIC bandwidth per GPU between a prefill and a decode pool: the slower side's (a transfer
    runs at the rate both ends sustain)."""
    return min(ci_prefill.inter_node_bytes_per_s, ci_decode.inter_node_bytes_per_s)
