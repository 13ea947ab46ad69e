"""What the search optimises."""

from __future__ import annotations

from enum import StrEnum


class Objective(StrEnum):
    """max-per-gpu: most tokens/s per GPU within the requirements (output tokens for decode and
    full serving, input tokens for prefill). min-gpus: fewest GPUs that reach
    requirements.min_output_tok_s. pareto: the frontier of tokens/s per GPU against tokens/s per
    user (1/TPOT)."""

    MAX_PER_GPU = "max-per-gpu"
    MIN_GPUS = "min-gpus"
    PARETO = "pareto"


class Mode(StrEnum):
    """Aggregated: prefill and decode share instances. Disaggregated: separate pools."""

    AGGREGATED = "aggregated"
    DISAGGREGATED = "disaggregated"
    PREFILL_ONLY = "prefill"
    DECODE_ONLY = "decode"
