"""A problem: model + hardware + workload + requirements, optionally a strategy to evaluate."""

from __future__ import annotations

from pydantic import Field, model_validator

from meshplan.errors import SpecError
from meshplan.specs.assumptions import CostAssumptions
from meshplan.specs.base import Spec
from meshplan.specs.dtypes import DType
from meshplan.specs.engine import EngineProfile
from meshplan.specs.hardware import GpuSpec
from meshplan.specs.model import ModelSpec
from meshplan.specs.precision import Precision
from meshplan.specs.speculative import Speculative
from meshplan.specs.workload import Phase, Requirements, Serving, WorkloadSpec


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
    """The GPU of every instance, or of the decode pool when prefill_gpu names another."""
    prefill_gpu: GpuSpec | None = None
    """Disaggregated serving on two kinds of GPU: the prefill pool's (None: the same as gpu). The
    prefill pool is then searched and costed on it, and a prompt's KV cache moves over the slower
    of the two GPUs' NICs."""
    gpu_budget: int | None = Field(default=None, gt=0)
    """Most GPUs the deployment may use; None means no limit (the search then builds instances
    of at most assumptions.search_max_gpus_per_instance GPUs)."""
    precision: Precision = Precision()
    engine: EngineProfile
    """The serving engine and release the plan is for (its scheduler sets step time)."""
    workload: WorkloadSpec
    requirements: Requirements = Requirements()
    speculative: Speculative | None = None
    """Speculative decoding the deployment may run; None: plain decoding. The search tries each
    decode pool with it and without it, and so does the evaluation of a fixed strategy."""
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
    calibration: str = ""
    """The calibration profile whose fitted factors the assumptions and engine carry ('' none)."""
    notes: tuple[Note, ...] = ()
    """What meshplan noticed or assumed while reading."""

    @model_validator(mode="after")
    def _pools(self) -> "Problem":
        if self.speculative is not None and self.phase is Phase.PREFILL:
            raise SpecError("speculative.method", self.speculative.method.value, "speculative decoding speeds up decoding; "
                            "phase is prefill")
        if self.prefill_gpu is None:
            return self
        if self.phase is not Phase.BOTH or self.serving is Serving.AGGREGATED:
            raise SpecError("prefill_gpu", self.prefill_gpu.name, f"a prefill pool on it and a decode pool on "
                            f"{self.gpu.name} need disaggregated serving of both phases (serving auto or "
                            f"disaggregated, phase both; here serving {self.serving.value}, phase {self.phase.value})")
        if self.strategy:
            raise SpecError("strategy", self.strategy, "one layout for every instance cannot run on two kinds of GPU "
                            "(prefill_gpu); give prefill_strategy and decode_strategy")
        return self

    def for_pool(self, phase: Phase | str) -> "Problem":
        """The problem a pool is costed with: the prefill pool's on prefill_gpu, else this one.
        ``phase`` may be a pool's role, which adds "aggregated" to the phases (StrEnum values
        compare equal to their text)."""
        if phase == Phase.PREFILL and self.prefill_gpu is not None:
            return self.model_copy(update={"gpu": self.prefill_gpu, "prefill_gpu": None})
        return self

    @property
    def pools_differ(self) -> bool:
        """The prefill and decode pools run on different GPUs."""
        return self.prefill_gpu is not None

    @model_validator(mode="after")
    def _strategies(self) -> "Problem":
        if self.strategy and (self.prefill_strategy or self.decode_strategy):
            raise ValueError("strategy: give either one strategy or prefill_strategy/decode_strategy, not both")
        if bool(self.prefill_strategy) != bool(self.decode_strategy) and self.phase is Phase.BOTH:
            raise ValueError("prefill_strategy/decode_strategy: disaggregated serving needs both pools' strategies")
        return self

    def gemm_efficiency(self, dtype: DType) -> float:
        """Achievable fraction of peak FLOP/s for GEMMs computed in ``dtype`` on this GPU: the
        problem's override, else the GPU's stated MFU (seed problems), else its measured table times
        the share of it sustained inside a model pass (CostAssumptions.sustained_gemm_share)."""
        a, g = self.assumptions, self.gpu
        if a.gemm_efficiency is not None:
            return a.gemm_efficiency
        if g.mfu is not None:
            return g.mfu
        return g.gemm_efficiency.get(g.compute_dtype(dtype), a.default_gemm_efficiency) * a.sustained_gemm_share

    def moe_hbm_efficiency(self, dtype: DType) -> float:
        """Achievable fraction of peak memory bandwidth for a grouped MoE GEMM's weight reads."""
        a, g = self.assumptions, self.gpu
        if a.hbm_efficiency is None and g.hbm_bw_utilization is None and g.moe_hbm_efficiency is not None:
            return g.moe_hbm_efficiency
        return self.hbm_efficiency(dtype)

    def hbm_efficiency(self, dtype: DType) -> float:
        """Achievable fraction of peak memory bandwidth when streaming ``dtype`` data."""
        a, g = self.assumptions, self.gpu
        if a.hbm_efficiency is not None:
            return a.hbm_efficiency
        if g.hbm_bw_utilization is not None:
            return g.hbm_bw_utilization
        return g.hbm_efficiency.get(dtype, a.default_hbm_efficiency)
