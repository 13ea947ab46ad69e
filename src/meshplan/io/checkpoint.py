"""A checkpoint's number formats, read from its quantization config.

Sources, by format:
- ``config.json`` ``quantization_config`` with ``quant_method: fp8`` (DeepSeek-V3/R1, Qwen3-FP8,
  MiniMax-M2.5, GLM-5-FP8: FP8 weights with 128x128 block scales) and ``modules_to_not_convert``;
- ``quant_method: mxfp4`` (gpt-oss: MXFP4 experts, attention and router in BF16);
- ``quant_method: compressed-tensors`` (Kimi-K2.5: ``config_groups`` with 4-bit integer weights in
  groups of 32, and an ``ignore`` list);
- NVIDIA ModelOpt's ``hf_quant_config.json`` beside the config (``quant_algo`` FP8 or NVFP4,
  ``kv_cache_quant_algo``, ``exclude_modules``).
A module is excluded when a pattern names it or a module above it: glob patterns
(``model.layers.*.self_attn``, ``...self_attn*``), ``re:`` regular expressions
(compressed-tensors) and exact names. A checkpoint without any of these stores BF16 weights and
a BF16 KV cache (the ``torch_dtype``/``dtype`` of every config read here).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

from meshplan.errors import SpecError
from meshplan.specs.dtypes import DType
from meshplan.specs.model import AttentionKind, ModelSpec
from meshplan.specs.precision import Precision


@dataclass(frozen=True, kw_only=True, slots=True)
class Parts:
    """One representative module name per part of a layer, as the checkpoint names them."""

    attention_in: tuple[str, ...]
    attention_out: str
    experts: str
    shared_experts: str
    dense: str


def _parts(m: ModelSpec, prefix: str) -> Parts:
    """Module names of layer ``first_dense_layers + 1`` (a MoE layer where there are any) and of
    layer 0 (dense FFN), in the Hugging Face naming of the model's family."""
    moe = f"{prefix}model.layers.{m.first_dense_layers + 1}"
    if m.attention is AttentionKind.MLA:
        attn_in = tuple(f"{moe}.self_attn.{p}" for p in ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj"))
    else:
        attn_in = tuple(f"{moe}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj"))
    return Parts(attention_in=attn_in, attention_out=f"{moe}.self_attn.o_proj",
                 experts=f"{moe}.mlp.experts.0.gate_proj", shared_experts=f"{moe}.mlp.shared_experts.gate_proj",
                 dense=f"{prefix}model.layers.0.mlp.gate_proj")


def _excluded(name: str, patterns: list[str]) -> bool:
    for pat in patterns:
        if pat.startswith("re:"):
            if re.match(pat[3:], name):
                return True
        elif any(ch in pat for ch in "*?["):
            if fnmatch.fnmatchcase(name, pat) or fnmatch.fnmatchcase(name, pat + ".*"):
                return True
        elif name == pat or name.startswith(pat + "."):
            return True
    return False


def _fmt(quantized: DType, name: str, patterns: list[str]) -> DType:
    return DType.BF16 if _excluded(name, patterns) else quantized


def _strings(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(field, value, "must be a list of module names or patterns")
    for pattern in value:
        if pattern.startswith("re:"):
            try:
                re.compile(pattern[3:])
            except re.error as err:
                raise SpecError(field, pattern, f"not a valid regular expression ({err.msg})") from None
    return value


def _compressed_tensors_format(q: dict[str, Any]) -> DType:
    groups = q.get("config_groups") or {}
    for group in groups.values() if isinstance(groups, dict) else []:
        w = group.get("weights") if isinstance(group, dict) else None
        if not isinstance(w, dict):
            continue
        if w.get("num_bits") == 4:
            return DType.INT4 if w.get("type") == "int" else DType.FP4
        if w.get("num_bits") == 8:
            return DType.FP8
    raise SpecError("quantization_config.config_groups", None, "no 4- or 8-bit weight group meshplan can read")


def checkpoint_precision(m: ModelSpec, config: dict[str, Any], quant: dict[str, Any] | None) -> tuple[Precision, str]:
    """The formats of a checkpoint of ``m`` and a line saying where they were read.
    ``config`` is the checkpoint's config.json, ``quant`` its hf_quant_config.json (or None);
    the hf_quant_config, when given, is the one read."""
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    qc = config.get("quantization_config") or text.get("quantization_config")
    kv = DType.BF16
    if quant is not None:
        q = quant.get("quantization") if isinstance(quant, dict) else None
        if not isinstance(q, dict):
            raise SpecError("hf_quant_config.quantization", q, "must be a mapping with quant_algo")
        algo = str(q.get("quant_algo", "")).upper()
        fmt = {"NVFP4": DType.FP4, "FP8": DType.FP8}.get(algo)
        if fmt is None:
            raise SpecError("hf_quant_config.quant_algo", q.get("quant_algo"), "meshplan reads NVFP4 and FP8")
        if str(q.get("kv_cache_quant_algo") or "").upper() == "FP8":
            kv = DType.FP8
        patterns = _strings(q.get("exclude_modules"), "hf_quant_config.exclude_modules")
        source = f"hf_quant_config.json ({algo}, KV {kv.value})"
    elif isinstance(qc, dict):
        method = str(qc.get("quant_method", ""))
        if method == "fp8":
            fmt, patterns = DType.FP8, _strings(qc.get("modules_to_not_convert"), "quantization_config.modules_to_not_convert")
        elif method == "mxfp4":
            fmt, patterns = DType.FP4, _strings(qc.get("modules_to_not_convert"), "quantization_config.modules_to_not_convert")
        elif method in ("compressed-tensors", "modelopt"):
            # ModelOpt's newer checkpoints write the compressed-tensors layout into config.json.
            fmt, patterns = _compressed_tensors_format(qc), _strings(qc.get("ignore"), "quantization_config.ignore")
            scheme = qc.get("kv_cache_scheme")
            if isinstance(scheme, dict) and scheme.get("num_bits") == 8:
                kv = DType.FP8
        else:
            raise SpecError("quantization_config.quant_method", method,
                            "meshplan reads fp8, mxfp4, compressed-tensors and modelopt")
        source = f"config.json quantization_config ({method})"
    else:
        return Precision(), "no quantization config: BF16 weights and KV cache"
    # Compressed-tensors and ModelOpt name a multimodal checkpoint's text modules under
    # language_model. (Kimi-K2.5); the model's own names are matched with and without it.
    prefix = "language_model." if any(p.startswith(("language_model.", "re:language_model")) for p in patterns) else ""
    parts = _parts(m, prefix)
    attention = DType.BF16 if all(_excluded(n, patterns) for n in parts.attention_in) else fmt
    out = _fmt(fmt, parts.attention_out, patterns)
    experts = _fmt(fmt, parts.experts, patterns) if m.is_moe else None
    # Without dense FFN layers the other weights are the routers, which every quantized checkpoint
    # read here keeps at 16 bits (modules_to_not_convert "gate"/"mlp.router", ModelOpt "*.gate").
    dense = _fmt(fmt, parts.dense, patterns) if m.ffn_size else DType.BF16
    prec = Precision(weights=dense, attention=attention, attention_out=out if out != attention else None,
                     experts=experts, kv_cache=kv)
    return prec, source
