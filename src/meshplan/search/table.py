"""One mode's evaluated operating points as a table: rows are layouts, columns operating points."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meshplan.cost.inputs import CostInputs
from meshplan.cost.serving import PhaseCost, Serving
from meshplan.search.objectives import Mode
from meshplan.strategy.space import LayoutArrays


@dataclass(frozen=True, kw_only=True, slots=True)
class PointTable:
    """One mode's points: rows are layouts, columns operating points."""

    mode: Mode
    la: LayoutArrays
    B: np.ndarray
    metric: np.ndarray
    """Tokens/s per GPU the objective ranks by (output, or input for prefill)."""
    ttft: np.ndarray | None
    tpot: np.ndarray | None
    fits: np.ndarray
    invalid: np.ndarray
    max_b: np.ndarray
    inst_req_s: np.ndarray
    """Requests per second one instance completes."""
    mem_total: np.ndarray
    usable: np.ndarray
    """Usable memory per GPU of each row (cost.phase.usable_bytes)."""

    @staticmethod
    def decode(ci: CostInputs, la, dec: PhaseCost, invalid) -> "PointTable":
        return PointTable(mode=Mode.DECODE_ONLY, la=la, B=dec.B, metric=dec.tok_s_per_gpu, ttft=None,
                          tpot=dec.latency_s, fits=dec.B <= dec.max_B, invalid=_inv(invalid, dec.B),
                          max_b=dec.max_B[:, 0], inst_req_s=dec.requests_per_s, mem_total=dec.memory.total,
                          usable=_rows(dec.memory.usable, dec.B))

    @staticmethod
    def prefill(ci: CostInputs, la, pre: PhaseCost, transfer_s) -> "PointTable":
        ttft = pre.latency_s + (transfer_s if transfer_s is not None else 0.0)
        return PointTable(mode=Mode.PREFILL_ONLY, la=la, B=pre.B, metric=pre.tok_s_per_gpu, ttft=ttft, tpot=None,
                          fits=pre.B <= pre.max_B, invalid=np.zeros(pre.B.shape, bool), max_b=pre.max_B[:, 0],
                          inst_req_s=pre.requests_per_s, mem_total=pre.memory.total,
                          usable=_rows(pre.memory.usable, pre.B))

    @staticmethod
    def aggregated(ci: CostInputs, la, dec: PhaseCost, s: Serving, invalid) -> "PointTable":
        g = la.gpus_per_instance[:, None]
        return PointTable(mode=Mode.AGGREGATED, la=la, B=dec.B, metric=s.output_tok_s_per_gpu, ttft=s.ttft_s,
                          tpot=s.tpot_s, fits=dec.B <= dec.max_B, invalid=_inv(invalid, dec.B),
                          max_b=dec.max_B[:, 0], inst_req_s=s.output_tok_s_per_gpu * g / ci.workload.osl_tokens,
                          mem_total=dec.memory.total, usable=_rows(dec.memory.usable, dec.B))


def _rows(usable, like) -> np.ndarray:
    """One usable-memory figure per row of a (rows, points) table."""
    u = np.asarray(usable, dtype=float).reshape(-1)
    return np.broadcast_to(u, (np.shape(like)[0],))


def _inv(invalid, like):
    return np.zeros(np.shape(like), bool) if invalid is None else invalid
