"""A measured run -> the Problem meshplan predicts it with (model, GPU, formats, engine, workload)."""

from __future__ import annotations

from meshplan.fidelity.silicon import SiliconCase
from meshplan.io.calibration import DEFAULT_PROFILE, load_profile
from meshplan.io.catalog import checkpoints, load_gpu, load_model
from meshplan.io.problem_file import problem_from_raw
from meshplan.specs.dtypes import DType
from meshplan.specs.precision import Precision
from meshplan.specs.problem import Problem


def case_precision(case: SiliconCase) -> tuple[str, Precision]:
    """(checkpoint id, formats) for a run.

    The row's model_path names the architecture and its format columns the quantization. The
    checkpoint is the catalog checkpoint of that architecture whose quantized format matches the
    row's (the experts' format for MoE models, the attention GEMMs' for dense ones); its config
    then gives the formats per part and the KV cache's (the README: the KV format "follows the
    checkpoint"). When model_path is itself a checkpoint id it is used as it is. Without a
    matching checkpoint the columns are read literally, with a BF16 KV cache."""
    named = load_model(case.model)
    key = named.name
    main = case.moe_format if named.is_moe else case.gemm_format
    if main is None or named.checkpoint == case.model and _main(named.checkpoint_precision, named.is_moe) == main:
        return named.checkpoint, named.checkpoint_precision
    for ckpt, prec in checkpoints(key).items():
        if _main(prec, named.is_moe) == main:
            return ckpt, prec
    gemm = case.gemm_format or DType.BF16
    prec = Precision(weights=gemm, attention=gemm, experts=case.moe_format, kv_cache=DType.BF16)
    return case.model, prec


def _main(p: Precision, moe: bool) -> DType:
    return p.experts_dtype if moe else p.attention_dtype


def _launch_args(case: SiliconCase) -> tuple:
    return (case.engine, load_model(case.model).name, load_gpu(case.gpu).name, case.concurrency,
            case.disaggregated, case.measured, case.isl)


def launch_of(case: SiliconCase) -> tuple[dict[str, object], DType | None]:
    """(engine settings, KV-cache format) the run's launch scripts set (Harness.settings_for and
    kv_cache_for; None: the checkpoint's format). They may depend on its concurrency (InferenceX's
    SGLang receive interval), its date and its prompt length (vLLM's --max-num-batched-tokens
    $((ISL * 2))), so runs that differ only in those may be served differently."""
    args = _launch_args(case)
    return case.harness.settings_for(*args), case.harness.kv_cache_for(*args)


def case_problem(case: SiliconCase, calibration: str | None = DEFAULT_PROFILE) -> Problem:
    """The problem of a run: its model and formats, GPU, engine, the lengths its benchmark client
    sent (fidelity.harness: InferenceX draws them from [0.8 x len, len]) and its concurrency,
    under a calibration profile (``none``: the sourced defaults, which a fit starts from). Requests
    per client are the client's where its source states them, else the profile's benchmark factor;
    engine settings its launch scripts pass (Harness.settings_for) replace the engine's defaults,
    and a KV-cache format they set (Harness.kv_cache_for) the checkpoint's."""
    ckpt, prec = case_precision(case)
    settings, kv = launch_of(case)
    if kv is not None:  # the launch scripts set the KV format instead of the checkpoint's
        prec = prec.model_copy(update={"kv_cache": kv})
    profile = load_profile(calibration)
    h = case.harness
    workload = {"isl": h.lengths(case.isl), "osl": h.lengths(case.osl), "concurrency": case.concurrency}
    if case.prefix_hit_rate:
        workload["prefix_hit_rate"] = case.prefix_hit_rate
    if h.requests_per_client is not None:
        workload["requests_per_client"] = h.requests_per_client
    elif profile is not None and "requests_per_client" in profile.benchmark:
        workload["requests_per_client"] = profile.benchmark["requests_per_client"].value
    if h.client_overhead_s is not None:
        workload["client_overhead_s"] = h.client_overhead_s
    elif profile is not None and "client_overhead_s" in profile.benchmark:
        workload["client_overhead_s"] = profile.benchmark["client_overhead_s"].value
    raw = {
        "name": case.id, "model": ckpt, "gpu": case.gpu,
        "engine": {"name": case.engine.value, "version": case.engine_version or None, **settings},
        "precision": {k: (v.value if v is not None else None) for k, v in prec.model_dump().items()},
        "workload": workload,
        "serving": "disaggregated" if case.disaggregated else "aggregated",
        "calibration": calibration or "none",
    }
    return problem_from_raw(raw)
