"""The model: the structure that decides memory, FLOPs and what can be split how.

Letters used in docstrings (after jax-ml/scaling-book's legend): L layers, D hidden size,
N query heads, K KV heads, H head dim, F dense FFN size, E routed experts, k top-k, Fe expert FFN
size, V vocabulary.

Every size has a stated upper limit (the MAX_* constants below), far above any real model, so that
a typo or a hostile file (1e9 layers, a 20-digit head count) is refused when the spec is built
instead of making a per-layer tuple of gigabytes or overflowing a fixed-width integer later.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, ValidationInfo, field_validator, model_validator

from meshplan.errors import SpecError
from meshplan.specs.base import Spec
from meshplan.specs.precision import Precision


MAX_LAYERS = 1_000
"""Most decoder layers: the deepest models served today have 61 (DeepSeek-V3) to 126
(Llama-3.1-405B)."""
MAX_HEADS = 10_000
"""Most attention heads of any kind (query, KV, indexer, linear): real models have at most 128."""
MAX_WIDTH = 1_000_000
"""Most channels of one dimension (hidden size, FFN sizes, head dims, latent ranks): the widest
real ones are near 53,248 (Llama-3.1-405B's FFN)."""
MAX_EXPERTS = 100_000
"""Most routed or shared experts per MoE layer: real models have at most 512 (Qwen3-Next)."""
MAX_VOCAB = 10_000_000
"""Largest vocabulary: real ones are at most 262,144 tokens (Gemma-3)."""
MAX_TOKENS = 100_000_000
"""Largest attention window or sparse-attention top-k in tokens (real: 128 to 131,072)."""
MAX_PARAMS = 1e15
"""Largest stated parameter count: the largest published models have about 1e12."""


class AttentionKind(StrEnum):
    """MHA: K == N. GQA: K < N query heads share K KV heads (MQA is K = 1). MLA: DeepSeek's
    multi-head latent attention, which caches one compressed latent per token (DeepSeek-V2
    paper, arXiv:2405.04434, section 2.1)."""

    MHA = "mha"
    GQA = "gqa"
    MLA = "mla"


class RouterScoring(StrEnum):
    """How the router turns logits into expert weights: softmax (Mixtral, Qwen3-MoE) or
    sigmoid (DeepSeek-V3, Kimi-K2)."""

    SOFTMAX = "softmax"
    SIGMOID = "sigmoid"


class LayerKind(StrEnum):
    """A decoder layer has attention and then a dense FFN or a MoE block."""

    DENSE = "dense"
    MOE = "moe"


class ModelSpec(Spec):
    """A decoder-only transformer, dense or Mixture-of-Experts."""

    name: str
    """Catalog key or a name for people."""
    num_layers: int = Field(gt=0, le=MAX_LAYERS)
    """L: decoder layers (DeepSeek's multi-token-prediction module is not counted)."""
    hidden_size: int = Field(gt=0, le=MAX_WIDTH)
    """D: width of the residual stream."""
    num_heads: int = Field(gt=0, le=MAX_HEADS)
    """N: query heads."""
    num_kv_heads: int = Field(gt=0, le=MAX_HEADS)
    """K: key/value heads (equal to N for MHA and MLA)."""
    head_dim: int = Field(gt=0, le=MAX_WIDTH)
    """H: per-head dimension of queries and keys (for MLA: qk_nope + qk_rope)."""
    attention: AttentionKind
    """MHA, GQA or MLA."""
    q_lora_rank: int = Field(default=0, ge=0, le=MAX_WIDTH)
    """MLA: rank of the query compression; 0 means queries are projected directly."""
    kv_lora_rank: int = Field(default=0, ge=0, le=MAX_WIDTH)
    """MLA: rank of the compressed KV latent (the part that is cached)."""
    qk_nope_head_dim: int = Field(default=0, ge=0, le=MAX_WIDTH)
    """MLA: per-head query/key dims without rotary embedding."""
    qk_rope_head_dim: int = Field(default=0, ge=0, le=MAX_WIDTH)
    """MLA: rotary dims, shared by all heads for keys and cached beside the latent."""
    v_head_dim: int = Field(default=0, ge=0, le=MAX_WIDTH)
    """MLA: per-head value dims. 0 means equal to head_dim."""
    attention_bias: bool = False
    """QKV and output projections carry biases (GPT-OSS)."""
    num_window_layers: int = Field(default=0, ge=0, le=MAX_LAYERS)
    """Layers whose attention sees at most window_tokens past tokens (GPT-OSS sliding window,
    Llama-4 chunked attention): their KV cache stops growing at the window."""
    window_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS)
    """Attention window of those layers in tokens."""
    ffn_size: int = Field(default=0, ge=0, le=MAX_WIDTH)
    """F: intermediate size of the dense FFN layers (0 when every layer is MoE)."""
    gated_ffn: bool = True
    """SwiGLU-style FFN with gate, up and down matrices (3 D x F); False for 2 matrices."""
    vocab_size: int = Field(gt=0, le=MAX_VOCAB)
    """V: vocabulary size."""
    tie_embeddings: bool = False
    """The LM head reuses the embedding matrix."""
    num_experts: int = Field(default=0, ge=0, le=MAX_EXPERTS)
    """E: routed experts per MoE layer; 0 for a dense model."""
    top_k: int = Field(default=0, ge=0, le=MAX_EXPERTS)
    """k: routed experts each token goes to."""
    expert_ffn_size: int = Field(default=0, ge=0, le=MAX_WIDTH)
    """Fe: intermediate size of one routed expert."""
    num_shared_experts: int = Field(default=0, ge=0, le=MAX_EXPERTS)
    """Experts every token goes to, beside the routed ones (DeepSeek, Kimi, Llama-4)."""
    shared_expert_ffn_size: int = Field(default=0, ge=0, le=MAX_WIDTH)
    """Intermediate size of one shared expert (0 means equal to expert_ffn_size)."""
    expert_bias: bool = False
    """Expert matrices carry biases (GPT-OSS)."""
    first_dense_layers: int = Field(default=0, ge=0, le=MAX_LAYERS)
    """MoE models: the first layers that use a dense FFN instead (DeepSeek-V3: 3)."""
    moe_layer_step: int = Field(default=1, ge=1, le=MAX_LAYERS)
    """MoE models: every moe_layer_step-th layer after the dense ones is MoE, the others dense
    (Llama-4 Maverick: 2)."""
    router_scoring: RouterScoring = RouterScoring.SOFTMAX
    """How router logits become expert weights."""
    attention_output_gate: bool = False
    """Full-attention layers gate their output with a sigmoid of a second query-sized projection
    (Qwen3.5 ``attn_output_gate``; transformers Qwen3NextAttention), doubling the query
    projection."""
    full_attention_interval: int = Field(default=1, ge=1, le=MAX_LAYERS)
    """Hybrid models: layer i uses full attention when (i + 1) % full_attention_interval == 0 and
    linear attention otherwise (Qwen3.5: 4, three Gated DeltaNet layers per full-attention
    layer). 1 means every layer has full attention."""
    linear_num_key_heads: int = Field(default=0, ge=0, le=MAX_HEADS)
    """Linear attention (Gated DeltaNet): query/key heads."""
    linear_num_value_heads: int = Field(default=0, ge=0, le=MAX_HEADS)
    """Linear attention: value heads; each holds a key_dim x value_dim recurrent state."""
    linear_key_head_dim: int = Field(default=0, ge=0, le=MAX_WIDTH)
    """Linear attention: per-head query/key dims."""
    linear_value_head_dim: int = Field(default=0, ge=0, le=MAX_WIDTH)
    """Linear attention: per-head value dims."""
    linear_conv_kernel: int = Field(default=0, ge=0, le=MAX_WIDTH)
    """Linear attention: width of the causal depthwise convolution over q, k, v (its last
    kernel - 1 inputs are kept per sequence)."""
    linear_state_bytes: float = Field(default=4.0, gt=0, le=8.0)
    """Bytes per value of the recurrent state (Qwen3.5 ``mamba_ssm_dtype: float32``: 4)."""
    index_num_heads: int = Field(default=0, ge=0, le=MAX_HEADS)
    """DeepSeek Sparse Attention: heads of the lightning indexer (GLM-5, DeepSeek-V3.2: 32;
    0 means dense attention)."""
    index_head_dim: int = Field(default=0, ge=0, le=MAX_WIDTH)
    """DeepSeek Sparse Attention: dims of one indexer head and of the indexer key cached per
    token (128)."""
    index_topk: int = Field(default=0, ge=0, le=MAX_TOKENS)
    """DeepSeek Sparse Attention: cached tokens each query attends to after the indexer picks
    them (2,048)."""
    mtp_modules: int = Field(default=0, ge=0, le=MAX_LAYERS)
    """Multi-token-prediction modules the checkpoint ships beside its layers, each one more layer
    on the last hidden state (config.json num_nextn_predict_layers for DeepSeek-V3/R1 and GLM-5,
    mtp_num_hidden_layers for Qwen3.5, num_mtp_modules for MiniMax-M2.5); speculative decoding
    with method mtp drafts with them."""
    max_context_tokens: int | None = Field(default=None, gt=0, le=MAX_TOKENS)
    """Longest sequence the checkpoint is configured for (config.json max_position_embeddings);
    None when not stated. A launch config uses it when the workload states no maximum."""
    declared_params: float | None = Field(default=None, gt=0, le=MAX_PARAMS)
    """A parameter count someone stated (a problem file's "10B"); cross-checked, never used."""
    published_params: float | None = Field(default=None, gt=0, le=MAX_PARAMS)
    """The publisher's total parameter count, for catalog tests."""
    source: str = ""
    """Where the structure came from (a config.json path, a problem file)."""
    checkpoint: str = ""
    """Hugging Face id of the checkpoint whose formats ``checkpoint_precision`` holds."""
    checkpoint_precision: Precision = Precision()
    """Formats the checkpoint stores (weights per part, KV cache); a plan uses them unless told
    otherwise (meshplan.io.checkpoint reads them from the quantization config)."""
    checkpoint_precision_source: str = ""
    """Where checkpoint_precision was read, for the plan's notes."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_truth_values(cls, value: object, info: ValidationInfo) -> object:
        # pydantic reads true as 1 in a number field; a count or a size is never true or false.
        if isinstance(value, bool) and cls.model_fields[info.field_name].annotation is not bool:
            raise ValueError(f"{str(value).lower()} is not a number")
        return value

    @model_validator(mode="after")
    def _check(self) -> "ModelSpec":
        # Each refusal is a SpecError naming the field it blames, so that a reader can name the
        # key of its own file (io.hf_config maps num_kv_heads back to num_key_value_heads).
        if self.num_heads % self.num_kv_heads != 0:
            raise SpecError("num_kv_heads", self.num_kv_heads, f"must divide num_heads = {self.num_heads} "
                            "(each KV head serves a whole group of query heads)")
        if self.attention is AttentionKind.MLA and (self.kv_lora_rank == 0 or self.qk_rope_head_dim == 0):
            raise SpecError("attention", self.attention.value, "mla needs kv_lora_rank and qk_rope_head_dim > 0")
        if self.num_experts:
            if not 0 < self.top_k <= self.num_experts:
                raise SpecError("top_k", self.top_k, f"must be between 1 and num_experts = {self.num_experts}")
            if self.expert_ffn_size == 0:
                raise SpecError("expert_ffn_size", 0, "a MoE model needs the routed experts' FFN size")
        if self.num_window_layers > self.num_layers:
            raise SpecError("num_window_layers", self.num_window_layers, f"more than num_layers = {self.num_layers}")
        if self.num_window_layers and not self.window_tokens:
            raise SpecError("window_tokens", 0, "layers with a window need its size")
        if self.full_attention_interval > 1 and not (self.linear_num_key_heads and self.linear_num_value_heads
                                                    and self.linear_key_head_dim and self.linear_value_head_dim):
            raise SpecError("full_attention_interval", self.full_attention_interval, "linear-attention layers need "
                            "linear_num_key_heads, linear_num_value_heads and their head dims")
        if self.linear_num_key_heads and self.linear_num_value_heads % self.linear_num_key_heads:
            raise SpecError("linear_num_value_heads", self.linear_num_value_heads, "must be a multiple of "
                            f"linear_num_key_heads = {self.linear_num_key_heads} (value heads share key heads)")
        if self.index_topk and not (self.index_num_heads and self.index_head_dim):
            raise SpecError("index_topk", self.index_topk, "sparse attention needs index_num_heads and index_head_dim")
        if self.ffn_size == 0 and LayerKind.DENSE in self.layer_kinds:
            raise SpecError("ffn_size", 0, "the model has dense FFN layers, which need their size")
        return self

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def layer_kinds(self) -> tuple[LayerKind, ...]:
        """The kind of every layer in order. MoE layer i (counting from 0): i >= first_dense_layers
        and (i - first_dense_layers + 1) % moe_layer_step == 0 (Llama-4's interleave puts MoE on
        layers 1, 3, 5, ... for a step of 2; HF transformers modeling_llama4)."""
        if not self.is_moe:
            return (LayerKind.DENSE,) * self.num_layers
        kinds = []
        for i in range(self.num_layers):
            j = i - self.first_dense_layers
            kinds.append(LayerKind.MOE if j >= 0 and (j + 1) % self.moe_layer_step == 0 else LayerKind.DENSE)
        return tuple(kinds)

    @property
    def num_moe_layers(self) -> int:
        return sum(1 for k in self.layer_kinds if k is LayerKind.MOE)

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    @property
    def num_linear_attention_layers(self) -> int:
        """Layers whose attention is linear (a fixed recurrent state per sequence, no KV cache)."""
        n = self.full_attention_interval
        return 0 if n == 1 else sum(1 for i in range(self.num_layers) if (i + 1) % n != 0)

    @property
    def value_head_dim(self) -> int:
        return self.v_head_dim or self.head_dim

    @property
    def shared_ffn_size(self) -> int:
        return self.shared_expert_ffn_size or self.expert_ffn_size
