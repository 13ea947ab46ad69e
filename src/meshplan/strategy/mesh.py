"""Rank mapping: pure functions from a global rank to its coordinates and back.

Axis order, fastest-varying first (Megatron-Core's default order "tp-cp-ep-dp-pp" puts tensor
parallel innermost, so the most talkative groups are neighbours and share a node):

    attention view:  tp, dp, pp, instance      rank = ((inst*pp + pp_rank)*dp + dp_rank)*tp + tp_rank
    expert view:     etp, ep, pp, instance     rank = ((inst*pp + pp_rank)*ep + ep_rank)*etp + etp_rank

Both views index the same tp*dp == ep*etp GPUs of a stage, so ``local = dp_rank*tp + tp_rank =
ep_rank*etp + etp_rank``. In a disaggregated plan the prefill pool takes ranks 0..P-1 and the
decode pool P..P+D-1 (offset).

Worked example, layout instances=1, pp=2, tp=2, dp=4, ep=8, etp=1 (16 GPUs):
    rank 0  -> pp 0, dp 0, tp 0, ep 0          rank 5  -> pp 0, dp 2, tp 1, ep 5
    rank 9  -> pp 1, dp 0, tp 1, ep 1          tp group of rank 5 = [4, 5]
    dp group of rank 5 = [1, 3, 5, 7]          ep group of rank 9 = [8..15]

>>> from meshplan.strategy.layout import Axis, Layout
>>> lay = Layout(pp=2, tp=2, dp=4, ep=8)
>>> coords_of(5, lay)
RankCoords(rank=5, instance=0, pp=0, dp=2, tp=1, ep=5, etp=0)
>>> rank_of(coords_of(13, lay), lay)
13
>>> group(5, lay, Axis.TP), group(5, lay, Axis.DP), group(9, lay, Axis.EP)
([4, 5], [1, 3, 5, 7], [8, 9, 10, 11, 12, 13, 14, 15])
"""

from __future__ import annotations

from dataclasses import dataclass

from meshplan.strategy.layout import Axis, Layout


@dataclass(frozen=True, kw_only=True, slots=True)
class RankCoords:
    """Where one GPU rank sits in its pool."""

    rank: int
    instance: int
    pp: int
    dp: int
    tp: int
    ep: int
    etp: int


def coords_of(rank: int, lay: Layout, offset: int = 0) -> RankCoords:
    """Coordinates of global ``rank`` in a pool whose first rank is ``offset``."""
    r = rank - offset
    if not 0 <= r < lay.gpus:
        raise ValueError(f"rank {rank} is outside the pool [{offset}, {offset + lay.gpus})")
    inst, r_inst = divmod(r, lay.gpus_per_instance)
    pp_rank, local = divmod(r_inst, lay.gpus_per_stage)
    dp_rank, tp_rank = divmod(local, lay.tp)
    ep_rank, etp_rank = divmod(local, lay.etp)
    return RankCoords(rank=rank, instance=inst, pp=pp_rank, dp=dp_rank, tp=tp_rank, ep=ep_rank, etp=etp_rank)


def rank_of(c: RankCoords, lay: Layout, offset: int = 0) -> int:
    """Inverse of coords_of (attention view)."""
    return offset + ((c.instance * lay.pp + c.pp) * lay.dp + c.dp) * lay.tp + c.tp


def group(rank: int, lay: Layout, axis: Axis, offset: int = 0) -> list[int]:
    """The ranks that share every coordinate with ``rank`` except ``axis`` (tp, dp, pp, ep, etp)."""
    c = coords_of(rank, lay, offset)
    base = offset + (c.instance * lay.pp + c.pp) * lay.gpus_per_stage
    if axis == Axis.TP:
        return [base + c.dp * lay.tp + i for i in range(lay.tp)]
    if axis == Axis.DP:
        return [base + d * lay.tp + c.tp for d in range(lay.dp)]
    if axis == Axis.EP:
        return [base + e * lay.etp + c.etp for e in range(lay.ep)]
    if axis == Axis.ETP:
        return [base + c.ep * lay.etp + i for i in range(lay.etp)]
    if axis == Axis.PP:
        local = (rank - offset) % lay.gpus_per_stage
        inst0 = offset + c.instance * lay.gpus_per_instance
        return [inst0 + p * lay.gpus_per_stage + local for p in range(lay.pp)]
    raise ValueError(f"axis {axis!r}: expected tp, dp, pp, ep or etp")


def expert_slots_per_rank(num_experts, redundant, ep):
    """Routed-expert slots on each ep rank, the one owner of this count: the model's experts plus
    the redundant replicas (CostAssumptions.redundant_experts, EPLB), in even blocks (strategy.rules
    requires ep to divide them). Ints or arrays. Hand check: (256 + 32) // 32 = 9."""
    return (num_experts + redundant) // ep


def experts_of(rank: int, lay: Layout, num_experts: int, *, redundant: int, offset: int = 0) -> range:
    """Expert slots hosted by ``rank``: a contiguous block of expert_slots_per_rank per ep rank;
    slots from ``num_experts`` on hold redundant replicas."""
    per = expert_slots_per_rank(num_experts, redundant, lay.ep)
    e = coords_of(rank, lay, offset).ep
    return range(e * per, (e + 1) * per)


def slots_text(hosted: range, num_experts: int) -> str:
    """``experts 8-15``, with the redundant replicas among them named (slots past the model's)."""
    first, last = hosted.start, hosted.stop - 1
    ids = f"expert {first}" if first == last else f"experts {first}-{last}"
    if last >= num_experts:
        ids += " (redundant replicas)" if first >= num_experts else " (some redundant replicas)"
    return ids


def stage_layers(num_layers: int, pp: int) -> list[range]:
    """Layers of each pipeline stage. Uneven splits give the first ``num_layers % pp`` stages one
    extra layer, so the last stage, which also runs the LM head, is never the longest.

    >>> [len(r) for r in stage_layers(94, 4)]
    [24, 24, 23, 23]
    """
    base, extra = divmod(num_layers, pp)
    out, start = [], 0
    for s in range(pp):
        n = base + (1 if s < extra else 0)
        out.append(range(start, start + n))
        start += n
    return out
