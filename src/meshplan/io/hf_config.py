"""Hugging Face ``config.json`` -> ModelSpec, one reader for the catalog and for local files.

Field names are those of the transformers configuration classes of each family: LlamaConfig,
MistralConfig, Qwen2/Qwen3Config, MixtralConfig, Qwen2MoeConfig/Qwen3MoeConfig,
DeepseekV3Config (also DeepSeek-V2, Kimi-K2), GptOssConfig, Llama4TextConfig, MiniMaxM2Config,
Qwen3_5MoeTextConfig (Qwen3-Next's hybrid Gated DeltaNet layout), GlmMoeDsaConfig (MLA with
DeepSeek Sparse Attention). Multimodal configs (Llama-4, Kimi-K2.5, Qwen3.5) nest the text model
under ``text_config``; only the text model is read (vision towers are not served by the plan).

Every value is checked where it is read: a count or a size must be a whole number (``1.7``,
``true``, ``"big"``, ``null`` and ``NaN`` are refused, never truncated or defaulted), and a
refusal names the file and key and shows the value as the JSON writes it
(``cfg.json:num_hidden_layers = 1.7: must be a whole number``). Sizes have upper limits far
above any real model, owned by ModelSpec (specs.model: at most 1,000 layers, 10,000 heads,
1,000,000 channels of hidden/FFN/head size, 100,000 experts, a 10,000,000-token vocabulary);
a ModelSpec refusal is reported with the config key the field was read from.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from meshplan.errors import SpecError
from meshplan.io.user_file import load_json, read_text
from meshplan.specs.model import AttentionKind, ModelSpec, RouterScoring

DENSE_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "phi3", "granite"}
MOE_TYPES = {"mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3", "kimi_k2", "gpt_oss", "llama4",
             "llama4_text", "minimax_m2", "qwen3_5_moe", "qwen3_5_moe_text", "qwen3_next", "glm_moe_dsa", "kimi_k25"}
WRAPPED_TYPES = {"llama4", "kimi_k25", "qwen3_5_moe"}
"""Multimodal families whose text model sits under ``text_config``."""


def read_json_file(path: Any, field: str) -> Any:
    """A JSON file's content; SpecError naming ``field`` when it is missing, unreadable (a
    folder, no permission, an I/O error), not UTF-8 text or not JSON."""
    return load_json(read_text(path, field), field, str(path))


def load_hf_config(path: str | Path, name: str | None = None, **extra: Any) -> ModelSpec:
    """Read a config.json file into a ModelSpec; ``extra`` fields (published_params) pass through."""
    p = Path(str(path))
    raw = read_json_file(p, "model")
    return hf_config_to_spec(raw, name=name or p.name.removesuffix(".json").removesuffix(".config"),
                             source=str(p), **extra)


class Written(str):
    """A config value as the JSON file writes it (true, null, "big", 1.7, NaN), for error lines."""

    def __repr__(self) -> str:
        return str(self)

    @classmethod
    def of(cls, value: Any) -> "Written":
        try:
            return cls(json.dumps(value))
        except (TypeError, ValueError, RecursionError):
            # A number of more than 4,300 digits has no decimal text in Python (int_max_str_digits).
            return cls("<a number too long to show>" if isinstance(value, int) else object.__repr__(value))


_REQUIRED = object()


class _Reader:
    """One config mapping read into ModelSpec fields. Each value is checked as it is taken, and
    the key it came from is kept, so a refusal by ModelSpec names that key and its value."""

    def __init__(self, cfg: dict[str, Any], model_type: str, where: str) -> None:
        self.cfg, self.model_type, self.where = cfg, model_type, where
        self.origin: dict[str, tuple[str, Any]] = {}
        """ModelSpec field -> (config key or formula, the value as written)."""

    def refuse(self, key: str, rule: str) -> SpecError:
        return SpecError(f"{self.where}{key}", Written.of(self.cfg.get(key)), rule)

    def whole(self, key: str, default: Any = _REQUIRED) -> int:
        """cfg[key] as a whole number; absent or null gives ``default`` (refused when required)."""
        value = self.cfg.get(key)
        if value is None:
            if default is not _REQUIRED:
                return default
            if key in self.cfg:
                raise self.refuse(key, "must be a whole number")
            raise SpecError(f"{self.where}{key}", None, f"missing; a {self.model_type} config needs it")
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or isinstance(value, float) and not value.is_integer():
            raise self.refuse(key, "must be a whole number")
        return int(value)

    def take(self, f: dict[str, Any], field: str, key: str, default: Any = _REQUIRED) -> int:
        """Set ModelSpec field ``field`` from ``key`` and remember where it came from."""
        f[field] = self.whole(key, default)
        if key in self.cfg:
            self.origin[field] = (key, self.cfg[key])
        return f[field]

    def derived(self, f: dict[str, Any], field: str, value: int, formula: str) -> None:
        f[field] = value
        self.origin[field] = (formula, value)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.cfg.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.refuse(key, "must be true or false")
        return value

    def scoring(self, key: str) -> RouterScoring:
        value = self.cfg.get(key)
        if value is None:
            return RouterScoring.SOFTMAX
        known = [s.value for s in RouterScoring]
        if value not in known:
            raise self.refuse(key, f"not a router scoring meshplan knows; known: {', '.join(known)}")
        return RouterScoring(value)

    def texts(self, key: str) -> list[str]:
        value = self.cfg.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.refuse(key, "must be a list of layer type names")
        return value


def hf_config_to_spec(raw: dict[str, Any], *, name: str, source: str = "", **extra: Any) -> ModelSpec:
    """Translate one config dict. Raises SpecError naming the key for anything unreadable."""
    if not isinstance(raw, dict):
        kind = {list: "a list", str: "a string"}.get(type(raw), "not an object")
        raise SpecError("model", source or name, f"this config.json holds {kind}; it must be a JSON object of "
                        "configuration fields")
    file = Path(source).name if source else "config.json"
    family = raw.get("model_type")
    wrapped = isinstance(family, str) and family in WRAPPED_TYPES and isinstance(raw.get("text_config"), dict)
    cfg = raw["text_config"] if wrapped else raw
    model_type = cfg.get("model_type") or family
    where = f"{file}:text_config." if wrapped else f"{file}:"
    if not isinstance(model_type, str) or model_type not in DENSE_TYPES | MOE_TYPES:
        known = ", ".join(sorted(DENSE_TYPES | MOE_TYPES))
        raise SpecError(f"{where}model_type", Written.of(model_type), f"not a family meshplan reads; known: {known}")
    r = _Reader(cfg, model_type, where)
    fields = _common(r)
    fields.update(name=name, source=source)
    reader = _FAMILY.get(model_type)
    if reader is not None:
        reader(r, fields)
    fields.update(extra)
    return _build(r, fields)


def _common(r: _Reader) -> dict[str, Any]:
    """The fields every family states the same way."""
    f: dict[str, Any] = {}
    r.take(f, "num_layers", "num_hidden_layers")
    hidden = r.take(f, "hidden_size", "hidden_size")
    heads = r.take(f, "num_heads", "num_attention_heads")
    r.take(f, "num_kv_heads", "num_key_value_heads", heads)
    if r.cfg.get("head_dim") is not None:
        r.take(f, "head_dim", "head_dim")
    else:
        r.derived(f, "head_dim", hidden // heads if heads > 0 else 0, "hidden_size / num_attention_heads")
    r.take(f, "vocab_size", "vocab_size")
    f.update(tie_embeddings=r.flag("tie_word_embeddings"), attention_bias=r.flag("attention_bias"))
    r.take(f, "ffn_size", "intermediate_size", 0)
    for key in ("num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_modules"):
        if r.cfg.get(key) is not None:
            r.take(f, "mtp_modules", key)
            break
    if r.cfg.get("max_position_embeddings") is not None:
        r.take(f, "max_context_tokens", "max_position_embeddings")
    f["attention"] = AttentionKind.MHA if f["num_kv_heads"] == heads else AttentionKind.GQA
    return f


_LIMIT_TYPES = {"less_than_equal": "at most {le:,} (meshplan's stated limit, far above any real model)",
                "greater_than": "must be more than {gt}", "greater_than_equal": "must be at least {ge}"}


def _build(r: _Reader, fields: dict[str, Any]) -> ModelSpec:
    """ModelSpec(**fields); its refusal names the config key the blamed field came from."""
    try:
        return ModelSpec(**fields)
    except ValidationError as err:
        first = err.errors()[0]
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, SpecError):  # a check across fields (ModelSpec._check)
            field, rule = cause.field, cause.rule
        else:
            field = str(first["loc"][0]) if first["loc"] else "model"
            template = _LIMIT_TYPES.get(first["type"])
            rule = template.format(**first["ctx"]) if template and first.get("ctx") else \
                first["msg"].removeprefix("Value error, ")
        if field not in r.origin:  # not read from the file (published_params from the catalog index)
            raise SpecError(f"model.{field}", fields.get(field), _in_config_terms(rule, r)) from None
        key, written = r.origin[field]
        raise SpecError(f"{r.where}{key}", Written.of(written), _in_config_terms(rule, r)) from None


def _in_config_terms(rule: str, r: _Reader) -> str:
    """ModelSpec's rule with its field names replaced by the config keys they were read from."""
    names = {field: key for field, (key, _) in r.origin.items() if re.fullmatch(r"\w+", key)}
    if not names:
        return rule
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, names), key=len, reverse=True)) + r")\b")
    return pattern.sub(lambda m: names[m.group(1)], rule)


def _mixtral(r: _Reader, f: dict[str, Any]) -> None:
    r.take(f, "num_experts", "num_local_experts")
    r.take(f, "top_k", "num_experts_per_tok")
    r.take(f, "expert_ffn_size", "intermediate_size")
    f["ffn_size"] = 0
    r.origin.pop("ffn_size", None)


def _qwen_moe(r: _Reader, f: dict[str, Any]) -> None:
    # Qwen3-MoE lists dense layers in mlp_only_layers and spaces MoE with decoder_sparse_step.
    if r.cfg.get("mlp_only_layers"):
        raise r.refuse("mlp_only_layers", "dense layers in arbitrary positions are not supported yet")
    shared = r.take(f, "shared_expert_ffn_size", "shared_expert_intermediate_size", 0)
    f["num_shared_experts"] = 1 if shared else 0
    r.take(f, "num_experts", "num_experts")
    r.take(f, "top_k", "num_experts_per_tok")
    r.take(f, "expert_ffn_size", "moe_intermediate_size")
    r.take(f, "moe_layer_step", "decoder_sparse_step", 1)


def _deepseek(r: _Reader, f: dict[str, Any]) -> None:
    # MLA: queries and keys have nope + rope dims per head; the cache holds kv_lora + rope per token.
    nope = r.take(f, "qk_nope_head_dim", "qk_nope_head_dim")
    rope = r.take(f, "qk_rope_head_dim", "qk_rope_head_dim")
    r.derived(f, "head_dim", nope + rope, "qk_nope_head_dim + qk_rope_head_dim")
    f.update(attention=AttentionKind.MLA, num_kv_heads=f["num_heads"])
    r.origin["num_kv_heads"] = r.origin["num_heads"]
    r.take(f, "q_lora_rank", "q_lora_rank", 0)
    r.take(f, "kv_lora_rank", "kv_lora_rank")
    r.take(f, "v_head_dim", "v_head_dim")
    r.take(f, "num_experts", "n_routed_experts")
    r.take(f, "top_k", "num_experts_per_tok")
    r.take(f, "expert_ffn_size", "moe_intermediate_size")
    r.take(f, "num_shared_experts", "n_shared_experts", 0)
    r.take(f, "first_dense_layers", "first_k_dense_replace", 0)
    r.take(f, "moe_layer_step", "moe_layer_freq", 1)
    f["router_scoring"] = r.scoring("scoring_func")


def _gpt_oss(r: _Reader, f: dict[str, Any]) -> None:
    # Alternating sliding-window (128 tokens) and full attention layers; biases everywhere.
    windowed = sum(1 for t in r.texts("layer_types") if t == "sliding_attention")
    r.take(f, "num_experts", "num_local_experts")
    r.take(f, "top_k", "num_experts_per_tok" if "num_experts_per_tok" in r.cfg else "experts_per_token")
    r.take(f, "expert_ffn_size", "intermediate_size")
    f.update(ffn_size=0, expert_bias=True)
    r.origin.pop("ffn_size", None)
    r.derived(f, "num_window_layers", windowed, "layer_types")
    if windowed:
        r.take(f, "window_tokens", "sliding_window", 0)


def _llama4(r: _Reader, f: dict[str, Any]) -> None:
    # Llama-4: one shared expert per MoE layer of the routed size; dense layers use
    # intermediate_size_mlp; 3 of every 4 layers use chunked attention of attention_chunk_size
    # (the 4th is a global NoPE layer; transformers Llama4TextConfig.no_rope_layers default).
    layers = f["num_layers"]
    chunk = r.take(f, "window_tokens", "attention_chunk_size", 0)
    r.take(f, "num_experts", "num_local_experts")
    r.take(f, "top_k", "num_experts_per_tok")
    r.take(f, "expert_ffn_size", "intermediate_size")
    r.origin.pop("ffn_size", None)
    r.take(f, "ffn_size", "intermediate_size_mlp", 0)
    step = r.take(f, "moe_layer_step", "interleave_moe_layer_step", 1)
    f["num_shared_experts"] = 1
    r.derived(f, "num_window_layers", layers - layers // 4 if chunk else 0,
              "num_hidden_layers - num_hidden_layers / 4 (chunked attention layers)")
    if step == 1:
        f["ffn_size"] = 0
        r.origin.pop("ffn_size", None)


def _minimax_m2(r: _Reader, f: dict[str, Any]) -> None:
    # MiniMax-M2: GQA with per-layer q/k RMSNorm, every layer MoE, sigmoid router with a
    # correction bias; intermediate_size is one expert's FFN; its MTP modules are not counted.
    _mixtral(r, f)  # the expert fields read as Mixtral's
    shared = r.take(f, "shared_expert_ffn_size", "shared_intermediate_size", 0)
    f["num_shared_experts"] = 1 if shared else 0
    f["router_scoring"] = r.scoring("scoring_func")


def _qwen3_5(r: _Reader, f: dict[str, Any]) -> None:
    # Qwen3-Next / Qwen3.5: three Gated DeltaNet layers per gated full-attention layer
    # (full_attention_interval), MoE with one gated shared expert in every layer.
    _qwen_moe(r, f)
    interval = r.take(f, "full_attention_interval", "full_attention_interval", 1)
    if interval < 1:
        raise r.refuse("full_attention_interval", "must be a whole number >= 1")
    types = r.texts("layer_types") if "layer_types" in r.cfg else None
    if types is not None and interval > 1:
        expected = ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(len(types))]
        if types != expected:
            raise SpecError(f"{r.where}layer_types", "...", f"not every {interval}th layer full attention; "
                            "only that interleave is supported")
    f["attention_output_gate"] = r.flag("attn_output_gate")
    for field, key in (("linear_num_key_heads", "linear_num_key_heads"),
                       ("linear_num_value_heads", "linear_num_value_heads"),
                       ("linear_key_head_dim", "linear_key_head_dim"),
                       ("linear_value_head_dim", "linear_value_head_dim"),
                       ("linear_conv_kernel", "linear_conv_kernel_dim")):
        r.take(f, field, key, 0)
    f["linear_state_bytes"] = 4.0 if str(r.cfg.get("mamba_ssm_dtype", "float32")) == "float32" else 2.0


def _glm_dsa(r: _Reader, f: dict[str, Any]) -> None:
    # GLM-5: DeepSeek-V3-style MLA and MoE plus DeepSeek Sparse Attention's indexer.
    _deepseek(r, f)
    r.take(f, "index_num_heads", "index_n_heads", 0)
    r.take(f, "index_head_dim", "index_head_dim", 0)
    r.take(f, "index_topk", "index_topk", 0)


_FAMILY: dict[str, Callable[[_Reader, dict[str, Any]], None]] = {
    "mixtral": _mixtral, "qwen2_moe": _qwen_moe, "qwen3_moe": _qwen_moe, "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek, "kimi_k2": _deepseek, "gpt_oss": _gpt_oss, "llama4": _llama4, "llama4_text": _llama4,
    "minimax_m2": _minimax_m2, "qwen3_5_moe": _qwen3_5, "qwen3_5_moe_text": _qwen3_5, "qwen3_next": _qwen3_5,
    "glm_moe_dsa": _glm_dsa, "kimi_k25": _deepseek}
