"""One owner per fact (issue 16): the attention cost model's projection GEMMs and the memory model
read their weights per GPU from specs.params, and the activation width counts the KV heads per GPU
as kv_heads_per_rank does. Every figure below is worked out by hand from the model's config."""

import dataclasses

from meshplan.cost import attention
from meshplan.cost.attention import attention_ops, decode_work, prefill_work
from meshplan.cost.inputs import CostInputs
from meshplan.cost.memory import activation_bytes, attention_weight_bytes
from meshplan.io.problem_file import problem_from_raw
from meshplan.specs.params import attention_params_per_gpu, linear_attention_params_per_gpu


def _ci(model: str, gpu: str = "h100") -> CostInputs:
    return CostInputs.from_problem(problem_from_raw({"model": model, "gpu": gpu, "workload": {"isl": 128, "osl": 8}}))


def _ops(ci: CostInputs, tp: float) -> dict:
    """The attention ops of one decode token (T = 1) at ``tp``, by name."""
    return {op.name: op for op in attention_ops(ci, tp, decode_work(1.0, 128.0, 1.0), 0.0)}


def test_gqa_projections_are_the_owners():
    # Llama-3.1-70B (D 8192, 64 heads, 8 KV heads of 128) at tp 8: q 8192*64*128/8 = 8,388,608,
    # k and v one head each 2*8192*128 = 2,097,152 -> qkv 10,485,760; o 8,388,608. The GEMMs
    # run 2 FLOPs per weight for the one token: 20,971,520 and 16,777,216.
    ci = _ci("llama-3.1-70b")
    p = attention_params_per_gpu(ci.model, 8)
    assert (p.projections, p.output) == (10_485_760, 8_388_608)
    ops = _ops(ci, 8.0)
    assert float(ops["qkv_proj"].flops) == 20_971_520 and float(ops["o_proj"].flops) == 16_777_216


def test_mla_projections_and_kv_up_are_the_owners():
    # DeepSeek-V3 (D 7168, 128 heads, q_lora 1536, kv_lora 512, nope 128, rope 64, v 128) at tp 8:
    # q_a 7168*1536 = 11,010,048 and kv_a 7168*576 = 4,128,768 whole, q_b 1536*128*192/8 = 4,718,592
    # -> qkv 19,857,408; kv_b 512*128*256/8 = 2,097,152 (the core's); o 128*128*7168/8 = 14,680,064.
    ci = _ci("deepseek-v3")
    p = attention_params_per_gpu(ci.model, 8)
    assert (p.projections, p.kv_up, p.output) == (19_857_408, 2_097_152, 14_680_064)
    ops = _ops(ci, 8.0)
    assert float(ops["qkv_proj"].flops) == 2 * 19_857_408 and float(ops["o_proj"].flops) == 2 * 14_680_064


def test_hybrid_projections_mix_the_owners_full_and_linear_counts():
    # Qwen3.5-397B (D 4096, 32 heads with output gate, 2 KV heads of 256; Gated DeltaNet 16 key
    # heads of 128, 64 value heads of 128; 45 of 60 layers linear) at tp 4:
    # full qkv 2*4096*32*256/4 = 16,777,216 + one KV head 2*4096*256 = 2,097,152 -> 18,874,368;
    # linear in 4096*(2*2048 + 2*8192 + 2*64)/4 = 21,102,592, out 8192*4096/4 = 8,388,608.
    # The average layer: 0.25*18,874,368 + 0.75*21,102,592 = 20,545,536 weights, 41,091,072 FLOPs.
    ci = _ci("qwen3.5-397b-a17b", "b200")
    assert attention_params_per_gpu(ci.model, 4).projections == 18_874_368
    lin = linear_attention_params_per_gpu(ci.model, 4)
    assert (lin.projections, lin.output) == (21_102_592, 8_388_608)
    assert float(_ops(ci, 4.0)["qkv_proj"].flops) == 41_091_072
    # The whole layer at tp 1 (transformers Qwen3NextGatedDeltaNet): projections 84,410,368, conv
    # (4096 + 8192)*4 = 49,152, A_log and dt_bias 128, gated norm 128, out 33,554,432, norms 8,192.
    assert linear_attention_params_per_gpu(ci.model, 1).total == 118_022_400


def test_the_cost_model_reads_the_owner(monkeypatch):
    # A stand-in owner with twice the projection weights doubles the qkv GEMM's FLOPs and leaves o alone.
    ci = _ci("llama-3.1-70b")
    before = _ops(ci, 8.0)
    monkeypatch.setattr(attention, "attention_params_per_gpu", lambda m, tp: dataclasses.replace(
        attention_params_per_gpu(m, tp), projections=2 * attention_params_per_gpu(m, tp).projections))
    after = _ops(ci, 8.0)
    assert float(after["qkv_proj"].flops) == 2 * float(before["qkv_proj"].flops)
    assert float(after["o_proj"].flops) == float(before["o_proj"].flops)


def test_memory_charges_every_part_of_the_owners_linear_layer():
    # Qwen3.5 at tp 4, bf16 (2 bytes a weight): a full-attention layer holds qkv 18,874,368 + norms
    # 2*4096 = 8,192 + o 4096*32*256/4 = 8,388,608 = 27,271,168 weights; a linear one
    # 21,102,592 + 8,192 + its conv, A_log and dt_bias ((4096 + 8192)*4 + 2*64)/4 = 12,320 and gated
    # norm 128 (whole) + 8,388,608 = 29,511,840. Averaged 1/4 full, 3/4 linear: 6,817,792 +
    # 22,133,880 = 28,951,672 weights, 57,903,344 bytes.
    ci = _ci("qwen3.5-397b-a17b", "b200")
    assert float(attention_weight_bytes(ci, 4)) == 57_903_344


def test_activation_width_counts_replicated_kv_heads():
    # Qwen3.5 at tp 16 (over its 2 KV heads: one replicated head per GPU), 8,192 tokens of one
    # sequence, bf16: widest intermediate per token max(shared FFN 2*1024/16 = 128, full attention
    # (32*2/16 + 2*1)*256 = 1,536, linear (2*2048 + 2*8192)/16 = 1,280, experts 10*2*1024/16 = 1,280)
    # = 1,536 (it read (64 + 2*2)*256/16 = 1,088, so 1,280, before); bytes 8,192*2*(4*4096 + 1,536)
    # + 248,320/16*4 logits = 293,601,280 + 62,080 = 293,663,360 (4 MiB more than the 289,469,056
    # the old width gave).
    ci = _ci("qwen3.5-397b-a17b", "gb200")
    assert float(activation_bytes(ci, 16, 1, 1, 8192, 1)) == 293_663_360


def test_the_sparse_attention_indexer_is_whole_on_every_rank():
    # GLM-5 (D 6144, q_lora 2048, 32 indexer heads of 128): vLLM and SGLang build wq_b, wk and
    # weights_proj as ReplicatedLinear, so tp 8 holds what tp 1 does: wq_b 2048*32*128 = 8,388,608
    # + wk 6144*128 = 786,432 -> 9,175,040, and weights_proj 6144*32 = 196,608.
    ci = _ci("glm-5", "b200")
    for tp in (1, 8):
        p = attention_params_per_gpu(ci.model, tp)
        assert (p.indexer, p.indexer_head_weights) == (9_175_040, 196_608)
    # The qkv GEMM of one decode token at tp 8 runs them whole: 2 FLOPs per weight on top of the
    # rest of the projections.
    rest = attention_params_per_gpu(ci.model, 8).projections
    assert float(_ops(ci, 8.0)["qkv_proj"].flops) == 2 * (rest + 9_175_040 + 196_608)


def test_a_linear_layers_prefill_runs_the_chunked_rules_kernels():
    # Qwen3.5-397B-A17B: 45 of 60 layers Gated DeltaNet, 15 full attention. A decode step runs one
    # fused recurrent kernel per linear layer and split-KV attention + merge (2) per full layer:
    # 0.75 x 1 + 0.25 x 2 = 1.25 kernels per average layer. A prefill runs fla's chunked rule
    # (l2norm q, l2norm k, cumsum, kkt, solve_tril, recompute_w_u, fwd_h, fwd_o: 8) per linear
    # layer and FlashAttention (1) per full layer: 0.75 x 8 + 0.25 x 1 = 6.25.
    ci = _ci("qwen3.5-397b-a17b", "b200")
    decode = {op.name: op for op in attention_ops(ci, 4.0, decode_work(1.0, 128.0, 1.0), 0.0)}
    prefill = {op.name: op for op in attention_ops(ci, 4.0, prefill_work(1024.0, 1.0, 1024.0, 1.0), 0.0)}
    assert float(decode["attn_core"].kernels) == 1.25
    assert float(prefill["attn_core"].kernels) == 6.25
