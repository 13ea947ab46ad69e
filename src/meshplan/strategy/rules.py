"""Legality of a layout for a model on a GPU: every rule, its reason, one owner.

Each rule is a predicate that works on plain ints and on numpy arrays alike, so the search
(vectorized over thousands of layouts) and the single-layout checker use the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Callable

import numpy as np

from meshplan.specs.hardware import GpuSpec
from meshplan.specs.model import AttentionKind, ModelSpec
from meshplan.specs.problem import Problem
from meshplan.strategy.layout import Layout


class Rule(StrEnum):
    """Why a layout is illegal (or, for the cost-level ones, why a candidate was pruned)."""

    FOLDING = "folding"
    HEADS_DIVISIBLE = "heads_divisible"
    KV_HEADS_SPLIT = "kv_heads_split"
    EXPERTS_DIVISIBLE = "experts_divisible"
    EXPERT_FFN_DIVISIBLE = "expert_ffn_divisible"
    DENSE_NO_EXPERT_AXES = "dense_no_expert_axes"
    DENSE_NO_ATTENTION_DP = "dense_no_attention_dp"
    TP_INSIDE_NODE = "tp_inside_node"
    ETP_INSIDE_NODE = "etp_inside_node"
    PP_LAYERS = "pp_layers"
    GPU_BUDGET = "gpu_budget"
    MEMORY = "memory"
    CONCURRENCY = "concurrency"
    TTFT = "ttft"
    TPOT = "tpot"
    THROUGHPUT = "throughput"
    P99 = "p99"
    """A p99 TTFT or TPOT target missed in simulation (plan --sim, plan.simulated)."""


REQUIREMENT_RULES = frozenset({Rule.TTFT, Rule.TPOT, Rule.THROUGHPUT, Rule.P99})
"""Rules of the problem's requirements: a candidate that misses one is still a layout that runs."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Violation:
    """A broken rule with the numbers that break it."""

    rule: Rule
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule.value, "message": self.message}


@dataclass(frozen=True, kw_only=True, slots=True)
class _RuleDef:
    rule: Rule
    ok: Callable[..., Any]
    """(RuleInput, tp, dp, pp, ep, etp) -> bool or bool array."""
    message: Callable[..., str]
    """Same arguments (ints) -> the sentence naming the numbers and the reason."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RuleInput:
    """What the rules look at besides the degrees."""

    m: ModelSpec
    g: GpuSpec
    redundant: int = 0
    """Redundant expert replicas (CostAssumptions.redundant_experts): ep must divide E + redundant."""


def _folding_ok(c: RuleInput, tp, dp, pp, ep, etp):
    return (tp * dp == ep * etp) if c.m.is_moe else True


def _redundant_for(experts: int, ep: int) -> int:
    """Fewest redundant replicas that make ``experts`` divide over ``ep`` ranks. Hand check: 256 over
    ep 72 -> 32 (288 = 4 x 72), as DeepSeek-V3 runs on EP72."""
    return -experts % ep


def _kv_ok(c: RuleInput, tp, dp, pp, ep, etp):
    if c.m.attention is AttentionKind.MLA:
        return True  # the latent is replicated on every TP rank; nothing to split
    k = c.m.num_kv_heads
    return (k % tp == 0) | (tp % k == 0)


RULES: tuple[_RuleDef, ...] = (
    _RuleDef(rule=Rule.FOLDING, ok=_folding_ok, message=lambda c, tp, dp, pp, ep, etp: (
        f"tp*dp = {tp}*{dp} = {tp * dp} but ep*etp = {ep}*{etp} = {ep * etp}: the MoE layers fold onto "
        "the same GPUs as attention, so the two products must be equal")),
    _RuleDef(rule=Rule.HEADS_DIVISIBLE, ok=lambda c, tp, dp, pp, ep, etp: c.m.num_heads % tp == 0,
             message=lambda c, tp, dp, pp, ep, etp: (
                 f"{c.m.num_heads} query heads % tp {tp} != 0: each tensor-parallel rank takes whole heads")),
    _RuleDef(rule=Rule.KV_HEADS_SPLIT, ok=_kv_ok, message=lambda c, tp, dp, pp, ep, etp: (
        f"{c.m.num_kv_heads} KV heads and tp {tp}: KV heads must split evenly (kv % tp == 0) or be replicated "
        "evenly (tp % kv == 0)")),
    _RuleDef(rule=Rule.EXPERTS_DIVISIBLE,
             ok=lambda c, tp, dp, pp, ep, etp: ((c.m.num_experts + c.redundant) % ep == 0) if c.m.is_moe else True,
             message=lambda c, tp, dp, pp, ep, etp: (
                 f"{c.m.num_experts} experts" + (f" + {c.redundant} redundant" if c.redundant else "")
                 + f" % ep {ep} != 0: every expert-parallel rank must host the same number of experts "
                 f"(uneven placement is not modelled); with --redundant-experts {_redundant_for(c.m.num_experts, ep)} "
                 f"they divide ({c.m.num_experts + _redundant_for(c.m.num_experts, ep)} over ep {ep})")),
    _RuleDef(rule=Rule.EXPERT_FFN_DIVISIBLE,
             ok=lambda c, tp, dp, pp, ep, etp: (c.m.expert_ffn_size % etp == 0) if c.m.is_moe else True,
             message=lambda c, tp, dp, pp, ep, etp: (
                 f"expert FFN size {c.m.expert_ffn_size} % etp {etp} != 0: each expert-tensor rank takes an "
                 "equal slice of every expert")),
    _RuleDef(rule=Rule.DENSE_NO_EXPERT_AXES,
             ok=lambda c, tp, dp, pp, ep, etp: True if c.m.is_moe else (ep == 1) & (etp == 1),
             message=lambda c, tp, dp, pp, ep, etp: (
                 f"ep {ep}, etp {etp}: {c.m.name} has no experts, so ep and etp must be 1")),
    _RuleDef(rule=Rule.DENSE_NO_ATTENTION_DP,
             ok=lambda c, tp, dp, pp, ep, etp: True if c.m.is_moe else dp == 1,
             message=lambda c, tp, dp, pp, ep, etp: (
                 f"dp {dp}: {c.m.name} has no MoE layers to couple attention-dp ranks, so they would be "
                 f"independent copies; write instances={dp} instead")),
    _RuleDef(rule=Rule.TP_INSIDE_NODE, ok=lambda c, tp, dp, pp, ep, etp: tp <= c.g.nvlink_domain_gpus,
             message=lambda c, tp, dp, pp, ep, etp: (
                 f"tp {tp} on nodes of {c.g.nvlink_domain_gpus} GPUs: a tensor-parallel group must sit inside "
                 "one NVLink domain (it all-reduces twice per layer)")),
    _RuleDef(rule=Rule.ETP_INSIDE_NODE, ok=lambda c, tp, dp, pp, ep, etp: etp <= c.g.nvlink_domain_gpus,
             message=lambda c, tp, dp, pp, ep, etp: (
                 f"etp {etp} on nodes of {c.g.nvlink_domain_gpus} GPUs: an expert-tensor group reduces every "
                 "expert output, so it must sit inside one NVLink domain")),
    _RuleDef(rule=Rule.PP_LAYERS, ok=lambda c, tp, dp, pp, ep, etp: pp <= c.m.num_layers,
             message=lambda c, tp, dp, pp, ep, etp: (
                 f"pp {pp} > {c.m.num_layers} layers: every pipeline stage needs at least one layer")),
)


UNUSUAL = frozenset({Rule.TP_INSIDE_NODE})
"""Placements engines run but rarely: tensor parallelism across nodes (SGLang's two-node TP16
recipe for DeepSeek on 8-GPU nodes). A strategy that states one is evaluated, its all-reduces costed
over the inter-node link, and flagged; the search does not build them."""

STRUCTURE = frozenset({Rule.FOLDING, Rule.HEADS_DIVISIBLE, Rule.KV_HEADS_SPLIT, Rule.EXPERTS_DIVISIBLE,
                       Rule.EXPERT_FFN_DIVISIBLE, Rule.DENSE_NO_EXPERT_AXES, Rule.PP_LAYERS})
"""Rules that say a model cannot be split this way at all (the others are placement choices)."""


def check_layout(model: ModelSpec, gpu: GpuSpec, tp: int, dp: int, pp: int, ep: int, etp: int,
                 *, redundant: int, gpus: int | None = None, budget: int | None = None) -> list[Violation]:
    """Every structural rule the layout breaks (empty when legal). ``redundant`` has no default:
    a caller with a problem uses layout_violations, which reads it there."""
    c = RuleInput(m=model, g=gpu, redundant=redundant)
    found = [Violation(rule=r.rule, message=r.message(c, tp, dp, pp, ep, etp))
             for r in RULES if not bool(r.ok(c, tp, dp, pp, ep, etp))]
    if budget is not None and gpus is not None and gpus > budget:
        found.append(Violation(rule=Rule.GPU_BUDGET, message=(
            f"{gpus} GPUs > budget {budget}: the layout needs more GPUs than the problem allows")))
    return found


def layout_violations(problem: Problem, lay: Layout, *, gpus: int | None = None) -> list[Violation]:
    """check_layout of ``lay`` with what ``problem`` says (its model, GPU and redundant experts), and
    with ``gpus`` the problem's GPU budget too: the one call for every caller that holds a problem."""
    return check_layout(problem.model, problem.gpu, lay.tp, lay.dp, lay.pp, lay.ep, lay.etp,
                        redundant=problem.assumptions.redundant_experts, gpus=gpus,
                        budget=problem.gpu_budget if gpus is not None else None)


def legal_mask(model: ModelSpec, gpu: GpuSpec, tp, dp, pp, ep, etp, *, redundant: int) -> np.ndarray:
    """Vectorized: True where every structural rule holds, with ``redundant`` expert replicas per
    MoE layer (CostAssumptions.redundant_experts; required, so that no caller forgets it)."""
    c = RuleInput(m=model, g=gpu, redundant=redundant)
    mask = np.ones(np.broadcast(tp, dp, pp, ep, etp).shape, dtype=bool)
    for r in RULES:
        mask &= np.asarray(r.ok(c, tp, dp, pp, ep, etp), dtype=bool)
    return mask
