"""One forward pass per stage, and the decode and prefill figures built from it.

Decode with pp stages keeps pp micro-batches in flight (one per stage), so every GPU is busy:
a token of one sequence needs pp stage-times (TPOT = pp * stage time) and the instance emits
dp * B tokens per stage time per micro-batch (vLLM/SGLang pipeline-parallel decode).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par, attention_ops, dense_ffn_ops, embed_ops, head_ops, moe_ops, pp_send
from meshplan.cost.memory import activation_bytes, kv_bytes_per_token_layer, kv_tokens_per_layer, stage_weights
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
    dense_layer_s: object
    moe_layer_s: object
    stage_s: object
    """Time of the slowest pipeline stage (seconds)."""


def _layer_time(ops: list[OpCost], half: list[OpCost] | None):
    """Sum of operator times; with two-batch overlap, two half-size micro-batches whose
    communication hides under the other's compute: 2 * max(compute, comm) of a half batch
    (DeepSeek-V3 technical report, section 3.4 / DeepSeek inference system overview)."""
    if half is None:
        return sum(op.time_s for op in ops)
    comp = sum(op.time_s for op in half if op.kind is OpKind.COMPUTE)
    comm = sum(op.time_s for op in half if op.kind is OpKind.COMM)
    return 2.0 * np.maximum(comp, comm)


def forward(ci: CostInputs, par: Par, T, B, S, decode: bool) -> Forward:
    """Build every operator for tokens T (per attention-dp rank), sequences B, context S."""
    ovh = ci.overhead_s * (ci.graph_factor if decode else 1.0)

    def layers(t, b):
        attn = attention_ops(ci, par, t, b, S, decode, ovh)
        return attn + dense_ffn_ops(ci, par, t, ovh), attn + (moe_ops(ci, par, t, ovh, decode) if ci.E else [])

    dense, moe = layers(T, B)
    d_half = m_half = None
    if ci.tbo:
        d_half, m_half = layers(np.asarray(T) / 2.0, np.asarray(B) / 2.0)
    t_dense = _layer_time(dense, d_half) if ci.F else 0.0
    t_moe = _layer_time(moe, m_half) if ci.E else 0.0
    embed, head = embed_ops(ci, par, T, ovh), head_ops(ci, par, B, ovh)
    t_embed = sum(op.time_s for op in embed)
    t_head = sum(op.time_s for op in head)
    gpi = par.pp * par.tp * par.dp
    send = pp_send(ci, par, T, gpi)

    def stage(nd, nm, first, last):
        return nd * t_dense + nm * t_moe + first * t_embed + last * t_head + send.time_s

    stage_s = max_over_stages(ci.layer_kinds, par.pp, stage)
    return Forward(dense_layer=dense, moe_layer=moe, embed=embed, head=head, pp=send,
                   dense_layer_s=t_dense, moe_layer_s=t_moe, stage_s=stage_s)


@dataclass(frozen=True, kw_only=True, slots=True)
class Memory:
    """Bytes per GPU by part, for the fullest pipeline stage."""

    weights: object
    kv_cache: object
    activations: object
    reserve: float
    capacity: float
    usable: float

    @property
    def total(self):
        return self.weights + self.kv_cache + self.activations + self.reserve


def kv_per_sequence_stage(ci: CostInputs, tp, n_layers, context):
    """KV bytes one sequence of ``context`` tokens holds on one GPU of a stage of n_layers."""
    return kv_tokens_per_layer(ci, context, n_layers) * kv_bytes_per_token_layer(ci, tp)


def memory(ci: CostInputs, par: Par, tokens, seqs, kv_seqs, context, extra_context: float = 0.0) -> Memory:
    """Memory per GPU: weights of its stage, KV of ``kv_seqs`` sequences of ``context`` tokens
    (plus ``extra_context`` tokens of room per micro-batch for one longest sequence) for its
    layers, activations of a pass of ``tokens`` tokens, and the runtime reserve. The stage with
    the largest total is reported."""
    act = activation_bytes(ci, par.tp, par.ep, par.etp, tokens, seqs)

    def weights_of(nd, nm, first, last):
        return stage_weights(ci, par.tp, par.ep, par.etp, nd, nm, first, last).total

    def kv_of(nd, nm, first, last):
        return (kv_seqs * kv_per_sequence_stage(ci, par.tp, nd + nm, context)
                + par.pp * kv_per_sequence_stage(ci, par.tp, nd + nm, extra_context))

    def total(nd, nm, first, last):
        return weights_of(nd, nm, first, last) + kv_of(nd, nm, first, last)

    # The fullest stage: report its weights and KV (the stage maximising their sum).
    w = max_over_stages(ci.layer_kinds, par.pp, weights_of)
    both = max_over_stages(ci.layer_kinds, par.pp, total)
    return Memory(weights=w, kv_cache=both - w, activations=act, reserve=ci.reserve,
                  capacity=ci.memory_capacity, usable=ci.usable_memory)


def max_sequences_per_rank(ci: CostInputs, par: Par, context, tokens_per_seq: float = 1.0,
                           extra_context: float = 0.0):
    """Largest B (sequences per attention-dp rank per micro-batch) whose memory fits the usable
    share of the GPU: weights + reserve + pp * B * KV per sequence + activations(B) <= usable.
    Activations are linear in B, so B = floor(free / (pp * kv_seq + act_per_seq))."""
    act_per_seq = activation_bytes(ci, par.tp, par.ep, par.etp, tokens_per_seq, 1.0)

    def b_max(nd, nm, first, last):
        free = (ci.usable_memory - ci.reserve - stage_weights(ci, par.tp, par.ep, par.etp, nd, nm, first, last).total
                - par.pp * kv_per_sequence_stage(ci, par.tp, nd + nm, extra_context))
        per_seq = par.pp * kv_per_sequence_stage(ci, par.tp, nd + nm, context) + act_per_seq
        return -np.floor(np.maximum(free, 0.0) / per_seq)

    return -max_over_stages(ci.layer_kinds, par.pp, b_max)
