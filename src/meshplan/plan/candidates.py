"""The other candidates a plan document lists beside its choice: runner-ups, the best of each
serving mode, pruned examples, the Pareto frontier, the candidates simulated (plan --sim) and,
for meshplan evaluate, the search's best under the same budget."""

from __future__ import annotations

from dataclasses import dataclass

from meshplan.search.objectives import Mode
from meshplan.strategy.rules import Rule, Violation


@dataclass(frozen=True, kw_only=True, slots=True)
class CandidateSummary:
    """One candidate's headline figures (a Pareto point, a pruned example, the best of a mode)."""

    label: str
    """The candidate's layout in words (search.candidate)."""
    mode: Mode
    """How prefill and decode are served."""
    gpus_total: int
    """GPUs of every pool."""
    feasible: bool
    """Whether every rule and requirement holds."""
    ttft_s: float | None
    """Mean time to first token."""
    tpot_s: float | None
    """Mean time per output token."""
    output_tok_s_per_gpu: float | None
    """Output tokens/s per GPU."""
    input_tok_s_per_gpu: float | None
    """Prompt tokens/s per GPU."""
    concurrency: float | None
    """Requests in flight at its operating point."""
    violations: tuple[Violation, ...]
    """The rules and requirements it breaks."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunnerUp(CandidateSummary):
    """A candidate ranked after the plan's choice, with why."""

    why_lost: str
    """Why it ranks after the choice, in words that follow from the numbers they quote."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ByMode:
    """The best candidate of each serving mode (None where none was ranked)."""

    aggregated: CandidateSummary | None
    """Prefill and decode on the same instances."""
    disaggregated: CandidateSummary | None
    """Prefill and decode on pools of their own."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Pruned:
    """What the search set aside."""

    listed: int
    """Candidates pruned."""
    first_reason_counts: dict[Rule, int]
    """How many were pruned for each first broken rule."""
    examples: tuple[CandidateSummary, ...]
    """The first few pruned candidates."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SearchCounts:
    """How much the search looked at."""

    layouts: int
    """Legal layouts."""
    operating_points: int
    """(layout, batch) points evaluated."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Percentiles:
    """A latency's spread over the requests simulated, in seconds."""

    mean: float
    """Mean over the requests."""
    p50: float
    """Median."""
    p99: float
    """99th percentile."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ClosedForm:
    """The closed form's steady-state means for the same candidate."""

    ttft_s: float | None
    """Mean time to first token."""
    tpot_s: float | None
    """Mean time per output token."""
    output_tok_s_per_gpu: float | None
    """Output tokens/s per GPU."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SimulatedCandidate:
    """One of the search's best candidates served request by request (plan.simulated)."""

    label: str
    """The candidate's layout in words."""
    gpus_total: int
    """GPUs of every pool."""
    arrivals: str
    """How the requests arrive, in words."""
    requests: int
    """Requests counted in the percentiles (the first wave of a closed loop left out)."""
    closed_form: ClosedForm
    """The closed form's means, for comparison."""
    ttft_s: Percentiles
    """Time to first token over the requests."""
    tpot_s: Percentiles
    """Time per output token over the requests."""
    output_tok_s_per_gpu: float
    """Output tokens/s per GPU simulated."""
    goodput: float | None
    """Share of requests within the per-request bounds; None without bounds."""
    preemptions: int
    """Requests preempted for KV memory."""
    meets_p99: bool | None
    """Whether it meets the p99 targets; None without p99 targets."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SearchBest:
    """The search's best plan under the evaluated plan's budget (meshplan evaluate)."""

    label: str
    """Its layout in words."""
    gpus_total: int
    """GPUs of every pool."""
    output_tok_s_per_gpu: float | None
    """Output tokens/s per GPU."""
    input_tok_s_per_gpu: float | None
    """Prompt tokens/s per GPU."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SeedReading:
    """How a layout written in the seed's notation was read (strategy.notation)."""

    layout: str
    """The consistent reading, as a strategy string."""
    consistent: bool
    """Whether the stated numbers agree with each other."""
    findings: tuple[str, ...]
    """What did not add up, in words."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Evaluation:
    """What meshplan evaluate adds to the document of one strategy."""

    why_not: str
    """Why the search would not pick it."""
    search_best: SearchBest | None
    """The search's best under the same budget; None when nothing fits."""
    seed_reading: SeedReading | None = None
    """The seed-notation layout as read, when the evaluated strategy came from one (absent from
    the JSON otherwise)."""
