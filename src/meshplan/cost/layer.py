"""Operators of one layer on one GPU, with their FLOPs, bytes and time (DESIGN.md section 4).

Inputs: ``par`` (tp, dp, ep, etp arrays) and the pass's ``Work`` (cost.attention): T tokens of
this attention-dp rank (decode and prefill together) and the tokens entering the MoE layers
across the stage's attention-dp ranks, which run in lockstep.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meshplan.cost import kernels as K
from meshplan.cost.attention import Work, attention_ops
from meshplan.cost.floats import Floats
from meshplan.cost.imbalance import active_expert_fraction, busiest_rank_load, distinct_remote_ranks
from meshplan.cost.inputs import CostInputs
from meshplan.cost.roofline import Collective, OpCost, OpKind, comm_op, compute_op, ring_factor
from meshplan.specs.engine import A2ABackend
from meshplan.strategy.layout import instance_gpus
from meshplan.strategy.mesh import expert_slots_per_rank
from meshplan.strategy.placement import contiguous_group_crosses, pp_crosses, stage_on_node_fraction


@dataclass(frozen=True, kw_only=True, slots=True)
class Par:
    """Degrees as float arrays (broadcastable)."""

    tp: Floats
    dp: Floats
    ep: Floats
    etp: Floats
    pp: Floats

    @property
    def gpus_per_instance(self):
        return instance_gpus(self.tp, self.dp, self.pp)

    @staticmethod
    def of(tp, dp, ep, etp, pp) -> "Par":
        f = lambda x: np.asarray(x, dtype=float)  # noqa: E731
        return Par(tp=f(tp), dp=f(dp), ep=f(ep), etp=f(etp), pp=f(pp))


def _tier(ci: CostInputs, crosses):
    bw = np.where(crosses, ci.inter_node_bytes_per_s, ci.intra_node_bytes_per_s)
    return bw, np.where(crosses, ci.inter_node_latency_s, ci.intra_node_latency_s)


def ring_tier(ci: CostInputs, size):
    """(bandwidth, latency) of a ring collective (all-reduce, all-gather, reduce-scatter) over a
    contiguous group of ``size`` ranks. Inside a node: NVLink. Across nodes NCCL runs one ring per
    NIC, each leaving the node through a different GPU's NIC, so the rings share the node's NICs
    side by side: bus bandwidth = GPUs per node x NIC bandwidth per GPU, at most NVLink's
    (nccl-tests measure it so: NVIDIA/nccl issue #495, 8 x 100 Gb/s NICs per A100 node give about
    600 Gb/s of all-reduce bus bandwidth between two nodes, "roughly matching our expectation";
    issue #1168, bus bandwidth doubles from 4 to 8 GPUs and NICs per node). Point-to-point sends
    and all-to-alls keep one NIC per GPU (``_tier``)."""
    crosses = contiguous_group_crosses(size, ci.nvlink_domain_gpus)
    across = np.minimum(ci.intra_node_bytes_per_s, ci.nvlink_domain_gpus * ci.inter_node_bytes_per_s)
    return np.where(crosses, across, ci.intra_node_bytes_per_s), np.where(crosses, ci.inter_node_latency_s, ci.intra_node_latency_s)


def tp_all_reduce(ci: CostInputs, par: Par, T, name: str) -> OpCost:
    """All-reduce of the [T, D] activations across the tp group (Megatron-LM: one after
    attention, one after the FFN; arXiv:1909.08053 section 3)."""
    bw, lat = ring_tier(ci, par.tp)
    return comm_op(name, ring_factor(par.tp, Collective.ALL_REDUCE) * T * ci.hidden_size * ci.act_bytes_per_value, par.tp > 1, bw, lat)


def attention_block(ci: CostInputs, par: Par, w: Work, ovh: float) -> list[OpCost]:
    """The attention operators (cost.attention) and the TP all-reduce after them."""
    return attention_ops(ci, par.tp, w, ovh) + [tp_all_reduce(ci, par, w.tokens, "tp_all_reduce_attn")]


def dense_ffn_ops(ci: CostInputs, par: Par, T, ovh: float) -> list[OpCost]:
    """Norm, FFN (gate/up, down), TP all-reduce."""
    params = ci.ffn_mats * ci.hidden_size * ci.ffn_size / par.tp
    return [
        compute_op("ffn_norm", 0.0, 2 * T * ci.hidden_size * ci.act_bytes_per_value, ci.other_flop_per_s,
                   ci.hbm_bytes_per_s, ovh, K.NORM, ci.roofline_sharpness),
        compute_op("dense_ffn", 2 * T * params,
                   params * ci.other_bytes_per_weight + T * (2 * ci.hidden_size + 3 * ci.ffn_size / par.tp) * ci.act_bytes_per_value,
                   ci.other_flop_per_s, ci.hbm_other_bytes_per_s, ovh, K.DENSE_FFN + 2 * ci.quant_other, ci.roofline_sharpness),
        tp_all_reduce(ci, par, T, "tp_all_reduce_ffn"),
    ]


def _a2a(ci: CostInputs, par: Par, name: str, tokens_sent, dtype_bytes, fan_out, decode, active) -> OpCost:
    """Dispatch or combine over the EP group's n = ep x etp GPUs (GPU s holds slice s mod etp of
    ep rank s div etp). ``fan_out``: etp on dispatch (every slice of an expert needs the token),
    1 on combine (after the etp reduce-scatter each slice returns 1/etp of the row).

    Prefill (DeepEP normal kernels, DeepSeek-V3 report section 3.2): a token goes once to each
    GPU holding a slice of any ep rank among its top-k, and crosses the network once per remote
    destination node, NVLink forwarding it there. Expected copies to other GPUs, per token:
    etp x ep(1-q) slices of chosen ranks less the sender's own GPU when its rank is chosen (1-q),
    q = (1-1/ep)^k: (n-1)(1-q) on dispatch, (n-1)(1-q)/etp on combine; the NIC carries
    (m-1)(1-(1-1/m)^k) copies for m nodes. Decode (DeepEP low-latency kernels): one copy per
    routed expert, no de-duplication: k(n-1)/ep on dispatch, k(n-1)/n on combine; with etp = 1
    both are the familiar k(ep-1)/ep. Copies to ranks on other nodes go over the NIC. NIC and
    NVLink run in parallel; the slower sets the time."""
    ep, g = par.ep, par.tp * par.dp
    n = ep * par.etp
    on_node = stage_on_node_fraction(g, ci.nvlink_domain_gpus)
    peers_on_node = np.maximum(on_node * ep - 1.0, 0.0)
    inter_share = np.where(ep > 1, 1.0 - peers_on_node / np.maximum(ep - 1.0, 1.0), 0.0)
    row = tokens_sent * ci.hidden_size * dtype_bytes
    unit = row * fan_out
    decode = np.asarray(decode)
    if decode.all():
        copies = ci.top_k * (n - 1.0) / n
        intra, inter = unit * copies * (1 - inter_share), unit * copies * inter_share
    else:
        nodes = np.maximum(1.0, np.ceil(g / ci.nvlink_domain_gpus))
        chosen = 1.0 - np.power(1.0 - 1.0 / ep, ci.top_k)  # P(a given ep rank holds one of the k)
        intra, inter = unit * (n - 1.0) * chosen / par.etp, row * distinct_remote_ranks(nodes, ci.top_k)
    t = np.maximum(intra / ci.intra_node_bytes_per_s, inter / ci.inter_node_bytes_per_s)
    lat = np.where(inter_share > 0, ci.inter_node_latency_s, ci.intra_node_latency_s)
    active = np.asarray(active) & (ep > 1)
    return OpCost(name=name, kind=OpKind.COMM, comm_bytes=np.where(active, intra + inter, 0.0),
                  time_s=np.where(active, lat + t, 0.0), kernels=np.where(active, 1.0, 0.0))


def moe_ops(ci: CostInputs, par: Par, w: Work, ovh: float) -> list[OpCost]:
    """Norm, router, token exchange, routed experts, combine, shared experts, TP all-reduce.

    The busiest expert-parallel rank sets the time: it gets ``busiest_rank_load`` times the mean
    of the stage's routed tokens, in its expert GEMMs and in the tokens it receives. The expert
    weights a rank reads are taken as those of its experts that the stage's tokens touch at the
    mean rate, an approximation: a popularity skew sends the busiest rank's excess to its popular
    experts, which are touched already; a random excess would touch a few more (about 13% more at
    48 tokens over 8 ranks of 32 DeepSeek experts, the spread of a binomial count), not counted.
    The dev set backs it: counting the excess as more experts read left the TPOT of its
    expert-parallel runs about 20% high where its expert-tensor-parallel runs of the same models
    (no excess) were within about 3% (dev-set TPOT median 12.1% -> 11.3% before refitting).
    Tokens reach the experts by the engine's exchange (EngineProfile.a2a_backend;
    a2a_backend_across_nodes when the group spans nodes): an all-to-all (each tp rank sends its
    1/tp share of its attention-dp rank's tokens to the ranks of their experts;
    DeepEP normal kernels in prefill, low-latency kernels in decode), or an all-gather of every
    attention-dp rank's tokens before the experts and a reduce-scatter after (SGLang without
    DeepEP, vLLM's allgather_reducescatter); with tp-only attention the tokens are already on every
    GPU and the TP all-reduce combines the experts' outputs."""
    a = ci.act_bytes_per_value
    T = w.tokens
    t_stage = np.asarray(w.moe_tokens, dtype=float)
    load = busiest_rank_load(t_stage * ci.top_k, par.ep, ci.num_experts, ci.expert_load_cv)
    t_exp = t_stage * ci.top_k / par.ep * load
    per_expert = ci.ffn_mats * ci.hidden_size * ci.expert_ffn_size / par.etp
    local = expert_slots_per_rank(ci.num_experts, ci.redundant_experts, par.ep)
    touched = local * active_expert_fraction(t_stage, ci.num_experts, ci.top_k)
    # Across nodes the launch configs switch to an all-to-all (EngineProfile.a2a_backend_across_nodes).
    across = contiguous_group_crosses(par.tp * par.dp, ci.nvlink_domain_gpus)
    gather_backend = np.where(across, ci.a2a_backend_across_nodes() is A2ABackend.ALLGATHER_REDUCESCATTER,
                              ci.a2a_backend() is A2ABackend.ALLGATHER_REDUCESCATTER)
    # Only attention-dp ranks hold different tokens; with tp-only attention every GPU has them all.
    a2a_active = ~np.asarray(gather_backend) & (par.ep > 1) & (par.dp > 1)
    gather_active = (par.dp > 1) & (np.asarray(gather_backend) | (par.ep == 1))
    decode = np.asarray(w.prefill_tokens) <= 0
    ops = [
        compute_op("ffn_norm", 0.0, 2 * T * ci.hidden_size * a, ci.other_flop_per_s, ci.hbm_bytes_per_s, ovh, K.NORM,
                   ci.roofline_sharpness),
        compute_op("router", 2 * T * ci.hidden_size * ci.num_experts,
                   ci.hidden_size * ci.num_experts * ci.router_bytes_per_weight + T * (ci.hidden_size + ci.num_experts) * a,
                   ci.core_flop_per_s, ci.hbm_bytes_per_s, ovh, K.ROUTER, ci.roofline_sharpness, routes=True),
        _a2a(ci, par, "ep_dispatch", T / par.tp * load, ci.dispatch_bytes_per_value, par.etp, decode, a2a_active),
    ]
    gather_bw, gather_lat = ring_tier(ci, par.tp * par.dp)
    gather_bytes = ring_factor(par.dp, Collective.ALL_GATHER) * t_stage * ci.hidden_size * a
    ops.append(comm_op("attn_dp_gather", gather_bytes, gather_active, gather_bw, gather_lat))
    expert_bytes = (touched * per_expert * ci.expert_bytes_per_weight
                    + t_exp * (2 * ci.hidden_size + 3 * ci.expert_ffn_size / par.etp) * a)
    # Tokens that come by the all-to-all meet its grouped GEMMs (DeepEP's: DeepGEMM); the others the
    # engine's fused-MoE kernels, at their share of the rate (EngineProfile.fp8_fused_moe_share).
    rate = expert_rate(ci, par.etp) * np.where(a2a_active, 1.0, ci.fused_moe_share)
    ops.append(compute_op("experts", 2 * t_exp * per_expert, expert_bytes, rate, ci.hbm_expert_bytes_per_s,
                          ovh, K.EXPERTS + K.EXPERT_COMBINE + 2 * ci.quant_exp, ci.roofline_sharpness))
    etp_bw, etp_lat = ring_tier(ci, par.etp)
    # Partial sums per row received: in the prefill one row per distinct token (a token with
    # several local experts is reduced once), in decode one per routed expert (no de-duplication).
    t_recv = np.where(decode, t_exp, t_stage * (1.0 - np.power(1.0 - 1.0 / par.ep, ci.top_k)) * load)
    ops.append(comm_op("etp_reduce_scatter", ring_factor(par.etp, Collective.REDUCE_SCATTER) * t_recv * ci.hidden_size * a,
                       (par.etp > 1) & (par.ep > 1), etp_bw, etp_lat))
    ops.append(_a2a(ci, par, "ep_combine", T / par.tp * load, ci.combine_bytes_per_value, 1.0, decode, a2a_active))
    ops.append(comm_op("attn_dp_scatter", gather_bytes, gather_active, gather_bw, gather_lat))
    if ci.shared_ffn_total:
        params = ci.ffn_mats * ci.hidden_size * ci.shared_ffn_total / par.tp
        shared_bytes = params * ci.expert_bytes_per_weight + T * (2 * ci.hidden_size + 3 * ci.shared_ffn_total / par.tp) * a
        ops.append(compute_op("shared_experts", 2 * T * params, shared_bytes, ci.shared_flop_per_s,
                              ci.hbm_expert_bytes_per_s, ovh, K.SHARED_EXPERTS + 2 * ci.quant_exp, ci.roofline_sharpness))
    ops.append(tp_all_reduce(ci, par, T, "tp_all_reduce_moe"))
    return ops


def expert_rate(ci: CostInputs, etp):
    """FLOP/s of the routed experts' grouped GEMMs when each expert is split over ``etp`` GPUs:
    CostInputs.expert_flop_per_s times n / (n + h), n = expert_ffn_size / etp the slice a GPU holds
    (the whole expert at etp 1) and h CostAssumptions.expert_slice_half_width (0: no narrowing)."""
    h = ci.expert_slice_half_width
    if h <= 0:
        return ci.expert_flop_per_s
    n = ci.expert_ffn_size / np.asarray(etp, dtype=float)
    return ci.expert_flop_per_s * n / (n + h)


def head_ops(ci: CostInputs, par: Par, B, ovh: float) -> list[OpCost]:
    """Final norm and LM head for the last token of each sequence (vocab-parallel over tp,
    logits gathered in the activation format to the first rank, as vLLM's LogitsProcessor does),
    then sampling."""
    params = ci.vocab_size * ci.hidden_size / par.tp
    bw, lat = ring_tier(ci, par.tp)
    return [
        compute_op("lm_head", 2 * B * params, params * ci.embed_bytes_per_weight + B * ci.vocab_size / par.tp * 4.0,
                   ci.core_flop_per_s, ci.hbm_bytes_per_s, ovh, K.LM_HEAD, ci.roofline_sharpness),
        comm_op("logits_gather", ring_factor(par.tp,
                                             Collective.ALL_GATHER) * B * ci.vocab_size * ci.act_bytes_per_value, par.tp > 1, bw, lat),
    ]


def embed_ops(ci: CostInputs, par: Par, T, ovh: float) -> list[OpCost]:
    """Embedding lookup (vocab-parallel: masked lookup, then an all-reduce over tp)."""
    return [compute_op("embedding", 0.0, T * ci.hidden_size * (ci.embed_bytes_per_weight + ci.act_bytes_per_value),
                       ci.other_flop_per_s, ci.hbm_bytes_per_s, ovh, 1, ci.roofline_sharpness),
            tp_all_reduce(ci, par, T, "embed_all_reduce")]


def pp_send(ci: CostInputs, par: Par, T, gpi) -> OpCost:
    """Hidden states [T, D] to the next stage (each tp rank sends its 1/tp slice)."""
    bw, lat = _tier(ci, pp_crosses(par.tp * par.dp, gpi, ci.nvlink_domain_gpus))
    return comm_op("pp_send_recv", T * ci.hidden_size * ci.act_bytes_per_value / par.tp, par.pp > 1, bw, lat)
