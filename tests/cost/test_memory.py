"""KV cache and memory: hand-computed cases and invariants over the catalog."""

import pytest

from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.memory import kv_bytes_per_token, stage_weights
from meshplan.cost.capacity import kv_context
from meshplan.cost.phase import max_sequences_per_rank, memory, usable_bytes
from meshplan.io.catalog import model_keys
from meshplan.io.problem_file import load_problem, problem_from_raw


def _ci(model, gpu="h100-sxm", weights="bf16", kv="bf16", isl=1000, osl=1000):
    return CostInputs.from_problem(problem_from_raw({
        "model": model, "gpu": gpu, "precision": {"weights": weights, "kv_cache": kv},
        "workload": {"isl": isl, "osl": osl}}))


def test_kv_bytes_per_token_deepseek_v3_bf16():
    # MLA caches the latent plus the rope key: (512 + 64) * 61 layers * 2 bytes = 70,272.
    assert kv_bytes_per_token(_ci("deepseek-v3")) == 70_272


def test_kv_bytes_per_token_llama_70b_bf16():
    # GQA: 2 (K, V) * 80 layers * 8 KV heads * 128 dims * 2 bytes = 327,680.
    assert kv_bytes_per_token(_ci("llama-3.1-70b")) == 327_680


def test_seed_kv_for_128_sequences_of_10240_tokens_is_40_gib():
    # DESIGN.md section 1: 2 * 16 layers * 16 heads * 32 dims * 2 bytes = 32,768 bytes per token;
    # 128 * 10,240 * 32,768 = 42,949,672,960 bytes = 40 GiB.
    ci = CostInputs.from_problem(load_problem(None))
    assert kv_bytes_per_token(ci) * 128 * 10240 == 40 * 2**30


def _weights(ci, tp, ep=1):
    return float(memory(ci, Par.of(tp, 1, ep, 1, 1), 1.0, 1.0, 1.0, 1000.0).weights)


def test_llama_70b_weights_per_gpu_by_hand():
    ci = _ci("llama-3.1-70b")
    # Llama-3.1-70B (D 8192, 64 heads and 8 KV heads of 128, F 28672, 80 layers, vocabulary 128,256),
    # bf16. Split over tp: per layer q and o 2 x 8192 x 8192 = 134,217,728, k and v 2 x 8192 x 1024 =
    # 16,777,216, FFN 3 x 8192 x 28672 = 704,643,072: 855,638,016, x 80 = 68,451,041,280; embedding and
    # head 2 x 128256 x 8192 = 2,101,346,304; 70,552,387,584 in all. Replicated on every GPU: two
    # norms a layer 80 x 2 x 8192 = 1,310,720 and the final norm 8,192: 1,318,912.
    # tp 4: (70,552,387,584 / 4 + 1,318,912) x 2 bytes = 35,278,831,616.
    assert _weights(ci, 4) == 35_278_831_616
    # Against the published 70.6e9 parameters (rounded): 70.6e9 x 2 / 4 = 35.3e9, within the rounding.
    assert _weights(ci, 4) == pytest.approx(70.6e9 * 2 / 4, rel=1e-3)
    # tp 16 > 8 KV heads: each GPU keeps one whole KV head (2 x 8192 x 128 = 2,097,152 a layer, not
    # 16,777,216 / 16): per layer (134,217,728 + 704,643,072) / 16 + 2,097,152 + 16,384 norms =
    # 54,542,336, x 80 = 4,363,386,880; + 2,101,346,304 / 16 = 131,334,144 + 8,192:
    # 4,494,729,216 x 2 bytes = 8,989,458,432.
    assert _weights(ci, 16) == 8_989_458_432


def test_deepseek_v3_fp8_weights_per_gpu_by_part():
    ci = _ci("deepseek-v3", weights="fp8")
    w = stage_weights(ci, 8, 8, 1, 3, 58, 1, 1)  # tp 8, ep 8: all 3 dense and 58 MoE layers, both ends
    # MLA per layer: replicated on every tp rank q_a 7168 x 1536 + its norm 1536 + kv_a 7168 x 576 + its
    # norm 512 = 15,140,864, plus the layer norms 2 x 7168 = 14,336; split q_b 1536 x 128 x 192 + kv_b
    # 512 x 128 x 256 = 54,525,952 / 8 = 6,815,744; o 128 x 128 x 7168 / 8 = 14,680,064; fp8 (1 byte):
    # 36,651,008 bytes, x 61 layers = 2,235,711,488.
    assert float(w.attention) == 2_235_711_488
    # Dense FFN 3 x 7168 x 18432 / 8 = 49,545,216 bytes, x 3 layers = 148,635,648.
    assert float(w.dense_ffn) == 148_635_648
    # Routed experts: 256 / 8 = 32 of 3 x 7168 x 2048 = 44,040,192 bytes: 1,409,286,144, x 58 = 81,738,596,352.
    assert float(w.experts) == 81_738_596_352
    # Embedding and head stay 16-bit: 2 x 129280 x 7168 / 8 x 2 bytes = 463,339,520, + final norm 14,336.
    assert float(w.embedding) == 463_353_856


def test_deepseek_v3_fp8_router_is_held_in_16_bit_as_it_is_read():
    ci = _ci("deepseek-v3", weights="fp8")
    w = stage_weights(ci, 8, 8, 1, 3, 58, 1, 1)
    # Shared expert 3 x 7168 x 2048 / 8 = 5,505,024 bytes in fp8, router 7168 x 256 = 1,835,008 weights
    # in bf16 (3,670,016 bytes, whole on every GPU; the catalog counts no router bias for DeepSeek-V3):
    # 9,175,040 a layer, x 58 = 532,152,320.
    assert float(w.shared_experts) == 532_152_320


def test_kv_cache_and_activations_for_a_number_of_sequences_by_hand():
    ci = _ci("llama-3.1-70b")
    # tp 4: 8 / 4 = 2 KV heads a GPU, 2 x 2 x 128 x 2 bytes x 80 layers = 81,920 bytes per token;
    # 10 sequences of 2,000 tokens: 10 x 2000 x 81,920 = 1,638,400,000 bytes.
    m = memory(ci, Par.of(4, 1, 1, 1, 1), 16.0, 16.0, 10.0, 2000.0)
    assert float(m.kv_cache) == 1_638_400_000
    # Room for one longest sequence 3,000 tokens longer: + 3000 x 81,920 = 245,760,000.
    assert float(memory(ci, Par.of(4, 1, 1, 1, 1), 16.0, 16.0, 10.0, 2000.0, 3000.0).kv_cache) == 1_884_160_000
    # tp 8 (one KV head a GPU) halves it; tp 16 keeps one replicated head, so it stays at 819,200,000.
    assert float(memory(ci, Par.of(8, 1, 1, 1, 1), 16.0, 16.0, 10.0, 2000.0).kv_cache) == 819_200_000
    assert float(memory(ci, Par.of(16, 1, 1, 1, 1), 16.0, 16.0, 10.0, 2000.0).kv_cache) == 819_200_000
    # Activations of 16 tokens of 16 sequences at tp 4: 16 x 2 bytes x (4 x 8192 + widest FFN
    # 2 x 28672 / 4 = 14,336) = 1,507,328, plus fp32 logits 16 x 128256 / 4 x 4 = 2,052,096: 3,559,424.
    assert float(m.activations) == 3_559_424


@pytest.mark.parametrize("key", model_keys())
def test_more_tp_lowers_weights_per_gpu_but_never_below_an_even_split(key):
    ci = _ci(key, gpu="b200")
    one = previous = _weights(ci, 1)
    for tp in (2, 4, 8):
        if ci.model.num_heads % tp:
            break
        w = _weights(ci, tp, tp if ci.model.is_moe else 1)
        # Doubling tp halves the split parts and keeps the replicated ones (norms at least): strictly
        # less than before, strictly more than an even split of the whole.
        assert w < previous, (key, tp)
        assert w > one / tp, (key, tp)
        previous = w


@pytest.mark.parametrize("key", model_keys())
def test_max_concurrency_falls_as_context_grows(key):
    limits = []
    for isl in (1000, 8000, 32000):
        ci = _ci(key, gpu="b200", weights="fp8", isl=isl, osl=1000)
        tp = 8 if ci.model.num_heads % 8 == 0 else 1
        par = Par.of(tp, 1, tp if ci.model.is_moe else 1, 1, 1)
        ctx, extra = kv_context(ci)
        limits.append(float(max_sequences_per_rank(ci, par, ctx, extra_context=extra)))
    assert limits[0] >= limits[1] >= limits[2]
    assert limits[0] > limits[2] or limits[0] == 0


def _engine_ci(engine, headroom=0.9):
    return CostInputs.from_problem(problem_from_raw({
        "model": "llama-3.1-70b", "gpu": "h100-sxm", "engine": engine, "precision": {"weights": "bf16"},
        "workload": {"isl": 1000, "osl": 1000}, "requirements": {"memory_headroom": headroom}}))


def test_usable_memory_of_the_whole_and_of_the_free():
    # An H100 has C = 85.52e9 bytes; reserve R = 2 GiB (the default); fraction 0.9; W = 60 GiB of
    # weights. vLLM and SGLang may fill 0.9 C = 76.968e9. TensorRT-LLM takes 0.9 of what is free
    # once the model is in: C - 0.1 (C - W - R) = 85.52e9 - 0.1 (85.52e9 - 62 x 2^30) = 83.6252e9.
    gib = 2**30
    vllm, sglang, trt = _engine_ci("vllm"), _engine_ci("sglang"), _engine_ci("trtllm")
    assert vllm.memory_bytes == 85.52e9 and vllm.reserve_bytes == 2 * gib
    assert usable_bytes(vllm, 60 * gib) == pytest.approx(76.968e9)
    assert usable_bytes(sglang, 60 * gib) == pytest.approx(76.968e9)
    assert usable_bytes(trt, 60 * gib) == pytest.approx(83.6252e9, rel=1e-5)
    # A model that does not fit leaves nothing free: the capacity is all there is (79 + 2 GiB > C).
    assert usable_bytes(trt, 79 * gib) == pytest.approx(85.52e9)


def test_tensorrt_llm_keeps_back_a_tenth_of_the_free_memory_only():
    # Llama-3.1-70B BF16 on 4 H100s: W = 35,278,831,616 bytes per GPU (test_llama_70b_weights_per_gpu_by_hand).
    # The two rules differ by (C - 0.1 (C - W - R)) - 0.9 C = 0.1 (W + R) = 0.1 x (35,278,831,616 +
    # 2,147,483,648) = 3,742,631,526.4 bytes.
    par = Par.of(4, 1, 1, 1, 1)
    vllm, trt = _engine_ci("vllm"), _engine_ci("trtllm")
    m_v = memory(vllm, par, 1.0, 1.0, 1.0, 2000.0)
    m_t = memory(trt, par, 1.0, 1.0, 1.0, 2000.0)
    assert float(m_t.weights) == 35_278_831_616
    assert float(m_t.usable - m_v.usable) == pytest.approx(3_742_631_526.4, rel=1e-9)
    # A 2,000-token sequence holds 2000 x 81,920 = 163,840,000 bytes of KV per GPU and a one-token pass
    # 2 x (4 x 8192 + 14,336) + 128256 / 4 x 4 = 222,464 of activations: 164,062,464. vLLM: free
    # 0.9 x 85.52e9 - 2,147,483,648 - W = 39,541,684,736 -> 241.02 -> 241 sequences. TensorRT-LLM:
    # free = that + 3,742,631,526.4 = 43,284,316,262.4 -> 263.83 -> 263, 22 more.
    assert float(max_sequences_per_rank(vllm, par, 2000.0)) == 241
    assert float(max_sequences_per_rank(trt, par, 2000.0)) == 263
