"""Hand-computed operator costs (DESIGN.md section 4)."""

import math

import numpy as np

from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par, attention_ops, moe_ops
from meshplan.io.problem_file import problem_from_raw


def _ci(model, gpu, weights="bf16", isl=1000, osl=0.0001):
    return CostInputs.from_problem(problem_from_raw({
        "model": model, "gpu": gpu, "precision": {"weights": weights}, "workload": {"isl": isl, "osl": osl}}))


def _op(ops, name):
    return next(op for op in ops if op.name == name)


def test_llama_8b_decode_qkv_projection_by_hand():
    ci = _ci("llama-3.1-8b", "h100-sxm")
    ops = attention_ops(ci, Par.of(1, 1, 1, 1, 1), 1.0, 1.0, 1000.0, decode=True, ovh=2e-6)
    qkv = _op(ops, "qkv_proj")
    # Weights 4096 x (32 + 2*8) x 128 = 25,165,824 params x 2 bytes = 50,331,648 bytes, plus the
    # activations in and out: (4096 + 48*128) x 2 bytes = 20,480 -> 50,352,128 bytes.
    assert float(qkv.mem_bytes) == 50_352_128
    # Memory-bound: 50,352,128 / (3.35e12 * 0.8) = 18.788 us, plus 2 kernels x 2 us.
    assert math.isclose(float(qkv.time_s), 50_352_128 / (3.35e12 * 0.8) + 4e-6)


def test_llama_8b_decode_attention_reads_the_kv_cache():
    ci = _ci("llama-3.1-8b", "h100-sxm")
    core = _op(attention_ops(ci, Par.of(1, 1, 1, 1, 1), 1.0, 1.0, 1000.0, decode=True, ovh=0.0), "attn_core")
    # 1000 cached tokens x (K and V) 2 x 8 heads x 128 x 2 bytes = 4,096,000 bytes, plus q and o
    # vectors 2 x 32 x 128 x 2 = 16,384 bytes.
    assert float(core.mem_bytes) == 4_112_384
    # FLOPs: 4 x 32 heads x 128 x 1000 = 16,384,000.
    assert float(core.flops) == 16_384_000


def test_deepseek_experts_and_dispatch_by_hand():
    ci = _ci("deepseek-v3", "h800", weights="fp8")
    ops = moe_ops(ci, Par.of(1, 32, 32, 1, 1), 64.0, ovh=0.0, decode=False)
    # Stage tokens 32 x 64 = 2,048; 16,384 assignments over 32 ranks; busiest rank factor
    # 1 + sqrt(2 x 32 x ln 32 / 16,384) = 1.1163; tokens on the rank 2048 x 8 / 32 x 1.1163.
    imb = 1 + math.sqrt(2 * 32 * math.log(32) / 16384)
    t_exp = 2048 * 8 / 32 * imb
    assert math.isclose(float(_op(ops, "experts").flops), 2 * t_exp * 3 * 7168 * 2048)
    # Prefill dispatch (DeepEP normal kernels), 64 tokens of 7168 fp8 bytes each:
    # NVLink: one copy per remote rank, 31 x (1 - (31/32)^8) = 6.9523 copies;
    # NIC: one copy per remote node, the 32 ranks span 4 nodes: 3 x (1 - (3/4)^8) = 2.7000 copies.
    intra = 64 * 31 * (1 - (31 / 32) ** 8) * 7168
    inter = 64 * 3 * (1 - (3 / 4) ** 8) * 7168
    disp = _op(ops, "ep_dispatch")
    assert math.isclose(float(disp.comm_bytes), intra + inter)
    # Time: the slower of NVLink (200 GB/s x 0.8) and NIC (50 GB/s x 0.8), plus 30 us latency.
    assert math.isclose(float(disp.time_s), 30e-6 + max(intra / 160e9, inter / 40e9))


def test_deepseek_decode_dispatch_sends_one_copy_per_expert():
    ci = _ci("deepseek-v3", "h800", weights="fp8")
    disp = _op(moe_ops(ci, Par.of(1, 32, 32, 1, 1), 64.0, ovh=0.0, decode=True), "ep_dispatch")
    # Low-latency kernels: 8 x 31/32 = 7.75 copies per token; 24 of the 31 remote ranks are off-node.
    copies = 8 * 31 / 32
    inter = 64 * copies * 24 / 31 * 7168
    intra = 64 * copies * 7 / 31 * 7168
    assert math.isclose(float(disp.comm_bytes), intra + inter)
    assert math.isclose(float(disp.time_s), 30e-6 + max(intra / 160e9, inter / 40e9))


def test_etp_prefill_dispatch_and_combine_by_hand():
    ci = _ci("qwen3-235b-a22b", "h100-sxm", weights="fp8")
    ops = moe_ops(ci, Par.of(4, 4, 8, 2, 1), 512.0, ovh=0.0, decode=False)
    # Each tp rank sends 512 / 4 = 128 tokens of D = 4096. ep 8 x etp 2 = 16 GPUs on 2 nodes.
    # A given ep rank holds one of a token's k = 8 experts with probability 1 - (7/8)^8.
    # Dispatch (fp8, 1 byte): both slices of every chosen rank, less the sender's own GPU:
    # 2 x 8 x chosen - chosen = 15 x chosen copies over NVLink, plus one NIC copy to the other
    # node with probability 1 - (1/2)^8. Combine (bf16, 2 bytes) after the etp reduce-scatter:
    # half a row from each slice, 15 x chosen / 2 rows over NVLink, and the NIC copy.
    chosen = 1 - (7 / 8) ** 8
    nic = 1 - 0.5 ** 8
    assert math.isclose(float(_op(ops, "ep_dispatch").comm_bytes), 128 * 4096 * 1 * (15 * chosen + nic))
    assert math.isclose(float(_op(ops, "ep_combine").comm_bytes), 128 * 4096 * 2 * (15 * chosen / 2 + nic))


def test_etp_decode_dispatch_counts_the_other_slices_of_the_senders_rank():
    ci = _ci("mixtral-8x7b", "h100-sxm")
    ops = moe_ops(ci, Par.of(2, 2, 2, 2, 1), 4.0, ovh=0.0, decode=True)
    # 4 GPUs: ep rank 0 = GPUs 0, 1 and ep rank 1 = GPUs 2, 3 (etp 2). A (token, expert) pair
    # from GPU 0 goes to both slices of its ep rank: 2 remote copies when that is ep rank 1, 1
    # when it is ep rank 0 (GPU 1), so 1.5 on average; k = 2 pairs per token; each tp rank sends
    # 4 / 2 = 2 tokens of D = 4096 in the dispatch format, fp8 by default: 2 x 2 x 1.5 x 4096 x 1.
    assert math.isclose(float(_op(ops, "ep_dispatch").comm_bytes), 2 * 2 * 1.5 * 4096 * 1)
    # Combine: one row per pair, half from each slice; the half from GPU 0 itself stays, so
    # 1 - 1/4 of a row per pair, in bf16: 2 x 2 x 0.75 x 4096 x 2 bytes.
    assert math.isclose(float(_op(ops, "ep_combine").comm_bytes), 2 * 2 * 0.75 * 4096 * 2)


def test_mla_decode_is_absorbed_and_reads_the_latent_once():
    ci = _ci("deepseek-v3", "h800", weights="fp8")
    core = _op(attention_ops(ci, Par.of(1, 1, 1, 1, 1), 1.0, 1.0, 4096.0, decode=True, ovh=0.0), "attn_core")
    # Latent cache 4096 x (512 + 64) x 2 bytes = 4,718,592 bytes, plus W_UK/W_UV (kv_b)
    # 512 x 128 x (128 + 128) = 16,777,216 params x 1 byte (fp8).
    assert float(core.mem_bytes) == 4_718_592 + 16_777_216


def test_tp_all_reduce_bytes():
    ci = _ci("llama-3.1-70b", "h100-sxm")
    ar = _op(attention_ops(ci, Par.of(8, 1, 1, 1, 1), 16.0, 16.0, 1000.0, decode=True, ovh=0.0), "tp_all_reduce_attn")
    # Ring all-reduce of [16, 8192] bf16 over 8 GPUs: 2 x 7/8 x 16 x 8192 x 2 = 458,752 bytes.
    assert float(ar.comm_bytes) == 458_752
    assert math.isclose(float(ar.time_s), 10e-6 + 458_752 / (450e9 * 0.8))
    none = _op(attention_ops(ci, Par.of(1, 1, 1, 1, 1), 16.0, 16.0, 1000.0, decode=True, ovh=0.0), "tp_all_reduce_attn")
    assert float(none.time_s) == 0.0 and np.all(none.comm_bytes == 0)
