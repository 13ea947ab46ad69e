"""Input and output shapes of each operator, as people write them: [batch, seq, heads, head_dim]
for attention, [tokens, hidden] between blocks. Numbers are per GPU."""

from __future__ import annotations

import math

from meshplan.cost.inputs import CostInputs
from meshplan.specs.model import AttentionKind
from meshplan.specs.params import kv_heads_per_rank
from meshplan.strategy.layout import Layout


def _n(x: float) -> str:
    return f"{x:,.0f}" if abs(x - round(x)) < 1e-9 else f"{x:,.1f}"


def op_shapes(ci: CostInputs, lay: Layout, B: float, decode: bool, context: float) -> dict[str, tuple[str, str]]:
    """(input, output) shape strings per operator name for one attention-dp rank's pass."""
    m = ci.model
    tp = lay.tp
    b = math.ceil(B)
    # A prompt's queries are the tokens prefill computes (fewer than its context with a prefix cache).
    sq = 1 if decode else int(round(min(context, ci.workload.computed_prompt_tokens)))
    t = b * sq
    d, h = m.hidden_size, m.head_dim
    nh = m.num_heads // tp
    kh = kv_heads_per_rank(m.num_kv_heads, tp)
    hidden = f"[tokens={_n(t)}, hidden={d}]"
    q = f"[batch={b}, seq={sq}, heads={nh}, head_dim={h}]"
    if m.attention is AttentionKind.MLA:
        kv = f"latent [batch={b}, seq={sq}, {m.kv_lora_rank}+{m.qk_rope_head_dim}]"
        cache = f"latent cache [batch={b}, seq={_n(context)}, {m.kv_lora_rank}+{m.qk_rope_head_dim}]"
    else:
        kv = f"k,v [batch={b}, seq={sq}, kv_heads={kh}, head_dim={h}]"
        cache = f"kv cache [batch={b}, seq={_n(context)}, kv_heads={kh}, head_dim={h}]"
    shapes = {
        "attn_norm": (hidden, hidden), "qkv_proj": (hidden, f"q {q}; {kv}"), "attn_core": (f"q {q}; {cache}", q),
        "o_proj": (q, hidden), "tp_all_reduce_attn": (hidden, hidden), "ffn_norm": (hidden, hidden),
        "dense_ffn": (hidden, hidden), "tp_all_reduce_ffn": (hidden, hidden), "tp_all_reduce_moe": (hidden, hidden),
        "embedding": (f"[tokens={_n(t)}] ids", hidden), "embed_all_reduce": (hidden, hidden),
        "lm_head": (f"[batch={b}, hidden={d}]", f"[batch={b}, vocab={_n(m.vocab_size / tp)}]"),
        "logits_gather": (f"[batch={b}, vocab={_n(m.vocab_size / tp)}]", f"[batch={b}, vocab={m.vocab_size}]"),
        "pp_send_recv": (hidden, hidden),
        "input": ("requests", f"[tokens={_n(t)}] ids per attention-dp rank"),
        "output": (f"[batch={b}, vocab={m.vocab_size}]", f"[batch={b}] next tokens"),
    }
    if m.is_moe:
        k, e = m.top_k, m.num_experts
        t_stage = t * lay.dp
        recv = t_stage * k / lay.ep
        routed = f"[tokens={_n(recv)}, hidden={d}] (mean)"
        shapes.update({
            "router": (hidden, f"top-{k} ids and weights [tokens={_n(t)}, {k}] of {e} experts"),
            "ep_dispatch": (f"[tokens={_n(t / tp)}, hidden={d}]", routed),
            "attn_dp_gather": (hidden, f"[tokens={_n(t_stage)}, hidden={d}]"),
            "experts": (routed, routed), "etp_reduce_scatter": (routed, routed),
            "ep_combine": (routed, f"[tokens={_n(t / tp)}, hidden={d}]"),
            "attn_dp_scatter": (f"[tokens={_n(t_stage)}, hidden={d}]", hidden),
            "shared_experts": (hidden, hidden),
            "moe_sum": (f"top-{k} expert outputs" + (" + shared" if m.num_shared_experts else "")
                        + f", [tokens={_n(t)}, hidden={d}]", hidden),
        })
    return shapes
