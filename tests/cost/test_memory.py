"""KV cache and memory: hand-computed cases and invariants over the catalog."""

import numpy as np
import pytest

from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.memory import kv_bytes_per_token
from meshplan.cost.capacity import kv_context
from meshplan.cost.phase import max_sequences_per_rank, memory, usable_bytes
from meshplan.cost.serving import decode_cost
from meshplan.io.catalog import model_keys
from meshplan.io.problem_file import problem_from_raw


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
    from meshplan.io.problem_file import load_problem
    ci = CostInputs.from_problem(load_problem(None))
    assert kv_bytes_per_token(ci) * 128 * 10240 == 40 * 2**30


@pytest.mark.parametrize("key", model_keys())
def test_memory_parts_add_up_and_more_tp_never_raises_weights(key):
    ci = _ci(key, gpu="b200")
    m = ci.model
    previous = None
    for tp in (1, 2, 4, 8):
        if m.num_heads % tp:
            continue
        dp = 1
        ep = tp * dp if m.is_moe else 1
        d = decode_cost(ci, Par.of(tp, dp, ep, 1, 1), np.array([4.0]))
        mem = d.memory
        total = mem.weights + mem.kv_cache + mem.activations + mem.reserve
        assert np.allclose(mem.total, total)
        if previous is not None:
            assert np.all(mem.weights <= previous + 1e-6)
        previous = mem.weights


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
    assert vllm.memory_capacity == 85.52e9 and vllm.reserve == 2 * gib
    assert usable_bytes(vllm, 60 * gib) == pytest.approx(76.968e9)
    assert usable_bytes(sglang, 60 * gib) == pytest.approx(76.968e9)
    assert usable_bytes(trt, 60 * gib) == pytest.approx(83.6252e9, rel=1e-5)
    # A model that does not fit leaves nothing free: the capacity is all there is (79 + 2 GiB > C).
    assert usable_bytes(trt, 79 * gib) == pytest.approx(85.52e9)


def test_tensorrt_llm_keeps_back_a_tenth_of_the_free_memory_only():
    # Llama-3.1-70B BF16 on 4 H100s: W = 70.55e9 params x 2 bytes / 4 = 35.3e9 bytes per GPU (the
    # published count; norms are replicated, a rounding error). The two rules differ by
    # (C - 0.1 (C - W - R)) - 0.9 C = 0.1 (W + R) = 0.1 x (35.3e9 + 2.147e9) = 3.74e9 bytes, room for
    # 3.74e9 / (327,680 / 4 bytes per token per GPU) = 45.7k more tokens on each GPU.
    par = Par.of(4, 1, 1, 1, 1)
    vllm, trt = _engine_ci("vllm"), _engine_ci("trtllm")
    m_v = memory(vllm, par, 1.0, 1.0, 1.0, 2000.0)
    m_t = memory(trt, par, 1.0, 1.0, 1.0, 2000.0)
    assert float(m_t.weights) == pytest.approx(35.3e9, rel=0.02)
    assert float(m_t.usable - m_v.usable) == pytest.approx(3.74e9, rel=0.02)
    more = float(max_sequences_per_rank(trt, par, 2000.0) - max_sequences_per_rank(vllm, par, 2000.0))
    assert more * 2000 == pytest.approx(45_700, rel=0.06)  # whole sequences of 2,000 tokens
