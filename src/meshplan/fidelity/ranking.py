"""Does meshplan order layouts as reality does? Rank agreement on measured runs.

A group is every run of one model checkpoint (model and weight formats) on one GPU with one engine,
at one ISL, OSL, mode (aggregated or disaggregated) and concurrency. Within a group each distinct
layout is scored by output tokens per second per GPU, from TTFT and TPOT by Little's law:

    concurrency x OSL / (TTFT + (OSL - 1) x TPOT) / GPUs

once with the measured TTFT and TPOT and once with meshplan's. Groups with three layouts or more
are compared: Kendall's tau-b between the two orderings (scipy.stats.kendalltau; +1 the same order,
-1 the reverse), and whether the measured best layout is among the two meshplan ranks highest.
A layout measured more than once in a group (repeated runs) counts once, with the mean of its
runs' throughputs.

Layouts of different GPU counts are ordered mostly by the count itself (at a fixed concurrency,
per-GPU throughput falls about as the GPUs grow), which makes tau easy. The harder question, how
to lay out the same GPUs, is asked of every pair of layouts with the same GPU count in a group:
the share of pairs meshplan orders as measured, leaving out pairs measured within TIE_SHARE of
each other.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass

from meshplan.fidelity.silicon import SiliconCase

MIN_LAYOUTS = 3
"""Layouts a group needs to be ranked (the calibrate issue's rule)."""

TIE_SHARE = 0.05
"""Pairs whose measured throughputs differ by less than this share are ties: repeated runs of
one layout in the dev set differ by about as much (silicon-dev.csv, e.g. MiniMax-M2.5 on B200
at concurrency 4: TPOT 8.0, 8.4 and 9.5 ms in three runs)."""

TARGETS = {"mean_tau": 0.7, "best_in_top_two": 0.8}
"""The calibrate issue's targets, reported beside the results (not asserted)."""


def output_tok_s_per_gpu(concurrency: float, osl: float, ttft_s: float, tpot_s: float, gpus: int) -> float:
    """Little's law for a closed loop: each of ``concurrency`` clients completes one request of
    ``osl`` output tokens every TTFT + (OSL - 1) x TPOT seconds. Hand check: 64 clients, OSL 1000,
    TTFT 1 s, TPOT 20 ms, 8 GPUs: 64 x 1000 / (1 + 999 x 0.02) / 8 = 381.3 tokens/s per GPU."""
    return concurrency * osl / (ttft_s + (osl - 1.0) * tpot_s) / gpus


def layout_label(case: SiliconCase) -> str:
    """The layout of a run, as the ranking table names it."""
    if case.disaggregated:
        return f"prefill {case.prefill.short} + decode {case.decode.short}"
    return case.layout.short


def group_key(case: SiliconCase) -> tuple:
    fmt = lambda d: d.value if d is not None else "-"  # noqa: E731
    return (case.model, fmt(case.gemm_format), fmt(case.moe_format), case.gpu, case.engine.value, case.isl,
            case.osl, "disagg" if case.disaggregated else "agg", case.concurrency)


@dataclass(frozen=True, kw_only=True, slots=True)
class Ranked:
    """One group's layouts, best measured first."""

    key: tuple
    """(model, GEMM format, MoE format, GPU, engine, ISL, OSL, mode, concurrency)."""
    layouts: tuple[str, ...]
    measured: tuple[float, ...]
    """Output tokens/s per GPU from the measured TTFT and TPOT, in the order of ``layouts``."""
    predicted: tuple[float, ...]
    tau: float
    predicted_rank_of_best: int
    """Where meshplan places the measured best layout (1 = first)."""

    @property
    def best_in_top_two(self) -> bool:
        return self.predicted_rank_of_best <= 2


@dataclass(frozen=True, kw_only=True, slots=True)
class Pair:
    """Two layouts of one group on the same number of GPUs, the faster measured first."""

    key: tuple
    gpus: int
    faster: str
    slower: str
    measured: tuple[float, float]
    predicted: tuple[float, float]

    @property
    def agrees(self) -> bool:
        return self.predicted[0] > self.predicted[1]


@dataclass(frozen=True, kw_only=True, slots=True)
class Ranking:
    groups: tuple[Ranked, ...]
    pairs: tuple[Pair, ...]
    """Same-GPU-count pairs, ties left out."""

    @property
    def pairs_agree(self) -> float:
        return (sum(p.agrees for p in self.pairs) / len(self.pairs)) if self.pairs else float("nan")

    @property
    def mean_tau(self) -> float:
        taus = [g.tau for g in self.groups if g.tau == g.tau]
        return statistics.fmean(taus) if taus else float("nan")

    @property
    def best_in_top_two(self) -> float:
        return (sum(g.best_in_top_two for g in self.groups) / len(self.groups)) if self.groups else float("nan")

    def to_json(self) -> dict:
        return {"groups": [{"model": g.key[0], "gemm_format": g.key[1], "moe_format": g.key[2], "gpu": g.key[3],
                            "backend": g.key[4], "isl": g.key[5], "osl": g.key[6], "mode": g.key[7],
                            "concurrency": g.key[8], "layouts": list(g.layouts),
                            "measured_output_tok_s_per_gpu": list(g.measured),
                            "predicted_output_tok_s_per_gpu": list(g.predicted), "kendall_tau": g.tau,
                            "predicted_rank_of_measured_best": g.predicted_rank_of_best} for g in self.groups],
                "mean_tau": self.mean_tau, "best_in_top_two": self.best_in_top_two,
                "same_gpu_pairs": [{"group": list(p.key), "gpus": p.gpus, "faster_measured": p.faster,
                                    "slower_measured": p.slower, "measured_output_tok_s_per_gpu": list(p.measured),
                                    "predicted_output_tok_s_per_gpu": list(p.predicted), "agrees": p.agrees}
                                   for p in self.pairs],
                "same_gpu_pairs_agree": self.pairs_agree, "tie_share": TIE_SHARE, "targets": TARGETS}


def rank(runs: list[tuple[SiliconCase, float, float]]) -> Ranking:
    """Rank agreement over ``runs``: (case, predicted TTFT ms, predicted TPOT ms) per predicted run."""
    # scipy.stats takes half a second to import; only validate --ranking needs it.
    from scipy.stats import kendalltau

    by: dict[tuple, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    gpus_of: dict[str, int] = {}
    for c, ttft_ms, tpot_ms in runs:
        gpus = c.gpus
        measured = output_tok_s_per_gpu(c.concurrency, c.osl, c.ttft_ms / 1e3, c.tpot_ms / 1e3, gpus)
        predicted = output_tok_s_per_gpu(c.concurrency, c.osl, ttft_ms / 1e3, tpot_ms / 1e3, gpus)
        by[group_key(c)][layout_label(c)].append((measured, predicted))
        gpus_of[layout_label(c)] = gpus
    groups, pairs = [], []
    for key in sorted(by, key=str):
        lays = by[key]
        scored = sorted(((name, statistics.fmean(m for m, _ in v), statistics.fmean(p for _, p in v))
                         for name, v in lays.items()), key=lambda x: (-x[1], x[0]))
        pairs += [Pair(key=key, gpus=gpus_of[a], faster=a, slower=b, measured=(ma, mb), predicted=(pa, pb))
                  for i, (a, ma, pa) in enumerate(scored) for b, mb, pb in scored[i + 1:]
                  if gpus_of[a] == gpus_of[b] and ma > mb * (1.0 + TIE_SHARE)]
        if len(lays) < MIN_LAYOUTS:
            continue
        names, meas, pred = zip(*scored)
        tau = float(kendalltau(meas, pred).statistic)
        # Rank of the measured best among the predictions (ties count against it).
        rank_best = 1 + sum(1 for p in pred[1:] if p >= pred[0])
        groups.append(Ranked(key=key, layouts=names, measured=meas, predicted=pred, tau=tau,
                             predicted_rank_of_best=rank_best))
    return Ranking(groups=tuple(groups), pairs=tuple(pairs))
