"""One forward pass per pipeline stage, and the memory a layout needs.

A pass carries a ``Work`` (cost.attention): decode tokens and prefill tokens of one
attention-dp rank, and the tokens all ranks of the stage send into the MoE layers. The stage time
is the sum of its layers' operators (each a smooth roofline with kernel floors), for the slowest
stage; cost.iteration adds the host around a pass, and cost.serving and cost.closed_loop turn
iterations into TTFT, TPOT and throughput.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meshplan.cost.attention import Work
from meshplan.cost.draft import draft_kv_per_sequence, draft_weight_bytes
from meshplan.cost.floats import Floats
from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par, attention_block, dense_ffn_ops, embed_ops, head_ops, moe_ops, pp_send
from meshplan.cost.memory import activation_bytes, kv_per_sequence_stage, stage_weights
from meshplan.cost.roofline import OpCost, OpKind
from meshplan.cost.stages import max_over_stages


@dataclass(frozen=True, kw_only=True, slots=True)
class Forward:
    """Per-layer operators and the slowest stage's time for one forward pass."""

    dense_layer: list[OpCost]
    moe_layer: list[OpCost]
    embed: list[OpCost]
    head: list[OpCost]
    pp: OpCost
    dense_layer_s: Floats
    moe_layer_s: Floats
    stage_s: Floats
    """Time of the slowest pipeline stage (seconds)."""
    stage_kernels: Floats
    """Kernels launched in the pass by the stage that launches the most (what an iteration outside a
    CUDA graph pays the CPU for); not necessarily the stage that sets stage_s."""


def _sum(ops: list[OpCost], attr: str = "time_s"):
    return sum(getattr(op, attr) for op in ops)


def layer_time(ops: list[OpCost], half: list[OpCost] | None, overlap: float):
    """Sum of operator times; with two-batch overlap, two half-size micro-batches run one after
    the other, each paying its own kernels, and ``overlap`` of their communication hides under the
    other's compute (never more than that compute): C + M - min(overlap * M, C) with C and M the
    compute and communication of both halves (DeepSeek-V3 technical report 3.4; SGLang's
    measured -27% at 32 tokens per GPU and +25-35% at 256 follow from the floors)."""
    if half is None:
        return _sum(ops)
    comp = 2.0 * sum(op.time_s for op in half if op.kind is OpKind.COMPUTE)
    comm = 2.0 * sum(op.time_s for op in half if op.kind is OpKind.COMM)
    return comp + comm - np.minimum(overlap * comm, comp)


def _halve(w: Work) -> Work:
    h = lambda x: np.asarray(x, dtype=float) / 2.0  # noqa: E731
    return Work(decode_seqs=h(w.decode_seqs), decode_context=w.decode_context, prefill_tokens=h(w.prefill_tokens),
                prefill_seqs=h(w.prefill_seqs), prefill_attended=w.prefill_attended, moe_tokens=h(w.moe_tokens),
                decode_queries=w.decode_queries)


def forward(ci: CostInputs, par: Par, w: Work) -> Forward:
    """Every operator of one pass of ``w`` and the slowest stage's time."""
    ovh = ci.kernel_floor_s

    def layers(work: Work):
        attn = attention_block(ci, par, work, ovh)
        dense = attn + dense_ffn_ops(ci, par, work.tokens, ovh)
        return dense, attn + (moe_ops(ci, par, work, ovh) if ci.num_experts else [])

    dense, moe = layers(w)
    d_half = m_half = None
    if ci.two_batch_overlap:
        d_half, m_half = layers(_halve(w))
    t_dense = layer_time(dense, d_half, ci.tbo_overlap_share) if ci.ffn_size else 0.0
    t_moe = layer_time(moe, m_half, ci.tbo_overlap_share) if ci.num_experts else 0.0
    k_dense, k_moe = _sum(dense, "kernels"), _sum(moe, "kernels")
    embed, head = embed_ops(ci, par, w.tokens, ovh), head_ops(ci, par, w.head_rows, ovh)
    t_embed, t_head = _sum(embed), _sum(head)
    send = pp_send(ci, par, w.tokens, par.gpus_per_instance)

    def stage(nd, nm, first, last):
        return nd * t_dense + nm * t_moe + first * t_embed + last * t_head + send.time_s

    def kernels(nd, nm, first, last):
        return nd * k_dense + nm * k_moe + first * _sum(embed, "kernels") + last * _sum(head, "kernels")

    return Forward(dense_layer=dense, moe_layer=moe, embed=embed, head=head, pp=send,
                   dense_layer_s=t_dense, moe_layer_s=t_moe, stage_s=max_over_stages(ci.layer_kinds, par.pp, stage),
                   stage_kernels=max_over_stages(ci.layer_kinds, par.pp, kernels))


@dataclass(frozen=True, kw_only=True, slots=True)
class Memory:
    """Bytes per GPU by part, for the fullest pipeline stage."""

    weights: Floats
    kv_cache: Floats
    activations: Floats
    reserve: float
    capacity: float
    usable: Floats
    """usable_bytes with the weights of the fullest stage."""

    @property
    def total(self):
        return self.weights + self.kv_cache + self.activations + self.reserve


def usable_bytes(ci: CostInputs, weights):
    """Memory per GPU an instance may fill, with ``weights`` bytes of weights on the GPU. With a
    memory fraction h of the whole (vLLM, SGLang): h x capacity. With h of what is free once the
    model is loaded (TensorRT-LLM, all of it KV cache): capacity - (1 - h) x (capacity -
    weights - reserve), which is the capacity itself when the model does not fit. Hand check:
    80 GiB, 60 GiB of weights, 2 GiB reserve, h = 0.9: 72 GiB of the whole, or 80 - 0.1 x 18 =
    78.2 GiB of the free."""
    if not ci.kv_of_free:
        return ci.usable_memory_bytes
    h = ci.usable_memory_bytes / ci.memory_bytes
    return ci.memory_bytes - (1.0 - h) * np.maximum(ci.memory_bytes - weights - ci.reserve_bytes, 0.0)


def memory(ci: CostInputs, par: Par, tokens, seqs, kv_seqs, context, extra_context: float = 0.0) -> Memory:
    """Memory per GPU: weights of its stage, KV of ``kv_seqs`` sequences of ``context`` tokens
    (plus ``extra_context`` tokens of room per micro-batch for one longest sequence) for its
    layers, activations of a pass of ``tokens`` tokens, and the runtime reserve. The stage with
    the largest total is reported."""
    act = activation_bytes(ci, par.tp, par.ep, par.etp, tokens, seqs)
    draft_w = draft_weight_bytes(ci, par.tp, par.ep, par.etp)  # speculative decoding's draft (cost.draft)

    def weights_of(nd, nm, first, last):
        return stage_weights(ci, par.tp, par.ep, par.etp, nd, nm, first, last).total + draft_w

    def kv_of(nd, nm, first, last):
        return (kv_seqs * (kv_per_sequence_stage(ci, par.tp, nd + nm, context)
                           + draft_kv_per_sequence(ci, par.tp, context))
                + par.pp * (kv_per_sequence_stage(ci, par.tp, nd + nm, extra_context)
                            + draft_kv_per_sequence(ci, par.tp, extra_context)))

    def total(nd, nm, first, last):
        return weights_of(nd, nm, first, last) + kv_of(nd, nm, first, last)

    # The fullest stage: report its weights and KV (the stage maximising their sum).
    w = max_over_stages(ci.layer_kinds, par.pp, weights_of)
    both = max_over_stages(ci.layer_kinds, par.pp, total)
    return Memory(weights=w, kv_cache=both - w, activations=act, reserve=ci.reserve_bytes,
                  capacity=ci.memory_bytes, usable=usable_bytes(ci, w))


def max_sequences_per_rank(ci: CostInputs, par: Par, context, tokens_per_seq: float = 1.0,
                           extra_context: float = 0.0, logit_rows_per_seq: float = 1.0):
    """Largest B (sequences per attention-dp rank per micro-batch) whose memory fits the usable
    share of the GPU: weights + reserve + pp * B * KV per sequence + activations(B) <= usable.
    Activations are linear in B, so B = floor(free / (pp * kv_seq + act_per_seq)). A verify pass
    of speculative decoding runs K + 1 tokens and logit rows per sequence (decode_capacity)."""
    act_per_seq = activation_bytes(ci, par.tp, par.ep, par.etp, tokens_per_seq, logit_rows_per_seq)
    draft_w = draft_weight_bytes(ci, par.tp, par.ep, par.etp)  # speculative decoding's draft (cost.draft)

    def b_max(nd, nm, first, last):
        weights = stage_weights(ci, par.tp, par.ep, par.etp, nd, nm, first, last).total + draft_w
        free = (usable_bytes(ci, weights) - ci.reserve_bytes - weights
                - par.pp * (kv_per_sequence_stage(ci, par.tp, nd + nm, extra_context)
                            + draft_kv_per_sequence(ci, par.tp, extra_context)))
        per_seq = (par.pp * (kv_per_sequence_stage(ci, par.tp, nd + nm, context)
                             + draft_kv_per_sequence(ci, par.tp, context)) + act_per_seq)
        return -np.floor(np.maximum(free, 0.0) / per_seq)

    return -max_over_stages(ci.layer_kinds, par.pp, b_max)
