"""Every requirement of the problem, checked on a finished candidate."""

from __future__ import annotations

from dataclasses import replace

from meshplan.search.candidate import Candidate
from meshplan.specs.problem import Problem
from meshplan.strategy.rules import Rule, Violation
from meshplan.units import fmt_seconds, plural


def _requirement_violations(p: Problem, c: Candidate) -> list[Violation]:
    """Every requirement, checked on the finished candidate: latency targets again (queueing at a
    request rate adds to TTFT after the operating point was chosen), throughput and the budget."""
    r, out = p.requirements, []
    ruled = {v.rule for v in c.violations}
    if r.ttft_s and c.ttft_s is not None and c.ttft_s > r.ttft_s * (1 + 1e-9) and Rule.TTFT not in ruled:
        out.append(Violation(rule=Rule.TTFT, message=f"TTFT {fmt_seconds(c.ttft_s)} > target {fmt_seconds(r.ttft_s)}"))
    if r.tpot_s and c.tpot_s is not None and c.tpot_s > r.tpot_s * (1 + 1e-9) and Rule.TPOT not in ruled:
        out.append(Violation(rule=Rule.TPOT, message=f"TPOT {fmt_seconds(c.tpot_s)} > target {fmt_seconds(r.tpot_s)}"))
    if r.min_output_tok_s_per_gpu and c.output_tok_s_per_gpu is not None and c.output_tok_s_per_gpu < r.min_output_tok_s_per_gpu:
        out.append(Violation(rule=Rule.THROUGHPUT, message=(
            f"output {c.output_tok_s_per_gpu:,.0f} tok/s per GPU < required {r.min_output_tok_s_per_gpu:,.0f}")))
    if r.min_input_tok_s_per_gpu and c.input_tok_s_per_gpu is not None and c.input_tok_s_per_gpu < r.min_input_tok_s_per_gpu:
        out.append(Violation(rule=Rule.THROUGHPUT, message=(
            f"input {c.input_tok_s_per_gpu:,.0f} tok/s per GPU < required {r.min_input_tok_s_per_gpu:,.0f}")))
    if r.min_output_tok_s and c.output_tok_s is not None and c.output_tok_s < r.min_output_tok_s * (1 - 1e-9):
        out.append(Violation(rule=Rule.THROUGHPUT, message=(
            f"output {c.output_tok_s:,.0f} tok/s in total < required {r.min_output_tok_s:,.0f}")))
    if p.gpu_budget and c.gpus_total > p.gpu_budget:
        out.append(Violation(rule=Rule.GPU_BUDGET, message=f"{plural(c.gpus_total, 'GPU')} > budget {p.gpu_budget}"))
    return out


def with_requirements(p: Problem, c: Candidate) -> Candidate:
    """``c`` with the requirements of ``p`` it misses added to its violations."""
    extra = _requirement_violations(p, c)
    if not extra:
        return c
    return replace(c, violations=tuple(c.violations) + tuple(extra))
