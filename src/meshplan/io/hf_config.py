"""Hugging Face ``config.json`` -> ModelSpec, one reader for the catalog and for local files.

Field names are those of the transformers configuration classes of each family: LlamaConfig,
MistralConfig, Qwen2/Qwen3Config, MixtralConfig, Qwen2MoeConfig/Qwen3MoeConfig,
DeepseekV3Config (also DeepSeek-V2, Kimi-K2), GptOssConfig, Llama4TextConfig, MiniMaxM2Config,
Qwen3_5MoeTextConfig (Qwen3-Next's hybrid Gated DeltaNet layout), GlmMoeDsaConfig (MLA with
DeepSeek Sparse Attention). Multimodal configs (Llama-4, Kimi-K2.5, Qwen3.5) nest the text model
under ``text_config``; only the text model is read (vision towers are not served by the plan).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from meshplan.errors import SpecError
from meshplan.specs.model import AttentionKind, ModelSpec, RouterScoring

DENSE_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "phi3", "granite"}
MOE_TYPES = {"mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3", "kimi_k2", "gpt_oss", "llama4",
             "llama4_text", "minimax_m2", "qwen3_5_moe", "qwen3_5_moe_text", "qwen3_next", "glm_moe_dsa", "kimi_k25"}
WRAPPED_TYPES = {"llama4", "kimi_k25", "qwen3_5_moe"}
"""Multimodal families whose text model sits under ``text_config``."""


def read_json_file(path: Any, field: str) -> Any:
    """A JSON file's content; SpecError naming ``field`` when it is missing or unreadable."""
    p = Path(str(path))
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(field, str(path), "no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise SpecError(field, str(path), f"cannot read it ({err.__class__.__name__})") from None
    except json.JSONDecodeError as err:
        raise SpecError(field, str(path), f"not valid JSON ({err.msg} at line {err.lineno})") from None


def load_hf_config(path: str | Path, name: str | None = None, **extra: Any) -> ModelSpec:
    """Read a config.json file into a ModelSpec; ``extra`` fields (published_params) pass through."""
    p = Path(str(path))
    raw = read_json_file(p, "model")
    return hf_config_to_spec(raw, name=name or p.name.removesuffix(".json").removesuffix(".config"),
                             source=str(p), **extra)


def _get(cfg: dict[str, Any], key: str, model_type: str) -> Any:
    if key not in cfg:
        raise SpecError(f"config.json:{key}", None, f"missing; a {model_type} config needs it")
    return cfg[key]


def hf_config_to_spec(raw: dict[str, Any], *, name: str, source: str = "", **extra: Any) -> ModelSpec:
    """Translate one config dict. Raises SpecError naming the field for anything unreadable."""
    if not isinstance(raw, dict):
        raise SpecError("config.json", type(raw).__name__, "must be a JSON object of configuration fields")
    wrapped = raw.get("model_type") in WRAPPED_TYPES and isinstance(raw.get("text_config"), dict)
    cfg = raw["text_config"] if wrapped else raw
    model_type = str(cfg.get("model_type") or raw.get("model_type", ""))
    if model_type not in DENSE_TYPES | MOE_TYPES:
        known = ", ".join(sorted(DENSE_TYPES | MOE_TYPES))
        raise SpecError("config.json:model_type", model_type, f"not a family meshplan reads; known: {known}")
    try:
        return _spec(cfg, model_type, name, source, extra)
    except (TypeError, ValueError, KeyError) as err:
        if isinstance(err, SpecError):
            raise
        field = err.args[0] if isinstance(err, KeyError) else None
        raise SpecError(f"config.json:{field}" if field else "config.json", source or name,
                        "missing or not a number where the family needs one") from None


def _spec(cfg: dict[str, Any], model_type: str, name: str, source: str, extra: dict[str, Any]) -> ModelSpec:
    hidden = int(_get(cfg, "hidden_size", model_type))
    heads = int(_get(cfg, "num_attention_heads", model_type))
    fields: dict[str, Any] = dict(
        name=name, source=source,
        num_layers=int(_get(cfg, "num_hidden_layers", model_type)),
        hidden_size=hidden, num_heads=heads,
        num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=int(cfg.get("head_dim") or hidden // heads),
        vocab_size=int(_get(cfg, "vocab_size", model_type)),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        attention_bias=bool(cfg.get("attention_bias", False)),
        ffn_size=int(cfg.get("intermediate_size", 0)),
    )
    fields["attention"] = AttentionKind.MHA if fields["num_kv_heads"] == heads else AttentionKind.GQA
    reader = _FAMILY.get(model_type)
    if reader is not None:
        reader(cfg, fields)
    fields.update(extra)
    try:
        return ModelSpec(**fields)
    except ValueError as err:
        raise SpecError("model", source or name, str(err).splitlines()[-1].strip()) from None


def _mixtral(cfg: dict[str, Any], f: dict[str, Any]) -> None:
    f.update(num_experts=cfg["num_local_experts"], top_k=cfg["num_experts_per_tok"],
             expert_ffn_size=cfg["intermediate_size"], ffn_size=0)


def _qwen_moe(cfg: dict[str, Any], f: dict[str, Any]) -> None:
    # Qwen3-MoE lists dense layers in mlp_only_layers and spaces MoE with decoder_sparse_step.
    if cfg.get("mlp_only_layers"):
        raise SpecError("config.json:mlp_only_layers", cfg["mlp_only_layers"],
                        "dense layers in arbitrary positions are not supported yet")
    shared = int(cfg.get("shared_expert_intermediate_size", 0) or 0)
    f.update(num_experts=cfg["num_experts"], top_k=cfg["num_experts_per_tok"],
             expert_ffn_size=cfg["moe_intermediate_size"], moe_layer_step=int(cfg.get("decoder_sparse_step", 1)),
             num_shared_experts=1 if shared else 0, shared_expert_ffn_size=shared)


def _deepseek(cfg: dict[str, Any], f: dict[str, Any]) -> None:
    # MLA: queries and keys have nope + rope dims per head; the cache holds kv_lora + rope per token.
    f.update(attention=AttentionKind.MLA, num_kv_heads=f["num_heads"],
             head_dim=cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"],
             q_lora_rank=int(cfg.get("q_lora_rank") or 0), kv_lora_rank=cfg["kv_lora_rank"],
             qk_nope_head_dim=cfg["qk_nope_head_dim"], qk_rope_head_dim=cfg["qk_rope_head_dim"],
             v_head_dim=cfg["v_head_dim"],
             num_experts=cfg["n_routed_experts"], top_k=cfg["num_experts_per_tok"],
             expert_ffn_size=cfg["moe_intermediate_size"], num_shared_experts=int(cfg.get("n_shared_experts") or 0),
             first_dense_layers=int(cfg.get("first_k_dense_replace", 0)),
             moe_layer_step=int(cfg.get("moe_layer_freq", 1)),
             router_scoring=RouterScoring(cfg.get("scoring_func", "softmax")))


def _gpt_oss(cfg: dict[str, Any], f: dict[str, Any]) -> None:
    # Alternating sliding-window (128 tokens) and full attention layers; biases everywhere.
    layer_types = cfg.get("layer_types") or []
    windowed = sum(1 for t in layer_types if t == "sliding_attention")
    f.update(num_experts=cfg["num_local_experts"], top_k=cfg.get("num_experts_per_tok", cfg.get("experts_per_token")),
             expert_ffn_size=cfg["intermediate_size"], ffn_size=0, expert_bias=True,
             num_window_layers=windowed, window_tokens=int(cfg.get("sliding_window") or 0) if windowed else 0)


def _llama4(cfg: dict[str, Any], f: dict[str, Any]) -> None:
    # Llama-4: one shared expert per MoE layer of the routed size; dense layers use
    # intermediate_size_mlp; 3 of every 4 layers use chunked attention of attention_chunk_size
    # (the 4th is a global NoPE layer; transformers Llama4TextConfig.no_rope_layers default).
    chunk = int(cfg.get("attention_chunk_size") or 0)
    layers = int(cfg["num_hidden_layers"])
    f.update(num_experts=cfg["num_local_experts"], top_k=cfg["num_experts_per_tok"],
             expert_ffn_size=cfg["intermediate_size"], ffn_size=int(cfg.get("intermediate_size_mlp", 0)),
             num_shared_experts=1, moe_layer_step=int(cfg.get("interleave_moe_layer_step", 1)),
             num_window_layers=layers - layers // 4 if chunk else 0, window_tokens=chunk)
    if f["moe_layer_step"] == 1:
        f["ffn_size"] = 0


def _minimax_m2(cfg: dict[str, Any], f: dict[str, Any]) -> None:
    # MiniMax-M2: GQA with per-layer q/k RMSNorm, every layer MoE, sigmoid router with a
    # correction bias; intermediate_size is one expert's FFN; its MTP modules are not counted.
    f.update(num_experts=cfg["num_local_experts"], top_k=cfg["num_experts_per_tok"],
             expert_ffn_size=cfg["intermediate_size"], ffn_size=0,
             num_shared_experts=1 if cfg.get("shared_intermediate_size") else 0,
             shared_expert_ffn_size=int(cfg.get("shared_intermediate_size") or 0),
             router_scoring=RouterScoring(cfg.get("scoring_func", "softmax")))


def _qwen3_5(cfg: dict[str, Any], f: dict[str, Any]) -> None:
    # Qwen3-Next / Qwen3.5: three Gated DeltaNet layers per gated full-attention layer
    # (full_attention_interval), MoE with one gated shared expert in every layer.
    _qwen_moe(cfg, f)
    interval = int(cfg.get("full_attention_interval") or 1)
    types = cfg.get("layer_types")
    if types is not None and interval > 1:
        expected = ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(len(types))]
        if list(types) != expected:
            raise SpecError("config.json:layer_types", "...", f"not every {interval}th layer full attention; "
                            "only that interleave is supported")
    f.update(attention_output_gate=bool(cfg.get("attn_output_gate", False)), full_attention_interval=interval,
             linear_num_key_heads=int(cfg.get("linear_num_key_heads") or 0),
             linear_num_value_heads=int(cfg.get("linear_num_value_heads") or 0),
             linear_key_head_dim=int(cfg.get("linear_key_head_dim") or 0),
             linear_value_head_dim=int(cfg.get("linear_value_head_dim") or 0),
             linear_conv_kernel=int(cfg.get("linear_conv_kernel_dim") or 0),
             linear_state_bytes=4.0 if str(cfg.get("mamba_ssm_dtype", "float32")) == "float32" else 2.0)


def _glm_dsa(cfg: dict[str, Any], f: dict[str, Any]) -> None:
    # GLM-5: DeepSeek-V3-style MLA and MoE plus DeepSeek Sparse Attention's indexer.
    _deepseek(cfg, f)
    f.update(index_num_heads=int(cfg.get("index_n_heads") or 0), index_head_dim=int(cfg.get("index_head_dim") or 0),
             index_topk=int(cfg.get("index_topk") or 0))


_FAMILY = {"mixtral": _mixtral, "qwen2_moe": _qwen_moe, "qwen3_moe": _qwen_moe, "deepseek_v2": _deepseek,
           "deepseek_v3": _deepseek, "kimi_k2": _deepseek, "gpt_oss": _gpt_oss, "llama4": _llama4,
           "llama4_text": _llama4, "minimax_m2": _minimax_m2, "qwen3_5_moe": _qwen3_5, "qwen3_5_moe_text": _qwen3_5,
           "qwen3_next": _qwen3_5, "glm_moe_dsa": _glm_dsa, "kimi_k25": _deepseek}
