"""What the deployment must serve (workload) and how well (requirements)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from meshplan.specs.base import Spec


class Phase(StrEnum):
    """Which part of serving to plan: prompt processing, token generation, or both."""

    PREFILL = "prefill"
    DECODE = "decode"
    BOTH = "both"


class PoolRole(StrEnum):
    """What one pool of a deployment does: everything (aggregated), prompts only, or decoding only."""

    AGGREGATED = "aggregated"
    PREFILL = "prefill"
    DECODE = "decode"


class Serving(StrEnum):
    """How prefill and decode share GPUs when both are planned: auto compares both ways."""

    AUTO = "auto"
    AGGREGATED = "aggregated"
    DISAGGREGATED = "disaggregated"


def computed_prompt_tokens(isl: float, hit_rate: float) -> float:
    """Prompt tokens prefill computes when ``hit_rate`` of the prompt is in the prefix cache (at
    least one, the token whose logits give the first output)."""
    return max(isl * (1.0 - hit_rate), 1.0)


def prefill_attended_tokens(isl: float, computed: float) -> float:
    """Keys each computed prompt token attends to on average: the whole cached prefix and,
    causally, half of the computed part (ISL / 2 without a cache)."""
    return isl - computed / 2.0


class WorkloadSpec(Spec):
    """Request shapes and load. Lengths are in tokens; a range is planned at its mean and sized
    for memory at its maximum."""

    isl_tokens: float = Field(gt=0)
    """Mean input (prompt) length."""
    isl_max_tokens: float = Field(gt=0)
    """Longest input; memory is sized for it."""
    osl_tokens: float = Field(gt=0)
    """Mean output length."""
    osl_max_tokens: float = Field(gt=0)
    """Longest output; memory is sized for it."""
    concurrency: int | None = Field(default=None, gt=0)
    """Requests in flight across the whole deployment; None lets meshplan pick the
    concurrency that gives the most tokens/s per GPU within memory and the requirements."""
    request_rate_per_s: float | None = Field(default=None, gt=0)
    """Arrival rate of requests for the whole deployment (adds queueing to TTFT)."""
    requests_per_client: float | None = Field(default=None, ge=1)
    """Closed loop (a concurrency given): requests each client sends over a benchmark run. The
    run's first requests all arrive at once and queue; the mean TTFT of a run of R requests per
    client carries 1/R of that start. None: steady state only (a served deployment has no start;
    meshplan validate sets the benchmarks' fitted value, catalog/calibration)."""
    client_overhead_s: float = Field(default=0.0, ge=0, le=10)
    """Time a benchmark client adds to every request's TTFT beyond the engine's own request
    overhead (its HTTP stack and timing). 0 for a served deployment and for the reference client
    (InferenceX's benchmark_serving.py, against which EngineProfile.request_overhead_s is fitted);
    meshplan validate sets the value of the client that measured a run (fidelity.harness)."""
    prefix_hit_rate: float = Field(default=0.0, ge=0, lt=1)
    """Share of each prompt's tokens the engine finds in its prefix cache (vLLM automatic prefix
    caching, SGLang RadixAttention, TensorRT-LLM KV cache reuse), so prefill computes only the rest
    while attending to all of it. 0: no reuse (benchmarks' random prompts). DeepSeek reports that
    56.3% of its service's input tokens hit its on-disk KV cache (DeepSeek-V3/R1 inference system
    overview, 2025-03-01). The cache lives in KV memory that running requests do not hold; the
    rate is what that room achieves, stated by the user, not derived."""

    @model_validator(mode="after")
    def _ranges(self) -> "WorkloadSpec":
        if self.isl_max_tokens < self.isl_tokens:
            raise ValueError(f"isl_max_tokens = {self.isl_max_tokens}: below the mean isl_tokens = {self.isl_tokens}")
        if self.osl_max_tokens < self.osl_tokens:
            raise ValueError(f"osl_max_tokens = {self.osl_max_tokens}: below the mean osl_tokens = {self.osl_tokens}")
        return self

    @property
    def computed_prompt_tokens(self) -> float:
        """Prompt tokens prefill computes per request (module function of the same name)."""
        return computed_prompt_tokens(self.isl_tokens, self.prefix_hit_rate)

    @property
    def prefill_attended_tokens(self) -> float:
        """Keys each computed prompt token attends to (module function of the same name)."""
        return prefill_attended_tokens(self.isl_tokens, self.computed_prompt_tokens)

    @property
    def decode_context_tokens(self) -> float:
        """Mean tokens in the KV cache of a decoding request: the prompt plus half the output."""
        return self.isl_tokens + self.osl_tokens / 2

    @property
    def max_context_tokens(self) -> float:
        return self.isl_max_tokens + self.osl_max_tokens


class Requirements(Spec):
    """Service-level targets. None means no target."""

    ttft_s: float | None = Field(default=None, gt=0)
    """Longest acceptable time to first token (mean)."""
    tpot_s: float | None = Field(default=None, gt=0)
    """Longest acceptable time per output token after the first (mean)."""
    ttft_p99_s: float | None = Field(default=None, gt=0)
    """Longest acceptable 99th-percentile TTFT: checked by simulating the best candidates
    (meshplan plan --sim), since the closed form gives means only."""
    tpot_p99_s: float | None = Field(default=None, gt=0)
    """Longest acceptable 99th-percentile TPOT (per request), checked the same way."""
    min_output_tok_s_per_gpu: float | None = Field(default=None, gt=0)
    """Output tokens per second per GPU that the deployment must sustain."""
    min_input_tok_s_per_gpu: float | None = Field(default=None, gt=0)
    """Prompt tokens per second per GPU (prefill capacity)."""
    min_output_tok_s: float | None = Field(default=None, gt=0)
    """Output tokens per second of the whole deployment (sizes the GPU count)."""
    memory_headroom: float = Field(default=0.9, gt=0, le=1)
    """Fraction of each GPU's memory a plan may use: of the whole memory for vLLM and SGLang, of
    the memory left free once the model is loaded for TensorRT-LLM (EngineProfile.kv_memory_share;
    the launch configs write it as the engine's own flag). Default 0.9, vLLM's default
    gpu_memory_utilization (vllm/engine/arg_utils.py) and TensorRT-LLM's default
    free_gpu_memory_fraction; the seed's plans use 0.8."""
