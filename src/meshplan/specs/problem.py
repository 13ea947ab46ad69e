"""A problem: model + hardware + workload + requirements, optionally a strategy to evaluate."""

from __future__ import annotations

from pydantic import Field, model_validator

from meshplan.specs.assumptions import CostAssumptions
from meshplan.specs.base import Spec
from meshplan.specs.dtypes import DType
from meshplan.specs.hardware import GpuSpec
from meshplan.specs.model import ModelSpec
from meshplan.specs.workload import Phase, Requirements, Serving, WorkloadSpec


class Precision(Spec):
    """Storage formats. Attention and expert weights may differ from the rest."""

    weights: DType = DType.BF16
    """Default format of all weights."""
    attention: DType | None = None
    """Attention projections (None: as weights)."""
    experts: DType | None = None
    """Routed and shared expert FFNs (None: as weights)."""
    kv_cache: DType = DType.BF16
    """KV cache entries."""

    @property
    def attention_dtype(self) -> DType:
        return self.attention or self.weights

    @property
    def experts_dtype(self) -> DType:
        return self.experts or self.weights


class Note(Spec):
    """Something meshplan noticed or assumed while reading the problem, shown in every plan."""

    field: str
    """The input it is about."""
    message: str
    """What was noticed or assumed, and how to override it."""


class SeedStrategy(Spec):
    """A layout stated in the seed's notation (DP/TP/PP/EP and a GPU total), kept as written;
    the strategy layer reads it (meshplan.strategy.notation)."""

    gpus: int | None = None
    dp: int | None = None
    tp: int | None = None
    pp: int | None = None
    ep: int | None = None
    sp: int | None = None


class Problem(Spec):
    """Everything a plan depends on."""

    name: str
    """A name for reports (the file stem)."""
    model: ModelSpec
    gpu: GpuSpec
    gpu_budget: int | None = Field(default=None, gt=0)
    """Most GPUs the deployment may use; None means no limit (the search then builds instances
    of at most assumptions.search_max_gpus_per_instance GPUs)."""
    precision: Precision = Precision()
    workload: WorkloadSpec
    requirements: Requirements = Requirements()
    phase: Phase = Phase.BOTH
    """Plan prefill only, decode only, or full serving."""
    serving: Serving = Serving.AUTO
    """Full serving only: compare aggregated and disaggregated (auto), or plan just one."""
    strategy: str | None = None
    """A fixed strategy to evaluate for all phases (strategy-string syntax)."""
    prefill_strategy: str | None = None
    """A fixed prefill-pool strategy (disaggregated serving)."""
    decode_strategy: str | None = None
    """A fixed decode-pool strategy (disaggregated serving)."""
    seed_strategy: SeedStrategy | None = None
    """A layout written in the seed's notation, to be read and evaluated."""
    assumptions: CostAssumptions = CostAssumptions()
    notes: tuple[Note, ...] = ()
    """What meshplan noticed or assumed while reading."""

    @model_validator(mode="after")
    def _strategies(self) -> "Problem":
        if self.strategy and (self.prefill_strategy or self.decode_strategy):
            raise ValueError("strategy: give either one strategy or prefill_strategy/decode_strategy, not both")
        if bool(self.prefill_strategy) != bool(self.decode_strategy) and self.phase is Phase.BOTH:
            raise ValueError("prefill_strategy/decode_strategy: disaggregated serving needs both pools' strategies")
        return self

    @property
    def mfu(self) -> float:
        return self.gpu.mfu or self.assumptions.gemm_efficiency

    @property
    def hbm_util(self) -> float:
        return self.gpu.hbm_bw_utilization or self.assumptions.hbm_efficiency
