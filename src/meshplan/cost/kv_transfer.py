"""Moving a prompt's KV cache from a prefill instance to a decode instance."""

from __future__ import annotations

from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.memory import kv_bytes_of_sequence


def kv_transfer_s(ci: CostInputs, par_prefill: Par):
    """Moving one prompt's KV cache from a prefill to a decode instance over the NICs of the
    GPUs that hold it (its tp ranks in every stage): KV bytes of the prompt / (tp * pp * NIC)."""
    w = ci.problem.workload
    return kv_bytes_of_sequence(ci, w.isl_tokens) / (ci.inter_bw * par_prefill.tp * par_prefill.pp) + ci.inter_lat
