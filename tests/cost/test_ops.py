"""Hand-computed operator costs (DESIGN.md section 4)."""

import math

import numpy as np

from meshplan.cost.attention import Work, decode_work, prefill_work
from meshplan.cost.inputs import CostInputs
from meshplan.cost.imbalance import busiest_rank_load
from meshplan.cost.layer import Par, attention_block, expert_rate, moe_ops, pp_send
from meshplan.io.problem_file import problem_from_raw


def _ci(model, gpu, weights="bf16", isl=1000, osl=1, engine="trtllm", **assumptions):
    # Sourced defaults (no calibration profile), so the hand values below follow the catalogs.
    return CostInputs.from_problem(problem_from_raw({
        "model": model, "gpu": gpu, "precision": {"weights": weights}, "workload": {"isl": isl, "osl": osl},
        "engine": engine, "calibration": "none", "assumptions": assumptions}))


def _op(ops, name):
    return next(op for op in ops if op.name == name)


def _smooth(t_compute, t_memory, n=4.0):
    return (t_compute ** n + t_memory ** n) ** (1 / n)


def test_llama_8b_decode_qkv_projection_by_hand():
    ci = _ci("llama-3.1-8b", "h100-sxm")
    qkv = _op(attention_block(ci, Par.of(1, 1, 1, 1, 1), decode_work(1.0, 1000.0, 1), ci.kernel_floor_s), "qkv_proj")
    # Weights 4096 x (32 + 2*8) x 128 = 25,165,824 params x 2 bytes = 50,331,648 bytes, plus the
    # activations in and out: (4096 + 48*128) x 2 bytes = 20,480 -> 50,352,128 bytes.
    assert float(qkv.mem_bytes) == 50_352_128
    # Smooth roofline: 2 x 25,165,824 FLOP at 989.4e12 x 0.78 against 50,352,128 B at 3.35e12 x 0.82
    # (H100 catalog fractions), plus 2 kernels (GEMM; RoPE with the cache write) x 2.9 us (H100 floor).
    t_c = 2 * 25_165_824 / (989.4e12 * 0.78)
    t_m = 50_352_128 / (3.35e12 * 0.82)
    assert math.isclose(float(qkv.time_s), _smooth(t_c, t_m) + 2 * 2.9e-6)


def test_llama_8b_decode_attention_reads_the_kv_cache():
    ci = _ci("llama-3.1-8b", "h100-sxm")
    core = _op(attention_block(ci, Par.of(1, 1, 1, 1, 1), decode_work(1.0, 1000.0, 1), 0.0), "attn_core")
    # 1000 cached tokens x (K and V) 2 x 8 heads x 128 x 2 bytes = 4,096,000 bytes, plus q and o
    # vectors 2 x 32 x 128 x 2 = 16,384 bytes.
    assert float(core.mem_bytes) == 4_112_384
    # FLOPs: 4 x 32 heads x 128 x 1000 = 16,384,000.
    assert float(core.flops) == 16_384_000


def test_prefill_attention_sees_half_the_prompt():
    ci = _ci("llama-3.1-8b", "h100-sxm")
    core = _op(attention_block(ci, Par.of(1, 1, 1, 1, 1), prefill_work(1000.0, 1.0, 500.0, 1), 0.0), "attn_core")
    # Causal attention over a 1000-token prompt: each query sees 500 keys on average:
    # 1000 x 4 x 32 x 128 x 500 = 8,192,000,000 FLOP.
    assert float(core.flops) == 8_192_000_000


def test_mixed_pass_runs_one_gemm_over_both_kinds_of_token():
    ci = _ci("llama-3.1-8b", "h100-sxm")
    mixed = Work(decode_seqs=16.0, decode_context=1000.0, prefill_tokens=512.0, prefill_seqs=0.5,
                 prefill_attended=500.0, moe_tokens=528.0)
    ops = attention_block(ci, Par.of(1, 1, 1, 1, 1), mixed, 0.0)
    # QKV GEMM over 16 + 512 = 528 tokens: 2 x 528 x 25,165,824 FLOP.
    assert float(_op(ops, "qkv_proj").flops) == 2 * 528 * 25_165_824
    # The core: a decode kernel for 16 sequences of 1000 cached tokens (4 x 32 x 128 x 1000 each)
    # and a prefill kernel for 512 tokens seeing 500 keys (4 x 32 x 128 x 500 each).
    assert float(_op(ops, "attn_core").flops) == 16 * 16_384 * 1000 + 512 * 16_384 * 500


def test_deepseek_experts_and_dispatch_by_hand():
    ci = _ci("deepseek-v3", "h800", weights="fp8", engine={"name": "trtllm", "version": "1.3"}, expert_load_cv=0.0)
    ops = moe_ops(ci, Par.of(1, 32, 32, 1, 1), prefill_work(64.0, 1.0, 32.0, 32), 0.0)
    # Stage tokens 32 x 64 = 2,048; 16,384 assignments over 32 ranks; busiest rank factor (popularity
    # spread 0 here) 1 + sqrt(2 x 32 x ln 32 / 16,384) = 1.1163; tokens on the rank 2048 x 8 / 32 x 1.1163.
    imb = 1 + math.sqrt(2 * 32 * math.log(32) / 16384)
    t_exp = 2048 * 8 / 32 * imb
    assert math.isclose(float(_op(ops, "experts").flops), 2 * t_exp * 3 * 7168 * 2048)
    # Prefill dispatch (DeepEP normal kernels), 64 tokens of 7168 fp8 bytes each, the busiest rank's
    # share x 1.1163: NVLink: one copy per remote rank, 31 x (1 - (31/32)^8) = 6.9533 copies;
    # NIC: one copy per remote node, the 32 ranks span 4 nodes: 3 x (1 - (3/4)^8) = 2.6997 copies.
    intra = 64 * imb * 31 * (1 - (31 / 32) ** 8) * 7168
    inter = 64 * imb * 3 * (1 - (3 / 4) ** 8) * 7168
    disp = _op(ops, "ep_dispatch")
    assert math.isclose(float(disp.comm_bytes), intra + inter)
    # Time: the slower of NVLink (200 GB/s x 0.8) and NIC (50 GB/s x 0.8), plus 30 us latency.
    assert math.isclose(float(disp.time_s), 30e-6 + max(intra / 160e9, inter / 40e9))


def test_experts_split_over_more_gpus_run_narrower_slower_gemms():
    ci = _ci("deepseek-v3", "h800", weights="fp8", engine={"name": "trtllm", "version": "1.3"}, expert_load_cv=0.0,
             expert_slice_half_width=256.0)
    # Grouped-GEMM rate before narrowing: 1978.9e12 FP8 peak x 0.58 (H800 FP8 GEMM share) x 0.6
    # (grouped GEMM) = 688.66e12.
    whole = 1978.9e12 * 0.58 * 0.6
    # DeepSeek-V3 experts are 2,048 wide: one GPU holds all of each (n = 2048, 2048 / 2304 = 0.8889),
    # or an eighth (n = 256, 256 / 512 = 0.5) with etp 8.
    assert math.isclose(float(expert_rate(ci, 1.0)), whole * 2048 / 2304)
    assert math.isclose(float(expert_rate(ci, 8.0)), whole * 0.5)
    flat = _ci("deepseek-v3", "h800", weights="fp8", engine={"name": "trtllm", "version": "1.3"})
    assert math.isclose(float(expert_rate(flat, 8.0)), whole)  # 0, the default: no narrowing
    # An 8,192-token TP 8 prefill with etp 8 (one instance): each GPU computes an eighth of every
    # expert for all 65,536 assignments: 2 x 65,536 x 3 x 7168 x 256 FLOP at the halved rate against
    # its reads at 3.35e12 x 0.79 (H800 MoE weight streaming), no floor here.
    ops = moe_ops(ci, Par.of(8, 1, 1, 8, 1), prefill_work(8192.0, 1.0, 4096.0, 1), 0.0)
    experts = _op(ops, "experts")
    assert math.isclose(float(experts.flops), 2 * 65536 * 3 * 7168 * 256)
    t_c = 2 * 65536 * 3 * 7168 * 256 / (whole * 0.5)
    assert math.isclose(float(experts.time_s), _smooth(t_c, float(experts.mem_bytes) / (3.35e12 * 0.79)))


def test_fused_moe_kernels_run_fp8_experts_at_the_engines_share_the_all_to_alls_at_the_full_rate():
    half = {"name": "sglang", "fp8_fused_moe_share": 0.5}
    ci = _ci("deepseek-v3", "h200", weights="fp8", engine=half, expert_load_cv=0.0)
    full = _ci("deepseek-v3", "h200", weights="fp8", engine="sglang", expert_load_cv=0.0)
    bf16 = _ci("deepseek-v3", "h200", weights="bf16", engine=half)
    # The share is the engine's with FP8 experts, 1 otherwise; the experts' rate itself is the GPU's.
    assert ci.fused_moe_share == 0.5 and full.fused_moe_share == 1.0 and bf16.fused_moe_share == 1.0
    assert ci.expert_flop_per_s == full.expert_flop_per_s
    work = prefill_work(8192.0, 1.0, 4096.0, 1)

    def experts_time(c, par, rate_share):
        # The smooth roofline by hand: the op's FLOPs at the whole-expert rate times the share, its
        # bytes at the MoE weight-streaming rate, no floor (ovh 0).
        op = _op(moe_ops(c, par, work, 0.0), "experts")
        t_c = float(op.flops) / (float(expert_rate(c, 1.0)) * rate_share)
        return float(op.time_s), _smooth(t_c, float(op.mem_bytes) / c.hbm_expert_bytes_per_s)

    # TP 8 with 8 expert-parallel ranks: every GPU holds the tokens, nothing comes by an all-to-all,
    # so SGLang's fused-MoE kernels run them, at half the rate.
    got, want = experts_time(ci, Par.of(8, 1, 8, 1, 1), 0.5)
    assert math.isclose(got, want)
    assert got > 1.5 * experts_time(full, Par.of(8, 1, 8, 1, 1), 1.0)[0]
    # Attention dp 8 with DeepEP's all-to-all (the launch setting a2a_backend all_to_all): DeepGEMM's
    # grouped GEMMs, at the full rate; SGLang's default exchange (all-gather) keeps the fused kernels.
    deepep = _ci("deepseek-v3", "h200", weights="fp8", engine={**half, "a2a_backend": "all_to_all"}, expert_load_cv=0.0)
    assert math.isclose(*experts_time(deepep, Par.of(1, 8, 8, 1, 1), 1.0))
    assert math.isclose(*experts_time(ci, Par.of(1, 8, 8, 1, 1), 0.5))


def test_popularity_skew_loads_the_busiest_ranks_experts_and_links():
    base = _ci("deepseek-v3", "h800", weights="fp8", engine={"name": "trtllm", "version": "1.3"}, expert_load_cv=0.0)
    skew = _ci("deepseek-v3", "h800", weights="fp8", engine={"name": "trtllm", "version": "1.3"}, expert_load_cv=1.0)
    work, par = prefill_work(4096.0, 1.0, 2048.0, 8), Par.of(1, 8, 8, 1, 1)
    a, b = moe_ops(base, par, work, 0.0), moe_ops(skew, par, work, 0.0)
    # 8 x 4096 tokens x 8 = 262,144 assignments over 8 ranks: statistical excess
    # sqrt(2 x 8 x ln 8 / 262,144) = 0.01127; popularity excess 1.0 x sqrt(2 ln 8 x 8 / 256) = 0.3605;
    # combined 1 + sqrt(0.01127^2 + 0.3605^2) = 1.3607 against 1.01127 without the skew.
    stat = math.sqrt(2 * 8 * math.log(8) / 262144)
    pop = math.sqrt(2 * math.log(8) * 8 / 256)
    ratio = (1 + math.hypot(stat, pop)) / (1 + stat)
    assert math.isclose(float(_op(b, "experts").flops) / float(_op(a, "experts").flops), ratio)
    assert math.isclose(float(_op(b, "ep_dispatch").comm_bytes) / float(_op(a, "ep_dispatch").comm_bytes), ratio)


def test_decode_reads_the_experts_the_batch_touches_whatever_the_skew():
    base = _ci("deepseek-v3", "h800", weights="fp8", engine={"name": "trtllm", "version": "1.3"}, expert_load_cv=0.0)
    skew = _ci("deepseek-v3", "h800", weights="fp8", engine={"name": "trtllm", "version": "1.3"}, expert_load_cv=1.67)
    work, par = decode_work(48.0, 1000.0, 1), Par.of(8, 1, 8, 1, 1)  # TP8 attention, 8 expert-parallel ranks
    a, b = _op(moe_ops(base, par, work, 0.0), "experts"), _op(moe_ops(skew, par, work, 0.0), "experts")
    # 48 tokens pick 8 of 256 experts each: 1 - (1 - 8/256)^48 = 78.2% of the experts are touched, 25.0
    # of a rank's 32, each 3 x 7168 x 2048 fp8 weights of one byte.
    touched = 32 * (1 - (1 - 8 / 256) ** 48)
    weights = touched * 3 * 7168 * 2048
    # The busiest rank's tokens (48 x 8 / 8 x its load) add activations: in and out (2 x 7168) and the
    # gate/up and down intermediates (3 x 2048), 2 bytes each.
    for op, ci in ((a, base), (b, skew)):
        load = float(busiest_rank_load(48 * 8, 8, 256, ci.expert_load_cv))
        assert math.isclose(float(op.mem_bytes), weights + 48 * 8 / 8 * load * (2 * 7168 + 3 * 2048) * 2)
    # The skew loads the busiest rank's GEMMs, not the weights it reads: statistical excess
    # sqrt(2 x 8 x ln 8 / 384) = 0.2943, popularity excess 1.67 x sqrt(2 ln 8 x 8 / 256) = 0.6021,
    # (1 + sqrt(0.2943^2 + 0.6021^2)) / 1.2943 = 1.2903 times the FLOPs.
    stat = math.sqrt(2 * 8 * math.log(8) / 384)
    pop = 1.67 * math.sqrt(2 * math.log(8) * 8 / 256)
    assert math.isclose(float(b.flops) / float(a.flops), (1 + math.hypot(stat, pop)) / (1 + stat))


def test_deepseek_decode_dispatch_sends_one_copy_per_expert():
    ci = _ci("deepseek-v3", "h800", weights="fp8", engine={"name": "trtllm", "version": "1.3"}, expert_load_cv=0.0)
    disp = _op(moe_ops(ci, Par.of(1, 32, 32, 1, 1), decode_work(64.0, 1000.0, 32), 0.0), "ep_dispatch")
    # Low-latency kernels: 8 x 31/32 = 7.75 copies per token; 24 of the 31 remote ranks are off-node;
    # the busiest rank's 64 x 1.1163 tokens (2,048 x 8 assignments over 32 ranks).
    imb = 1 + math.sqrt(2 * 32 * math.log(32) / 16384)
    copies = 8 * 31 / 32
    inter = 64 * imb * copies * 24 / 31 * 7168
    intra = 64 * imb * copies * 7 / 31 * 7168
    assert math.isclose(float(disp.comm_bytes), intra + inter)
    assert math.isclose(float(disp.time_s), 30e-6 + max(intra / 160e9, inter / 40e9))


def test_allgather_backend_gathers_every_ranks_tokens_instead():
    ci = _ci("deepseek-v3", "h200", weights="fp8", engine="vllm", expert_load_cv=0.0)
    ops = moe_ops(ci, Par.of(1, 8, 8, 1, 1), decode_work(32.0, 1000.0, 8), 0.0)
    # vLLM's allgather_reducescatter: no all-to-all; the 8 ranks' 32 tokens are gathered:
    # (8-1)/8 x 256 x 7168 x 2 bytes = 3,211,264 bytes each way.
    assert float(_op(ops, "ep_dispatch").comm_bytes) == 0.0
    assert float(_op(ops, "attn_dp_gather").comm_bytes) == 7 / 8 * 256 * 7168 * 2
    assert float(_op(ops, "attn_dp_scatter").comm_bytes) == 7 / 8 * 256 * 7168 * 2


def test_across_nodes_the_launch_configs_all_to_all_is_costed():
    # vLLM, attention dp 16 x ep 16 on two 8-GPU H200 nodes: meshplan's export sets DeepEP there
    # (EngineProfile.a2a_backend_across_nodes), so tokens go by all-to-all and nothing is gathered.
    ci = _ci("deepseek-v3", "h200", weights="fp8", engine="vllm", expert_load_cv=0.0)
    ops = moe_ops(ci, Par.of(1, 16, 16, 1, 1), decode_work(32.0, 1000.0, 16), 0.0)
    # Decode (low-latency kernels): each rank's 32 tokens x the busiest rank's share (16 x 32 x 8 =
    # 4,096 assignments over 16 ranks: 1 + sqrt(2 x 16 x ln 16 / 4096)), one fp8 copy of 7168 bytes
    # per routed expert off the GPU, 8 x 15/16 = 7.5; 8 of the 15 peers sit on the other node, so the
    # NIC carries 8/15 of it at 40 GB/s, NVLink 7/15 at 360 GB/s; plus 30 us across nodes.
    imb = 1 + math.sqrt(2 * 16 * math.log(16) / 4096)
    sent = 32 * imb * 7168 * 7.5
    disp = _op(ops, "ep_dispatch")
    assert math.isclose(float(disp.comm_bytes), sent)
    assert math.isclose(float(disp.time_s), 30e-6 + max(sent * 7 / 15 / 360e9, sent * 8 / 15 / 40e9))
    assert float(_op(ops, "attn_dp_gather").comm_bytes) == 0.0
    # Stated otherwise in the problem, the gather runs across the nodes too:
    # (16-1)/16 x (16 x 32) x 7168 x 2 bytes each way.
    ci = _ci("deepseek-v3", "h200", weights="fp8", expert_load_cv=0.0,
             engine={"name": "vllm", "a2a_backend_across_nodes": "allgather_reducescatter"})
    ops = moe_ops(ci, Par.of(1, 16, 16, 1, 1), decode_work(32.0, 1000.0, 16), 0.0)
    assert float(_op(ops, "ep_dispatch").comm_bytes) == 0.0
    assert float(_op(ops, "attn_dp_gather").comm_bytes) == 15 / 16 * 512 * 7168 * 2


def test_tp_only_attention_needs_no_token_exchange():
    ci = _ci("deepseek-v3", "h200", weights="fp8", engine={"name": "trtllm", "version": "1.3"})
    ops = moe_ops(ci, Par.of(8, 1, 8, 1, 1), decode_work(32.0, 1000.0, 1), 0.0)
    # Every GPU of a tp group holds all tokens; the TP all-reduce combines the experts' outputs.
    for name in ("ep_dispatch", "ep_combine", "attn_dp_gather"):
        assert float(_op(ops, name).comm_bytes) == 0.0
    assert float(_op(ops, "tp_all_reduce_moe").comm_bytes) == 2 * 7 / 8 * 32 * 7168 * 2


def test_etp_prefill_dispatch_and_combine_by_hand():
    ci = _ci("qwen3-235b-a22b", "h100-sxm", weights="fp8", engine={"name": "trtllm", "version": "1.3"},
             expert_load_cv=0.0)
    ops = moe_ops(ci, Par.of(4, 4, 8, 2, 1), prefill_work(512.0, 1.0, 256.0, 4), 0.0)
    # Each tp rank sends 512 / 4 = 128 tokens of D = 4096, times the busiest rank's share: 4 x 512 x 8 =
    # 16,384 assignments over ep 8, 1 + sqrt(2 x 8 x ln 8 / 16,384) = 1.0451. ep 8 x etp 2 = 16 GPUs on 2
    # nodes. A given ep rank holds one of a token's k = 8 experts with probability 1 - (7/8)^8.
    # Dispatch (fp8, 1 byte): both slices of every chosen rank, less the sender's own GPU:
    # 2 x 8 x chosen - chosen = 15 x chosen copies over NVLink, plus one NIC copy to the other
    # node with probability 1 - (1/2)^8. Combine (bf16, 2 bytes) after the etp reduce-scatter:
    # half a row from each slice, 15 x chosen / 2 rows over NVLink, and the NIC copy.
    imb = 1 + math.sqrt(2 * 8 * math.log(8) / 16384)
    chosen = 1 - (7 / 8) ** 8
    nic = 1 - 0.5 ** 8
    assert math.isclose(float(_op(ops, "ep_dispatch").comm_bytes), 128 * imb * 4096 * 1 * (15 * chosen + nic))
    assert math.isclose(float(_op(ops, "ep_combine").comm_bytes), 128 * imb * 4096 * 2 * (15 * chosen / 2 + nic))


def test_etp_decode_dispatch_counts_the_other_slices_of_the_senders_rank():
    ci = _ci("mixtral-8x7b", "h100-sxm", engine={"name": "trtllm", "version": "1.3"}, expert_load_cv=0.0)
    ops = moe_ops(ci, Par.of(2, 2, 2, 2, 1), decode_work(4.0, 1000.0, 2), 0.0)
    # 4 GPUs: ep rank 0 = GPUs 0, 1 and ep rank 1 = GPUs 2, 3 (etp 2). A (token, expert) pair
    # from GPU 0 goes to both slices of its ep rank: 2 remote copies when that is ep rank 1, 1
    # when it is ep rank 0 (GPU 1), so 1.5 on average; k = 2 pairs per token; each tp rank sends
    # 4 / 2 = 2 tokens of D = 4096 in the dispatch format, fp8 by default, times the busiest rank's
    # share: 8 tokens x 2 = 16 assignments over 2 ranks, 1 + sqrt(2 x 2 x ln 2 / 16) = 1.4163.
    imb = 1 + math.sqrt(2 * 2 * math.log(2) / 16)
    assert math.isclose(float(_op(ops, "ep_dispatch").comm_bytes), 2 * imb * 2 * 1.5 * 4096 * 1)
    # Combine: one row per pair, half from each slice; the half from GPU 0 itself stays, so
    # 1 - 1/4 of a row per pair, in bf16: 2 x 2 x 0.75 x 4096 x 2 bytes.
    assert math.isclose(float(_op(ops, "ep_combine").comm_bytes), 2 * imb * 2 * 0.75 * 4096 * 2)


def test_mla_decode_is_absorbed_and_reads_the_latent_once():
    ci = _ci("deepseek-v3", "h800", weights="fp8")
    core = _op(attention_block(ci, Par.of(1, 1, 1, 1, 1), decode_work(1.0, 4096.0, 1), 0.0), "attn_core")
    # Latent cache 4096 x (512 + 64) x 2 bytes = 4,718,592 bytes, plus W_UK/W_UV (kv_b)
    # 512 x 128 x (128 + 128) = 16,777,216 params x 1 byte (fp8).
    assert float(core.mem_bytes) == 4_718_592 + 16_777_216


def test_sparse_attention_reads_every_index_key_and_only_the_chosen_latents():
    ci = _ci("glm-5", "b200", weights="fp8")
    core = _op(attention_block(ci, Par.of(8, 1, 1, 1, 1), decode_work(1.0, 10000.0, 1), 0.0), "attn_core")
    # GLM-5 decode at 10,000 cached tokens: the indexer reads 10,000 keys of 128 FP8 values and a
    # 4-byte scale (1,320,000 B) and scores them with 32 heads x 128 dims (2 x 32 x 128 x 10,000 =
    # 81,920,000 FLOP); attention then reads only 2,048 latents of (512 + 64) x 2 bytes (2,359,296 B);
    # plus W_UK/W_UV of 8 heads per GPU: 512 x 8 x (192 + 256) = 1,835,008 params x 1 byte.
    assert float(core.mem_bytes) == 1_320_000 + 2_359_296 + 1_835_008
    # Attention FLOPs over 2,048 latents: 2 x 8 heads x 2,048 x (2 x 512 + 64) = 35,651,584, plus the
    # absorption 2 x 8 x 512 x (192 + 256) = 3,670,016, plus the indexer's 81,920,000.
    assert float(core.flops) == 35_651_584 + 3_670_016 + 81_920_000


def test_linear_attention_decode_reads_and_writes_the_state():
    ci = _ci("qwen3.5-397b-a17b", "b200")
    core = _op(attention_block(ci, Par.of(4, 1, 1, 1, 1), decode_work(2.0, 5000.0, 1), 0.0), "attn_core")
    # Qwen3.5: 45 of 60 layers are Gated DeltaNet. Per linear layer at tp 4 a sequence's state is
    # 64 x 128 x 128 / 4 fp32 values (1,048,576 B) plus the conv inputs 12,288 x 3 / 4 in bf16 (18,432 B),
    # read and written: 2 x 1,067,008 B per sequence. Full-attention layers (15) read 5000 tokens x
    # 2 x max(2/4, 1) KV heads x 256 x 2 B = 5,120,000 B per sequence, plus q and o (2 x 8 x 256 x 2 B).
    linear = 2 * 2 * (1_048_576 + 18_432)
    full = 2 * (5_120_000 + 2 * 8 * 256 * 2)
    assert math.isclose(float(core.mem_bytes), 0.75 * linear + 0.25 * full)


def test_tp_all_reduce_bytes():
    ci = _ci("llama-3.1-70b", "h100-sxm")
    ar = _op(attention_block(ci, Par.of(8, 1, 1, 1, 1), decode_work(16.0, 1000.0, 1), 0.0), "tp_all_reduce_attn")
    # Ring all-reduce of [16, 8192] bf16 over 8 GPUs: 2 x 7/8 x 16 x 8192 x 2 = 458,752 bytes; the
    # one-shot custom all-reduce's 3 us latency on H100 (catalog).
    assert float(ar.comm_bytes) == 458_752
    assert math.isclose(float(ar.time_s), 3e-6 + 458_752 / (450e9 * 0.8))
    none = _op(attention_block(ci, Par.of(1, 1, 1, 1, 1), decode_work(16.0, 1000.0, 1), 0.0), "tp_all_reduce_attn")
    assert float(none.time_s) == 0.0 and np.all(none.comm_bytes == 0)


def test_a_ring_across_nodes_uses_every_nic_of_the_node():
    ci = _ci("llama-3.1-70b", "h100-sxm")
    ar = _op(attention_block(ci, Par.of(16, 1, 1, 1, 1), decode_work(16.0, 1000.0, 1), 0.0), "tp_all_reduce_attn")
    # tp 16 on 8-GPU H100 nodes: 2 x 15/16 x 16 x 8192 x 2 = 491,520 bytes per GPU. NCCL's rings
    # leave the node through all 8 NICs side by side: 8 x 50 GB/s x 0.8 = 320 GB/s, below NVLink's
    # 450 x 0.8 = 360 GB/s; the inter-node latency (30 us, catalog). One NIC alone would be 8x slower.
    assert float(ar.comm_bytes) == 491_520
    assert math.isclose(float(ar.time_s), 30e-6 + 491_520 / (8 * 50e9 * 0.8))
    # The pipeline's point-to-point send keeps one NIC per GPU: [16, 8192] / tp 8 x 2 bytes = 32,768
    # bytes at 50 GB/s x 0.8, plus 30 us, for an instance of pp 2 x tp 8 over two nodes.
    send = pp_send(ci, Par.of(8, 1, 1, 1, 2), 16.0, 16)
    assert math.isclose(float(send.time_s), 30e-6 + 32_768 / (50e9 * 0.8))


def test_sustained_gemm_share_scales_every_measured_compute_rate_and_no_override():
    # H100 catalog: BF16 989.4e12 x 0.78, FP8 1978.9e12 x 0.58 (gemm_efficiency table). At a
    # sustained share of 0.8 every compute rate is 0.8 of that: BF16 989.4e12 x 0.78 x 0.8 =
    # 617.35e12 FLOP/s (other_flop_per_s, core_flop_per_s), FP8 1978.9e12 x 0.58 x 0.8 = 918.21e12 for FP8
    # weights; the experts' rate also keeps its grouped GEMM efficiency (0.6 by default).
    plain = _ci("qwen3-30b-a3b", "h100-sxm")
    held = _ci("qwen3-30b-a3b", "h100-sxm", sustained_gemm_share=0.8)
    assert math.isclose(held.other_flop_per_s, 989.4e12 * 0.78 * 0.8)
    assert math.isclose(held.core_flop_per_s, 617.3856e12)
    assert math.isclose(held.expert_flop_per_s, 989.4e12 * 0.78 * 0.8 * 0.6)
    for name in ("attn_flop_per_s", "attn_out_flop_per_s", "expert_flop_per_s", "shared_flop_per_s", "other_flop_per_s", "core_flop_per_s"):
        assert math.isclose(getattr(held, name), 0.8 * getattr(plain, name)), name
    fp8 = _ci("qwen3-30b-a3b", "h100-sxm", weights="fp8", sustained_gemm_share=0.8)
    assert math.isclose(fp8.other_flop_per_s, 918.2096e12)
    # Memory rates do not move; a stated GEMM efficiency is an achieved rate and is not scaled.
    assert held.hbm_bytes_per_s == plain.hbm_bytes_per_s and held.hbm_expert_bytes_per_s == plain.hbm_expert_bytes_per_s
    stated = _ci("qwen3-30b-a3b", "h100-sxm", sustained_gemm_share=0.8, gemm_efficiency=0.5)
    assert math.isclose(stated.other_flop_per_s, 989.4e12 * 0.5)
