"""The named factors of the step model a calibration fit may move, each with its physical bounds
and the inputs it sets."""

from __future__ import annotations

from dataclasses import dataclass

from meshplan.cost.inputs import CostInputs
from meshplan.fidelity.harness import AS_STATED, Harness
from meshplan.specs.dtypes import DType
from meshplan.specs.engine import Engine


BOUND_SHARE = 1e-3
"""A fitted value within this share of its factor's range from a bound is reported as on it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Factor:
    """A named factor a fit may move: a field of the step model's inputs, for one engine's runs or
    for all, between physical bounds."""

    name: str
    """As it appears in the calibration profile: ``kernel_floor_scale`` or ``trtllm.host_gap_s``."""
    field: str
    """The CostInputs field it sets."""
    lower: float
    upper: float
    why: str
    """Why the bounds are physical."""
    section: str
    """Where the value lives in a calibration profile: ``assumptions`` (a CostAssumptions field),
    ``engines`` (an EngineProfile field of ``engine``) or ``benchmark`` (a WorkloadSpec field of
    the measurement runs)."""
    key: str
    """The field name in that section."""
    engine: Engine | None = None
    relative_to: float | None = None
    """The field holds a rate scaled by this factor's default: the fit multiplies by value/default."""
    also: tuple[str, ...] = ()
    """Further CostInputs fields it scales as it scales ``field`` (a factor on several rates)."""
    followed_by: tuple[str, ...] = ()
    """Engine fields that take this value too where the engine profile leaves them unset (None):
    a decode pool's host gap is the engine's host gap unless it has its own."""
    experts_format: DType | None = None
    """The factor reaches only runs whose routed experts' weights are in this format (None: any)."""
    by_default: bool = True
    """Fitted when the command names no factors. A factor with a measured source that the dev set
    cannot tell apart from another (both slow the same layers) keeps its source unless asked for."""

    def bound_reached(self, value: float) -> str:
        """``lower`` or ``upper`` when a fitted value lies on that bound (within BOUND_SHARE of the
        range), else empty: the runs would move it further than its physical range allows, so what
        they ask for there is missing from the step model (unless the bound is its true value, a
        time of 0), and its uncertainty does not hold."""
        span = self.upper - self.lower
        if value <= self.lower + BOUND_SHARE * span:
            return "lower"
        if value >= self.upper - BOUND_SHARE * span:
            return "upper"
        return ""

    def apply(self, ci: CostInputs, value: float, harness: Harness = AS_STATED) -> dict[str, float]:
        """The inputs this factor sets for runs of ``ci``'s problem measured by ``harness``: none
        for another engine's runs, for runs whose experts are in another format than the factor's
        (experts_format), nor for a benchmark factor the runs' client states."""
        if self.engine is not None and ci.engine.engine is not self.engine:
            return {}
        if self.experts_format is not None and ci.expert_dtype is not self.experts_format:
            return {}
        if self.section == "benchmark" and getattr(harness, self.key, None) is not None:
            return {}
        if self.relative_to is not None:
            return {name: getattr(ci, name) * value / self.relative_to for name in (self.field, *self.also)}
        return {self.field: value} | {name: value for name in self.followed_by if getattr(ci.engine, name) is None}


def _engine_factors(e: Engine) -> list[Factor]:
    return [
        Factor(name=f"{e.value}.host_gap_s", field="host_gap_s", lower=0.0, upper=3e-3, engine=e,
               section="engines", key="host_gap_s", followed_by=("decode_pool_host_gap_s",),
               why="GPU idle per iteration between 0 (fully hidden) and 3 ms (a whole host step of a large batch)"),
        Factor(name=f"{e.value}.decode_pool_host_gap_s", field="decode_pool_host_gap_s", lower=0.0, upper=3e-3,
               engine=e, section="engines", key="decode_pool_host_gap_s", by_default=False,
               why="as host_gap_s, for a disaggregated decode pool's own scheduler loop"),
        # Fitted only when named: on silicon-dev (2026-12-01) it met every in-sample target (SGLang GB300
        # TPOT 27% -> 14%; SGLang's pool 0.03 ms, its aggregated gap 1.66 ms) but the leave-one-group-out
        # medians went from TTFT 24.7% / TPOT 11.4% to 26.9% / 12.3% (before each run got its own launch
        # settings, commit c4aec9e; the refit since gives 28.0% / 11.9% without it).
        Factor(name=f"{e.value}.kernel_launch_s", field="kernel_launch_s", lower=2e-6, upper=1e-4, engine=e,
               section="engines", key="kernel_launch_s",
               why="CPU time per kernel outside a graph: from a bare CUDA launch (2 us) to a slow eager op (100 us)"),
        # Fitted by simulation (fidelity.simfit), not by the closed form's default fit.
        Factor(name=f"{e.value}.fp8_fused_moe_share", field="fused_moe_share", lower=0.25, upper=1.0,
               engine=e, experts_format=DType.FP8, section="engines", key="fp8_fused_moe_share", by_default=False,
               why="a share of the FP8 grouped-GEMM rate: all of it (1) down to a quarter, where an FP8 kernel "
                   "would run at half a BF16 kernel's rate (FP8 peaks are twice BF16's)"),
        Factor(name=f"{e.value}.request_overhead_s", field="request_overhead_s", lower=0.0, upper=0.3, engine=e,
               section="engines", key="request_overhead_s",
               why="front end, tokenization and queues: 0 to 300 ms per request"),
    ]


FACTORS: tuple[Factor, ...] = (
    Factor(name="kernel_floor_scale", field="kernel_floor_s", lower=0.2, upper=2.5, relative_to=1.0,
           section="assumptions", key="kernel_floor_scale",
           why="per-kernel floor from a fifth (fused, overlapped launches) to 2.5x an isolated kernel's"),
    Factor(name="sustained_gemm_share", field="other_flop_per_s", lower=0.5, upper=1.0, relative_to=1.0,
           also=("attn_flop_per_s", "attn_out_flop_per_s", "expert_flop_per_s", "shared_flop_per_s",
                 "core_flop_per_s"), section="assumptions",
           key="sustained_gemm_share",
           why="a kernel sustains in a pass from half (power-capped clocks, fewer waves, SMs held by collectives) "
               "to all of its rate measured alone"),
    Factor(name="grouped_gemm_efficiency", field="expert_flop_per_s", lower=0.5, upper=1.0, relative_to=0.6,
           section="assumptions", key="grouped_gemm_efficiency",
           why="a grouped GEMM reaches at most a dense GEMM's rate; measured MoE modules reach 0.5-0.68 of it "
               "(aiconfigurator, DeepSeek-V3 shape, EP8, 16k tokens: H200 0.5, B200 0.66-0.68), so no lower"),
    Factor(name="expert_slice_half_width", field="expert_slice_half_width", lower=0.0, upper=2048.0,
           section="assumptions", key="expert_slice_half_width",
           why="no narrowing (0) up to half the rate at a slice as wide as a whole DeepSeek-V3 expert (2,048)"),
    Factor(name="expert_load_cv", field="expert_load_cv", lower=0.0, upper=2.5, section="assumptions", key="expert_load_cv",
           why="expert popularity spread from uniform (0) to the most skewed measured (TensorRT-LLM blog 4: 1.67)",
           by_default=False),  # measured; on silicon-dev it trades off against grouped_gemm_efficiency (both slow MoE layers)
    Factor(name="clump_coherence", field="clump_coherence", lower=0.0, upper=1.0, section="assumptions",
           key="clump_coherence", why="a share: from every prompt alone (0) to whole clumps (1)"),
    Factor(name="wave_coherence", field="wave_coherence", lower=0.0, upper=1.0, section="assumptions",
           key="wave_coherence", why="a share: from groups that end in one receive interval (0) to whole waves (1)"),
    Factor(name="requests_per_client", field="requests_per_client", lower=1.0, upper=50.0, section="benchmark",
           key="requests_per_client", why="a benchmark sends at least one request per client and rarely more than 50"),
    Factor(name="client_overhead_s", field="client_overhead_s", lower=0.0, upper=0.3, section="benchmark",
           key="client_overhead_s", why="a client's own time per request beyond the reference client's: 0 to 300 ms"),
    *(f for e in Engine for f in _engine_factors(e)),
)
"""Every factor a fit may move."""
