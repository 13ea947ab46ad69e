"""All legal layouts of one instance, as arrays (for the vectorized search)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meshplan.specs.hardware import GpuSpec
from meshplan.specs.model import ModelSpec
from meshplan.strategy.layout import instance_gpus
from meshplan.strategy.rules import legal_mask


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(frozen=True, kw_only=True, slots=True)
class LayoutArrays:
    """One row per legal instance layout."""

    tp: np.ndarray
    dp: np.ndarray
    pp: np.ndarray
    ep: np.ndarray
    etp: np.ndarray

    def __len__(self) -> int:
        return len(self.tp)

    @property
    def gpus_per_instance(self) -> np.ndarray:
        return instance_gpus(self.tp, self.dp, self.pp)

    def take(self, rows) -> "LayoutArrays":
        """The layouts of ``rows`` (indices or a mask), in that order."""
        return LayoutArrays(tp=self.tp[rows], dp=self.dp[rows], pp=self.pp[rows], ep=self.ep[rows], etp=self.etp[rows])


def one_layout(tp: int, dp: int, pp: int, ep: int, etp: int) -> LayoutArrays:
    """A single layout as arrays, to evaluate it with the search's own machinery."""
    a = lambda v: np.array([v], dtype=np.int64)  # noqa: E731
    return LayoutArrays(tp=a(tp), dp=a(dp), pp=a(pp), ep=a(ep), etp=a(etp))


def enumerate_layouts(model: ModelSpec, gpu: GpuSpec, max_gpus_per_instance: int, *,
                      redundant_experts: int) -> LayoutArrays:
    """Every (pp, tp, dp, ep, etp) with pp*tp*dp <= max_gpus_per_instance that breaks no rule of
    strategy.rules. tp and etp range over the divisors of the node size (the rule that keeps
    them inside a node), ep over the divisors of the expert count (plus redundant replicas), dp = ep*etp/tp (folding), pp
    over 1..layers (uneven splits allowed)."""
    node = divisors(gpu.nvlink_domain_gpus)
    rows = []
    for tp in node:
        if model.is_moe:
            for ep in divisors(model.num_experts + redundant_experts):
                for etp in node:
                    g = ep * etp
                    if g % tp or g > max_gpus_per_instance:
                        continue
                    rows.append((tp, g // tp, ep, etp))
        else:
            if tp <= max_gpus_per_instance:
                rows.append((tp, 1, 1, 1))
    out = []
    for tp, dp, ep, etp in rows:
        g = tp * dp
        for pp in range(1, min(model.num_layers, max_gpus_per_instance // g) + 1):
            out.append((tp, dp, pp, ep, etp))
    arr = np.array(out, dtype=np.int64).reshape(-1, 5)
    mask = legal_mask(model, gpu, arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4], redundant=redundant_experts)
    arr = arr[mask]
    return LayoutArrays(tp=arr[:, 0], dp=arr[:, 1], pp=arr[:, 2], ep=arr[:, 3], etp=arr[:, 4])
