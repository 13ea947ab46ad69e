"""The figures of one phase of a plan: its layout, memory per GPU and per-operator breakdown
(the ``phases`` of the plan document, and the plan's own ``memory_per_gpu_bytes``)."""

from __future__ import annotations

from dataclasses import dataclass

from meshplan.cost.roofline import OpKind
from meshplan.specs.workload import Phase
from meshplan.strategy.rules import Violation


@dataclass(frozen=True, kw_only=True, slots=True)
class Memory:
    """Memory per GPU on the fullest pipeline stage, in bytes."""

    weights: float
    """Weights held (attention and embeddings replicated per expert-parallel rank, routed experts split)."""
    kv_cache: float
    """KV cache of the requests in flight."""
    activations: float
    """Activations of one pass."""
    reserve: float
    """Runtime reserve (CUDA context, allocator, communication buffers)."""
    total: float
    """weights + kv_cache + activations + reserve."""
    capacity: float
    """The GPU's memory."""
    usable: float
    """The share of capacity the engine may fill (the problem's memory headroom)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Strategy:
    """One pool's layout: the strategy string and the degrees it spells out."""

    string: str
    """The layout as meshplan writes it (strategy.layout): what a plan JSON's pools are parsed from."""
    instances: int
    """Independent copies of the model."""
    pp: int
    """Pipeline stages per instance."""
    tp: int
    """Tensor-parallel degree of attention."""
    dp: int
    """Attention data-parallel ranks per stage (each keeps its own requests and KV cache)."""
    ep: int
    """Expert-parallel degree (folded onto tp x dp: it does not multiply the GPU count)."""
    etp: int
    """Tensor-parallel degree inside each expert."""
    gpus_per_instance: int
    """pp x tp x dp."""
    gpus: int
    """instances x gpus_per_instance."""
    layers_per_stage: tuple[int, ...]
    """Layers of each pipeline stage (the first stages take one more when uneven)."""
    experts_per_gpu: int | None
    """Routed expert slots per GPU (redundant replicas included); None for a dense model."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Operator:
    """One operator of a layer, for one pass, per GPU."""

    op: str
    """The operator's name (cost.layer)."""
    kind: OpKind
    """Compute (SMs) or comm (links)."""
    time_s: float | None
    """Time of one pass."""
    flops: float | None
    """FLOPs of one pass."""
    hbm_bytes: float | None
    """HBM bytes moved."""
    comm_bytes: float | None
    """Bytes sent over links."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Operators:
    """The per-layer operator breakdown of one pass."""

    dense_layer: tuple[Operator, ...]
    """A layer without routed experts."""
    moe_layer: tuple[Operator, ...]
    """A layer with routed experts."""
    lm_head: tuple[Operator, ...]
    """The final norm and LM head."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PhaseFigures:
    """The figures of one phase of the chosen candidate, on its own pool (the whole instance when
    aggregated). A figure that does not apply to the phase (TPOT of prefill) is None."""

    ttft_s: float | None
    """Mean time to first token (prefill)."""
    tpot_s: float | None
    """Mean time per output token (decode)."""
    output_tok_s_per_gpu: float | None
    """Output tokens/s per GPU (decode)."""
    input_tok_s_per_gpu: float | None
    """Prompt tokens/s per GPU (prefill)."""
    output_tok_s: float | None
    """Output tokens/s of the pool (decode)."""
    batch_per_attention_dp_rank: float
    """Sequences (decode) or prompts (prefill) per attention-dp rank: the pool's operating point."""
    max_concurrency: float | None
    """Most requests in flight memory holds (decode only)."""
    context_tokens: float
    """Tokens of context the phase is costed at (mean decode context, or the prompt)."""
    gpu: str
    """The pool's GPU (a disaggregated plan's prefill pool may have its own)."""
    gpus_total: int
    """GPUs of the pool."""
    feasible: bool
    """Whether the phase breaks no rule."""
    violations: tuple[Violation, ...]
    """Broken rules of this phase (the other phase's latency target left out)."""
    kv_cache_bytes_per_token: float
    """KV bytes of one token, whole model."""
    step_s: float | None
    """One scheduler iteration."""
    strategy: Strategy
    """The pool's layout."""
    memory_per_gpu_bytes: Memory
    """Memory per GPU on the fullest stage."""
    operators: Operators
    """Per-layer operator breakdown of one pass."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Phases:
    """The plan's phases: each one's figures, or None when the plan does not serve it."""

    prefill: PhaseFigures | None
    """Prompt processing."""
    decode: PhaseFigures | None
    """Token generation."""

    def present(self) -> tuple[tuple[Phase, PhaseFigures], ...]:
        """(phase, figures) of each phase the plan serves, prefill first."""
        return tuple((p, f) for p, f in ((Phase.PREFILL, self.prefill), (Phase.DECODE, self.decode)) if f is not None)

    def of(self, phase: Phase | str) -> PhaseFigures | None:
        """The figures of ``phase`` (prefill or decode; a plan keeps no figures for both at once)."""
        phase = Phase(phase)
        if phase is Phase.BOTH:
            raise ValueError("a plan keeps figures per phase: prefill or decode, not both")
        return self.prefill if phase is Phase.PREFILL else self.decode
