"""The order candidates rank in: by the objective, then, among near-equals, the simpler
deployment first."""

from __future__ import annotations

from meshplan.search.best_point import SATURATION
from meshplan.search.candidate import Candidate
from meshplan.search.objectives import Objective


def rank_key(objective: Objective):
    if objective is Objective.MIN_GPUS:
        return lambda c: (not c.feasible, c.gpus_total, -(c.output_tok_s_per_gpu or 0.0))
    return lambda c: (not c.feasible, -((c.output_tok_s_per_gpu if c.output_tok_s_per_gpu is not None
                                          else c.input_tok_s_per_gpu) or 0.0), c.gpus_total)


def per_gpu_metric(c: Candidate) -> float:
    """Output tokens/s per GPU (input tokens/s for a prefill-only plan)."""
    return c.output_tok_s_per_gpu if c.output_tok_s_per_gpu is not None else (c.input_tok_s_per_gpu or 0.0)


def instance_size(c: Candidate) -> tuple[int, int]:
    """(GPUs of the largest instance, its pipeline stages): smaller is simpler to run."""
    lays = [x for x in (c.prefill, c.decode) if x is not None]
    return max(x.gpus_per_instance for x in lays), max(x.pp for x in lays)


def prefer_simple(ranked: list[Candidate], objective: Objective) -> list[Candidate]:
    """Among feasible candidates within SATURATION of the best tokens/s per GPU, put the smaller
    instances (then fewer pipeline stages) first: a few percent of modelled throughput does not
    pay for a deployment that is harder to run and to debug."""
    if objective is Objective.MIN_GPUS or not ranked or not ranked[0].feasible:
        return ranked
    metric = per_gpu_metric
    top = metric(ranked[0])
    near = [c for c in ranked if c.feasible and metric(c) >= top * (1 - SATURATION)]
    rest = [c for c in ranked if not (c.feasible and metric(c) >= top * (1 - SATURATION))]
    return sorted(near, key=instance_size) + rest
