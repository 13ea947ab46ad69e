"""The iteration of speculative decoding: a verify pass of the target and K draft passes.

The target runs each decoding sequence's K draft tokens and the token before them in one pass
(K + 1 positions per sequence: K + 1 times the GEMM rows, MoE tokens, LM-head rows and attention
FLOPs; each sequence's cache is still read once). The draft then proposes the next K tokens in K
passes, one after the other: the first over the positions just verified (it catches up on the
tokens accepted, and fills its own KV for any prompt tokens the iteration prefills), the other
K - 1 over one token per sequence (TensorRT-LLM's MTP Eagle mode, blog "DeepSeek R1 MTP
Implementation and Optimization"; SGLang's EAGLE worker: draft extend, then the draft steps).

An MTP or EAGLE pass costs one layer of the target's kind (cost.draft.draft_layer_is_moe) on the
target's layout, its input projection, the embedding lookup and the target's LM head; a draft
model's pass is its whole forward at the target's tp, without pipeline stages. Draft passes run on
the last pipeline stage and are added to the slowest stage's time (exact without pipeline stages).
Every draft pass is captured in the same CUDA graph as the verify pass where the iteration is
graphed; outside a graph each kernel is launched. TPOT is then the iteration over tau, the tokens it
yields per sequence (specs.speculative.Speculative.tokens_per_step).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from meshplan.cost import kernels as K
from meshplan.cost.attention import Work
from meshplan.cost.draft import draft_layer_is_moe, fusion_params
from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par, attention_block, dense_ffn_ops, embed_ops, head_ops, moe_ops
from meshplan.cost.phase import forward
from meshplan.cost.roofline import compute_op


def verify_work(ci: CostInputs, par: Par, w: Work) -> Work:
    """``w`` with each decoding sequence running K + 1 positions (unchanged without speculation)."""
    if not ci.spec_k:
        return w
    q = 1.0 + ci.spec_k
    extra = ci.spec_k * np.asarray(w.decode_seqs, dtype=float) * par.dp  # the lockstep ranks' MoE tokens
    return replace(w, decode_queries=q, moe_tokens=np.asarray(w.moe_tokens, dtype=float) + extra)


def _pass(ci: CostInputs, par: Par, w: Work):
    """(GPU seconds, kernels) of one draft pass over ``w``."""
    ovh = ci.kernel_floor_s
    if ci.draft is not None:
        fwd = forward(ci.draft, Par.of(par.tp, par.dp, 1.0, 1.0, 1.0), w)
        return fwd.stage_s, fwd.stage_kernels
    T = w.tokens
    one = Par.of(par.tp, par.dp, par.ep, par.etp, 1.0)
    layer = attention_block(ci, one, w, ovh)
    layer += moe_ops(ci, one, w, ovh) if draft_layer_is_moe(ci) else dense_ffn_ops(ci, one, T, ovh)
    fuse = fusion_params(ci)
    fusion = compute_op("draft_fusion", 2 * T * fuse, fuse * ci.other_bytes_per_weight + T * 3 * ci.hidden_size * ci.act_bytes_per_value,
                        ci.other_flop_per_s, ci.hbm_other_bytes_per_s, ovh, K.DRAFT_FUSION, ci.roofline_sharpness)
    ops = layer + [fusion] + embed_ops(ci, one, T, ovh) + head_ops(ci, one, w.head_rows, ovh)
    return sum(op.time_s for op in ops), sum(op.kernels for op in ops)


def draft_cost(ci: CostInputs, par: Par, w: Work):
    """(GPU seconds, kernels) of the K draft passes of an iteration whose verify pass is ``w``
    (verify_work); (0, 0) without speculative decoding."""
    if not ci.spec_k:
        return 0.0, 0.0
    first_s, first_k = _pass(ci, par, w)
    B = np.asarray(w.decode_seqs, dtype=float)
    if ci.spec_k <= 1:
        return first_s, first_k
    step = Work(decode_seqs=B, decode_context=w.decode_context, prefill_tokens=0.0, prefill_seqs=0.0,
                prefill_attended=0.0, moe_tokens=B * par.dp)
    step_s, step_k = _pass(ci, par, step)
    more = (ci.spec_k - 1.0) * (B > 0)  # a prefill-only iteration drafts nothing after its first pass
    return first_s + more * step_s, first_k + more * step_k
