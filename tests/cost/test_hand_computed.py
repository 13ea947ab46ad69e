"""Hand-computed cases (issue 16 point 6): pipeline-parallel figures, prefill attention, MLA
prefill, dense FFN, LM head and max_sequences_per_rank.

Every expected value below is worked out by hand in the comment beside it from the formula and the
inputs the test sets: catalog dimensions (config.json), catalog GPU figures, and efficiencies and a
kernel floor stated in the problem's assumptions (no calibration profile), so that a changed
formula changes the number. Where a figure composes program parts (a stage's layers), the parts
come from the program and the composition is the hand part.

Inputs common to the timed cases: gemm_efficiency 0.5 and hbm_efficiency 0.5, kernel floor 4 us:
  H100: BF16 989.4e12 x 0.5 = 494.7e12 FLOP/s, HBM 3.35e12 x 0.5 = 1.675e12 B/s;
  H200: BF16 494.7e12, FP8 1978.9e12 x 0.5 = 989.45e12 FLOP/s, HBM 4.8e12 x 0.5 = 2.4e12 B/s;
  links (comm_efficiency 0.8): NVLink 450e9 x 0.8 = 360e9 B/s, NIC 50e9 x 0.8 = 40e9 B/s;
  latencies 3 us inside a node, 30 us across.
"""

import math

import numpy as np

from meshplan.cost.attention import attention_ops, decode_work, prefill_work
from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par, dense_ffn_ops, head_ops, pp_send
from meshplan.cost.phase import forward, max_sequences_per_rank
from meshplan.cost.serving import decode_cost, prefill_cost
from meshplan.cost.stages import max_over_stages, stage_table
from meshplan.io.problem_file import problem_from_raw

OVH = 4e-6
BF16_S, FP8_S = 494.7e12, 989.45e12
HBM_H100, HBM_H200 = 1.675e12, 2.4e12
NVLINK, NIC = 360e9, 40e9


def _ci(model="llama-3.1-8b", gpu="h100-sxm", weights="bf16", engine="vllm", workload=None, **assumptions):
    return CostInputs.from_problem(problem_from_raw({
        "model": model, "gpu": gpu, "precision": {"weights": weights, "kv_cache": "bf16"}, "engine": engine,
        "calibration": "none", "workload": {"isl": 1000, "osl": 100, **(workload or {})},
        "assumptions": {"gemm_efficiency": 0.5, "hbm_efficiency": 0.5, "kernel_overhead_s": OVH, **assumptions}}))


def _op(ops, name):
    return next(op for op in ops if op.name == name)


def _smooth(t_compute, t_memory, n=4.0):
    """The smooth roofline (cost.roofline), written out: (t_c^n + t_m^n)^(1/n)."""
    return (t_compute ** n + t_memory ** n) ** (1 / n)


def test_the_timed_inputs_are_the_stated_efficiencies_of_the_catalog_peaks():
    h100, h200 = _ci(), _ci("deepseek-v3", "h200", "fp8")
    assert math.isclose(h100.core_flop_per_s, BF16_S) and math.isclose(h100.hbm_bytes_per_s, HBM_H100)
    assert math.isclose(h200.other_flop_per_s, FP8_S) and math.isclose(h200.hbm_other_bytes_per_s, HBM_H200)
    assert h100.kernel_floor_s == OVH and math.isclose(h100.intra_node_bytes_per_s, NVLINK) and math.isclose(h100.inter_node_bytes_per_s, NIC)


# --- pipeline-parallel figures ------------------------------------------------------------------

def test_stage_table_splits_the_layers_and_puts_the_embedding_first_and_the_head_last():
    llama, deepseek = _ci(), _ci("deepseek-v3", "h200", "fp8")
    # Llama-3.1-8B: 32 dense layers over 3 stages: 32 = 11 + 11 + 10 (the first 32 % 3 = 2 stages get
    # the extra layer); rows (dense, moe, first, last).
    assert sorted(map(tuple, stage_table(llama.layer_kinds, 3).tolist())) == [
        (10, 0, 0, 1), (11, 0, 0, 0), (11, 0, 1, 0)]
    # DeepSeek-V3: 3 dense + 58 MoE layers over 4 stages of 16, 15, 15, 15: stage 0 holds layers 0-15
    # (3 dense, 13 MoE) and the embedding; stages 1 and 2 15 MoE each (one row); stage 3 the head.
    assert sorted(map(tuple, stage_table(deepseek.layer_kinds, 4).tolist())) == [
        (0, 15, 0, 0), (0, 15, 0, 1), (3, 13, 1, 0)]
    # max over stages of 2 nd + 3 nm + 5 first + 7 last: pp 4: max(6 + 39 + 5, 45, 45 + 7) = 52;
    # pp 1 (one stage with all 61 layers, both ends): 6 + 174 + 5 + 7 = 192; pp given as an array.
    fn = lambda nd, nm, first, last: np.asarray(2 * nd + 3 * nm + 5 * first + 7 * last, dtype=float)  # noqa: E731
    assert float(max_over_stages(deepseek.layer_kinds, 4, fn)) == 52.0
    assert max_over_stages(deepseek.layer_kinds, np.array([1, 4]), fn).tolist() == [192.0, 52.0]


def test_pp_send_moves_each_tp_ranks_slice_of_the_hidden_states():
    ci = _ci("llama-3.1-70b")
    # 64 tokens x D 8192 x 2 bytes / tp 4 = 262,144 bytes per GPU to the next stage.
    # Instance of pp 2 x tp 4 = 8 GPUs on one 8-GPU node: NVLink, 3 us + 262,144 / 360e9 = 3.728 us.
    inside = pp_send(ci, Par.of(4, 1, 1, 1, 2), 64.0, 8)
    assert float(inside.comm_bytes) == 262_144
    assert math.isclose(float(inside.time_s), 3e-6 + 262_144 / NVLINK)
    # The same stage in a 16-GPU instance leaves the node: one NIC, 30 us + 262,144 / 40e9 = 36.55 us.
    assert math.isclose(float(pp_send(ci, Par.of(4, 1, 1, 1, 2), 64.0, 16).time_s), 30e-6 + 262_144 / NIC)
    # No stages, no send.
    none = pp_send(ci, Par.of(4, 1, 1, 1, 1), 64.0, 4)
    assert float(none.time_s) == 0.0 and float(none.comm_bytes) == 0.0


def test_a_stage_runs_its_layers_plus_the_embedding_or_the_head_plus_the_send():
    ci = _ci()
    w = decode_work(8.0, 1050.0, 1)
    one = forward(ci, Par.of(1, 1, 1, 1, 1), w)
    t_dense = float(one.dense_layer_s)
    t_embed = sum(float(op.time_s) for op in one.embed)
    t_head = sum(float(op.time_s) for op in one.head)
    # pp 1: all 32 layers, the embedding and the head; no send.
    assert math.isclose(float(one.stage_s), 32 * t_dense + t_embed + t_head)
    # pp 4: 8 layers a stage; the first adds the embedding, the last the head; every stage sends
    # 8 tokens x 4096 x 2 bytes = 65,536 bytes in its 4-GPU instance (one node): 3 us + 65,536 / 360e9.
    four = forward(ci, Par.of(1, 1, 1, 1, 4), w)
    send = 3e-6 + 65_536 / NVLINK
    assert math.isclose(float(four.pp.time_s), send)
    assert math.isclose(float(four.stage_s), 8 * t_dense + max(t_embed, t_head) + send)
    # pp 3: stages of 11 (+ embedding), 11 and 10 (+ head) layers.
    three = forward(ci, Par.of(1, 1, 1, 1, 3), w)
    assert math.isclose(float(three.stage_s), max(11 * t_dense + t_embed, 10 * t_dense + t_head) + send)


PP_ENGINE = {"name": "vllm", "overlap_scheduler": True, "host_cpu_s": 2e-3, "host_cpu_per_request_s": 1e-4,
             "host_gap_s": 5e-4, "kernel_launch_s": 2e-5, "cuda_graph_max_batch": [{"min_memory_gib": 0, "value": 512}]}


def test_a_pipelined_decode_cycle_is_pp_stage_passes_plus_the_exposed_host():
    par = Par.of(1, 1, 1, 1, 4)
    off = _ci(engine={**PP_ENGINE, "overlap_with_pp": False})
    on = _ci(engine={**PP_ENGINE, "overlap_with_pp": True})
    # Decode of B = 8 per micro-batch at the mean context 1000 + 100 / 2 = 1050 tokens; graphed
    # (8 <= 512), so the CPU launches one graph (20 us), far under a stage of 8 layers (~2 ms of weights).
    stage = float(forward(off, par, decode_work(8.0, 1050.0, 1)).stage_s)
    assert stage > 2e-5
    d = decode_cost(off, par, np.array(8.0))
    # Overlap off under pp: host 2 ms + 8 requests x 0.1 ms = 2.8 ms, plus the 0.5 ms gap, all
    # exposed: cycle = 4 x stage + 3.3 ms, and TPOT is the cycle.
    assert math.isclose(float(d.step_s), stage)
    assert math.isclose(float(d.latency_s), 4 * stage + 3.3e-3)
    # Output: dp 1 x pp 4 micro-batches x 8 sequences per cycle over pp x tp x dp = 4 GPUs: 8 / cycle.
    assert math.isclose(float(d.tok_s_per_gpu), 8 / (4 * stage + 3.3e-3))
    # Overlap kept under pp: the host CPU hides, only the 0.5 ms gap stays: 4 x stage + 0.5 ms.
    assert math.isclose(float(decode_cost(on, par, np.array(8.0)).latency_s), 4 * stage + 5e-4)


def test_a_chunked_prompt_through_pp_stages_takes_chunks_plus_pp_minus_one_stage_times():
    engine = {"name": "vllm", "chunked_prefill": True, "prefill_policy": "mixed", "cuda_graph_mixed": False,
              "overlap_scheduler": False, "host_cpu_s": 2e-3, "host_cpu_per_request_s": 1e-4, "host_gap_s": 5e-4,
              "kernel_launch_s": 0.0, "request_overhead_s": 0.05}
    ci = _ci(engine=engine, workload={"isl": 5000, "client_overhead_s": 0.01}, token_budget=2048)
    par = Par.of(1, 1, 1, 1, 2)
    pc = prefill_cost(ci, par, np.array(1.0))
    # One 5,000-token prompt in chunks of the 2,048-token budget: ceil(5000 / 2048) = 3 chunks of
    # 5000 / 3 = 1,666.7 tokens (1/3 of a prompt each), attending to 5000 / 2 = 2,500 keys on average.
    # No kernel launch cost here, so a stage pass is the stage's GPU time.
    stage = float(forward(ci, par, prefill_work(5000 / 3, 1 / 3, 2500.0, 1)).stage_s)
    assert math.isclose(float(pc.step_s), stage)
    # Host per chunk, overlap off: 2 ms + 0.1 ms x 1/3 prompt + 0.5 ms gap = 2.5333 ms.
    exposed = 2e-3 + 1e-4 / 3 + 5e-4
    # The last chunk leaves the last of 2 stages (3 + 2 - 1) = 4 stage times after the first entered,
    # plus 3 x the host, the engine's 50 ms per request and the client's 10 ms.
    assert math.isclose(float(pc.latency_s), 4 * stage + 3 * exposed + 0.05 + 0.01)
    # The instance is busy 3 x (stage + host) per prompt: 1 / that requests/s, 5,000 tokens each over 2 GPUs.
    busy = 3 * (stage + exposed)
    assert math.isclose(float(pc.requests_per_s), 1 / busy)
    assert math.isclose(float(pc.tok_s_per_gpu), 5000 / busy / 2)


# --- prefill attention --------------------------------------------------------------------------

def test_gqa_prefill_attention_flops_bytes_and_time():
    ci = _ci()
    ops = attention_ops(ci, 2, prefill_work(2048.0, 1.0, 1024.0, 1), OVH)
    core = _op(ops, "attn_core")
    # Llama-3.1-8B at tp 2: 32 / 2 = 16 query heads, 8 / 2 = 4 KV heads, H = 128; 2,048 prompt tokens
    # each seeing 1,024 keys: 2048 x 4 x 16 x 128 x 1024 = 17,179,869,184 FLOP.
    assert float(core.flops) == 17_179_869_184
    # Q, O (2 x 16 heads) and K, V (2 x 4 heads) of 128 values in bf16: 2048 x 40 x 128 x 2 = 20,971,520
    # bytes, plus the cache write 2048 x 2 x 4 x 128 x 2 = 4,194,304: 25,165,824 bytes.
    assert float(core.mem_bytes) == 25_165_824
    # 17.18e9 / 494.7e12 = 34.73 us against 25.17e6 / 1.675e12 = 15.02 us, near the ridge:
    # (34.73^4 + 15.02^4)^(1/4) = 35.03 us, plus one kernel's 4 us floor = 39.03 us.
    assert math.isclose(float(core.time_s), _smooth(17_179_869_184 / BF16_S, 25_165_824 / HBM_H100) + OVH)
    # Projections over all 2,048 tokens: QKV 4096 x (16 + 2 x 4) x 128 = 12,582,912 weights per GPU,
    # 2 x 2048 x that = 51,539,607,552 FLOP; output 16 x 128 x 4096 = 8,388,608 weights,
    # 2 x 2048 x that = 34,359,738,368 FLOP; its bytes 8,388,608 x 2 + in and out 2 x 2048 x 4096 x 2.
    assert float(_op(ops, "qkv_proj").flops) == 51_539_607_552
    assert float(_op(ops, "o_proj").flops) == 34_359_738_368
    assert float(_op(ops, "o_proj").mem_bytes) == 16_777_216 + 33_554_432


def test_mla_prefill_decompresses_k_and_v_and_attends_over_full_heads():
    ci = _ci("deepseek-v3", "h200", "fp8")
    ops = attention_ops(ci, 8, prefill_work(1024.0, 1.0, 512.0, 1), OVH)
    core = _op(ops, "attn_core")
    # DeepSeek-V3 at tp 8: 128 / 8 = 16 heads; kv_b (W_UK, W_UV) 512 x 16 x (128 + 128) = 2,097,152
    # weights. Prefill decompresses K and V for 1,024 tokens: 2 x 1024 x 2,097,152 = 4,294,967,296 FLOP,
    # then attends over full heads: 1024 x 2 x 16 x 512 keys x (128 + 64 + 128) = 5,368,709,120 FLOP.
    assert float(core.flops) == 4_294_967_296 + 5_368_709_120
    # Reads kv_b once in fp8 (2,097,152 bytes) and per token and head q, k (192 each), v, o (128 each)
    # in bf16: 1024 x 16 x (2 x 192 + 2 x 128) x 2 = 20,971,520 bytes; nothing from the latent cache.
    assert float(core.mem_bytes) == 2_097_152 + 20_971_520
    # 9.664e9 / 494.7e12 = 19.53 us against 23.07e6 / 2.4e12 = 9.61 us: (19.53^4 + 9.61^4)^(1/4) = 19.81 us,
    # plus 2 kernels (FlashAttention and the decompression GEMM) x 4 us = 27.81 us.
    assert math.isclose(float(core.time_s), _smooth(9_663_676_416 / BF16_S, 23_068_672 / HBM_H200) + 2 * OVH)
    # Projections: q_a 7168 x 1536 = 11,010,048 (replicated), q_b 1536 x 16 x 192 = 4,718,592, kv_a
    # 7168 x 576 = 4,128,768: 19,857,408 weights, 2 x 1024 x that = 40,667,971,584 FLOP; output
    # 16 x 128 x 7168 = 14,680,064 weights, 2 x 1024 x that = 30,064,771,072 FLOP.
    assert float(_op(ops, "qkv_proj").flops) == 40_667_971_584
    assert float(_op(ops, "o_proj").flops) == 30_064_771_072


# --- dense FFN and LM head ----------------------------------------------------------------------

def test_dense_ffn_flops_bytes_time_and_all_reduce_in_bf16():
    ci = _ci()
    ops = dense_ffn_ops(ci, Par.of(2, 1, 1, 1, 1), 16.0, OVH)
    ffn = _op(ops, "dense_ffn")
    # Llama-3.1-8B at tp 2: gate, up, down 3 x 4096 x 14336 / 2 = 88,080,384 weights per GPU;
    # 2 x T x params = 2 x 16 x 88,080,384 = 2,818,572,288 FLOP.
    assert float(ffn.flops) == 2_818_572_288
    # Weights 88,080,384 x 2 bytes = 176,160,768, plus per token in and out (2 x 4096) and the gate, up
    # and product (3 x 14336 / 2) in bf16: 16 x 29,696 x 2 = 950,272: 177,111,040 bytes.
    assert float(ffn.mem_bytes) == 177_111_040
    # 2.82e9 / 494.7e12 = 5.70 us against 177.1e6 / 1.675e12 = 105.74 us (memory-bound, the 4th-power
    # sum adds 1e-4 relative), plus 3 kernels (gate_up, SiLU-and-multiply, down) x 4 us = 117.74 us.
    assert math.isclose(float(ffn.time_s), _smooth(2_818_572_288 / BF16_S, 177_111_040 / HBM_H100) + 3 * OVH)
    # All-reduce of [16, 4096] bf16 over 2 GPUs: 2 x 1/2 x 16 x 4096 x 2 = 131,072 bytes, 3 us + over 360e9.
    ar = _op(ops, "tp_all_reduce_ffn")
    assert float(ar.comm_bytes) == 131_072
    assert math.isclose(float(ar.time_s), 3e-6 + 131_072 / NVLINK)


def test_dense_ffn_in_fp8_reads_one_byte_weights_and_quantizes_its_activations():
    ci = _ci("deepseek-v3", "h200", "fp8")
    ffn = _op(dense_ffn_ops(ci, Par.of(8, 1, 1, 1, 1), 16.0, OVH), "dense_ffn")
    # DeepSeek-V3's dense layers (F = 18432) at tp 8: 3 x 7168 x 18432 / 8 = 49,545,216 weights;
    # 2 x 16 x that = 1,585,446,912 FLOP.
    assert float(ffn.flops) == 1_585_446_912
    # FP8 weights, 1 byte: 49,545,216, plus activations 16 x (2 x 7168 + 3 x 2304) x 2 = 679,936 bytes.
    assert float(ffn.mem_bytes) == 50_225_152
    # 1.585e9 / 989.45e12 = 1.60 us against 50.2e6 / 2.4e12 = 20.93 us, plus 3 kernels and one
    # activation-quantization kernel before each of the 2 GEMMs: 5 x 4 us.
    assert math.isclose(float(ffn.time_s), _smooth(1_585_446_912 / FP8_S, 50_225_152 / HBM_H200) + 5 * OVH)


def test_lm_head_flops_bytes_time_and_logits_gather():
    ci = _ci()
    head, gather = head_ops(ci, Par.of(2, 1, 1, 1, 1), 8.0, OVH)
    # Llama-3.1-8B vocabulary 128,256 split over tp 2: 128256 x 4096 / 2 = 262,668,288 weights;
    # 8 rows: 2 x 8 x 262,668,288 = 4,202,692,608 FLOP.
    assert float(head.flops) == 4_202_692_608
    # Weights in bf16 525,336,576 bytes, plus fp32 logits 8 x 64,128 x 4 = 2,052,096: 527,388,672 bytes.
    assert float(head.mem_bytes) == 527_388_672
    # 4.20e9 / 494.7e12 = 8.50 us against 527.4e6 / 1.675e12 = 314.86 us, plus 2 kernels x 4 us = 322.86 us.
    assert math.isclose(float(head.time_s), _smooth(4_202_692_608 / BF16_S, 527_388_672 / HBM_H100) + 2 * OVH)
    # Logits gathered in bf16: (2 - 1) / 2 x 8 x 128256 x 2 = 1,026,048 bytes; 3 us + that / 360e9.
    assert float(gather.comm_bytes) == 1_026_048
    assert math.isclose(float(gather.time_s), 3e-6 + 1_026_048 / NVLINK)


def test_lm_head_stays_16_bit_in_an_fp8_checkpoint_and_runs_one_row_per_prompt():
    ci = _ci(weights="fp8")
    head = _op(head_ops(ci, Par.of(2, 1, 1, 1, 1), 8.0, OVH), "lm_head")
    # Same 262,668,288 weights per GPU read at 2 bytes (not 1): 525,336,576 + 2,052,096 bytes.
    assert float(head.mem_bytes) == 527_388_672
    # A prefill pass of 2,048 tokens of 4 prompts runs the head on the 4 last tokens only:
    # 2 x 4 x 262,668,288 = 2,101,346,304 FLOP (not 2 x 2048 x ...).
    fwd = forward(ci, Par.of(2, 1, 1, 1, 1), prefill_work(2048.0, 4.0, 256.0, 1))
    assert float(_op(fwd.head, "lm_head").flops) == 2_101_346_304


# --- max_sequences_per_rank ---------------------------------------------------------------------
# Llama-3.1-8B in bf16 at tp 1, per GPU (H100, C = 85.52e9 bytes; reserve R = 2 GiB = 2,147,483,648):
#   attention per layer (4096 x 4096 q + 2 x 4096 x 8 x 128 k, v + 2 x 4096 norms) x 2 + o 4096 x 4096 x 2
#     = 50,348,032 + 33,554,432 = 83,902,464 bytes; FFN 3 x 4096 x 14336 x 2 = 352,321,536;
#     a layer 436,224,000, 32 layers 13,959,168,000;
#   embedding and head 2 x 128256 x 4096 x 2 = 2,101,346,304 + final norm 8,192: W = 16,060,522,496.
#   KV per token and layer 2 x 8 x 128 x 2 = 4,096 bytes; a 2,000-token sequence over 32 layers 262,144,000.
#   Activations of a one-token decode per sequence: 1 x 2 x (4 x 4096 + widest 2 x 14336) = 90,112 plus
#     fp32 logits 128,256 x 4 = 513,024: 603,136. Per sequence 262,144,000 + 603,136 = 262,747,136.

def test_max_sequences_per_rank_fills_the_memory_fraction_of_the_whole():
    ci = _ci()
    # vLLM: 0.9 x 85.52e9 = 76,968,000,000 usable; free = 76,968,000,000 - 2,147,483,648 - 16,060,522,496
    # = 58,759,993,856; 58,759,993,856 / 262,747,136 = 223.64 -> 223 sequences.
    assert float(max_sequences_per_rank(ci, Par.of(1, 1, 1, 1, 1), 2000.0)) == 223
    # pp 2: 16 layers a stage; stage 0 holds the embedding (8,030,257,152 bytes), stage 1 the head and
    # norm (8,030,265,344, the fuller). Each micro-batch's sequence has KV on both stages' layers, and
    # pp 2 micro-batches are in flight: 2 x 16 x 2000 x 4096 + 603,136 = 262,747,136 per sequence;
    # free 76,968,000,000 - 2,147,483,648 - 8,030,265,344 = 66,790,251,008 -> 254.2 -> 254.
    two = Par.of(1, 1, 1, 1, 2)
    assert float(max_sequences_per_rank(ci, two, 2000.0)) == 254
    # Room for one longest sequence of 1,000 more tokens per micro-batch: 2 x 16 x 1000 x 4096 =
    # 131,072,000 less free: 66,659,179,008 / 262,747,136 = 253.7 -> 253.
    assert float(max_sequences_per_rank(ci, two, 2000.0, extra_context=1000.0)) == 253


def test_max_sequences_per_rank_under_tensorrt_llm_takes_its_fraction_of_the_free_memory():
    ci = _ci(engine="trtllm")
    # TensorRT-LLM: 0.9 of what is free once loaded: C - 0.1 x (C - W - R) = 85.52e9 - 0.1 x
    # (85.52e9 - 16,060,522,496 - 2,147,483,648) = 78,788,800,614.4; free = that - R - W =
    # 60,580,794,470.4; / 262,747,136 = 230.57 -> 230 sequences.
    assert float(max_sequences_per_rank(ci, Par.of(1, 1, 1, 1, 1), 2000.0)) == 230
