"""A TensorRT-LLM LLM-API YAML (``trtllm-serve --extra_llm_api_options FILE``) -> checked settings.

The keys the check uses, with TensorRT-LLM 1.0's types and defaults (tensorrt_llm/llmapi/llm_args.py:
BaseLlmArgs and KvCacheConfig). The file is read once, here, and every key is checked as the
LLM API's pydantic model would (a whole number is not a fraction or a word; a degree is at least
1); a bad value is reported under its key, with the value as written. Keys the check does not use
are listed, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshplan.errors import SpecError
from meshplan.io.user_file import load_yaml, read_text
from meshplan.specs.dtypes import DType

TRTLLM_KV_DTYPES: dict[str, DType | None] = {"auto": None, "fp8": DType.FP8, "nvfp4": DType.FP4}
"""kv_cache_config.dtype values TensorRT-LLM accepts (tensorrt_llm/_torch/pyexecutor/model_loader.py
_VALID_KV_CACHE_DTYPES; nvfp4 from 1.1). 'auto' is the checkpoint's format (None here)."""

MAX_WHOLE = 2**31 - 1
"""Largest whole number a setting may hold: TensorRT-LLM keeps sizes and lengths in int32
(SizeType32 in its executor config), so a larger value is a typo, not a deployment."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TrtllmConfig:
    """The settings of one LLM-API YAML that decide layout, memory and concurrency."""

    model: str | None = None
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    moe_expert_parallel_size: int | None = None
    """None: derived from moe_tensor_parallel_size (tensorrt_llm/mapping.py; 1 when both are unset)."""
    moe_tensor_parallel_size: int | None = None
    enable_attention_dp: bool = False
    max_seq_len: int | None = None
    """None: TensorRT-LLM derives it from the model's config."""
    max_batch_size: int | None = None
    """Running requests per rank; None: the engine's default (the engine profile's max_batch)."""
    free_gpu_memory_fraction: float = 0.9
    """KvCacheConfig default 0.9."""
    kv_cache_dtype: DType | None = None
    adp_balance: tuple[int, int] | None = None
    """attention_dp_config with enable_balance: (timeout_iters, batching_wait_iters), TensorRT-LLM's
    AttentionDpConfig defaults 50 and 10 where unset; None when balancing is off."""
    ignored: tuple[str, ...] = ()


def whole(value: Any, key: str, where: str, *, minimum: int = 1) -> int:
    """A whole number in [minimum, MAX_WHOLE]: never a bool, a fraction or text."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_WHOLE:
        raise SpecError(key, value, f"must be a whole number >= {minimum} ({where})")
    return value


def _fraction(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise SpecError(key, value, f"must be a fraction of the GPU's free memory in (0, 1] ({where})")
    return float(value)


def _kv_cache_config(value: Any, where: str) -> tuple[float, DType | None, list[str]]:
    """(free_gpu_memory_fraction, dtype, keys not used) of kv_cache_config."""
    if value is None:
        return 0.9, None, []
    if not isinstance(value, dict):
        raise SpecError("kv_cache_config", value, f"must be a mapping (free_gpu_memory_fraction, dtype, ...) ({where})")
    kv = dict(value)
    fraction = kv.pop("free_gpu_memory_fraction", None)
    dtype = kv.pop("dtype", None)
    if dtype is not None and (not isinstance(dtype, str) or dtype not in TRTLLM_KV_DTYPES):
        raise SpecError("kv_cache_config.dtype", dtype, f"not a KV-cache format TensorRT-LLM knows; use one of "
                        f"{', '.join(TRTLLM_KV_DTYPES)} ({where})")
    return (0.9 if fraction is None else _fraction(fraction, "kv_cache_config.free_gpu_memory_fraction", where),
            None if dtype is None else TRTLLM_KV_DTYPES[dtype], [f"kv_cache_config.{k}" for k in kv])


def _attention_dp_config(value: Any, where: str) -> tuple[tuple[int, int] | None, list[str]]:
    """(timeout_iters, batching_wait_iters) when attention_dp_config enables balancing, and its keys
    not used."""
    if value is None:
        return None, []
    if not isinstance(value, dict):
        raise SpecError("attention_dp_config", value, f"must be a mapping (enable_balance, timeout_iters, "
                        f"batching_wait_iters) ({where})")
    adp = dict(value)
    on = adp.pop("enable_balance", False)
    if not isinstance(on, bool):
        raise SpecError("attention_dp_config.enable_balance", on, f"must be true or false ({where})")
    timeout = adp.pop("timeout_iters", 50)
    batching = adp.pop("batching_wait_iters", 10)
    timeout = whole(timeout, "attention_dp_config.timeout_iters", where)
    batching = whole(batching, "attention_dp_config.batching_wait_iters", where, minimum=0)
    return ((timeout, batching) if on else None), [f"attention_dp_config.{k}" for k in adp]


def read_trtllm_yaml(path: str) -> TrtllmConfig:
    """The checked settings of the YAML at ``path`` (named --trtllm in errors)."""
    where = f"in {Path(path).name}"
    data = load_yaml(read_text(path, "--trtllm"), "--trtllm", path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError("--trtllm", path, f"must hold a mapping of LLM-API options (key: value), not a "
                        f"{type(data).__name__}")
    cfg = {str(k): v for k, v in data.items()}
    model = cfg.pop("model", None)
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise SpecError("model", model, f"must be a model name or path ({where})")

    def degree(key: str, default: int | None) -> int | None:
        value = cfg.pop(key, None)
        return default if value is None else whole(value, key, where)

    adp = cfg.pop("enable_attention_dp", False)
    if not isinstance(adp, bool):
        raise SpecError("enable_attention_dp", adp, f"must be true or false ({where})")
    fraction, kv_dtype, kv_unused = _kv_cache_config(cfg.pop("kv_cache_config", None), where)
    balance, adp_unused = _attention_dp_config(cfg.pop("attention_dp_config", None), where)
    settings = dict(
        model=model, tensor_parallel_size=degree("tensor_parallel_size", 1),
        pipeline_parallel_size=degree("pipeline_parallel_size", 1),
        moe_expert_parallel_size=degree("moe_expert_parallel_size", None),
        moe_tensor_parallel_size=degree("moe_tensor_parallel_size", None), enable_attention_dp=adp,
        max_seq_len=degree("max_seq_len", None), max_batch_size=degree("max_batch_size", None))
    return TrtllmConfig(**settings, free_gpu_memory_fraction=fraction, kv_cache_dtype=kv_dtype, adp_balance=balance,
                        ignored=tuple(sorted(list(cfg) + kv_unused + adp_unused)))

