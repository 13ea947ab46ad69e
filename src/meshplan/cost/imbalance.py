"""Expert load: how many tokens the busiest expert-parallel rank gets, and how many experts a
decode step touches."""

from __future__ import annotations

import numpy as np


def max_load_factor(assignments, ep):
    """Busiest rank's load over the mean, for ``assignments`` = tokens x top-k spread uniformly
    over ``ep`` ranks. Balls into bins with m balls and n bins, m >> n log n: the maximum is
    m/n + sqrt(2 m ln n / n) with high probability (Raab & Steger, "Balls into Bins - A Simple
    and Tight Analysis", RANDOM 1998, Theorem 1), so the factor is 1 + sqrt(2 n ln n / m).
    Capped at ep (everything on one rank).

    Hand check: m = 4096, n = 8: 1 + sqrt(2*8*ln 8/4096) = 1 + sqrt(0.008123) = 1.0901.
    """
    ep = np.asarray(ep, dtype=float)
    m = np.maximum(np.asarray(assignments, dtype=float), 1.0)
    factor = 1.0 + np.sqrt(2.0 * ep * np.log(ep) / m)
    return np.minimum(factor, ep)


def popularity_skew(ep, num_experts: float, cv: float):
    """Busiest rank's load over the mean when experts differ in popularity with coefficient of
    variation ``cv`` and each of ``ep`` ranks holds E/ep of them: a rank's load is a sum of E/ep
    expert loads, whose relative spread is cv / sqrt(E/ep), and the largest of ep such sums sits
    about sqrt(2 ln ep) spreads above the mean (the expected maximum of ep normal variables), so
    1 + cv * sqrt(2 ln(ep) * ep / E); 1 for ep = 1 (CostAssumptions.expert_load_cv).

    Hand check: cv = 1.67, ep = 32, E = 256: 1 + 1.67 * sqrt(2 * 3.4657 * 32 / 256) = 1 + 1.67 *
    0.9308 = 2.554 (TensorRT-LLM measures 2.56 for DeepSeek-R1 at EP32 without EPLB)."""
    ep = np.asarray(ep, dtype=float)
    if not num_experts:
        return np.ones_like(ep)
    return 1.0 + cv * np.sqrt(2.0 * np.log(np.maximum(ep, 1.0)) * ep / num_experts)


def busiest_rank_load(assignments, ep, num_experts: float, cv: float):
    """The busiest expert-parallel rank's routed tokens over the mean: the statistical fluctuation
    of a finite batch (max_load_factor) and the popularity skew (popularity_skew) combined as
    independent excesses, 1 + sqrt(a^2 + b^2), capped at ep.
    Hand check: excesses 0.3 and 0.4 give 1.5."""
    a = max_load_factor(assignments, ep) - 1.0
    b = popularity_skew(ep, num_experts, cv) - 1.0
    return np.minimum(1.0 + np.sqrt(a * a + b * b), np.maximum(np.asarray(ep, dtype=float), 1.0))


def active_expert_fraction(tokens, num_experts: float, top_k: float):
    """Expected share of experts that receive at least one of ``tokens`` tokens when each token
    picks top_k of num_experts uniformly: 1 - (1 - k/E)^T. Decode steps with few tokens read only
    these experts' weights."""
    if num_experts == 0:
        return np.zeros_like(np.asarray(tokens, dtype=float))
    return 1.0 - np.power(1.0 - top_k / num_experts, np.asarray(tokens, dtype=float))


def distinct_remote_ranks(ep, top_k: float):
    """Expected number of other EP ranks a token is sent to when its top_k experts fall on
    ranks uniformly: (ep - 1) * (1 - (1 - 1/ep)^k). DeepEP sends a token once per destination
    rank, however many of its experts live there (deepseek-ai/DeepEP README, dispatch layout)."""
    ep = np.asarray(ep, dtype=float)
    return (ep - 1.0) * (1.0 - np.power(1.0 - 1.0 / ep, top_k))
