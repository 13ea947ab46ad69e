"""What a speculative-decoding draft holds on each GPU: its weights and its KV cache.

- MTP (DeepSeek-V3 technical report, section 2.2): each module is one transformer layer of the
  target's kind (DeepSeek-V3's is a MoE layer) with a projection of the concatenated hidden state
  and token embedding (2D x D) and its norms; the embedding and the output head are the target's.
  The draft holds min(K, the checkpoint's modules) of them, each with one layer of KV per token.
- EAGLE (EAGLE-3, arXiv:2503.01840): one decoder layer of the target's dense shape (its MoE shape
  when it has no dense FFN) over a fusion of three of the target's hidden states (3D x D), one layer
  of KV per token; the head is shared (EAGLE-3's smaller draft vocabulary is not modelled).
- A draft model: all of its layers, embedding and head at the target's tp, and its whole KV cache.

Weights and KV are counted on every pipeline stage (they live on the last one), which overstates
the memory of the others: conservative, and exact without pipeline stages.
"""

from __future__ import annotations

from meshplan.cost.inputs import CostInputs
from meshplan.cost.memory import kv_per_sequence_stage, stage_weights
from meshplan.specs.model import LayerKind
from meshplan.specs.speculative import SpecMethod

FUSION_INPUTS = {SpecMethod.MTP: 2.0, SpecMethod.EAGLE: 3.0}
"""Hidden-state widths the draft layer's input projection fuses (x D each): MTP's eh_proj takes
the target's hidden state and the next token's embedding (2D -> D); EAGLE-3's fc takes three of
the target's layers' hidden states (3D -> D)."""


def draft_layer_is_moe(ci: CostInputs) -> bool:
    """MTP: the module repeats the target's last layer (MoE in DeepSeek-V3, GLM-5, Qwen3.5);
    EAGLE: a dense layer unless the target has no dense FFN to copy."""
    if ci.spec_method is SpecMethod.MTP:
        return bool(ci.num_experts) and ci.layer_kinds[-1] is LayerKind.MOE
    return not ci.ffn_size


def fusion_params(ci: CostInputs) -> float:
    """Weights of the draft layer's input projection (module docstring)."""
    return FUSION_INPUTS.get(ci.spec_method, 0.0) * ci.hidden_size * ci.hidden_size


def draft_weight_bytes(ci: CostInputs, tp, ep, etp):
    """Weight bytes of the draft on one GPU (0 without speculative decoding)."""
    if ci.spec_method is None:
        return 0.0
    if ci.draft is not None:
        d = ci.draft
        return stage_weights(d, tp, 1, 1, d.model.num_dense_layers, d.model.num_moe_layers, 1, 1).total
    moe = draft_layer_is_moe(ci)
    layer = stage_weights(ci, tp, ep, etp, 0 if moe else 1, 1 if moe else 0, 0, 0).total
    return ci.spec_modules * (layer + fusion_params(ci) * ci.other_bytes_per_weight)


def draft_kv_per_sequence(ci: CostInputs, tp, context):
    """KV bytes the draft holds on one GPU for a sequence of ``context`` tokens."""
    if ci.spec_method is None:
        return 0.0
    if ci.draft is not None:
        return kv_per_sequence_stage(ci.draft, tp, ci.draft.num_layers, context)
    return ci.spec_modules * kv_per_sequence_stage(ci, tp, 1, context)
