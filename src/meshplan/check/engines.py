"""Engine launch commands -> layout and settings, through the one notation layer
(strategy.notation). Flag names as of vLLM 0.11, SGLang 0.5 and TensorRT-LLM 1.0 (their
argument parsers: vllm/engine/arg_utils.py, sglang/srt/server_args.py,
tensorrt_llm/llmapi/llm_args.py)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from meshplan.errors import SpecError
from meshplan.strategy.layout import Layout
from meshplan.strategy.notation import from_sglang, from_trtllm, from_vllm


@dataclass(kw_only=True)
class EngineReading:
    """What a launch command says: the layout and the settings that decide memory and speed."""

    engine: str
    model: str | None = None
    layout: Layout | None = None
    context_tokens: int | None = None
    """Longest sequence the engine admits (vLLM --max-model-len, SGLang --context-length)."""
    concurrency: int | None = None
    """Most requests in flight across the command's GPUs."""
    memory_fraction: float | None = None
    kv_cache_dtype: str | None = None
    refusals: list[str] = field(default_factory=list)
    """Flag combinations the engine itself rejects at start-up."""
    ignored: list[str] = field(default_factory=list)
    """Flags the check does not use (listed, never silently dropped)."""


def _is_moe(model: str | None) -> bool:
    """Whether the named model has experts (catalog or config.json); unknown names count as MoE,
    the layout that keeps every axis."""
    from meshplan.errors import SpecError as _E
    from meshplan.io.catalog import load_model
    if not model:
        return True
    try:
        return load_model(model).is_moe
    except _E:
        return True


def _flags(cmd: str) -> tuple[list[str], dict[str, str | bool]]:
    """Positional words and --flag values (``--x=1``, ``--x 1``, bare ``--x``)."""
    words = shlex.split(cmd)
    pos, flags, i = [], {}, 0
    while i < len(words):
        w = words[i]
        if w.startswith("-"):
            if "=" in w:
                k, v = w.split("=", 1)
                flags[k] = v
            elif i + 1 < len(words) and not words[i + 1].startswith("-"):
                flags[w] = words[i + 1]
                i += 1
            else:
                flags[w] = True
        else:
            pos.append(w)
        i += 1
    return pos, flags


def _int(flags, names, default=None, field_name=""):
    for n in names:
        if n in flags:
            try:
                return int(flags.pop(n))
            except (TypeError, ValueError):
                raise SpecError(field_name or n, flags.get(n), "must be a whole number") from None
    return default


def _float(flags, names, default=None):
    for n in names:
        if n in flags:
            return float(flags.pop(n))
    return default


def parse_vllm(cmd: str) -> EngineReading:
    """``vllm serve MODEL -tp T -dp D [--enable-expert-parallel] ...``: attention tp = T,
    attention dp = D; with expert parallel ep = T*D, else the experts are tensor-parallel over
    all T*D GPUs. --max-num-seqs is per data-parallel engine."""
    pos, flags = _flags(cmd)
    r = EngineReading(engine="vllm")
    model = flags.pop("--model", None)
    if model is None and "serve" in pos:
        rest = pos[pos.index("serve") + 1:]
        model = rest[0] if rest else None
    r.model = model
    tp = _int(flags, ["-tp", "--tensor-parallel-size"], 1)
    dp = _int(flags, ["-dp", "--data-parallel-size"], 1)
    pp = _int(flags, ["-pp", "--pipeline-parallel-size"], 1)
    ep = bool(flags.pop("--enable-expert-parallel", False) or flags.pop("-ep", False))
    r.layout = from_vllm(tp, dp, pp, enable_expert_parallel=ep, is_moe=_is_moe(model))
    r.context_tokens = _int(flags, ["--max-model-len"])
    seqs = _int(flags, ["--max-num-seqs"], 256)  # vLLM's default per engine
    r.concurrency = seqs * dp
    r.memory_fraction = _float(flags, ["--gpu-memory-utilization"], 0.9)
    r.kv_cache_dtype = flags.pop("--kv-cache-dtype", None)
    r.ignored = sorted(flags)
    return r


def parse_sglang(cmd: str) -> EngineReading:
    """``python -m sglang.launch_server --model-path M --tp-size W [--dp-size D
    --enable-dp-attention] [--ep-size E]``: W counts every GPU of a stage; with DP attention,
    attention tp = W/D (SGLang asserts W % D == 0); moe tp = W/E."""
    _, flags = _flags(cmd)
    r = EngineReading(engine="sglang")
    r.model = flags.pop("--model-path", None) or flags.pop("--model", None)
    tp = _int(flags, ["--tp-size", "--tp", "--tensor-parallel-size"], 1)
    dp = _int(flags, ["--dp-size", "--dp", "--data-parallel-size"], 1)
    pp = _int(flags, ["--pp-size", "--pp", "--pipeline-parallel-size"], 1)
    dp_attention = bool(flags.pop("--enable-dp-attention", False))
    ep = _int(flags, ["--ep-size", "--ep", "--expert-parallel-size"], 1)
    a2a = flags.pop("--moe-a2a-backend", None)
    if flags.pop("--enable-deepep-moe", False) or a2a in ("deepep", "mooncake"):
        ep = tp  # the DeepEP/Mooncake all-to-all backends force ep_size = tp_size
    if dp_attention and tp % dp:
        r.refusals.append(f"--dp-size {dp} does not divide --tp-size {tp}: SGLang asserts tp_size % dp_size == 0 "
                          "with --enable-dp-attention")
    if tp % ep:
        r.refusals.append(f"--ep-size {ep} does not divide --tp-size {tp}: the MoE tensor-parallel size tp/ep "
                          "must be whole")
    if dp > 1 and not dp_attention:
        r.ignored.append(f"--dp-size {dp} without --enable-dp-attention starts {dp} independent replicas")
    if not r.refusals:
        lay = from_sglang(tp, dp, dp_attention, ep, pp, is_moe=_is_moe(r.model))
        r.layout = lay if dp_attention or dp == 1 else lay.with_instances(dp)
    r.context_tokens = _int(flags, ["--context-length"])
    r.concurrency = _int(flags, ["--max-running-requests"])
    r.memory_fraction = _float(flags, ["--mem-fraction-static"], 0.88)
    r.kv_cache_dtype = flags.pop("--kv-cache-dtype", None)
    r.ignored += sorted(k for k in flags if k != "-m")  # -m sglang.launch_server is the program itself
    return r


def parse_trtllm(path: str, model: str | None = None) -> EngineReading:
    """A TensorRT-LLM LLM-API YAML (trtllm-serve --extra_llm_api_options): moe_expert x
    moe_tensor parallel must equal tensor_parallel_size; enable_attention_dp makes attention
    tp 1 and attention dp = tensor_parallel_size."""
    p = Path(path)
    try:
        cfg: dict[str, Any] = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise SpecError("--trtllm", path, f"cannot read the YAML ({err.__class__.__name__})") from None
    r = EngineReading(engine="trtllm")
    r.model = cfg.pop("model", None) or model  # trtllm-serve takes the model as its positional argument
    tp = int(cfg.pop("tensor_parallel_size", 1))
    pp = int(cfg.pop("pipeline_parallel_size", 1))
    mep = int(cfg.pop("moe_expert_parallel_size", 1) or 1)
    mtp = cfg.pop("moe_tensor_parallel_size", None)
    mtp = int(mtp) if mtp else tp // mep
    adp = bool(cfg.pop("enable_attention_dp", False))
    if mep * mtp != tp:
        r.refusals.append(f"moe_expert_parallel_size {mep} x moe_tensor_parallel_size {mtp} = {mep * mtp} != "
                          f"tensor_parallel_size {tp}: TensorRT-LLM's Mapping rejects it")
    else:
        r.layout = from_trtllm(tp, pp, adp, mep, mtp, is_moe=_is_moe(r.model))
    r.context_tokens = cfg.pop("max_seq_len", None)
    batch = cfg.pop("max_batch_size", None)
    r.concurrency = int(batch) * (tp if adp else 1) if batch else None
    kv = cfg.pop("kv_cache_config", {}) or {}
    r.memory_fraction = float(kv.get("free_gpu_memory_fraction", 0.9))
    r.kv_cache_dtype = kv.get("dtype")
    r.ignored = sorted(cfg)
    return r
