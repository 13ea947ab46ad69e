"""A candidate deployment: layouts, operating point, figures and, if pruned, why."""

from __future__ import annotations

from dataclasses import dataclass, field

from meshplan.search.objectives import Mode
from meshplan.specs.problem import Problem
from meshplan.strategy.layout import Layout
from meshplan.strategy.rules import Violation


@dataclass(frozen=True, kw_only=True, slots=True)
class Candidate:
    """One deployment the search considered. Figures are per GPU unless named otherwise."""

    mode: Mode
    prefill: Layout | None
    """Layout of the prefill pool (aggregated: the shared layout)."""
    decode: Layout | None
    """Layout of the decode pool (aggregated: the shared layout)."""
    decode_B: float
    """Sequences per attention-dp rank per micro-batch in decode (0 for prefill-only)."""
    prefill_B: float
    """Prompts per attention-dp rank per prefill pass (aggregated: chunk tokens / isl)."""
    gpus_total: int
    ttft_s: float | None
    tpot_s: float | None
    output_tok_s_per_gpu: float | None
    input_tok_s_per_gpu: float | None
    output_tok_s: float | None
    """Whole deployment."""
    concurrency: float
    """Requests in flight across the deployment at this operating point."""
    max_concurrency: float
    """Most requests in flight that fit in memory with these instances."""
    violations: tuple[Violation, ...] = field(default=())
    speculative: bool = False
    """Decodes with the problem's speculative decoding (Problem.speculative); the search tries each
    decode pool with it and without it."""

    @property
    def feasible(self) -> bool:
        return not self.violations

    @property
    def label(self) -> str:
        spec = " with speculative decoding" if self.speculative else ""
        if self.mode is Mode.DISAGGREGATED:
            return f"prefill {self.prefill.short} + decode {self.decode.short}{spec}"
        lay = self.decode or self.prefill
        return f"{self.mode.value}: {lay.short}{spec}"


def problem_of(problem: Problem, c: Candidate) -> Problem:
    """The problem ``c`` was costed with: without the problem's speculative decoding when ``c``
    decodes without it (the search tries both)."""
    if problem.speculative is not None and not c.speculative:
        return problem.model_copy(update={"speculative": None})
    return problem
