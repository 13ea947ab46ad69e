"""The plan document as a typed tree: the chosen deployment, its phases and memory, the check of
each requirement, the verdict, notes and the candidates beside it.

Every reader (report, check, export, the DAG and the CLI) reads this tree; plan.plan_json is the
one module that writes it to the versioned JSON and reads it back. Sections of the JSON that
restate the problem (``gpu``, ``workload``, ``precision``, ``requirements``, ``speculative``,
``engine`` and the cost assumptions) are not fields here: their one owner is ``problem_spec``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from meshplan.plan.candidates import ByMode, CandidateSummary, Evaluation, Pruned, RunnerUp, SearchCounts, \
    SimulatedCandidate
from meshplan.plan.phase_figures import Memory, PhaseFigures, Phases
from meshplan.search.objectives import Mode, Objective
from meshplan.specs.model import AttentionKind
from meshplan.specs.problem import Problem
from meshplan.strategy.rules import Rule, Violation


class Status(StrEnum):
    """What the plan amounts to."""

    FEASIBLE = "feasible"
    """Every requirement met."""
    REQUIREMENTS_UNMET = "requirements_unmet"
    """A layout that holds the model but misses a requirement (the closest is shown)."""
    DOES_NOT_FIT = "does_not_fit"
    """Nothing holds the model and one request within the budget: no figures."""


class Requirement(StrEnum):
    """A requirement the plan is checked against (the problem's field it comes from)."""

    TTFT_S = "ttft_s"
    TPOT_S = "tpot_s"
    MIN_OUTPUT_TOK_S_PER_GPU = "min_output_tok_s_per_gpu"
    MIN_INPUT_TOK_S_PER_GPU = "min_input_tok_s_per_gpu"
    MIN_OUTPUT_TOK_S = "min_output_tok_s"
    MEMORY_HEADROOM = "memory_headroom"
    """Total memory per GPU within the usable share of capacity."""


class CheckUnit(StrEnum):
    """Unit of a requirement check's target and prediction."""

    SECONDS = "s"
    TOKENS_PER_S = "tok/s"
    BYTES = "bytes"


class BoundRule(StrEnum):
    """What sets a bound no layout can beat."""

    DECODE_KV_BANDWIDTH = "decode_kv_bandwidth"
    """Reading a sequence's KV cache at the GPU's memory bandwidth each step (plan.plan.decode_kv_bound)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Bound:
    """What no layout can beat, when a requirement is missed because of it."""

    value: float
    """The bound, in the requirement's unit."""
    rule: BoundRule
    """What sets the bound."""
    message: str
    """The bound in words, with the numbers it follows from."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RequirementCheck:
    """One stated requirement against the plan's prediction."""

    requirement: Requirement
    """The requirement (the problem's field)."""
    target: float
    """The stated target, in ``unit``."""
    predicted: float | None
    """None when the plan has no such figure (a layout that cannot load its weights)."""
    unit: CheckUnit
    """Unit of target and predicted."""
    met: bool
    """Whether the prediction meets the target."""
    bound: Bound | None
    """What no layout can beat, when the target is past it (else None)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Unmet:
    """A requirement or rule the plan misses."""

    rule: Rule
    """The rule or requirement missed (Rule.P99 for the simulated p99 targets, plan.simulated)."""
    message: str
    """What is missed, with the numbers."""


@dataclass(frozen=True, kw_only=True, slots=True)
class FitLayout:
    """A layout and its GPU count."""

    gpus: int
    """GPUs of the layout."""
    layout: str
    """The layout, short form (strategy.layout)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SmallestFit(FitLayout):
    """The fewest GPUs that hold the model's weights and one request (search.fit)."""

    without_pipeline: FitLayout | None
    """The same without pipeline stages, where that differs."""


VERDICT_KEYS = {
    Status.FEASIBLE: ("status", "figures", "message", "unmet"),
    Status.REQUIREMENTS_UNMET: ("status", "figures", "unmet", "message"),
    Status.DOES_NOT_FIT: ("status", "figures", "message", "unmet", "smallest_fit"),
}
"""The verdict's JSON keys in the order each status has always been written (kept so existing plan
files and goldens do not move); smallest_fit belongs to does_not_fit only."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    """What the plan amounts to, said first."""

    status: Status
    """What the plan amounts to."""
    figures: bool
    """False when the layout cannot load its weights: no TTFT, TPOT or throughput to show."""
    message: str
    """The verdict in words."""
    unmet: tuple[Unmet, ...]
    """The rules and requirements missed (none when feasible)."""
    smallest_fit: SmallestFit | None = None
    """does_not_fit: the fewest GPUs that would hold the model (None if none searched does)."""

    def json_keys(self) -> tuple[str, ...]:
        return VERDICT_KEYS[self.status]


@dataclass(frozen=True, kw_only=True, slots=True)
class BudgetUse:
    """How much of the GPU budget the plan uses, and why the rest is left idle."""

    budget: int
    """GPUs the problem allows."""
    used: int
    """GPUs the plan uses."""
    idle: int
    """budget - used."""
    why: str
    """Why the idle GPUs are left idle, in words."""
    output_tok_s_per_budget_gpu: float | None
    """The plan's output tokens/s over every GPU of the budget."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PlanNote:
    """Something meshplan noticed or assumed, about one input."""

    field: str
    """The input it is about (a problem field, 'strategy.pp', 'simulation', ...)."""
    message: str
    """What was noticed or assumed, and how to override it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelFacts:
    """The model as planned: its structure and parameter counts (specs.params)."""

    name: str
    """The model's name."""
    source: str
    """Where it was read from (catalog file, config.json, problem)."""
    attention: AttentionKind
    """Attention kind (MHA, GQA, MLA, ...)."""
    layers: int
    """Transformer layers."""
    hidden_size: int
    """Model width D."""
    heads: int
    """Attention heads."""
    kv_heads: int
    """KV heads."""
    head_dim: int
    """Width of one head."""
    experts: int
    """Routed experts per MoE layer; 0 for a dense model."""
    top_k: int
    """Routed experts per token (0 for a dense model)."""
    moe_layers: int
    """Layers with routed experts."""
    params_total: float
    """Parameters of the structure as stated."""
    params_active: float
    """Parameters one token passes through."""
    declared_params: float | None
    """The count the problem declares, if any."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PartFactors:
    """One cost-model factor per part of the model, by the precision each part is stored in."""

    attention: float
    """For the attention weights."""
    experts: float
    """For the routed experts."""
    other: float
    """For every other weight."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AssumptionsUsed:
    """The cost-model factors the plan was costed with (beside the problem's assumptions)."""

    gemm_efficiency_used: PartFactors
    """Share of peak FLOP/s GEMMs reach, per part (specs.problem.gemm_efficiency)."""
    hbm_efficiency_used: PartFactors
    """Share of peak HBM bandwidth reads reach, per part (specs.problem.hbm_efficiency)."""
    two_batch_overlap_used: bool
    """Whether the costing overlapped two micro-batches (cost.inputs)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    """The plan: the chosen candidate's figures, what they amount to, and what was weighed."""

    problem: str
    """The problem's name."""
    objective: Objective
    """What the search optimised."""
    mode: Mode
    """How prefill and decode are served."""
    label: str
    """The chosen layout in words."""
    gpus_total: int
    """GPUs of every pool."""
    feasible: bool
    """Whether every rule and requirement holds."""
    violations: tuple[Violation, ...]
    """The rules and requirements it breaks."""
    ttft_s: float | None
    """Mean time to first token; None when the verdict has no figures (so for the four below)."""
    tpot_s: float | None
    """Mean time per output token."""
    output_tok_s: float | None
    """Output tokens/s of the whole deployment."""
    output_tok_s_per_gpu: float | None
    """output_tok_s / gpus_total."""
    input_tok_s_per_gpu: float | None
    """Prompt tokens/s per GPU."""
    concurrency: float | None
    """Requests in flight at the operating point."""
    max_concurrency: float | None
    """Most requests in flight memory holds (None without a decode phase)."""
    memory_per_gpu_bytes: Memory
    """Of the main pool (decode when the plan has one)."""
    kv_cache_bytes_per_token: float
    """KV bytes of one token for the whole model (one copy)."""
    phases: Phases
    """Each phase's figures on its own pool."""
    model: ModelFacts
    """The model as planned."""
    requirements_check: tuple[RequirementCheck, ...]
    """Each stated requirement against the prediction."""
    verdict: Verdict
    """What the plan amounts to."""
    budget_use: BudgetUse | None
    """None when the plan uses the whole budget (or has no figures, or no budget was given)."""
    notes: tuple[PlanNote, ...]
    """What meshplan noticed or assumed, for every input it is about."""
    assumptions_used: AssumptionsUsed
    """The cost-model factors the plan was costed with."""
    runner_ups: tuple[RunnerUp, ...]
    """The next candidates in the search's order, each with why it lost."""
    aggregated_vs_disaggregated: ByMode
    """The best candidate of each serving mode."""
    pruned: Pruned
    """What the search set aside."""
    pareto: tuple[CandidateSummary, ...]
    """The frontier of tokens/s per GPU against tokens/s per user."""
    search: SearchCounts
    """How much the search looked at."""
    problem_spec: Problem
    """The whole problem, so a plan file alone rebuilds everything derived from it (pools, DAG,
    export); the one owner of the sections of the JSON that restate it."""
    simulation: tuple[SimulatedCandidate, ...] | None = None
    """plan --sim: the best candidates simulated (absent from the JSON otherwise)."""
    evaluation: Evaluation | None = None
    """meshplan evaluate: why the search would not pick this strategy (absent otherwise)."""

    @property
    def aggregated(self) -> bool:
        """Whether prefill and decode share the same instances."""
        return self.mode is Mode.AGGREGATED

    @property
    def disaggregated(self) -> bool:
        """Whether prefill and decode run on pools of their own."""
        return self.mode is Mode.DISAGGREGATED

    @property
    def main_phase(self) -> PhaseFigures | None:
        """The phase whose figures are the plan's: decode when it has one, else prefill."""
        return self.phases.decode or self.phases.prefill
