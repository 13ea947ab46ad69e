"""How many requests a rank can hold: KV memory and the engine's batch limit."""

from __future__ import annotations

import numpy as np

from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.phase import max_sequences_per_rank


def kv_context(ci: CostInputs) -> tuple[float, float]:
    """(tokens held per running sequence, extra room for one longest sequence): the whole
    length when the engine reserves it at admission (TensorRT-LLM), else the mean occupancy
    (prompt plus half the output) with room for one longest sequence (vLLM, SGLang)."""
    w = ci.workload
    if ci.kv_reserve_full:
        return w.max_context_tokens, 0.0
    return w.decode_context_tokens, w.max_context_tokens - w.decode_context_tokens


def decode_capacity(ci: CostInputs, par: Par):
    """Most sequences per attention-dp rank per micro-batch: KV memory and the engine's batch
    limit (max_batch_size / max_running_requests / max_num_seqs, shared by the pp micro-batches)."""
    ctx, extra = kv_context(ci)
    q = 1.0 + ci.spec_k  # positions a decoding sequence runs per pass (K + 1 when verifying drafts)
    fits = max_sequences_per_rank(ci, par, ctx, tokens_per_seq=q, extra_context=extra, logit_rows_per_seq=q)
    return np.minimum(fits, np.floor(ci.max_batch / par.pp))
